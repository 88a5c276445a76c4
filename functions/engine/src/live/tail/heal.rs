//! Healing gaps: a compare of source and target in both directions marks every difference
//! dirty, inside a remember window whose replay covers the races with live events.

use super::*;
use crate::verify;

/// A gap notice that is a retry of a heal pass, not a new gap.
pub(super) const HEAL_RETRY: &str = "retry of an interrupted heal pass";

/// Marks a gap notice already counted in `unhealed` by its sender ([`Tail::heal`]).
pub(super) const PRE_COUNTED: &str = "(reported) ";

/// Heals gaps: a compare of source and target in both directions marks every difference dirty,
/// inside a remember window whose replay covers the races with live events.
pub(super) async fn healer(
    shared: Arc<Shared>,
    mut gaps: mpsc::UnboundedReceiver<String>,
    retry: mpsc::UnboundedSender<String>,
) -> Result<()> {
    // `unhealed` counts gaps taken off the channel and retries queued, until their heal pass
    // ends: a drain must not end before it (stopping never cuts a heal short).
    let count_in = |reason: &String| {
        if reason != HEAL_RETRY && !reason.starts_with(PRE_COUNTED) {
            shared.unhealed.fetch_add(1, Ordering::SeqCst);
        }
    };
    while let Some(reason) = gaps.recv().await {
        count_in(&reason);
        // Coalesce gaps that arrive together into one heal pass.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut reasons = vec![reason];
        while let Ok(more) = gaps.try_recv() {
            count_in(&more);
            reasons.push(more);
        }
        let taken = reasons.len() as u64;
        shared.dirty.note_activity();
        let new_gaps = reasons.iter().filter(|r| *r != HEAL_RETRY).count();
        shared
            .stats
            .gaps
            .fetch_add(new_gaps as u64, Ordering::Relaxed);
        tracing::warn!(gaps = ?reasons, "gap on the source: healing with a compare pass");
        shared.dirty.open_window();
        let healed = heal_pass(&shared).await;
        shared.dirty.drained().await;
        let replayed = shared.dirty.close_window();
        shared
            .stats
            .replayed
            .fetch_add(replayed as u64, Ordering::Relaxed);
        // Quiet is counted from the end of the heal: it is the first moment changes are known.
        shared.dirty.note_activity();
        match healed {
            Ok(n) => {
                shared.stats.heals.fetch_add(1, Ordering::Relaxed);
                tracing::info!(differences = n, replayed, "heal pass done");
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "heal pass interrupted (the node may still be coming back); healing again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                shared.unhealed.fetch_add(1, Ordering::SeqCst);
                let _ = retry.send(HEAL_RETRY.to_string());
            }
            Err(e) => {
                shared.unhealed.fetch_sub(taken, Ordering::SeqCst);
                return fail(&shared, e);
            }
        }
        // A retry was queued above before this pass's gaps are let go, so a drain never sees
        // an interrupted heal as done.
        shared.unhealed.fetch_sub(taken, Ordering::SeqCst);
    }
    Ok(())
}

/// One compare in both directions; marks every differing key dirty and returns how many.
pub(super) async fn heal_pass(shared: &Shared) -> Result<usize> {
    let m = &shared.migration;
    let options = VerifyOptions {
        keep_diffs: usize::MAX,
        sample_limit: 0,
        ..VerifyOptions::default()
    };
    let (inv, ctx) =
        verify::current_verify_context(m, &shared.dbs, shared.copy.limiter.clone(), options)
            .await?;
    let dbs = ctx.source_dbs.clone();
    let (report, _) = verify::verify_all(
        m,
        &inv,
        ctx,
        Arc::new(|_| {}),
        crate::util::cancel::StopWhen::default(),
    )
    .await?;
    let mut n = 0;
    for d in report.diffs {
        let key = match d.status {
            Status::Extra => m.scope.owners_of(d.db, &d.key, &dbs).into_iter().next(),
            _ => Some((d.db, d.key)),
        };
        if let Some(key) = key {
            shared.dirty.mark(key);
            n += 1;
        }
    }
    Ok(n)
}
