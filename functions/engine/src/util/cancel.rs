//! The one way ferry tells work to stop: a [`Stop`], set once (a signal, the end of a live
//! run) and seen by every clone, which long waits select on instead of polling a flag; and
//! [`StopWhen`], a pass's stop plus an optional deadline (a Lambda's time budget), at which
//! it hands back checkpoints.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// A stop request shared by clones: [`Stop::stop`] on any of them is seen by all.
#[derive(Debug, Clone, Default)]
pub struct Stop(CancellationToken);

impl Stop {
    /// A stop not requested yet.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Requests the stop (idempotent).
    pub fn stop(&self) {
        self.0.cancel();
    }

    /// Whether the stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes when the stop is requested (at once if it was).
    pub async fn stopped(&self) {
        self.0.cancelled().await
    }
}

/// When a pass should stop early and hand back checkpoints.
#[derive(Debug, Clone, Default)]
pub struct StopWhen {
    /// Stop scanning at this instant (a Lambda's time budget).
    pub deadline: Option<Instant>,
    /// Stop scanning when requested (a signal).
    pub stop: Option<Stop>,
}

impl StopWhen {
    /// Stop on `stop` only, with no deadline.
    pub fn on(stop: &Stop) -> StopWhen {
        StopWhen {
            deadline: None,
            stop: Some(stop.clone()),
        }
    }

    /// Whether the pass should stop now.
    pub fn is_stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(Stop::is_stopped)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_is_seen_by_every_clone_and_wakes_waiters() {
        let stop = Stop::new();
        let waiter = {
            let stop = stop.clone();
            tokio::spawn(async move { stop.stopped().await })
        };
        let pass = StopWhen::on(&stop);
        assert!(!pass.is_stopped());
        stop.stop();
        waiter.await.unwrap();
        assert!(pass.is_stopped() && stop.is_stopped());
        let past = StopWhen {
            deadline: Some(Instant::now()),
            stop: None,
        };
        assert!(past.is_stopped());
    }
}
