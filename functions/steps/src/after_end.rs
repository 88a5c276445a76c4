//! Cleanup for the ends the state machine's Catch never sees: an abort (`ferry abort`, the
//! console), a timeout, or a failure no Catch can take (`States.Runtime`, a data or history
//! limit). An EventBridge rule sends the stack's "Step Functions Execution Status Change"
//! events for ABORTED, TIMED_OUT and FAILED to the Cleanup Lambda; it reads the execution's
//! input and the last state output that holds EnableNotifications' record, and runs the same
//! cleanup as the Clean up states (idempotent: after a failure already cleaned up, it changes
//! nothing). The same Lambda hears of a tail task that stopped (EventBridge's "ECS Task State
//! Change"): see [`tail_stopped`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aws::Ctx;
use crate::contracts::{CleanupOutput, MigrationInput, NotificationsOutput};
use crate::error::StepError;
use crate::executions;
use crate::notifications::{self, NotificationsStep};

/// An EventBridge "Step Functions Execution Status Change" event (only what is used; the
/// event's other fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct ExecutionEnded {
    pub detail: EndedDetail,
}

/// The event's detail.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndedDetail {
    pub execution_arn: String,
    pub status: String,
}

/// An EventBridge "ECS Task State Change" event for a stopped tail task (only what is used).
#[derive(Debug, Clone, Deserialize)]
pub struct TaskStopped {
    pub detail: StoppedDetail,
}

/// The event's detail: why the task stopped, and the overrides it was started with.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoppedDetail {
    pub last_status: String,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub overrides: Value,
    #[serde(default)]
    pub containers: Vec<Value>,
}

/// What the Cleanup Lambda is sent: the Clean up states' input, an execution's end, a tail
/// task that stopped, or a Distributed Map that failed ("Find the failed shard").
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CleanupRequest {
    MapFailed { map_failure: MapFailure },
    Step(Box<NotificationsStep>),
    Ended(ExecutionEnded),
    TailStopped(TaskStopped),
}

/// A Distributed Map's failure, as its Catch recorded it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapFailure {
    /// The parent execution.
    pub execution: String,
    /// The Map's error: `{Error, Cause}`.
    pub error: StateError,
}

/// A state's error as a Catch records it, and as the Fail state reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateError {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

/// What the Cleanup Lambda answers.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum CleanupAnswer {
    Cleaned(CleanupOutput),
    Failure(StateError),
}

/// The Cleanup Lambda's handler.
pub async fn cleanup_request(
    ctx: Ctx,
    request: CleanupRequest,
) -> Result<CleanupAnswer, StepError> {
    let cleaned = match request {
        CleanupRequest::MapFailed { map_failure } => {
            return Ok(CleanupAnswer::Failure(
                failed_shard(&ctx, map_failure).await?,
            ));
        }
        CleanupRequest::Step(step) => notifications::cleanup(ctx, *step).await,
        CleanupRequest::Ended(ended) => cleanup_after_end(ctx, ended).await,
        CleanupRequest::TailStopped(stopped) => tail_stopped(ctx, stopped).await,
    };
    cleaned.map(CleanupAnswer::Cleaned)
}

/// The failed shard's own error in place of the Map's; the Map's when no failed child is
/// found (its error stands, with a cause that says so).
async fn failed_shard(ctx: &Ctx, failure: MapFailure) -> Result<StateError, StepError> {
    match executions::failed_map_child(&ctx.aws, &failure.execution).await? {
        Some((error, cause)) => {
            tracing::info!(%error, "the failed shard's error replaces the Map's");
            Ok(StateError { error, cause })
        }
        None => Ok(StateError {
            cause: format!(
                "{} (no failed child execution was found to say why)",
                failure.error.cause
            ),
            ..failure.error
        }),
    }
}

