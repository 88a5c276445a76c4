//! Progress on long work: a bar with keys/s and ETA on a terminal, a plain line every few
//! seconds otherwise (CI logs, files).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A running progress display fed by a counter it polls.
pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts showing `counter()` out of about `total` (an estimate: keys may come and go).
    pub fn start(
        label: &'static str,
        total: u64,
        counter: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Progress {
        let interactive = std::io::stderr().is_terminal();
        let bar =
            interactive.then(|| {
                let bar = ProgressBar::new(total.max(1));
                bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>8} [{bar:30}] {human_pos}/{human_len} keys  {rate} keys/s  ETA {eta}",
                )
                .expect("progress template")
                .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}", state.per_sec());
                })
                .progress_chars("=> "),
            );
                bar.set_prefix(label);
                bar
            });
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            let start = Instant::now();
            let period = if interactive {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            loop {
                tokio::time::sleep(period).await;
                let n = counter();
                match &shown {
                    Some(bar) => {
                        if n > bar.length().unwrap_or(0) {
                            bar.set_length(n);
                        }
                        bar.set_position(n);
                    }
                    None => {
                        let secs = start.elapsed().as_secs_f64();
                        eprintln!(
                            "{label}: {n}/{total} keys, {:.0} keys/s",
                            n as f64 / secs.max(0.001)
                        );
                    }
                }
            }
        });
        Progress { bar, ticker }
    }

    /// Stops the display, leaving the final count on screen.
    pub fn finish(self, final_count: u64) {
        self.ticker.abort();
        if let Some(bar) = self.bar {
            bar.set_length(final_count.max(bar.length().unwrap_or(0)).max(1));
            bar.set_position(final_count);
            bar.finish();
        }
    }
}
