//! The live tail as the state machine's Fargate task (`ferry tail --from-state-machine`): the
//! engine's [`Tail`] steered through [`Control`] (design §4, §6). It answers the StartTail
//! token once it is subscribed on every source primary and its canary arrived (a replacement
//! for a tail that died heals first), replays at the barrier, runs the engine's cutover
//! protocol (fence, check, release, watch) on request, heartbeats the tokens that wait for the
//! operator so a dead tail fails them, and stops by itself when its execution ends or on
//! SIGTERM.

mod settings;

pub use settings::TailTaskSettings;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_engine::copy::CopyContext;
use ferry_engine::live::cutover::{self, CutoverSettings, Fenced, Raised, TOUCHED_LIMIT};
use ferry_engine::live::tail::{Tail, TailOptions, TailReport};
use ferry_engine::model::migration::Migration;
use ferry_engine::util::cancel::Stop;
use ferry_engine::verify::{Level, VerifyOptions};

use crate::aws::{Aws, Ctx};
use crate::contracts::{ControlAction, TailAnswer};
use crate::control::{Control, Received, Waiting};
use crate::error::StepError;
use crate::handlers;
use crate::metrics;
use ferry_engine::prepare;
use ferry_engine::run;
use ferry_engine::verify;

/// How the task ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// Released at cutover (stragglers watched and drained) and answered.
    Released,
    /// Asked to stop, its execution ended, or SIGTERM.
    Stopped,
}

/// The running tail and what it holds between requests.
struct Follower {
    tail: Tail,
    migration: Migration,
    copy: Arc<CopyContext>,
    dbs: Vec<u32>,
    standing: Option<Waiting>,
    fenced: Option<Box<Fenced>>,
    /// A failure not yet told to the state machine (no token was open).
    failed: Option<StepError>,
}

/// Runs the tail until it is released or stopped. `stop` is set by SIGTERM. A failure before
/// ready fails the StartTail token; a failure later fails the waiting token, or the next
/// request's (the tail keeps listening for it), so the state machine always hears the error
/// type.
pub async fn run(
    aws: Aws,
    settings: TailTaskSettings,
    stop: Stop,
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
        .heartbeating(token, s.heartbeat, start(&ctx, s))
        .await;
    let mut f = match started {
        Ok(f) => f,
        Err(e) => {
            if let Some(token) = token {
                control.fail(token, &e).await?;
            }
            return Err(e);
        }
    };
    tracing::info!(
        replaces = s.replaces,
        "tail ready: subscribed on every source primary, canary received"
    );
    if let Some(token) = token {
        control.succeed(token, &answer("ready", 0, &f.tail)).await?;
    }
    loop {
        if stop.is_stopped() {
            tracing::info!("SIGTERM: stopping");
            // Fargate retiring the task, or ECS stopping it: the waiting state hands over to a
            // replacement now rather than after its heartbeat times out.
            if let Some(standing) = f.standing.take() {
                let e = StepError::Named {
                    kind: "TailStopped",
                    message:
                        "the tail's task was stopped (SIGTERM): a replacement heals and takes over"
                            .into(),
                };
                control.fail(&standing.token, &e).await?;
            }
            return finish(f.tail, Ending::Stopped).await;
        }
        if let Some(e) = f.tail.failure() {
            tracing::error!(error = %e, kind = e.kind_name(), "tail failed; answering the waiting or next request with it");
            f.failed = Some(e.into());
        }
        if let Some(e) = f.failed.take() {
            match f.standing.take() {
                Some(standing) => {
                    control.fail(&standing.token, &e).await?;
                    return Err(e);
                }
                None => f.failed = Some(e),
            }
        }
        if let Some(arn) = &s.execution {
            if !control.execution_running(arn).await? {
                tracing::info!("the execution has ended: stopping");
                return finish(f.tail, Ending::Stopped).await;
            }
        }
        f.tend_standing(&control).await?;
        let r = f.tail.report();
        metrics::emit(
            &s.migration.migration_id,
            &[
                ("TailLagP99Ms", r.lag_p99_ms, "Milliseconds"),
                ("TailQueueDepth", r.queue_depth as f64, "Count"),
                ("TailGaps", r.gaps as f64, "Count"),
                // Near the source's pubsub output-buffer limit, the subscription is cut.
                (
                    "TailSubscriberBufferBytes",
                    r.subscriber_omem_bytes as f64,
                    "Bytes",
                ),
            ],
        );
        // One round per long poll (at most 20 s): waiting tokens are heartbeaten at that pace
        // at the least, well inside their states' HeartbeatSeconds.
        let requests = tokio::select! {
            got = control.receive() => got?,
            _ = stop.stopped() => continue,
        };
        for received in requests {
            // Taken off the queue before the work: a barrier can outlast any visibility
            // timeout, and a tail that dies meanwhile is caught by the state's heartbeat.
            control.delete(&received).await?;
            if let Some(ending) = f.handle(&control, &received, s, &stop).await? {
                return finish(f.tail, ending).await;
            }
        }
    }
}

