//! The live tail as the state machine's Fargate task (`ferry tail --from-state-machine`): the
//! engine's [`Tail`] steered through [`Control`] (design §4, §6). It answers the StartTail
//! token once it is subscribed on every source primary and its canary arrived, replays at the
//! barrier, drains at cutover, and stops by itself when its execution ends or on SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_engine::migrate;
use ferry_engine::tail::{Tail, TailOptions, TailReport};

use crate::aws::{Aws, Ctx};
use crate::contracts::{ControlAction, MigrationInput, TailAnswer};
use crate::control::{Control, Received};
use crate::error::StepError;
use crate::handlers;
use crate::metrics;

/// What the task reads from its environment: the state machine's container overrides
/// (`FERRY_TASK_TOKEN`, `FERRY_MIGRATION`, `FERRY_EXECUTION`) and the task definition
/// (`FERRY_CONTROL_QUEUE_URL`, tuning).
pub struct TailTaskSettings {
    /// The execution input (credentials by Secrets Manager ARN only).
    pub migration: MigrationInput,
    /// The StartTail token, answered once the tail is ready.
    pub ready_token: Option<String>,
    /// The control queue's URL.
    pub queue_url: String,
    /// The execution's ARN: the tail stops once it is no longer running.
    pub execution: Option<String>,
    /// How often a token being worked on is heartbeated (`FERRY_HEARTBEAT_SECS`, 60).
    pub heartbeat: Duration,
    /// SQS long-poll wait per round (`FERRY_POLL_SECS`, 20).
    pub poll_wait: Duration,
    /// How long without events counts as drained (`FERRY_DRAIN_QUIET_SECS`, 2).
    pub drain_quiet: Duration,
    /// How long a barrier or drain may take before it fails (`FERRY_DRAIN_TIMEOUT_SECS`, 900):
    /// writers that never stop must not keep a request open for ever.
    pub drain_timeout: Duration,
}

impl TailTaskSettings {
    /// Reads the settings; a missing or malformed variable is `InvalidInput` naming it.
    pub fn from_env() -> Result<TailTaskSettings, StepError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let required =
            |name: &str| var(name).ok_or_else(|| StepError::invalid(format!("{name} is not set")));
        let secs = |name: &str, default: f64| -> Result<Duration, StepError> {
            match var(name) {
                None => Ok(Duration::from_secs_f64(default)),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        StepError::invalid(format!("{name}={v} is not a number of seconds"))
                    }),
            }
        };
        let json: serde_json::Value = serde_json::from_str(&required("FERRY_MIGRATION")?)
            .map_err(|_| StepError::invalid("FERRY_MIGRATION is not JSON"))?;
        Ok(TailTaskSettings {
            migration: MigrationInput::from_json(json)?,
            ready_token: var("FERRY_TASK_TOKEN"),
            queue_url: required("FERRY_CONTROL_QUEUE_URL")?,
            execution: var("FERRY_EXECUTION"),
            heartbeat: secs("FERRY_HEARTBEAT_SECS", 60.0)?,
            poll_wait: secs("FERRY_POLL_SECS", 20.0)?,
            drain_quiet: secs("FERRY_DRAIN_QUIET_SECS", 2.0)?,
            drain_timeout: secs("FERRY_DRAIN_TIMEOUT_SECS", 900.0)?,
        })
    }
}

/// Drains the tail within the settings' timeout; running out of it is an error naming how
/// many keys are still dirty.
async fn drain(
    tail: &mut Tail,
    quiet: Duration,
    s: &TailTaskSettings,
) -> Result<(), ferry_engine::Error> {
    if tail.drain(quiet, s.drain_timeout).await? {
        return Ok(());
    }
    Err(ferry_engine::Error::Cancelled(format!(
        "the tail did not drain within {}s: {} keys still dirty (writers still running?)",
        s.drain_timeout.as_secs(),
        tail.dirty.depth()
    )))
}

/// How the task ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// Drained at cutover and answered.
    Drained,
    /// Asked to stop, its execution ended, or SIGTERM.
    Stopped,
}

