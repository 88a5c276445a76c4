//! The cutover protocol, one for the CLI (`kill -USR1`) and the AWS tail (control requests):
//! *fence → drain → check → release → watch*.
//!
//! - **Fence**: `CLIENT PAUSE <fence> WRITE` on every source primary ([`Fence`]); where it is
//!   refused, the operator's word that the writers are stopped.
//! - **Drain**: the tail copies what is dirty and stays quiet.
//! - **Check**: the keys the tail touched since recording began ([`Tail::record_touched`], at
//!   the last full verify), and those that verify found different, compared again both ways:
//!   seconds, not a pass. After a gap, or past [`TOUCHED_LIMIT`] keys, a full verify instead.
//!   Anything still different lifts the fence: the cutover is refused, following goes on.
//! - **Release**: the operator switches the application; the fence is lifted when they say so
//!   or when its time is up (the server lifts it then even if ferry died).
//! - **Watch**: the tail follows a while longer; writes still reaching the source are
//!   *stragglers*, copied and counted, and the clients still connected to the source are listed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::live::fence::{self, Fence, Refused, SourceClient};
use crate::live::tail::Tail;
use crate::model::migration::Migration;
use crate::util::cancel::{Stop, StopWhen};
use crate::verify;
use crate::verify::{Diff, StatusCounts, VerifyContext, VerifyReport};

/// Keys of the tail's touched record the fenced check compares at most; past it the check is a
/// full verify inside the fence.
pub const TOUCHED_LIMIT: usize = 1_000_000;

/// The protocol's timings.
#[derive(Debug, Clone)]
pub struct CutoverSettings {
    /// How long the fence may hold writes: the server lifts it then by itself.
    pub fence_time: Duration,
    /// How long without events counts as drained.
    pub drain_quiet: Duration,
    /// How long the final drain after the watch may take.
    pub drain_timeout: Duration,
    /// How long the tail follows after the release, counting stragglers.
    pub watch: Duration,
}

/// What a cutover did: the CLI's report and the tail's answer on AWS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CutoverReport {
    /// `client pause`, or `operator` where the source refused it.
    pub fence: String,
    /// How long writes were held on the source (fence up to lifted), in ms.
    pub fence_ms: u64,
    /// The full verify before the fence (the CLI runs it; on AWS the Verify shards Map did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_before: Option<StatusCounts>,
    /// Keys compared by the fenced check.
    pub checked_keys: u64,
    /// The fenced check's findings.
    pub check: StatusCounts,
    /// Writes that reached the source after the release, copied by the tail.
    pub stragglers: u64,
    /// Clients still connected to the source at the end of the watch: the first
    /// [`fence::CLIENTS_LISTED`] (the tail's answer must stay small: a Step Functions task's
    /// output is at most 256 KiB, and a source may have tens of thousands of clients).
    pub source_clients: Vec<SourceClient>,
    /// How many there were in all.
    #[serde(default)]
    pub source_clients_total: u64,
}

impl CutoverReport {
    /// The clients still connected to the source, for people: `none`, or each as `addr name
    /// (last command)`, and how many more there were than the report names.
    pub fn clients_line(&self) -> String {
        let listed: Vec<String> = self
            .source_clients
            .iter()
            .map(|c| format!("{} {} ({})", c.addr, c.name, c.last_command))
            .collect();
        let total = self.source_clients_total.max(listed.len() as u64);
        match total - listed.len() as u64 {
            _ if total == 0 => "none".to_string(),
            0 => listed.join(", "),
            more => format!("{} and {more} more ({total} in all)", listed.join(", ")),
        }
    }
}

/// How a fence attempt ended.
pub enum Raised {
    /// Fenced, drained and checked: the target is ready for the switch.
    Fenced(Box<Fenced>),
    /// Refused (the reason); no fence is up, following goes on.
    Refused(String),
}

/// A fence that is up over a drained and checked target.
pub struct Fenced {
    fence: Option<Fence>,
    raised: Instant,
    expires: Option<Instant>,
    /// The figures so far.
    pub report: CutoverReport,
}

