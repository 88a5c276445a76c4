//! The cutover of a live run (`kill -USR1 <pid>`): fence → drain → check → release → watch.
//!
//! - **Full verify** while writers still run, recording the keys the tail touches from then on.
//! - **Fence**: `CLIENT PAUSE <fence> WRITE` on every source primary; where it is refused, the
//!   operator stops the writers and confirms with another SIGUSR1.
//! - **Drain**: the tail copies what is dirty and stays quiet.
//! - **Check**: the keys the tail touched since the verify began, and those the verify found
//!   different, compared again both ways: seconds, not a pass. Anything still different lifts
//!   the fence and the run goes on following (the cutover is refused, nothing is lost).
//! - **Release**: the operator switches the application, then confirms (SIGUSR1); ferry lifts the
//!   fence (or the server does, when the fence time is up).
//! - **Watch**: the tail follows for `--watch-secs` more; writes still reaching the source are
//!   stragglers, copied and counted, and the clients still connected to the source are listed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_engine::copy::CopyContext;
use ferry_engine::fence::{self, Fence, Refused};
use ferry_engine::inventory::Inventory;
use ferry_engine::migrate::{self, Migration, StopWhen};
use ferry_engine::tail::Tail;
use ferry_engine::verify::Level;
use ferry_engine::Error;

use crate::args::ReplicateArgs;
use crate::connect::fresh_verify_context;
use crate::live::DRAIN_QUIET;
use crate::report::CutoverReport;

/// Keys of the tail's touched record the fenced check compares at most; past it the check is a
/// full verify inside the fence.
const TOUCHED_LIMIT: usize = 1_000_000;

/// How a cutover ended.
pub enum Cutover {
    /// Done: the application writes to the target.
    Done(Box<CutoverReport>),
    /// Refused before the release (the reason); the fence is lifted, following goes on.
    Refused(String),
}

/// The operator's confirmations: SIGUSR1s counted since the last one seen.
pub struct Confirmations<'a> {
    pub count: &'a AtomicU64,
    pub seen: u64,
}

impl Confirmations<'_> {
    /// Waits for the next SIGUSR1 until `deadline` or a stop; true if it came.
    async fn next(&mut self, deadline: Option<Instant>, stop: &AtomicBool) -> bool {
        loop {
            let now = self.count.load(Ordering::SeqCst);
            if now > self.seen {
                self.seen = now;
                return true;
            }
            if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs the cutover of a live run whose tail is `t`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    a: &ReplicateArgs,
    m: &Migration,
    inv: &Inventory,
    copy_ctx: &Arc<CopyContext>,
    t: &mut Tail,
    confirm: &mut Confirmations<'_>,
    stop: &Arc<AtomicBool>,
) -> Result<Cutover, Error> {
    let mut report = CutoverReport::default();
    eprintln!("cutover: full verify while the application still writes to the source");
    t.record_touched(TOUCHED_LIMIT);
    let gaps_before = t.report().gaps;
    let (fresh, vctx) = fresh_verify_context(a, m, inv, copy_ctx, Level::Full).await?;
    let stopper = StopWhen {
        deadline: None,
        flag: Some(stop.clone()),
    };
    let (before, complete) =
        migrate::verify_all(m, &fresh, vctx.clone(), Arc::new(|_| {}), stopper).await?;
    if !complete {
        t.take_touched();
        return Ok(Cutover::Refused("interrupted during the verify".into()));
    }
    report.verify_before = before.total;

    let fence_time = Duration::from_secs_f64(a.live.fence_secs);
    let fence = match Fence::raise(&m.source, fence_time.as_millis() as u64).await {
        Ok(fence) => {
            report.fence = "client pause".into();
            eprintln!(
                "cutover: writes held on the source (CLIENT PAUSE WRITE, at most {}s)",
                a.live.fence_secs
            );
            Some(fence)
        }
        Err(Refused::NotAllowed(why)) => {
            report.fence = "operator".into();
            eprintln!("cutover: the source refuses CLIENT PAUSE ({why}): stop every writer of the source, then send SIGUSR1 (kill -USR1 {})", std::process::id());
            if !confirm.next(None, stop).await {
                t.take_touched();
                return Ok(Cutover::Refused("stopped before the writers were".into()));
            }
            None
        }
        Err(Refused::Failed(e)) => return Err(e),
    };
    let raised = Instant::now();
    let expires = fence.as_ref().map(|f| f.since + fence_time);

    let refuse = |fence: Option<Fence>, why: String| async move {
        if let Some(f) = fence {
            f.lift().await?;
        }
        Ok::<_, Error>(Cutover::Refused(why))
    };
    if !t.drain(DRAIN_QUIET, fence_time).await? {
        t.take_touched();
        return refuse(fence, "the tail did not drain within the fence".into()).await;
    }
    let touched = t.take_touched().unwrap_or_default();
    let check = if touched.overflowed || t.report().gaps > gaps_before {
        eprintln!("cutover: a gap or too many touched keys: the check is a full verify");
        let (fresh, vctx) = fresh_verify_context(a, m, inv, copy_ctx, Level::Full).await?;
        let stopper = StopWhen::default();
        migrate::verify_all(m, &fresh, vctx, Arc::new(|_| {}), stopper)
            .await?
            .0
    } else {
        let mut keys = touched.by_db();
        migrate::add_differing(m, &before.diffs, &vctx.source_dbs, &mut keys);
        report.checked_keys = keys.values().map(|k| k.len() as u64).sum();
        migrate::check_keys(m, vctx, &keys).await?
    };
    report.check = check.total;
    if check.total.differences() > 0 {
        let sample: Vec<String> = check
            .sample
            .iter()
            .map(|d| format!("{:?} db{} {}", d.status, d.db, d.key))
            .collect();
        return refuse(
            fence,
            format!(
                "the fenced check found {} differences ({})",
                check.total.differences(),
                sample.join(", ")
            ),
        )
        .await;
    }

    eprintln!(
        "cutover: the target is ready ({} keys checked, writes held {} ms so far). Switch the application to the target now, then send SIGUSR1 (kill -USR1 {}){}",
        report.checked_keys,
        raised.elapsed().as_millis(),
        std::process::id(),
        if expires.is_some() { format!("; the fence lifts by itself {}s after it was raised", a.live.fence_secs) } else { String::new() }
    );
    confirm.next(expires, stop).await;
    let copied_before = {
        let r = t.report();
        r.keys_copied + r.keys_deleted
    };
    report.fence_ms = match fence {
        Some(f) => f.lift().await?,
        None => raised.elapsed().as_millis() as u64,
    };
    eprintln!(
        "cutover: released after {} ms; watching the source for {}s",
        report.fence_ms, a.live.watch_secs
    );
    let watch_end = Instant::now() + Duration::from_secs_f64(a.live.watch_secs);
    while Instant::now() < watch_end && !stop.load(Ordering::Relaxed) {
        if let Some(e) = t.failure() {
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.drain(DRAIN_QUIET, Duration::from_secs_f64(a.live.drain_timeout))
        .await?;
    let r = t.report();
    report.stragglers = (r.keys_copied + r.keys_deleted).saturating_sub(copied_before);
    report.source_clients = fence::source_clients(&m.source).await?;
    if report.stragglers > 0 || !report.source_clients.is_empty() {
        eprintln!(
            "cutover: {} writes reached the source after the release (copied); clients still connected: {}",
            report.stragglers,
            report.source_clients.iter().map(|c| format!("{} {} ({})", c.addr, c.name, c.last_command)).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(Cutover::Done(Box::new(report)))
}
