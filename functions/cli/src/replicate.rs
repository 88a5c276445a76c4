//! `ferry replicate`: the engine's steps run in sequence on this machine (inventory, the live
//! tail's subscription, copy, follow and drain, verify, repair), with progress, a summary and
//! a JSON report.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ferry_engine::copy::CopyContext;
use ferry_engine::inventory::Inventory;
use ferry_engine::keys::functions::{self, FunctionCounts};
use ferry_engine::live::tail::Tail;
use ferry_engine::model::migration::CopyOptions;
use ferry_engine::model::migration::Migration;
use ferry_engine::net::cluster;
use ferry_engine::prepare::Purpose;
use ferry_engine::util::cancel::{Stop, StopWhen};
use ferry_engine::verify::VerifyChoice;
use ferry_engine::Error;

use crate::args::{Mode, ReplicateArgs};
use crate::connect::{fresh_verify_context, holding_lease, migration};
use crate::cutover::{self, Confirmations, Cutover};
use crate::live::{follow, prepare_channel, subscribed_line, tail_options, Followed, DRAIN_QUIET};
use crate::progress::Progress;
use crate::report::{
    emit, exit_code_of, CopySummary, ErrorSummary, Outcome, Report, VerifySummary,
};
use crate::signals::{count_cutover_signals, remember_restore, restore_flags, stop_on_signal};
use crate::{EXIT_DIFFERENT, EXIT_INTERRUPTED, EXIT_NOT_DRAINED, EXIT_OK};
use ferry_engine::copy;
use ferry_engine::prepare;
use ferry_engine::verify;

/// `ferry replicate`.
pub async fn run(a: ReplicateArgs) -> i32 {
    let mut report = Report {
        mode: a.mode,
        ..Report::default()
    };
    let result = replicate(&a, &mut report).await;
    report.exit_code = match result {
        Ok(code) => code,
        Err(e) => {
            let code = exit_code_of(&e);
            report.error = Some(ErrorSummary::from(&e));
            report.outcome = Outcome::Failed;
            code
        }
    };
    emit(&report, a.json.as_deref())
}

async fn replicate(a: &ReplicateArgs, report: &mut Report) -> Result<i32, Error> {
    let mut m = migration(&a.connect).await?;
    if a.mode == Mode::Live {
        m.tail_workers = a.live.tail_workers.max(1);
    }
    check_replicate_args(a, &mut m, report)?;
    // Only runs that write hold the target's lease; a compare that repairs writes too.
    if a.mode == Mode::Compare && !a.repair {
        return replicate_leased(a, report, &m).await;
    }
    let what = format!("ferry replicate --mode {}", report.mode);
    holding_lease(&mut m, &what, async |m| {
        replicate_leased(a, report, m).await
    })
    .await
}

/// Checks the options and puts them into the migration.
fn check_replicate_args(
    a: &ReplicateArgs,
    m: &mut Migration,
    report: &mut Report,
) -> Result<(), Error> {
    if a.shards == 0 || a.workers == 0 || a.parallel == 0 || a.batch_keys == 0 {
        return Err(Error::InvalidInput(
            "--shards, --parallel, --workers and --batch-keys must be at least 1".into(),
        ));
    }
    if a.mode == Mode::Compare && a.verify == VerifyChoice::Skip {
        return Err(Error::InvalidInput(
            "--mode compare needs --verify quick or full".into(),
        ));
    }
    report.source = m.source.redacted_url();
    report.target = m.target.redacted_url();
    m.scope.pattern = a.key_pattern.clone();
    m.scope.key_type = a.key_type.clone();
    m.copy = CopyOptions {
        method: a.copy_type,
        big_key_bytes: a.big_key_bytes,
        batch_keys: a.batch_keys,
        scan_count: a.scan_count.max(1),
        max_source_ops: a.max_ops_per_sec,
        drop_field_ttls: a.drop_field_ttls,
        skip_unsupported: a.skip_unsupported,
    };
    m.shards_per_db = a.shards;
    m.parallel = a.parallel;
    m.workers = a.workers;
    m.allow_nonempty_target = a.allow_nonempty_target;
    m.read_from_replicas = a.read_from_replicas;
    Ok(())
}