/// Runs the tail until it is drained or stopped. `stop` is set by SIGTERM. A failure before
/// ready fails the StartTail token; a failure later fails the next request's token (the tail
/// keeps listening for it), so the state machine always hears the error type.
pub async fn run(
    aws: Aws,
    settings: TailTaskSettings,
    stop: Arc<AtomicBool>,
) -> Result<(Ending, TailReport), StepError> {
    let s = &settings;
    let control = Control::new(
        aws.clone(),
        s.queue_url.clone(),
        s.migration.migration_id.clone(),
        s.poll_wait,
    );
    let ctx = Ctx {
        aws: Arc::new(aws),
        deadline: None,
    };
    let token = s.ready_token.as_deref();
    let started = control
        .heartbeating(token, s.heartbeat, start(&ctx, &s.migration))
        .await;
    let mut tail = match started {
        Ok(tail) => tail,
        Err(e) => {
            if let Some(token) = token {
                control.fail(token, &e).await?;
            }
            return Err(e);
        }
    };
    tracing::info!("tail ready: subscribed on every source primary, canary received");
    if let Some(token) = token {
        control.succeed(token, &answer("ready", 0, &tail)).await?;
    }
    let mut failed: Option<StepError> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            tracing::info!("SIGTERM: stopping");
            return finish(tail, Ending::Stopped).await;
        }
        if let Some(e) = tail.failure() {
            tracing::error!(error = %e, kind = e.kind_name(), "tail failed; answering the next request with it");
            failed = Some(e.into());
        }
        if let Some(arn) = &s.execution {
            if !control.execution_running(arn).await? {
                tracing::info!("the execution has ended: stopping");
                return finish(tail, Ending::Stopped).await;
            }
        }
        let r = tail.report();
        metrics::emit(
            &s.migration.migration_id,
            &[
                ("TailLagP99Ms", r.lag_p99_ms, "Milliseconds"),
                ("TailQueueDepth", r.queue_depth as f64, "Count"),
                ("TailGaps", r.gaps as f64, "Count"),
            ],
        );
        let requests = tokio::select! {
            got = control.receive() => got?,
            _ = wait_for(&stop) => continue,
        };
        for received in requests {
            // Taken off the queue before the work: a barrier can outlast any visibility
            // timeout, and a tail that dies meanwhile is caught by the state's heartbeat and
            // asked again by its Retry.
            control.delete(&received).await?;
            if let Some(ending) = handle(&control, &mut tail, &received, s, &mut failed).await? {
                return finish(tail, ending).await;
            }
        }
    }
}

/// Answers one request; `Some` when the tail should end.
async fn handle(
    control: &Control,
    tail: &mut Tail,
    received: &Received,
    s: &TailTaskSettings,
    failed: &mut Option<StepError>,
) -> Result<Option<Ending>, StepError> {
    let request = &received.request;
    let token = request.task_token.as_deref();
    tracing::info!(action = ?request.action, "control request");
    if let (Some(e), Some(token)) = (failed.as_ref(), token) {
        control.fail(token, e).await?;
        return Err(failed.take().expect("checked"));
    }
    let (phase, replayed, work) = match request.action {
        ControlAction::Stop => return Ok(Some(Ending::Stopped)),
        ControlAction::Barrier => {
            let replayed = tail.barrier() as u64;
            (
                "barrier",
                replayed,
                control
                    .heartbeating(token, s.heartbeat, drain(tail, Duration::ZERO, s))
                    .await,
            )
        }
        ControlAction::Drain => (
            "drained",
            0,
            control
                .heartbeating(token, s.heartbeat, drain(tail, s.drain_quiet, s))
                .await,
        ),
    };
    match (work, token) {
        (Ok(()), Some(token)) => {
            control
                .succeed(token, &answer(phase, replayed, tail))
                .await?
        }
        (Ok(()), None) => {}
        (Err(e), token) => {
            let e = StepError::from(e);
            if let Some(token) = token {
                control.fail(token, &e).await?;
            }
            return Err(e);
        }
    }
    Ok((request.action == ControlAction::Drain).then_some(Ending::Drained))
}

/// Subscribes and proves delivery (the engine's `Tail::start`), remembering touched keys for
/// the barrier. Notifications are the EnableNotifications step's business: this only checks.
async fn start(ctx: &Ctx, input: &MigrationInput) -> Result<Tail, StepError> {
    let m = handlers::migration(ctx, input).await?;
    let (copy, source) = handlers::copy_context(&m).await?;
    let options = TailOptions {
        workers: input.options.workers.max(1),
        run_id: input.migration_id.clone(),
        ..TailOptions::default()
    };
    Ok(Tail::start(
        &m,
        copy,
        migrate::source_dbs(&m.scope, &source),
        options,
        true,
    )
    .await?)
}

fn answer(phase: &str, replayed: u64, tail: &Tail) -> TailAnswer {
    TailAnswer {
        phase: phase.to_string(),
        replayed,
        report: tail.report(),
    }
}

async fn finish(tail: Tail, ending: Ending) -> Result<(Ending, TailReport), StepError> {
    let report = tail.stop().await?;
    Ok((ending, report))
}

async fn wait_for(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
