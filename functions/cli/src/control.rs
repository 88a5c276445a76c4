//! The CLI's AWS side (feature `aws`): `ferry start|status|cutover|abort`, the operator's
//! commands for migrations running on AWS, and `ferry tail --from-state-machine`, the Fargate
//! task. The AWS calls live in `ferry_steps`.

use std::time::Duration;

use ferry_steps::contracts::TailAnswer;
use ferry_steps::cutover::{self as steps_cutover, Progress};
use ferry_steps::executions::{self, Status};
use ferry_steps::tail_task::{self, TailTaskSettings};
use ferry_steps::{Aws, StepError};

use crate::args::{CutoverArgs, DeployedArgs, ExecutionArgs, StartArgs};
use crate::{EXIT_BAD_INPUT, EXIT_DIFFERENT, EXIT_FAILED, EXIT_OK};

/// Exit code of a command that failed: 2 for bad input or a missing resource, 1 otherwise.
fn exit_code(e: &StepError) -> i32 {
    eprintln!("error [{}]: {e}", e.error_type());
    match e.error_type() {
        "InvalidInput" => EXIT_BAD_INPUT,
        _ => EXIT_FAILED,
    }
}

async fn state_machine(aws: &Aws, d: &DeployedArgs) -> Result<String, StepError> {
    match (&d.state_machine, &d.stack) {
        (Some(arn), _) => Ok(arn.clone()),
        (None, Some(stack)) => executions::state_machine_of_stack(aws, stack).await,
        (None, None) => Err(StepError::invalid(
            "name the deployment with --stack NAME (or FERRY_STACK) or --state-machine ARN",
        )),
    }
}

async fn execution(aws: &Aws, a: &ExecutionArgs) -> Result<String, StepError> {
    match (&a.execution, &a.migration) {
        (Some(arn), _) => Ok(arn.clone()),
        (None, Some(id)) => Ok(executions::execution_named(
            &state_machine(aws, &a.deployed).await?,
            id,
        )),
        (None, None) => {
            executions::only_running_or_latest(aws, &state_machine(aws, &a.deployed).await?).await
        }
    }
}

/// Prints `value` as JSON, or `text` for people.
fn print(json: bool, value: &impl serde::Serialize, text: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("serializes")
        );
    } else {
        println!("{}", text());
    }
}

/// `ferry start`.
pub async fn start(a: StartArgs) -> i32 {
    let aws = Aws::from_env().await;
    let result = async {
        let text = std::fs::read_to_string(&a.input)
            .map_err(|e| StepError::invalid(format!("cannot read {}: {e}", a.input.display())))?;
        let input = serde_json::from_str(&text).map_err(|e| {
            StepError::invalid(format!(
                "{} is not JSON (line {})",
                a.input.display(),
                e.line()
            ))
        })?;
        let machine = state_machine(&aws, &a.deployed).await?;
        executions::start(&aws, &machine, input, a.name.as_deref()).await
    }
    .await;
    match result {
        Ok(arn) => {
            print(
                a.deployed.json,
                &serde_json::json!({ "execution_arn": arn }),
                || format!("started {arn}\nwatch it: ferry status {arn} --watch 10"),
            );
            EXIT_OK
        }
        Err(e) => exit_code(&e),
    }
}

fn describe(s: &Status) -> String {
    let mut lines = vec![
        format!("execution   {}", s.execution_arn),
        format!("status      {}", s.status),
    ];
    if let Some(state) = &s.current_state {
        lines.push(format!("state       {state}"));
    }
    if let Some(keys) = s.source_keys {
        lines.push(format!("source keys {keys}"));
    }
    match (&s.shards, s.shards_planned) {
        (Some(p), _) => lines.push(format!("shards      {} of {} done", p.done, p.total)),
        (None, Some(n)) => lines.push(format!("shards      {n} planned")),
        _ => {}
    }
    if let Some(t) = &s.tail {
        let r = &t.report;
        lines.push(format!(
            "tail        {}: lag p99 {:.0} ms, {} copied, {} deleted, {} replayed, {} gaps",
            t.phase, r.lag_p99_ms, r.keys_copied, r.keys_deleted, r.replayed, r.gaps
        ));
    }
    if let Some(task) = &s.tail_task {
        lines.push(format!(
            "tail task   {}{}",
            task.last_status,
            match (&task.stopped_reason, task.running()) {
                (Some(r), false) => format!(" ({r}): the target no longer follows the source"),
                _ => String::new(),
            }
        ));
    }
    if (s.awaiting_cutover || s.awaiting_release)
        && s.tail_task.as_ref().is_some_and(|t| !t.running())
    {
        lines.push(
            "cutover     refused while the tail is not running: do not switch (the state machine replaces it once its heartbeat is missed)"
                .to_string(),
        );
    } else if s.awaiting_cutover {
        lines.push(format!(
            "cutover     the target is verified and following the source: run\n            ferry cutover {}",
            s.execution_arn
        ));
        if let Some(why) = &s.refused {
            lines.push(format!("            (the last attempt was refused: {why})"));
        }
    } else if s.awaiting_release {
        lines.push(format!(
            "cutover     writes are held and the target is checked: switch the application, then run\n            ferry cutover --release {}",
            s.execution_arn
        ));
    }
    if let Some(error) = &s.error {
        lines.push(format!(
            "error       {error}: {}",
            s.cause.as_deref().unwrap_or("")
        ));
    }
    lines.join("\n")
}

