//! The operator's side of a deployed ferry (`ferry start|status|cutover|abort`): executions of
//! the stack's state machine, found through the stack's outputs. A thin adapter over Step
//! Functions and CloudFormation; what it shows is read from the execution's own history.

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType};
use serde::Serialize;
use serde_json::Value;

use crate::aws::Aws;
use crate::contracts::{ControlAction, MigrationInput, TailAnswer};
use crate::error::StepError;

/// The state machine ARN from a stack's `StateMachineArn` output (SAM and CDK stacks both
/// export it).
pub async fn state_machine_of_stack(aws: &Aws, stack: &str) -> Result<String, StepError> {
    let out = aws
        .cloudformation
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| StepError::from_aws("DescribeStacks", e))?;
    out.stacks()
        .iter()
        .flat_map(|s| s.outputs())
        .find(|o| o.output_key() == Some("StateMachineArn"))
        .and_then(|o| o.output_value().map(str::to_string))
        .ok_or_else(|| StepError::invalid(format!("stack {stack} has no StateMachineArn output")))
}

/// Starts a migration after checking its input the way the Inventory step will (unknown
/// fields and inline credentials are refused here, before anything is sent). The execution is
/// named after the migration's `migration_id` (or `name`), so a second start of the same
/// migration is refused by Step Functions, and `ferry cutover|abort|status --migration ID`
/// finds it. Returns the execution ARN.
pub async fn start(
    aws: &Aws,
    state_machine: &str,
    input: Value,
    name: Option<&str>,
) -> Result<String, StepError> {
    // The execution input is the migration itself (the Start state files it under $.migration).
    let migration = MigrationInput::from_json(input)?;
    let name = name.unwrap_or(&migration.migration_id).to_string();
    let body = serde_json::to_string(&migration).expect("serializes");
    let out = aws
        .sfn
        .start_execution()
        .state_machine_arn(state_machine)
        .input(body)
        .name(&name)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(se) if se.is_execution_already_exists() => StepError::invalid(format!(
                "an execution named '{name}' already exists for this state machine (running, or ended within the last 90 days): one migration_id is one execution; give this migration a new migration_id (or --name)"
            )),
            _ => StepError::from_aws("StartExecution", e),
        })?;
    Ok(out.execution_arn)
}

