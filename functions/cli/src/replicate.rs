//! `ferry replicate`: the engine's steps run in sequence on this machine (inventory, the live
//! tail's subscription, copy, follow and drain, verify, repair), with progress, a summary and
//! a JSON report.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use ferry_engine::copy::CopyContext;
use ferry_engine::inventory::Inventory;
use ferry_engine::live::tail::Tail;
use ferry_engine::model::migration::{CopyOptions, Migration};
use ferry_engine::prepare::{self, Purpose};
use ferry_engine::run::{self, Event, Events, Verdict};
use ferry_engine::util::cancel::Stop;
use ferry_engine::verify::VerifyChoice;
use ferry_engine::Error;

use crate::args::{Mode, ReplicateArgs};
use crate::connect::{holding_lease, migration};
use crate::cutover::{self, Confirmations, Cutover};
use crate::live::{follow, prepare_channel, subscribed_line, tail_options, Followed, DRAIN_QUIET};
use crate::progress::Progress;
use crate::report::{emit, exit_code_of, ErrorSummary, Outcome, Report};
use crate::signals::{count_cutover_signals, remember_restore, restore_flags, stop_on_signal};
use crate::{EXIT_DIFFERENT, EXIT_INTERRUPTED, EXIT_NOT_DRAINED, EXIT_OK};

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
        let options = tail_options(&a.live);
        match Tail::start(m, copy_ctx.clone(), dbs, options, true).await {
            Ok(t) => {
                eprintln!("live: {}", subscribed_line(&t));
                live = Some(t);
            }
            Err(e) => {
                restore_flags(m, &original_flags).await;
                return Err(e);
            }
        }
    } else if a.mode == Mode::Snapshot {
        run::settle_replicas(m).await?;
    }
    let result = copy_and_verify(a, report, m, &inv, copy_ctx, stop, live).await;
    restore_flags(m, &original_flags).await;
    result
}

/// Progress bars for a run's phases.
fn progress_bars() -> Events {
    let shown = Arc::new(Mutex::new(None::<Progress>));
    Arc::new(move |event| match event {
        Event::Started {
            phase,
            expected,
            done,
        } => *shown.lock().expect("bar") = Some(Progress::start(phase.name(), expected, done)),
        Event::Finished { done, .. } => {
            if let Some(bar) = shown.lock().expect("bar").take() {
                bar.finish(done);
            }
        }
    })
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
    let events = progress_bars();
    if a.mode != Mode::Compare {
        let (summary, copied) = run::copy(m, inv, copy_ctx.clone(), &stop, &events).await?;
        let interrupted = !summary.checkpoints.is_empty();
        report.copy = Some(summary);
        copied?;
        if interrupted {
            if let Some(t) = live.take() {
                report.live = t.stop().await.ok();
            }
            report.outcome = Outcome::Interrupted;
            return Ok(EXIT_INTERRUPTED);
        }
        report.outcome = Outcome::Copied;
    }

    if let Some(t) = live.take() {
        if let Some(code) = follow_live(a, report, m, inv, &copy_ctx, &stop, t).await? {
            return Ok(code);
        }
    }
    // A signal that ended the follow does not cut the verify short: it runs whole (a second
    // signal forces the exit). Without one, the first signal stops the verify.
    let stop = if stop.is_stopped() { Stop::new() } else { stop };

    let Some(level) = a.verify.level() else {
        return Ok(EXIT_OK);
    };
    let settings = a.verify_settings(level);
    let verified = run::verify(m, inv, &copy_ctx, settings, &stop, &events).await?;
    report.verify = Some(verified.summary);
    report.repair = verified.repair;
    let (outcome, code) = match verified.verdict {
        Verdict::Equal => (Outcome::Verified, EXIT_OK),
        Verdict::Repaired => (Outcome::Repaired, EXIT_OK),
        Verdict::Different => (Outcome::Different, EXIT_DIFFERENT),
        Verdict::Interrupted => (Outcome::Interrupted, EXIT_INTERRUPTED),
    };
    report.outcome = outcome;
    Ok(code)
}

/// Live mode after the copy: the barrier, following until a stop (cutting over on SIGUSR1),
/// and the drain. `Some(exit code)` when the run ends here (cut over, or not drained).
async fn follow_live(
    a: &ReplicateArgs,
    report: &mut Report,
    m: &Migration,
    inv: &Inventory,
    copy_ctx: &Arc<CopyContext>,
    stop: &Stop,
    mut t: Tail,
) -> Result<Option<i32>, Error> {
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
        if follow(&mut t, stop, a.live.idle_timeout, asked).await? == Followed::Stopped {
            break;
        }
        confirm.seen = signals.load(Ordering::SeqCst);
        match cutover::run(a, m, inv, copy_ctx, &mut t, &mut confirm, stop).await? {
            Cutover::Done(done) => {
                report.live = Some(t.stop().await?);
                report.cutover = Some(*done);
                report.outcome = Outcome::CutOver;
                return Ok(Some(EXIT_OK));
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
        return Ok(Some(EXIT_NOT_DRAINED));
    }
    report.live = Some(t.stop().await?);
    Ok(None)
}
