//! A token bucket that caps the commands per second ferry sends to the source, so production
//! traffic keeps its latency (design §6, source safety).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shared by every worker of a run; [`RateLimiter::acquire`] waits until the ops fit.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    /// Tokens available (negative: borrowed ahead, to be waited off) and when they were counted.
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter of `per_sec` operations per second with a burst of a tenth of a second.
    pub fn new(per_sec: u64) -> RateLimiter {
        RateLimiter {
            per_sec: per_sec.max(1) as f64,
            state: Mutex::new((0.0, Instant::now())),
        }
    }

    /// Takes `ops` tokens, sleeping for as long as the bucket is in debt.
    pub async fn acquire(&self, ops: u64) {
        let wait = {
            let mut s = self.state.lock().expect("rate limiter lock");
            let now = Instant::now();
            let burst = self.per_sec / 10.0;
            s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.per_sec).min(burst);
            s.1 = now;
            s.0 -= ops as f64;
            if s.0 < 0.0 {
                Duration::from_secs_f64(-s.0 / self.per_sec)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holds_the_rate_over_many_acquires() {
        let limiter = RateLimiter::new(2000);
        let start = Instant::now();
        for _ in 0..40 {
            limiter.acquire(25).await;
        }
        let secs = start.elapsed().as_secs_f64();
        // 1000 ops at 2000/s is 0.5 s, less the 0.1 s burst at most.
        assert!((0.4..0.8).contains(&secs), "{secs}");
    }
}