/// `ferry status`: 0 while running or succeeded, 1 once failed, timed out or aborted.
pub async fn status(a: ExecutionArgs) -> i32 {
    let aws = Aws::from_env().await;
    let arn = match execution(&aws, &a).await {
        Ok(arn) => arn,
        Err(e) => return exit_code(&e),
    };
    loop {
        let s = match executions::status(&aws, &arn).await {
            Ok(s) => s,
            Err(e) => return exit_code(&e),
        };
        print(a.deployed.json, &s, || describe(&s));
        match (s.status.as_str(), a.watch) {
            ("RUNNING", Some(secs)) => {
                tokio::time::sleep(Duration::from_secs_f64(secs.max(1.0))).await;
                if !a.deployed.json {
                    println!();
                }
            }
            ("RUNNING" | "SUCCEEDED", _) => return EXIT_OK,
            _ => return EXIT_FAILED,
        }
    }
}

/// Acts on one execution (the named one, or the stack's newest) and reports it as
/// `{key: arn}` in JSON or `text(arn)` for people.
async fn act_on_execution<F, Fut>(
    a: ExecutionArgs,
    key: &str,
    action: F,
    text: impl FnOnce(&str) -> String,
) -> i32
where
    F: FnOnce(Aws, String) -> Fut,
    Fut: std::future::Future<Output = Result<(), StepError>>,
{
    let aws = Aws::from_env().await;
    let arn = match execution(&aws, &a).await {
        Ok(arn) => arn,
        Err(e) => return exit_code(&e),
    };
    match action(aws, arn.clone()).await {
        Ok(()) => {
            print(a.deployed.json, &serde_json::json!({ key: arn }), || {
                text(&arn)
            });
            EXIT_OK
        }
        Err(e) => exit_code(&e),
    }
}

/// `ferry cutover [--release]`: 0 when the target is ready to switch to (or released), 3 when
/// the cutover was refused (nothing lost: the tail follows, the state machine asks again).
pub async fn cutover(a: CutoverArgs) -> i32 {
    let aws = Aws::from_env().await;
    let arn = match execution(&aws, &a.execution).await {
        Ok(arn) => arn,
        Err(e) => return exit_code(&e),
    };
    let wait = Duration::from_secs_f64(a.wait.max(0.0));
    let progress = match a.release {
        false => steps_cutover::cutover(&aws, &arn, a.writers_stopped, wait).await,
        true => steps_cutover::release(&aws, &arn, wait).await,
    };
    let json = a.execution.deployed.json;
    match progress {
        Err(e) => exit_code(&e),
        Ok(None) => {
            print(
                json,
                &serde_json::json!({ "execution_arn": arn, "sent": true }),
                || format!("sent; follow it with: ferry status {arn} --watch 5"),
            );
            EXIT_OK
        }
        Ok(Some(Progress::Refused(why))) => {
            print(
                json,
                &serde_json::json!({ "execution_arn": arn, "refused": why }),
                || {
                    format!(
                        "cutover refused: {why}
nothing is lost: the tail follows the source; run ferry cutover again"
                    )
                },
            );
            EXIT_DIFFERENT
        }
        Ok(Some(Progress::Answered(answer))) => {
            print(json, &answer, || describe_cutover(&arn, &answer));
            EXIT_OK
        }
    }
}

fn describe_cutover(arn: &str, answer: &TailAnswer) -> String {
    let Some(c) = &answer.cutover else {
        return format!("{}: {arn}", answer.phase);
    };
    if answer.phase == "fenced" {
        return format!(
            "the target is ready: writes to the source are held ({} fence), {} keys checked, 0 differences.
Switch the application to the target now, then run: ferry cutover --release {arn}",
            c.fence, c.checked_keys
        );
    }
    format!(
        "released: writes were held {} ms; {} writes reached the source after the release (copied to the target); clients still connected to the source: {}",
        c.fence_ms,
        c.stragglers,
        c.clients_line()
    )
}

/// `ferry abort`.
pub async fn abort(a: ExecutionArgs) -> i32 {
    act_on_execution(
        a,
        "aborted",
        |aws, arn| async move {
            executions::abort(&aws, &arn, "aborted by the operator (ferry abort)").await
        },
        |arn| {
            format!("aborted {arn}\nthe tail stops by itself; the stack's Cleanup Lambda, told by EventBridge, puts back the source's notification settings (see its logs)")
        },
    )
    .await
}

/// `ferry tail --from-state-machine`: the Fargate task. Logs are JSON lines for CloudWatch;
/// the exit code says how it ended (0 drained or stopped, 2 bad settings, 1 failed).
pub async fn tail_for_state_machine(stop: ferry_engine::util::cancel::Stop) -> i32 {
    let settings = match TailTaskSettings::from_env() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error_type = e.error_type(), error = %e, "bad task settings");
            return EXIT_BAD_INPUT;
        }
    };
    let aws = Aws::from_env().await;
    match tail_task::run(aws, settings, stop).await {
        Ok((ending, report)) => {
            tracing::info!(
                ?ending,
                events = report.events,
                keys_copied = report.keys_copied,
                replayed = report.replayed,
                gaps = report.gaps,
                "tail finished"
            );
            EXIT_OK
        }
        Err(e) => {
            tracing::error!(error_type = e.error_type(), error = %e, "tail failed");
            EXIT_FAILED
        }
    }
}