/// `ferry replicate` from inventory on, the lease held when the run writes.
async fn replicate_leased(
    a: &ReplicateArgs,
    report: &mut Report,
    m: &Migration,
) -> Result<i32, Error> {
    let purpose = if a.mode == Mode::Compare {
        Purpose::Compare
    } else {
        Purpose::Copy
    };
    let inv = prepare::inventory(m, purpose).await?;
    report.inventory = Some(inv.clone());
    let copy_ctx = m.copy_context(&inv);
    let stop = stop_on_signal();

    // Live mode subscribes before the first shard is copied (design §4.1).
    let mut live = None;
    let mut original_flags = None;
    if a.mode == Mode::Live {
        original_flags = prepare_channel(m, &a.live).await?;
        remember_restore(m, &original_flags);
        let dbs = prepare::source_dbs(&m.scope, &inv.source);
        let started = async {
            let t = Tail::start(m, copy_ctx.clone(), dbs, tail_options(&a.live), true).await?;
            if m.read_from_replicas {
                // A replica must hold every write made before the subscription, or a key
                // written just before it could be read stale, with no event left to correct it.
                cluster::wait_for_replicas(&m.source, std::time::Duration::from_secs(60)).await?;
            }
            Ok::<_, Error>(t)
        };
        match started.await {
            Ok(t) => live = Some(t),
            Err(e) => {
                restore_flags(m, &original_flags).await;
                return Err(e);
            }
        }
        if let Some(t) = &live {
            eprintln!("live: {}", subscribed_line(t));
        }
    }
    if a.mode == Mode::Snapshot && m.read_from_replicas {
        // Replicas must hold what their primaries had when the copy starts, or it would copy
        // an older moment (a replica lagging behind its primary's writes).
        cluster::wait_for_replicas(&m.source, std::time::Duration::from_secs(60)).await?;
    }
    let result = copy_and_verify(a, report, m, &inv, copy_ctx, stop, live).await;
    restore_flags(m, &original_flags).await;
    result
}

