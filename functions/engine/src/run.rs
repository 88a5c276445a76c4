//! One migration run, the way both front ends drive it: the snapshot copy with its figures,
//! the drain, and the verify with functions and repair and its verdict (design §5); the live
//! tail itself starts with `Tail::start`, before the first shard (design §4.1). `ferry
//! replicate` sequences these around signals and the cutover; the Fargate tail task drains the
//! tail with the same call. Progress goes out as [`Event`]s: the engine draws no bars.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::copy::{self, CopyContext, Counts};
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::keys::functions::{self, FunctionCounts};
use crate::live::tail::Tail;
use crate::model::migration::{Method, Migration};
use crate::model::plan::Shard;
use crate::net::cluster;
use crate::prepare;
use crate::util::cancel::{Stop, StopWhen};
use crate::verify::{self, Level, RepairReport, VerifyContext, VerifyOptions, VerifyReport};

/// A long phase of a run, as progress names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Copy,
    Verify,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Copy => "copy",
            Phase::Verify => "verify",
        }
    }
}

/// Something a run reports while it works.
pub enum Event {
    /// A phase began: about `expected` keys (keys come and go), `done()` counts them so far.
    Started {
        phase: Phase,
        expected: u64,
        done: Arc<dyn Fn() -> u64 + Send + Sync>,
    },
    /// A phase ended with `done` keys.
    Finished { phase: Phase, done: u64 },
}

/// Where a run's events go.
pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// Copy figures.
#[derive(Debug, Default, Serialize)]
pub struct CopySummary {
    /// dump or struct (the default method after inventory).
    pub method: Method,
    /// Key counters.
    pub counts: Counts,
    /// Wall time.
    pub seconds: f64,
    /// Keys copied per second.
    pub keys_per_sec: f64,
    /// Shards planned.
    pub shards: usize,
    /// Shards finished; the others' cursors are checkpoints.
    pub shards_done: usize,
    /// Function libraries loaded on the target.
    pub functions: usize,
    /// Unfinished shards with their cursors, when the run stopped early.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<Shard>,
}

/// Verify figures.
#[derive(Debug, Serialize)]
pub struct VerifySummary {
    /// quick or full.
    pub level: Level,
    /// Wall time.
    pub seconds: f64,
    /// Counts and sample.
    #[serde(flatten)]
    pub report: VerifyReport,
    /// Whether every shard of both passes was compared (false: stopped early, counts partial).
    pub complete: bool,
    /// The source's function libraries, compared on every target primary.
    pub functions: FunctionCounts,
}

/// Before a snapshot copy that reads replicas: waits until they hold what their primaries had,
/// or the copy would take an older moment.
pub async fn settle_replicas(m: &Migration) -> Result<()> {
    if m.read_from_replicas {
        cluster::wait_for_replicas(&m.source, cluster::REPLICA_CATCH_UP).await?;
    }
    Ok(())
}

/// Drains the tail (quiet for `quiet`, within `timeout`); running out of time is an error
/// naming how many keys are still dirty.
pub async fn drain(tail: &mut Tail, quiet: Duration, timeout: Duration) -> Result<()> {
    if tail.drain(quiet, timeout).await? {
        return Ok(());
    }
    Err(Error::Cancelled(format!(
        "the tail did not drain within {}s: {} keys still dirty (writers still running?)",
        timeout.as_secs(),
        tail.dirty.depth()
    )))
}