/// Fences the source, drains `tail` and checks what changed since it began recording touched
/// keys (plus `differing`, what the last full verify found). `verify_context` builds a verify
/// context on fresh counts; `operator_fence(why)` is asked when the source refuses `CLIENT
/// PAUSE` and answers whether the writers are stopped.
pub async fn fence_and_check(
    m: &Migration,
    tail: &mut Tail,
    settings: &CutoverSettings,
    differing: &[Diff],
    verify_context: impl AsyncFn() -> Result<(Inventory, Arc<VerifyContext>)>,
    operator_fence: impl AsyncFnOnce(&str) -> bool,
) -> Result<Raised> {
    let mut report = CutoverReport::default();
    let fence = match Fence::raise(&m.source, settings.fence_time.as_millis() as u64).await {
        Ok(fence) => {
            report.fence = "client pause".into();
            tracing::info!(
                fence_secs = settings.fence_time.as_secs_f64(),
                "writes held on the source (CLIENT PAUSE WRITE)"
            );
            Some(fence)
        }
        Err(Refused::NotAllowed(why)) => {
            report.fence = "operator".into();
            if !operator_fence(&why).await {
                tail.take_touched();
                return Ok(Raised::Refused(format!(
                    "the source refuses CLIENT PAUSE ({why}) and the writers were not stopped"
                )));
            }
            None
        }
        Err(Refused::Failed(e)) => return Err(e),
    };
    let raised = fence.as_ref().map_or_else(Instant::now, |f| f.since);
    let expires = fence.as_ref().map(|f| f.since + settings.fence_time);
    let refuse = |fence: Option<Fence>, why: String| async move {
        if let Some(f) = fence {
            f.lift().await?;
        }
        Ok::<_, Error>(Raised::Refused(why))
    };

    if !tail
        .drain(settings.drain_quiet, settings.fence_time)
        .await?
    {
        tail.take_touched();
        return refuse(fence, "the tail did not drain within the fence".into()).await;
    }
    let gaps_now = tail.report().gaps;
    let check = match tail.take_touched() {
        Some(touched) if !touched.overflowed && touched.gaps_at_start == gaps_now => {
            let mut keys = touched.by_db();
            let (_, vctx) = verify_context().await?;
            verify::add_differing(m, differing, &vctx.source_dbs, &mut keys);
            report.checked_keys = keys.values().map(|k| k.len() as u64).sum();
            verify::check_keys(m, vctx, &keys).await?
        }
        _ => {
            tracing::warn!("a gap, too many touched keys or no record: the check is a full verify");
            let (fresh, vctx) = verify_context().await?;
            let (report, _) =
                verify::verify_all(m, &fresh, vctx, Arc::new(|_| {}), StopWhen::default()).await?;
            report
        }
    };
    report.check = check.total;
    if check.total.differences() > 0 {
        return refuse(fence, differences(&check)).await;
    }
    Ok(Raised::Fenced(Box::new(Fenced {
        fence,
        raised,
        expires,
        report,
    })))
}

fn differences(check: &VerifyReport) -> String {
    let sample: Vec<String> = check
        .sample
        .iter()
        .map(|d| format!("{:?} db{} {}", d.status, d.db, d.key))
        .collect();
    format!(
        "the fenced check found {} differences ({})",
        check.total.differences(),
        sample.join(", ")
    )
}

impl Fenced {
    /// When the server lifts the fence by itself (`None`: the operator's fence).
    pub fn expires(&self) -> Option<Instant> {
        self.expires
    }

    /// How long writes have been held so far.
    pub fn held(&self) -> Duration {
        self.raised.elapsed()
    }

    /// Lifts the fence without a switch (the operator did not confirm in time, or stopped):
    /// writes reach the source again and the tail follows them.
    pub async fn abandon(self) -> Result<()> {
        if let Some(f) = self.fence {
            f.lift().await?;
        }
        Ok(())
    }

    /// Lifts the fence (the application now writes to the target), follows the source for the
    /// watch time and reports stragglers and the clients still connected to the source.
    /// `stop` cuts the watch short, never the final drain.
    pub async fn release_and_watch(
        self,
        m: &Migration,
        tail: &mut Tail,
        settings: &CutoverSettings,
        stop: &Stop,
    ) -> Result<CutoverReport> {
        let mut report = self.report;
        let copied_before = {
            let r = tail.report();
            r.keys_copied + r.keys_deleted
        };
        report.fence_ms = match self.fence {
            Some(f) => f.lift().await?,
            None => self.raised.elapsed().as_millis() as u64,
        };
        tracing::info!(
            fence_ms = report.fence_ms,
            watch_secs = settings.watch.as_secs_f64(),
            "released; watching the source for stragglers"
        );
        let watch_end = Instant::now() + settings.watch;
        while Instant::now() < watch_end && !stop.is_stopped() {
            if let Some(e) = tail.failure() {
                return Err(e);
            }
            // The tail's failure is polled; a stop ends the wait at once.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.stopped() => {}
            }
        }
        if !tail
            .drain(settings.drain_quiet, settings.drain_timeout)
            .await?
        {
            return Err(Error::Cancelled(format!(
                "stragglers kept the source busy: the tail did not drain within {}s after the watch ({} keys still dirty)",
                settings.drain_timeout.as_secs(),
                tail.dirty.depth()
            )));
        }
        let r = tail.report();
        report.stragglers = (r.keys_copied + r.keys_deleted).saturating_sub(copied_before);
        (report.source_clients, report.source_clients_total) =
            fence::source_clients(&m.source).await?;
        Ok(report)
    }
}