/// The ARN of the execution named `name` (a migration_id) of `state_machine`.
pub fn execution_named(state_machine: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// The execution an operator's command acts on when none is named: the one running (refusing
/// to guess between several), else the newest.
pub async fn only_running_or_latest(aws: &Aws, state_machine: &str) -> Result<String, StepError> {
    let out = aws
        .sfn
        .list_executions()
        .state_machine_arn(state_machine)
        .max_results(100)
        .send()
        .await
        .map_err(|e| StepError::from_aws("ListExecutions", e))?;
    let running: Vec<_> = out
        .executions
        .iter()
        .filter(|e| e.status == aws_sdk_sfn::types::ExecutionStatus::Running)
        .collect();
    match running.as_slice() {
        [one] => Ok(one.execution_arn.clone()),
        [] => out
            .executions
            .iter()
            .max_by_key(|e| e.start_date.as_nanos())
            .map(|e| e.execution_arn.clone())
            .ok_or_else(|| StepError::invalid(format!("{state_machine} has no executions"))),
        several => Err(StepError::invalid(format!(
            "{} executions are running ({}): name one with --migration ID or its ARN",
            several.len(),
            several
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Shards of the running Map: done of total.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ShardProgress {
    /// Finished (succeeded or failed) shard loops.
    pub done: i64,
    /// All shard loops.
    pub total: i64,
}

/// What `ferry status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The execution.
    pub execution_arn: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED.
    pub status: String,
    /// The state entered last.
    pub current_state: Option<String>,
    /// Keys on the source at inventory.
    pub source_keys: Option<u64>,
    /// Shards planned.
    pub shards_planned: Option<u64>,
    /// Progress of the Map running now (Distributed Map runs).
    pub shards: Option<ShardProgress>,
    /// The tail's last answer (ready, barrier, fenced, released): its lag and counts.
    pub tail: Option<TailAnswer>,
    /// The tail's Fargate task as ECS sees it now (live mode, once started).
    pub tail_task: Option<TailTask>,
    /// Whether the execution waits for `ferry cutover`.
    pub awaiting_cutover: bool,
    /// Whether the fence is up over a checked target, waiting for `ferry cutover --release`.
    pub awaiting_release: bool,
    /// Why the last cutover attempt was refused, if one was.
    pub refused: Option<String>,
    /// The failure's error type and cause.
    pub error: Option<String>,
    /// Why it failed.
    pub cause: Option<String>,
}

/// The execution's status, read from DescribeExecution and its history.
pub async fn status(aws: &Aws, execution: &str) -> Result<Status, StepError> {
    let out = aws
        .sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
        .map_err(|e| StepError::from_aws("DescribeExecution", e))?;
    let events = history(aws, execution).await?;
    let mut s = Status {
        execution_arn: execution.to_string(),
        status: out.status.as_str().to_string(),
        current_state: None,
        source_keys: None,
        shards_planned: None,
        shards: None,
        tail: None,
        tail_task: tail_task(aws, &events).await?,
        awaiting_cutover: waiting_token(&events, ControlAction::AwaitCutover).is_some(),
        awaiting_release: waiting_token(&events, ControlAction::AwaitRelease).is_some(),
        refused: refusal_after(&events, 0),
        error: out.error.clone(),
        cause: out.cause.clone(),
    };
    for e in &events {
        if let Some(d) = e.state_entered_event_details() {
            s.current_state = Some(d.name.clone());
        }
        if let Some(output) = e.state_exited_event_details().and_then(|d| d.output()) {
            let v: Value = serde_json::from_str(output).unwrap_or(Value::Null);
            s.source_keys = v["inventory"]["summary"]["source_keys"]
                .as_u64()
                .or(s.source_keys);
            s.shards_planned = v["plan"]["count"].as_u64().or(s.shards_planned);
        }
        if let Some(output) = e.task_succeeded_event_details().and_then(|d| d.output()) {
            if let Ok(answer) = serde_json::from_str::<TailAnswer>(output) {
                s.tail = Some(answer);
            }
        }
    }
    if let Some(map_run) = events
        .iter()
        .rev()
        .find_map(|e| e.map_run_started_event_details())
        .and_then(|d| d.map_run_arn())
    {
        let run = aws
            .sfn
            .describe_map_run()
            .map_run_arn(map_run)
            .send()
            .await
            .map_err(|e| StepError::from_aws("DescribeMapRun", e))?;
        if let Some(c) = run.item_counts() {
            s.shards = Some(ShardProgress {
                done: c.succeeded + c.failed + c.aborted + c.timed_out,
                total: c.total,
            });
        }
    }
    Ok(s)
}

/// Every event of an execution, oldest first.
pub(crate) async fn history(aws: &Aws, execution: &str) -> Result<Vec<HistoryEvent>, StepError> {
    let mut events = Vec::new();
    let mut token = None;
    loop {
        let out = aws
            .sfn
            .get_execution_history()
            .execution_arn(execution)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| StepError::from_aws("GetExecutionHistory", e))?;
        events.extend(out.events);
        token = out.next_token;
        if token.is_none() {
            return Ok(events);
        }
    }
}

/// The token of the operator's wait still open in `events`: the last control message with
/// `action` scheduled (an `sqs:sendMessage.waitForTaskToken` task) and not finished since.
pub fn waiting_token(events: &[HistoryEvent], action: ControlAction) -> Option<String> {
    let mut pending = None;
    for e in events {
        if let Some(d) = e.task_scheduled_event_details() {
            let p: Value = serde_json::from_str(&d.parameters).unwrap_or(Value::Null);
            let body = &p["MessageBody"];
            let asked = serde_json::from_value::<ControlAction>(body["action"].clone()).ok();
            pending = (d.resource_type == "sqs" && asked == Some(action))
                .then(|| body["task_token"].as_str().map(str::to_string))
                .flatten();
        }
        if matches!(
            e.r#type,
            HistoryEventType::TaskSucceeded
                | HistoryEventType::TaskFailed
                | HistoryEventType::TaskTimedOut
                | HistoryEventType::TaskSubmitFailed
        ) {
            pending = None;
        }
    }
    pending
}

/// The cause of the newest `CutoverRefused` failure after event `after` (an event id): the
/// failed task's cause, or the caught error the state machine keeps under `$.refused`.
pub fn refusal_after(events: &[HistoryEvent], after: i64) -> Option<String> {
    let mut refused = None;
    for e in events.iter().filter(|e| e.id > after) {
        if let Some(d) = e.task_failed_event_details() {
            if d.error() == Some("CutoverRefused") {
                refused = Some(d.cause().unwrap_or("").to_string());
            }
        }
        let kept = e
            .state_exited_event_details()
            .and_then(|d| d.output())
            .and_then(|o| serde_json::from_str::<Value>(o).ok())
            .and_then(|v| v["refused"]["Cause"].as_str().map(str::to_string));
        if let (Some(cause), Some(r)) = (kept, refused.as_mut()) {
            if r.is_empty() {
                *r = cause;
            }
        }
    }
    refused
}

/// The tail's Fargate task: ECS's view of it now.
#[derive(Debug, Clone, Serialize)]
pub struct TailTask {
    /// The task's ARN.
    pub task_arn: String,
    /// PROVISIONING, PENDING, RUNNING, STOPPING, STOPPED, … (`MISSING` when ECS no longer knows it).
    pub last_status: String,
    /// Why it stopped, if it did.
    pub stopped_reason: Option<String>,
}

impl TailTask {
    /// Whether it still follows the source.
    pub fn running(&self) -> bool {
        self.last_status == "RUNNING"
    }

    /// Refuses a cutover unless the task runs: writes made since it stopped are on the source
    /// only, and switching would lose them.
    pub fn ready_for_cutover(&self) -> Result<(), StepError> {
        if self.running() {
            return Ok(());
        }
        Err(StepError::invalid(format!(
            "the tail task {} is {}{}: it no longer follows the source, so writes made since it stopped are not on the target. Do not switch the application; abort this migration (ferry abort) and start it again under a new migration_id",
            self.task_arn,
            self.last_status,
            self.stopped_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        )))
    }
}

/// The newest tail task the execution started (the StartTail state's `ecs:runTask` submission,
/// whose output names the task), as ECS describes it now; `None` before (or without) one.
pub async fn tail_task(aws: &Aws, events: &[HistoryEvent]) -> Result<Option<TailTask>, StepError> {
    let submitted = events.iter().rev().find_map(|e| {
        let d = e.task_submitted_event_details()?;
        (d.resource_type == "ecs").then(|| d.output().unwrap_or("{}").to_string())
    });
    let Some(output) = submitted else {
        return Ok(None);
    };
    let v: Value = serde_json::from_str(&output).unwrap_or(Value::Null);
    let (Some(cluster), Some(task)) = (
        v["Tasks"][0]["ClusterArn"].as_str(),
        v["Tasks"][0]["TaskArn"].as_str(),
    ) else {
        return Ok(None);
    };
    let out = aws
        .ecs
        .describe_tasks()
        .cluster(cluster)
        .tasks(task)
        .send()
        .await
        .map_err(|e| StepError::from_aws("DescribeTasks", e))?;
    let found = out.tasks().first();
    Ok(Some(TailTask {
        task_arn: task.to_string(),
        last_status: found
            .and_then(|t| t.last_status())
            .unwrap_or("MISSING")
            .to_string(),
        stopped_reason: found.and_then(|t| t.stopped_reason()).map(str::to_string),
    }))
}

/// Stops an execution. Step Functions runs no Catch on an abort; the stack's EventBridge rule
/// has Cleanup put the notification settings back. The tail stops by itself when it sees the
/// execution ended.
pub async fn abort(aws: &Aws, execution: &str, cause: &str) -> Result<(), StepError> {
    aws.sfn
        .stop_execution()
        .execution_arn(execution)
        .error("Aborted")
        .cause(cause)
        .send()
        .await
        .map_err(|e| StepError::from_aws("StopExecution", e))?;
    Ok(())
}

/// The error and cause of a failed Distributed Map child of `execution`: Step Functions fails
/// the Map itself with `States.ExceedToleratedFailureThreshold`, and the step's own error
/// (`VerifyFailed`, `TargetOutOfMemory`…) is only on the child. Reads the execution's Map Runs,
/// newest first, and the first failed (or timed-out) child of each; `None` when there is none.
pub async fn failed_map_child(
    aws: &Aws,
    execution: &str,
) -> Result<Option<(String, String)>, StepError> {
    let runs = aws
        .sfn
        .list_map_runs()
        .execution_arn(execution)
        .send()
        .await
        .map_err(|e| StepError::from_aws("ListMapRuns", e))?;
    let mut runs = runs.map_runs;
    runs.sort_by_key(|run| std::cmp::Reverse(run.start_date));
    for run in runs {
        for status in [ExecutionStatus::Failed, ExecutionStatus::TimedOut] {
            let children = aws
                .sfn
                .list_executions()
                .map_run_arn(&run.map_run_arn)
                .status_filter(status)
                .max_results(1)
                .send()
                .await
                .map_err(|e| StepError::from_aws("ListExecutions", e))?;
            let Some(child) = children.executions.first() else {
                continue;
            };
            let d = aws
                .sfn
                .describe_execution()
                .execution_arn(&child.execution_arn)
                .send()
                .await
                .map_err(|e| StepError::from_aws("DescribeExecution", e))?;
            let error = d.error.unwrap_or_else(|| "States.Timeout".into());
            let cause = d.cause.unwrap_or_default();
            return Ok(Some((error, cause)));
        }
    }
    Ok(None)
}
