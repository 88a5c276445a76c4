//! How a long pass is told to stop early and hand back checkpoints: a deadline (a Lambda's
//! time budget) or a flag (a signal).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// When a pass should stop early and hand back checkpoints.
#[derive(Debug, Clone, Default)]
pub struct StopWhen {
    /// Stop scanning at this instant (a Lambda's time budget).
    pub deadline: Option<Instant>,
    /// Stop scanning when set (a signal).
    pub flag: Option<Arc<AtomicBool>>,
}

impl StopWhen {
    /// Whether the pass should stop now.
    pub fn is_stopped(&self) -> bool {
        self.flag
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}
