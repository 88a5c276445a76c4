//! The cutover of a live run (`kill -USR1 <pid>`): a full verify while the application still
//! writes, then the engine's protocol (`ferry_engine::live::cutover`: fence → drain → check → release
//! → watch) with the operator's confirmations given as further SIGUSR1s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_engine::copy::CopyContext;
use ferry_engine::inventory::Inventory;
use ferry_engine::live::cutover::{self, CutoverReport, CutoverSettings, Raised, TOUCHED_LIMIT};
use ferry_engine::live::tail::Tail;
use ferry_engine::model::migration::Migration;
use ferry_engine::run;
use ferry_engine::util::cancel::{Stop, StopWhen};
use ferry_engine::verify::Level;
use ferry_engine::Error;

use crate::args::ReplicateArgs;
use crate::live::DRAIN_QUIET;
use ferry_engine::verify;

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
    async fn next(&mut self, deadline: Option<Instant>, stop: &Stop) -> bool {
        loop {
            let now = self.count.load(Ordering::SeqCst);
            if now > self.seen {
                self.seen = now;
                return true;
            }
            if stop.is_stopped() || deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs the cutover of a live run whose tail is `t`: a full verify while the application still
/// writes, then the engine's protocol with the operator's confirmations as SIGUSR1s.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    a: &ReplicateArgs,
    m: &Migration,
    inv: &Inventory,
    copy_ctx: &Arc<CopyContext>,
    t: &mut Tail,
    confirm: &mut Confirmations<'_>,
    stop: &Stop,
) -> Result<Cutover, Error> {
    eprintln!("cutover: full verify while the application still writes to the source");
    t.record_touched(TOUCHED_LIMIT);
    let settings = a.verify_settings(Level::Full);
    let (fresh, vctx) = run::verify_context_now(m, inv, copy_ctx, settings).await?;
    let stopper = StopWhen::on(stop);
    let (before, complete) = verify::verify_all(m, &fresh, vctx, Arc::new(|_| {}), stopper).await?;
    if !complete {
        t.take_touched();
        return Ok(Cutover::Refused("interrupted during the verify".into()));
    }
    let cutover_settings = CutoverSettings {
        fence_time: Duration::from_secs_f64(a.live.fence_secs),
        drain_quiet: DRAIN_QUIET,
        drain_timeout: Duration::from_secs_f64(a.live.drain_timeout),
        watch: Duration::from_secs_f64(a.live.watch_secs),
    };
    let pid = std::process::id();
    eprintln!(
        "cutover: holding writes on the source (CLIENT PAUSE WRITE, at most {}s)",
        a.live.fence_secs
    );
    let raised = cutover::fence_and_check(
        m,
        t,
        &cutover_settings,
        &before.diffs,
        async || run::verify_context_now(m, inv, copy_ctx, a.verify_settings(Level::Full)).await,
        async |why: &str| {
            eprintln!("cutover: the source refuses CLIENT PAUSE ({why}): stop every writer of the source, then send SIGUSR1 (kill -USR1 {pid})");
            confirm.next(None, stop).await
        },
    )
    .await?;
    let fenced = match raised {
        Raised::Fenced(fenced) => fenced,
        Raised::Refused(why) => return Ok(Cutover::Refused(why)),
    };
    eprintln!(
        "cutover: the target is ready ({} keys checked, writes held {} ms so far). Switch the application to the target now, then send SIGUSR1 (kill -USR1 {pid}){}",
        fenced.report.checked_keys,
        fenced.held().as_millis(),
        if fenced.expires().is_some() { format!("; the fence lifts by itself {}s after it was raised", a.live.fence_secs) } else { String::new() }
    );
    if !confirm.next(fenced.expires(), stop).await {
        fenced.abandon().await?;
        return Ok(Cutover::Refused(
            "the switch was not confirmed before the fence expired (or ferry was stopped): writes reach the source again and ferry follows them".into(),
        ));
    }
    eprintln!(
        "cutover: releasing; watching the source for {}s",
        a.live.watch_secs
    );
    let mut report = fenced
        .release_and_watch(m, t, &cutover_settings, stop)
        .await?;
    report.verify_before = Some(before.total);
    eprintln!("cutover: writes were held {} ms", report.fence_ms);
    if report.stragglers > 0 || report.source_clients_total > 0 {
        eprintln!(
            "cutover: {} writes reached the source after the release (copied); clients still connected: {}",
            report.stragglers,
            report.clients_line()
        );
    }
    Ok(Cutover::Done(Box::new(report)))
}
