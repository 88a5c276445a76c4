//! Following the source live: the status loop, the tail's options, and `ferry tail`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ferry_engine::live::channel::LiveChannel;
use ferry_engine::live::tail::{self, Tail, TailOptions};
use ferry_engine::model::migration::Migration;
use ferry_engine::prepare::Purpose;
use ferry_engine::Error;

use crate::args::{LiveArgs, Mode, TailArgs};
use crate::connect::{holding_lease, migration};
use crate::report::{emit, exit_code_of, live_line, ErrorSummary, Outcome, Report};
use crate::signals::{remember_restore, restore_flags, stop_on_signal};
use crate::{EXIT_BAD_INPUT, EXIT_NOT_DRAINED, EXIT_OK};
use ferry_engine::prepare;
use ferry_engine::util::cancel::Stop;

/// How long without an event counts as quiet when a live run or `ferry tail` stops.
pub const DRAIN_QUIET: std::time::Duration = std::time::Duration::from_millis(300);

pub fn tail_options(l: &LiveArgs) -> TailOptions {
    TailOptions {
        workers: l.tail_workers.max(1),
        channel: l.live_channel,
        ..TailOptions::default()
    }
}

/// Turns keyspace notifications on where the run asks for it (`--enable-notifications`, for
/// the keyspace or auto channel): returns the value to restore at the end, if changed. On the
/// keyspace channel without it, refuses a source that has them off; on the tracking channel
/// (and auto without it) the source's configuration is left as it is.
pub async fn prepare_channel(m: &Migration, l: &LiveArgs) -> Result<Option<String>, Error> {
    match (l.live_channel, l.enable_notifications) {
        (LiveChannel::Tracking, true) => Err(Error::InvalidInput(
            "--enable-notifications changes the source for the keyspace channel; --live-channel tracking needs no change".into(),
        )),
        (LiveChannel::Keyspace, enable) => tail::ensure_notifications(&m.source, enable).await,
        (LiveChannel::Auto, true) => tail::ensure_notifications(&m.source, true).await,
        (_, false) => Ok(None),
    }
}

/// The line that says the tail is following, and on which channel.
pub fn subscribed_line(t: &Tail) -> String {
    match t.channel() {
        LiveChannel::Tracking => "subscribed to client tracking (no configuration change on the source); the canary key arrived".into(),
        _ => "subscribed to keyspace events; the canary key arrived".into(),
    }
}

/// Why following ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// A stop signal, or `idle` seconds without an event.
    Stopped,
    /// The operator asked for a cutover (SIGUSR1; `cutover` counts them).
    Cutover,
}

/// Follows live changes until a signal, `idle` seconds without an event, or a cutover request
/// (`cutover` moving past `seen`), printing status.
pub async fn follow(
    t: &mut Tail,
    stop: &Stop,
    idle: Option<f64>,
    cutover: Option<(&AtomicU64, u64)>,
) -> Result<Followed, Error> {
    let started = Instant::now();
    let period = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        2.0
    } else {
        5.0
    };
    let mut last_status = Instant::now();
    loop {
        if let Some(e) = t.failure() {
            return Err(e);
        }
        if stop.is_stopped() {
            return Ok(Followed::Stopped);
        }
        if cutover.is_some_and(|(count, seen)| count.load(Ordering::SeqCst) > seen) {
            return Ok(Followed::Cutover);
        }
        let quiet = t
            .dirty
            .quiet_for()
            .unwrap_or(started.elapsed())
            .min(started.elapsed());
        if idle.is_some_and(|secs| quiet.as_secs_f64() >= secs) {
            return Ok(Followed::Stopped);
        }
        if last_status.elapsed().as_secs_f64() >= period {
            let r = t.report();
            tracing::info!(
                events = r.events,
                events_per_sec = r.events_per_sec,
                keys_copied = r.keys_copied,
                keys_deleted = r.keys_deleted,
                queue_depth = r.queue_depth,
                lag_p50_ms = r.lag_p50_ms,
                lag_p99_ms = r.lag_p99_ms,
                replayed = r.replayed,
                gaps = r.gaps,
                "live tail"
            );
            eprintln!("live: {}", live_line(&r));
            last_status = Instant::now();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `ferry tail`: follow the source alone (no snapshot), drain on SIGINT/SIGTERM or idle.
pub async fn tail(a: TailArgs) -> i32 {
    if a.from_state_machine {
        #[cfg(feature = "aws")]
        return crate::control::tail_for_state_machine(stop_on_signal()).await;
        #[cfg(not(feature = "aws"))]
        {
            eprintln!("error: this ferry was built without AWS support (cargo build -p ferry-cli --features aws)");
            return EXIT_BAD_INPUT;
        }
    }
    let Some(connect) = &a.connect else {
        eprintln!("error: ferry tail needs --source and --target (or --from-state-machine)");
        return EXIT_BAD_INPUT;
    };
    let mut report = Report {
        mode: Mode::Tail,
        ..Report::default()
    };
    let result = async {
        let mut m = migration(connect).await?;
        m.tail_workers = a.live.tail_workers.max(1);
        report.source = m.source.redacted_url();
        report.target = m.target.redacted_url();
        holding_lease(&mut m, "ferry tail", async |m| {
            tail_leased(&a, m, &mut report).await
        })
        .await
    }
    .await;
    report.exit_code = match result {
        Ok(code) => code,
        Err(e) => {
            report.error = Some(ErrorSummary::from(&e));
            report.outcome = Outcome::Failed;
            exit_code_of(&e)
        }
    };
    emit(&report, a.json.as_deref())
}

/// `ferry tail` with the target's lease held: follow until a signal or idle, then drain within
/// the drain timeout.
async fn tail_leased(a: &TailArgs, m: &Migration, report: &mut Report) -> Result<i32, Error> {
    let inv = prepare::inventory(m, Purpose::Compare).await?;
    let ctx = m.copy_context(&inv);
    let stop = stop_on_signal();
    let original = prepare_channel(m, &a.live).await?;
    remember_restore(m, &original);
    let outcome = async {
        let dbs = prepare::source_dbs(&m.scope, &inv.source);
        let mut t = Tail::start(m, ctx, dbs, tail_options(&a.live), false).await?;
        eprintln!("tail: {}; following", subscribed_line(&t));
        follow(&mut t, &stop, a.live.idle_timeout, None).await?;
        let timeout = std::time::Duration::from_secs_f64(a.live.drain_timeout);
        let drained = t.drain(DRAIN_QUIET, timeout).await?;
        if !drained {
            report.still_dirty = t
                .dirty_sample_within(20, std::time::Duration::from_millis(500))
                .await;
        }
        Ok::<_, Error>((drained, t.stop().await?))
    }
    .await;
    restore_flags(m, &original).await;
    let (drained, live) = outcome?;
    report.live = Some(live);
    Ok(if drained {
        report.outcome = Outcome::Drained;
        EXIT_OK
    } else {
        report.outcome = Outcome::NotDrained;
        EXIT_NOT_DRAINED
    })
}