impl Follower {
    /// Drops the waiting token once Step Functions no longer knows it (the operator answered
    /// it); fails `await_release` once the fence has expired.
    async fn tend_standing(&mut self, control: &Control) -> Result<(), StepError> {
        let Some(standing) = self.standing.as_ref() else {
            return Ok(());
        };
        let expired = self
            .fenced
            .as_ref()
            .and_then(|f| f.expires())
            .is_some_and(|at| Instant::now() >= at);
        if standing.action == ControlAction::AwaitRelease && expired {
            if let Some(fenced) = self.fenced.take() {
                fenced.abandon().await?;
            }
            let token = self.standing.take().expect("checked").token.clone();
            let e = StepError::cutover_refused(
                "the fence expired before the switch was confirmed (ferry cutover --release): writes reach the source again and the tail follows them; run ferry cutover again",
            );
            tracing::warn!(error = %e, "cutover refused");
            return control.fail(&token, &e).await;
        }
        if standing.answered.load(Ordering::SeqCst) {
            tracing::info!(action = ?standing.action, "the operator answered");
            self.standing = None;
        }
        Ok(())
    }

    /// Answers one request; `Some` when the tail should end.
    async fn handle(
        &mut self,
        control: &Control,
        received: &Received,
        s: &TailTaskSettings,
        stop: &Stop,
    ) -> Result<Option<Ending>, StepError> {
        let request = &received.request;
        let token = request.task_token.as_deref();
        tracing::info!(action = ?request.action, "control request");
        if let (Some(e), Some(token)) = (self.failed.as_ref(), token) {
            control.fail(token, e).await?;
            return Err(self.failed.take().expect("checked"));
        }
        let settings = self.cutover_settings(s);
        let tail = &mut self.tail;
        let work = match request.action {
            ControlAction::Stop => return Ok(Some(Ending::Stopped)),
            ControlAction::AwaitCutover | ControlAction::AwaitRelease => {
                self.standing =
                    token.map(|token| control.keep_alive(token, request.action, s.heartbeat));
                return Ok(None);
            }
            ControlAction::Barrier => {
                let replayed = tail.barrier() as u64;
                let drained = control
                    .heartbeating(
                        token,
                        s.heartbeat,
                        run::drain(tail, Duration::ZERO, s.drain_timeout),
                    )
                    .await;
                // The fenced check compares what changed from here on (the verify follows).
                tail.record_touched(TOUCHED_LIMIT);
                drained.map(|()| answer("barrier", replayed, tail))
            }
            ControlAction::Fence => {
                let writers_stopped = request.writers_stopped();
                let (m, copy, dbs) = (&self.migration, &self.copy, &self.dbs);
                let verify_context = async || {
                    let options = VerifyOptions {
                        level: Level::Full,
                        ..VerifyOptions::default()
                    };
                    verify::current_verify_context(m, dbs, copy.limiter.clone(), options).await
                };
                let raised = control
                    .heartbeating(
                        token,
                        s.heartbeat,
                        cutover::fence_and_check(
                            m,
                            tail,
                            &settings,
                            &[],
                            verify_context,
                            async |why: &str| {
                                tracing::warn!(
                                    why,
                                    writers_stopped,
                                    "the source refuses CLIENT PAUSE"
                                );
                                writers_stopped
                            },
                        ),
                    )
                    .await;
                match raised {
                    Ok(Raised::Fenced(fenced)) => {
                        let mut a = answer("fenced", 0, tail);
                        a.cutover = Some(fenced.report.clone());
                        self.fenced = Some(fenced);
                        Ok(a)
                    }
                    Ok(Raised::Refused(why)) => {
                        // Recording goes on for the next attempt.
                        tail.record_touched(TOUCHED_LIMIT);
                        let e = StepError::cutover_refused(format!(
                            "{why}; the tail goes on following"
                        ));
                        return self.refuse(control, token, e).await;
                    }
                    Err(e) => Err(e),
                }
            }
            ControlAction::Release => {
                let Some(fenced) = self.fenced.take() else {
                    let e = StepError::cutover_refused(
                        "no fence is up (it expired, or this tail replaced the one that raised it): run ferry cutover again",
                    );
                    return self.refuse(control, token, e).await;
                };
                let released = control
                    .heartbeating(
                        token,
                        s.heartbeat,
                        fenced.release_and_watch(&self.migration, tail, &settings, stop),
                    )
                    .await;
                released.map(|report| {
                    let mut a = answer("released", 0, tail);
                    a.cutover = Some(report);
                    a
                })
            }
        };
        match (work, token) {
            (Ok(a), Some(token)) => control.succeed(token, &a).await?,
            (Ok(_), None) => {}
            (Err(e), token) => {
                let e = StepError::from(e);
                if let Some(token) = token {
                    control.fail(token, &e).await?;
                }
                return Err(e);
            }
        }
        Ok((request.action == ControlAction::Release).then_some(Ending::Released))
    }

