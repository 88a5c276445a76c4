//! Small helpers every layer may use: the wall clock Redis expiry times are on, and the rate
//! limiter that caps ferry's load on the source.

pub mod cancel;
pub mod ratelimit;
pub mod retry;

/// Milliseconds since the Unix epoch, the clock Redis expiry times are on.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