/// Copies the scope once: function libraries, then every shard planned on the source as it is
/// now (in live mode a db that was empty at inventory may have gained keys before the tail
/// subscribed, with no event to bring them). Returns the figures, with the unfinished shards'
/// checkpoints when `stop` cut it short; when the shards' copy fails, the figures so far
/// beside its error.
pub async fn copy(
    m: &Migration,
    inv: &Inventory,
    copy_ctx: Arc<CopyContext>,
    stop: &Stop,
    events: &Events,
) -> Result<(CopySummary, Result<()>)> {
    let functions = functions::copy_functions(m).await?;
    let source_now = prepare::server_info(&m.source).await?;
    let shards = prepare::plan_copy_shards(m, &source_now);
    let planned = shards.len();
    let start = Instant::now();
    let counter = copy_ctx.clone();
    events(Event::Started {
        phase: Phase::Copy,
        expected: inv.source.total_keys(),
        done: Arc::new(move || counter.stats.copied.load(Ordering::Relaxed)),
    });
    let result = copy::copy_shards(m, copy_ctx.clone(), shards, StopWhen::on(stop)).await;
    let counts = copy_ctx.stats.counts();
    events(Event::Finished {
        phase: Phase::Copy,
        done: counts.copied,
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut summary = CopySummary {
        method: inv.copy_method,
        counts,
        seconds,
        keys_per_sec: counts.copied as f64 / seconds.max(1e-9),
        shards: planned,
        functions,
        ..CopySummary::default()
    };
    match result {
        Ok(shards) => {
            summary.shards_done = shards.iter().filter(|s| s.done).count();
            summary.checkpoints = shards.into_iter().filter(|s| !s.done).collect();
            Ok((summary, Ok(())))
        }
        Err(e) => Ok((summary, Err(e))),
    }
}

/// How a verify runs, beyond the migration's settings.
#[derive(Debug, Clone, Copy)]
pub struct VerifySettings {
    pub level: Level,
    /// Largest TTL difference that still counts as equal.
    pub ttl_tolerance_ms: i64,
    /// Values at least this big are compared in chunks.
    pub big_key_bytes: u64,
    /// Re-copy what differs and delete the migration's extra keys.
    pub repair: bool,
}

impl VerifySettings {
    pub fn options(&self) -> VerifyOptions {
        VerifyOptions {
            level: self.level,
            ttl_tolerance_ms: self.ttl_tolerance_ms,
            big_key_bytes: self.big_key_bytes,
            ..VerifyOptions::default()
        }
    }
}

/// A verify context on the servers as they are now (a live run's keys and dbs come and go),
/// covering too the dbs that held keys in the run's inventory `inv`; with the fresh inventory.
pub async fn verify_context_now(
    m: &Migration,
    inv: &Inventory,
    copy_ctx: &CopyContext,
    settings: VerifySettings,
) -> Result<(Inventory, Arc<VerifyContext>)> {
    let known_dbs = prepare::source_dbs(&m.scope, &inv.source);
    let limiter = copy_ctx.limiter.clone();
    verify::current_verify_context(m, &known_dbs, limiter, settings.options()).await
}

/// What a verify concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target equals the source in the scope.
    Equal,
    /// Differences remain.
    Different,
    /// Every difference was repaired.
    Repaired,
    /// Stopped before both passes were whole: the counts are partial.
    Interrupted,
}

/// A finished verify.
#[derive(Debug)]
pub struct Verified {
    pub summary: VerifySummary,
    pub repair: Option<RepairReport>,
    pub verdict: Verdict,
}

/// Verifies the scope both ways (design §5) on the servers as they are now, function
/// libraries too, and with `repair` re-copies what differs. `inv` is the run's inventory: the
/// dbs that held keys at its start are checked for leftovers even if the source emptied them.
pub async fn verify(
    m: &Migration,
    inv: &Inventory,
    copy_ctx: &Arc<CopyContext>,
    settings: VerifySettings,
    stop: &Stop,
    events: &Events,
) -> Result<Verified> {
    let (fresh, vctx) = verify_context_now(m, inv, copy_ctx, settings).await?;
    let start = Instant::now();
    let checked = Arc::new(AtomicU64::new(0));
    let count = checked.clone();
    events(Event::Started {
        phase: Phase::Verify,
        expected: fresh.source.total_keys(),
        done: Arc::new(move || count.load(Ordering::Relaxed)),
    });
    let on_scanned: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(move |n| {
        checked.fetch_add(n, Ordering::Relaxed);
    });
    let (mut report, complete) =
        verify::verify_all(m, &fresh, vctx.clone(), on_scanned, StopWhen::on(stop)).await?;
    events(Event::Finished {
        phase: Phase::Verify,
        done: report.total.ok + report.total.differences(),
    });
    let mut functions = match complete {
        true => functions::verify(&m.source, &m.target).await?,
        false => FunctionCounts::default(),
    };
    let differences = report.total.differences() + functions.differences();
    let diffs_truncated = report.diffs_truncated;
    // The differing keys, for repair (never part of the report).
    let diffs = std::mem::take(&mut report.diffs);
    let mut repair = None;
    let verdict = if !complete {
        Verdict::Interrupted
    } else if differences == 0 {
        Verdict::Equal
    } else if !settings.repair {
        Verdict::Different
    } else {
        let mut repaired = verify::repair(m, copy_ctx.clone(), vctx, &diffs).await?;
        if functions.differences() > 0 {
            functions::copy_functions(m).await?;
            functions = functions::verify(&m.source, &m.target).await?;
            repaired.still_different += functions.differences();
        }
        let fixed = repaired.still_different == 0 && !diffs_truncated;
        repair = Some(repaired);
        match fixed {
            true => Verdict::Repaired,
            false => Verdict::Different,
        }
    };
    let summary = VerifySummary {
        level: settings.level,
        seconds: start.elapsed().as_secs_f64(),
        report,
        complete,
        functions,
    };
    Ok(Verified {
        summary,
        repair,
        verdict,
    })
}
