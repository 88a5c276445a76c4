//! The operator's side of the cutover on AWS (`ferry cutover [--release]`): the two tokens the
//! state machine waits on for the operator ("Await cutover", "Await release": control messages
//! to the tail, which heartbeats them), found in the execution's history and answered, then the
//! execution followed until the tail has fenced and checked the target, or has released it.

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType};

use crate::aws::Aws;
use crate::contracts::{ControlAction, TailAnswer};
use crate::error::StepError;
use crate::executions::{history, refusal_after, tail_task, waiting_token};

/// The tail's newest answer with `phase`, after event `after`.
fn answer_after(events: &[HistoryEvent], after: i64, phase: &str) -> Option<TailAnswer> {
    events
        .iter()
        .filter(|e| e.id > after)
        .filter_map(|e| e.task_succeeded_event_details()?.output())
        .filter_map(|o| serde_json::from_str::<TailAnswer>(o).ok())
        .rfind(|a| a.phase == phase)
}

/// How far a cutover got when `ferry cutover` stopped following it.
#[derive(Debug)]
pub enum Progress {
    /// Fenced and checked (`fenced`) or released (`released`): the tail's answer.
    Answered(Box<TailAnswer>),
    /// Refused (the reason): nothing is lost, the tail follows; the state machine asks again.
    Refused(String),
}

/// Answers "Await cutover" (the tail must be running: writes made since it stopped would be on
/// the source only) and, unless `wait` is zero, follows the execution until the tail has fenced
/// and checked the target (switch now) or refused.
pub async fn cutover(
    aws: &Aws,
    execution: &str,
    writers_stopped: bool,
    wait: Duration,
) -> Result<Option<Progress>, StepError> {
    let mut events = history(aws, execution).await?;
    // Run the moment the verify ends or the notice arrives, the wait may be a few state
    // transitions away: those pass without anyone's answer, so they are waited for.
    for _ in 0..10 {
        let on_the_way = last_state(&events).is_some_and(|s| {
            matches!(
                s,
                "Verify shards" | "Awaiting cutover?" | "Tell the operator" | "Cutover refused"
            )
        });
        if !on_the_way {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        events = history(aws, execution).await?;
    }
    let token = waiting_token(&events, ControlAction::AwaitCutover).ok_or_else(|| {
        let now = last_state(&events).unwrap_or("not started");
        StepError::invalid(format!(
            "{execution} is not waiting for a cutover: it is in '{now}' (see ferry status)"
        ))
    })?;
    if let Some(t) = tail_task(aws, &events).await? {
        t.ready_for_cutover()?;
    }
    let answer = serde_json::json!({ "writers_stopped": writers_stopped }).to_string();
    answer_token(aws, &token, &answer).await?;
    follow(aws, execution, last_id(&events), "fenced", wait).await
}

/// Answers "Await release" (the application writes to the target now) and, unless `wait` is
/// zero, follows the execution until the tail has released the fence and watched for
/// stragglers.
pub async fn release(
    aws: &Aws,
    execution: &str,
    wait: Duration,
) -> Result<Option<Progress>, StepError> {
    let events = history(aws, execution).await?;
    let token = waiting_token(&events, ControlAction::AwaitRelease).ok_or_else(|| {
        StepError::invalid(format!(
            "{execution} is not waiting for a release: run ferry cutover first and wait for it to say the target is ready (see ferry status)"
        ))
    })?;
    answer_token(aws, &token, "{}").await?;
    follow(aws, execution, last_id(&events), "released", wait).await
}

fn last_state(events: &[HistoryEvent]) -> Option<&str> {
    events
        .iter()
        .rev()
        .find_map(|e| e.state_entered_event_details())
        .map(|d| d.name.as_str())
}

fn last_id(events: &[HistoryEvent]) -> i64 {
    events.last().map_or(0, |e| e.id)
}

async fn answer_token(aws: &Aws, token: &str, output: &str) -> Result<(), StepError> {
    aws.sfn
        .send_task_success()
        .task_token(token)
        .output(output)
        .send()
        .await
        .map_err(|e| StepError::from_aws("SendTaskSuccess", e))?;
    Ok(())
}

/// Reads the history every second until the tail answers `phase` or refuses after event
/// `after`, the execution ends, or `wait` runs out (`None`).
async fn follow(
    aws: &Aws,
    execution: &str,
    after: i64,
    phase: &str,
    wait: Duration,
) -> Result<Option<Progress>, StepError> {
    let give_up = Instant::now() + wait;
    while Instant::now() < give_up {
        let events = history(aws, execution).await?;
        // "fenced" counts once the release is awaited: `--release` can follow at once.
        let settled =
            phase != "fenced" || waiting_token(&events, ControlAction::AwaitRelease).is_some();
        if let Some(answer) = answer_after(&events, after, phase).filter(|_| settled) {
            return Ok(Some(Progress::Answered(Box::new(answer))));
        }
        if let Some(why) = refusal_after(&events, after) {
            return Ok(Some(Progress::Refused(why)));
        }
        let ended = events.iter().rev().find(|e| {
            matches!(
                e.r#type,
                HistoryEventType::ExecutionSucceeded
                    | HistoryEventType::ExecutionFailed
                    | HistoryEventType::ExecutionAborted
                    | HistoryEventType::ExecutionTimedOut
            )
        });
        if let Some(e) = ended {
            return Err(StepError::Named {
                kind: "ExecutionEnded",
                message: format!(
                    "the execution ended ({:?}) during the cutover: see ferry status",
                    e.r#type
                ),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(None)
}