    /// Fails `token` with a refusal the state machine catches; the tail goes on.
    async fn refuse(
        &mut self,
        control: &Control,
        token: Option<&str>,
        e: StepError,
    ) -> Result<Option<Ending>, StepError> {
        tracing::warn!(error = %e, "cutover refused");
        if let Some(token) = token {
            control.fail(token, &e).await?;
        }
        Ok(None)
    }

    fn cutover_settings(&self, s: &TailTaskSettings) -> CutoverSettings {
        let o = &s.migration.options;
        CutoverSettings {
            fence_time: Duration::from_secs_f64(o.fence_secs),
            drain_quiet: s.drain_quiet,
            drain_timeout: s.drain_timeout,
            watch: Duration::from_secs_f64(o.watch_secs),
        }
    }
}

/// Subscribes and proves delivery (the engine's [`Tail::start`]), remembering touched keys for
/// the barrier. A replacement heals first (a compare of source and target marks every
/// difference dirty) and records touched keys from here for the fenced check. Notifications
/// are the EnableNotifications step's business: this only checks.
async fn start(ctx: &Ctx, s: &TailTaskSettings) -> Result<Follower, StepError> {
    let input = &s.migration;
    let m = handlers::migration(ctx, input).await?;
    let (copy, source) = handlers::copy_context(&m).await?;
    let options = TailOptions {
        workers: input.options.workers.max(1),
        run_id: input.migration_id.clone(),
        channel: input.live_channel(),
        ..TailOptions::default()
    };
    let dbs = prepare::source_dbs(&m.scope, &source);
    let mut tail = Tail::start(&m, copy.clone(), dbs.clone(), options, true).await?;
    if s.replaces {
        tail.record_touched(TOUCHED_LIMIT);
        tail.heal("this tail replaces one that stopped: writes made meanwhile were not followed");
        run::drain(&mut tail, s.drain_quiet, s.drain_timeout).await?;
        tracing::info!(report = ?tail.report(), "healed after the replacement");
    }
    Ok(Follower {
        tail,
        migration: m,
        copy,
        dbs,
        standing: None,
        fenced: None,
        failed: None,
    })
}

fn answer(phase: &str, replayed: u64, tail: &Tail) -> TailAnswer {
    TailAnswer {
        phase: phase.to_string(),
        replayed,
        report: tail.report(),
        cutover: None,
    }
}

async fn finish(tail: Tail, ending: Ending) -> Result<(Ending, TailReport), StepError> {
    let report = tail.stop().await?;
    Ok((ending, report))
}
