//! Cleanup for the ends the state machine's Catch never sees: an abort (`ferry abort`, the
//! console), a timeout, or a failure no Catch can take (`States.Runtime`, a data or history
//! limit). An EventBridge rule sends the stack's "Step Functions Execution Status Change"
//! events for ABORTED, TIMED_OUT and FAILED to the Cleanup Lambda; it reads the execution's
//! input and the last state output that holds EnableNotifications' record, and runs the same
//! cleanup as the Clean up states (idempotent: after a failure already cleaned up, it changes
//! nothing).

use serde::Deserialize;
use serde_json::Value;

use crate::aws::Ctx;
use crate::contracts::{CleanupOutput, MigrationInput, NotificationsOutput};
use crate::error::StepError;
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

/// What the Cleanup Lambda is sent: the Clean up states' input, or an execution's end.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CleanupRequest {
    Step(Box<NotificationsStep>),
    Ended(ExecutionEnded),
}

/// The Cleanup Lambda's handler.
pub async fn cleanup_request(
    ctx: Ctx,
    request: CleanupRequest,
) -> Result<CleanupOutput, StepError> {
    match request {
        CleanupRequest::Step(step) => notifications::cleanup(ctx, *step).await,
        CleanupRequest::Ended(ended) => cleanup_after_end(ctx, ended).await,
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
