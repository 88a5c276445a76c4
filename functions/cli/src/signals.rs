//! Signals: the first SIGINT or SIGTERM stops gracefully, a second forces the exit after
//! putting back what ferry changed on the source (the notification flags).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferry_engine::live::tail;
use ferry_engine::model::migration::Migration;
use ferry_engine::util::cancel::Stop;
use ferry_engine::Endpoint;

use crate::EXIT_INTERRUPTED;

/// What a forced exit must still put back on the source: the notification flags live mode
/// changed (set while they are changed).
static RESTORE_ON_EXIT: std::sync::Mutex<Option<(Endpoint, String)>> = std::sync::Mutex::new(None);

/// Stops scanning on SIGINT / SIGTERM; in-flight batches finish and checkpoints are reported.
/// A second signal of either kind forces the exit, after putting back what ferry changed on
/// the source.
pub fn stop_on_signal() -> Stop {
    let stop = Stop::new();
    let set = stop.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping: finishing batches in flight (send again to force)");
        set.stop();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping now (forced)");
        let restore = RESTORE_ON_EXIT.lock().expect("restore").take();
        if let Some((source, flags)) = restore {
            let put_back = tail::restore_notifications(&source, &flags);
            match tokio::time::timeout(std::time::Duration::from_secs(5), put_back).await {
                Ok(Ok(())) => eprintln!("restored notify-keyspace-events to '{flags}'"),
                _ => eprintln!("warning: could not restore notify-keyspace-events to '{flags}'"),
            }
        }
        std::process::exit(EXIT_INTERRUPTED);
    });
    stop
}

/// Records the notification flags to put back if ferry is forced to exit.
pub fn remember_restore(m: &Migration, original: &Option<String>) {
    *RESTORE_ON_EXIT.lock().expect("restore") =
        original.as_ref().map(|f| (m.source.clone(), f.clone()));
}

/// Puts back the notification flags live mode changed; a failure is reported, not fatal.
pub async fn restore_flags(m: &Migration, original: &Option<String>) {
    RESTORE_ON_EXIT.lock().expect("restore").take();
    if let Some(flags) = original {
        if let Err(e) = tail::restore_notifications(&m.source, flags).await {
            eprintln!("warning: could not restore notify-keyspace-events to '{flags}': {e}");
        }
    }
}

/// Counts SIGUSR1s: in live mode the operator's cutover request, then each confirmation the
/// cutover asks for (`kill -USR1 <pid>`).
pub fn count_cutover_signals() -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    if let Ok(mut usr1) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
    {
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    count
}
