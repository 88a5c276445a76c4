//! The one retry policy: after a transient error (what [`crate::Error::is_transient`] calls
//! one), wait a doubling delay and try again; give up once the outage has lasted longer than
//! its window, counted from the outage's first failure rather than from when the work began
//! (a batch that stalled for a whole reply timeout is still retried).

use std::time::Duration;

use tokio::time::Instant;

/// How long a run keeps retrying through a server that went away (restart, failover, network)
/// before giving up with the error.
pub const RETRY_WINDOW: Duration = Duration::from_secs(60);

/// Delays between attempts, doubling from `first` to `max`, within an optional window.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    window: Option<Duration>,
    next: Duration,
    since: Option<Instant>,
}

impl Backoff {
    /// Delays doubling from `first` to `max`; with `window`, [`Backoff::wait`] says stop once
    /// that long has passed since the first failure.
    pub fn new(first: Duration, max: Duration, window: Option<Duration>) -> Backoff {
        Backoff {
            first,
            max,
            window,
            next: first,
            since: None,
        }
    }

    /// A snapshot pass (a batch, a scan): 100 ms doubling to 1.6 s, for at most
    /// [`RETRY_WINDOW`].
    pub fn for_pass() -> Backoff {
        Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(1600),
            Some(RETRY_WINDOW),
        )
    }

    /// The live tail, which follows for days and never gives up by itself (its gap watcher
    /// and heal pass cover what an outage hid): 50 ms doubling to 2 s.
    pub fn for_tail() -> Backoff {
        Backoff::new(Duration::from_millis(50), Duration::from_secs(2), None)
    }

    /// Sleeps before the next attempt; `false` (at once) when the window is spent.
    pub async fn wait(&mut self) -> bool {
        let since = *self.since.get_or_insert_with(Instant::now);
        if self.window.is_some_and(|w| since.elapsed() >= w) {
            return false;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::time::sleep(delay).await;
        true
    }

    /// The delay the next [`Backoff::wait`] sleeps.
    pub fn next_delay(&self) -> Duration {
        self.next
    }

    /// An attempt succeeded: the next failure starts a new outage.
    pub fn reset(&mut self) {
        self.next = self.first;
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delays_double_to_the_cap_and_the_window_ends_the_outage() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(400),
            Some(Duration::from_secs(1)),
        );
        let mut delays = Vec::new();
        while {
            delays.push(b.next_delay());
            b.wait().await
        } {}
        delays.pop();
        assert_eq!(
            delays,
            [100, 200, 400, 400].map(Duration::from_millis).to_vec()
        );
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert!(b.wait().await, "a new outage gets a new window");
        let mut tail = Backoff::for_tail();
        for _ in 0..100 {
            assert!(tail.wait().await);
        }
        assert_eq!(tail.next_delay(), Duration::from_secs(2));
    }
}