/// The copy (snapshot and live modes), the live follow and drain, then verify and repair.
async fn copy_and_verify(
    a: &ReplicateArgs,
    report: &mut Report,
    m: &Migration,
    inv: &Inventory,
    copy_ctx: Arc<CopyContext>,
    stop: Stop,
    mut live: Option<Tail>,
) -> Result<i32, Error> {
    if a.mode != Mode::Compare {
        let functions_copied = functions::copy_functions(m).await?;
        // Planned on the source as it is now, not as inventory saw it: in live mode a db that
        // was empty then may have gained keys before the tail subscribed, with no event to
        // bring them (the AWS Plan step reads the source afresh the same way).
        let source_now = prepare::server_info(&m.source).await?;
        let shards = prepare::plan_copy_shards(m, &source_now);
        let planned = shards.len();
        let start = Instant::now();
        let counter = copy_ctx.clone();
        let progress = Progress::start(
            "copy",
            inv.source.total_keys(),
            Arc::new(move || counter.stats.copied.load(Ordering::Relaxed)),
        );
        let stopper = StopWhen::on(&stop);
        let result = copy::copy_shards(m, copy_ctx.clone(), shards, stopper).await;
        let counts = copy_ctx.stats.counts();
        progress.finish(counts.copied);
        let seconds = start.elapsed().as_secs_f64();
        let mut summary = CopySummary {
            method: inv.copy_method,
            counts,
            seconds,
            keys_per_sec: counts.copied as f64 / seconds.max(1e-9),
            shards: planned,
            functions: functions_copied,
            ..CopySummary::default()
        };
        let shards = match result {
            Ok(s) => s,
            Err(e) => {
                report.copy = Some(summary);
                return Err(e);
            }
        };
        summary.shards_done = shards.iter().filter(|s| s.done).count();
        summary.checkpoints = shards.into_iter().filter(|s| !s.done).collect();
        let interrupted = !summary.checkpoints.is_empty();
        report.copy = Some(summary);
        if interrupted {
            if let Some(t) = live.take() {
                report.live = t.stop().await.ok();
            }
            report.outcome = Outcome::Interrupted;
            return Ok(EXIT_INTERRUPTED);
        }
        report.outcome = Outcome::Copied;
    }

    if let Some(mut t) = live.take() {
        let replayed = t.barrier();
        let drain_timeout = std::time::Duration::from_secs_f64(a.live.drain_timeout);
        if !t.drain(std::time::Duration::ZERO, drain_timeout).await? {
            eprintln!("live: the barrier replay is still being copied (writers are busy)");
        }
        eprintln!(
            "live: target caught up ({replayed} keys touched during the snapshot replayed); following changes until Ctrl-C{}",
            a.live.idle_timeout.map(|s| format!(" or {s}s without events")).unwrap_or_default()
        );
        let signals = count_cutover_signals();
        let mut confirm = Confirmations {
            count: &signals,
            seen: 0,
        };
        loop {
            let asked = Some((&*signals, confirm.seen));
            if follow(&mut t, &stop, a.live.idle_timeout, asked).await? == Followed::Stopped {
                break;
            }
            confirm.seen = signals.load(Ordering::SeqCst);
            match cutover::run(a, m, inv, &copy_ctx, &mut t, &mut confirm, &stop).await? {
                Cutover::Done(done) => {
                    report.live = Some(t.stop().await?);
                    report.cutover = Some(*done);
                    report.outcome = Outcome::CutOver;
                    return Ok(EXIT_OK);
                }
                Cutover::Refused(why) => {
                    eprintln!("cutover refused: {why}; still following (SIGUSR1 to try again)")
                }
            }
        }
        eprintln!("live: stopping: draining the tail");
        if !t.drain(DRAIN_QUIET, drain_timeout).await? {
            report.still_dirty = t
                .dirty_sample_within(20, std::time::Duration::from_millis(500))
                .await;
            report.live = Some(t.stop().await?);
            report.outcome = Outcome::NotDrained;
            eprintln!(
                "live: the source is still being written to: gave up draining after {}s (--drain-timeout); the target is behind",
                a.live.drain_timeout
            );
            return Ok(EXIT_NOT_DRAINED);
        }
        report.live = Some(t.stop().await?);
    }
    // A signal that ended the follow does not cut the verify short: it runs whole (a second
    // signal forces the exit). Without one, the first signal stops the verify.
    let stop = if stop.is_stopped() { Stop::new() } else { stop };

    let Some(level) = a.verify.level() else {
        return Ok(EXIT_OK);
    };
    let (inv, vctx) = fresh_verify_context(a, m, inv, &copy_ctx, level).await?;
    let start = Instant::now();
    let checked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = checked.clone();
    let progress = Progress::start(
        "verify",
        inv.source.total_keys(),
        Arc::new(move || count.load(Ordering::Relaxed)),
    );
    let on_scanned: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(move |n| {
        checked.fetch_add(n, Ordering::Relaxed);
    });
    let stopper = StopWhen::on(&stop);
    let (mut verify_report, complete) =
        verify::verify_all(m, &inv, vctx.clone(), on_scanned, stopper).await?;
    progress.finish(verify_report.total.ok + verify_report.total.differences());
    let mut functions = match complete {
        true => functions::verify(&m.source, &m.target).await?,
        false => FunctionCounts::default(),
    };
    let differences = verify_report.total.differences() + functions.differences();
    let diffs_truncated = verify_report.diffs_truncated;
    // The differing keys, for repair (never part of the report).
    let diffs = std::mem::take(&mut verify_report.diffs);
    let summary = |functions| VerifySummary {
        level: format!("{level:?}").to_lowercase(),
        seconds: start.elapsed().as_secs_f64(),
        report: verify_report,
        complete,
        functions,
    };
    if !complete {
        report.verify = Some(summary(functions));
        report.outcome = Outcome::Interrupted;
        return Ok(EXIT_INTERRUPTED);
    }
    if a.repair && differences > 0 {
        let mut repaired = verify::repair(m, copy_ctx.clone(), vctx.clone(), &diffs).await?;
        if functions.differences() > 0 {
            functions::copy_functions(m).await?;
            functions = functions::verify(&m.source, &m.target).await?;
            repaired.still_different += functions.differences();
        }
        let fixed = repaired.still_different == 0 && !diffs_truncated;
        report.repair = Some(repaired);
        report.verify = Some(summary(functions));
        report.outcome = if fixed {
            Outcome::Repaired
        } else {
            Outcome::Different
        };
        return Ok(if fixed { EXIT_OK } else { EXIT_DIFFERENT });
    }
    report.verify = Some(summary(functions));
    if differences > 0 {
        report.outcome = Outcome::Different;
        Ok(EXIT_DIFFERENT)
    } else {
        report.outcome = Outcome::Verified;
        Ok(EXIT_OK)
    }
}