/// A tail task that stopped while its start token was still open (its image could not be
/// pulled, the secret could not be read, it crashed before ready): fails that token with
/// `TailTaskStopped` and ECS's reasons at once, instead of the state waiting out its heartbeat.
/// A token already answered (a tail that was ready) is left alone: its later waits have
/// heartbeats of their own.
pub async fn tail_stopped(ctx: Ctx, stopped: TaskStopped) -> Result<CleanupOutput, StepError> {
    let d = &stopped.detail;
    let token = d.overrides["containerOverrides"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["environment"].as_array().into_iter().flatten())
        .find(|e| e["name"] == "FERRY_TASK_TOKEN")
        .and_then(|e| e["value"].as_str());
    let (Some(token), "STOPPED") = (token, d.last_status.as_str()) else {
        return Ok(CleanupOutput::default());
    };
    let mut reasons: Vec<&str> = d.stopped_reason.iter().map(String::as_str).collect();
    reasons.extend(d.containers.iter().filter_map(|c| c["reason"].as_str()));
    let cause = format!("the tail's Fargate task stopped: {}", reasons.join("; "));
    let sent = ctx
        .aws
        .sfn
        .send_task_failure()
        .task_token(token)
        .error("TailTaskStopped")
        .cause(&cause)
        .send()
        .await;
    match sent {
        Ok(_) => {
            tracing::warn!(%cause, "told the state machine");
            Ok(CleanupOutput {
                restored: vec![format!("StartTail failed: {cause}")],
            })
        }
        Err(e) => match e.as_service_error() {
            Some(se)
                if se.is_task_timed_out()
                    || se.is_task_does_not_exist()
                    || se.is_invalid_token() =>
            {
                Ok(CleanupOutput::default())
            }
            _ => Err(StepError::from_aws("SendTaskFailure", e)),
        },
    }
}

/// Puts back what the ended execution's EnableNotifications changed, if it changed anything.
pub async fn cleanup_after_end(
    ctx: Ctx,
    ended: ExecutionEnded,
) -> Result<CleanupOutput, StepError> {
    let d = &ended.detail;
    if !matches!(d.status.as_str(), "ABORTED" | "TIMED_OUT" | "FAILED") {
        return Ok(CleanupOutput::default());
    }
    let execution = ctx
        .aws
        .sfn
        .describe_execution()
        .execution_arn(&d.execution_arn)
        .send()
        .await
        .map_err(|e| StepError::from_aws("DescribeExecution", e))?;
    let input: Value = serde_json::from_str(execution.input().unwrap_or("{}"))
        .map_err(|_| StepError::invalid("the execution's input is not JSON"))?;
    // `ferry start` and the console send the migration itself; the Start state files it under
    // `$.migration`, which some callers send already.
    let migration = MigrationInput::from_json(match input.get("migration") {
        Some(m) => m.clone(),
        None => input,
    })?;
    let notifications = recorded_notifications(&ctx, &d.execution_arn).await?;
    tracing::info!(execution = %d.execution_arn, status = %d.status, recorded = notifications.is_some(), "execution ended outside the state machine's Catch: cleaning up");
    notifications::cleanup(
        ctx,
        NotificationsStep {
            migration,
            notifications,
        },
    )
    .await
}

/// EnableNotifications' record, from the newest state output that carries it (`$.notifications`,
/// or `$.notifications_step.notifications` while the parameter group is being applied).
async fn recorded_notifications(
    ctx: &Ctx,
    execution: &str,
) -> Result<Option<NotificationsOutput>, StepError> {
    let mut next: Option<String> = None;
    loop {
        let page = ctx
            .aws
            .sfn
            .get_execution_history()
            .execution_arn(execution)
            .reverse_order(true)
            .max_results(1000)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| StepError::from_aws("GetExecutionHistory", e))?;
        for event in page.events() {
            let Some(output) = event
                .state_exited_event_details()
                .and_then(|d| d.output())
                .and_then(|o| serde_json::from_str::<Value>(o).ok())
            else {
                continue;
            };
            let record = output
                .get("notifications")
                .filter(|n| !n.is_null())
                .or_else(|| output.pointer("/notifications_step/notifications"));
            if let Some(record) = record {
                return serde_json::from_value(record.clone())
                    .map(Some)
                    .map_err(|_| StepError::invalid("EnableNotifications' record is malformed"));
            }
        }
        match page.next_token() {
            Some(token) => next = Some(token.to_string()),
            None => return Ok(None),
        }
    }
}
