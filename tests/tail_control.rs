//! The Fargate tail (`ferry tail --from-state-machine`) steered by a state machine that moto
//! really executes: SQS control messages carrying task tokens, SendTaskSuccess /
//! SendTaskFailure / SendTaskHeartbeat answered by the real binary. The Barrier and Drain states
//! are taken verbatim from `statemachine/migration.asl.json`; moto cannot run ECS tasks, so the
//! test plays ECS: it reads the StartTail stand-in's token and starts the process with the
//! environment the real state's container overrides set.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use common::live::Writers;
use ferry_steps::Aws;
use rig::{Config, Moto, Server};
use serde_json::{json, Value};

/// The source's password: it must never appear in the tail's output.
const MARKER: &str = "MARKER-tail-5e2b";

async fn queue(aws: &Aws, name: &str) -> String {
    let out = aws
        .sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap();
    out.queue_url().unwrap().to_string()
}

/// A stand-in state: sends `{token, ...extra}` to `queue` and waits for the test's answer.
fn stand_in(queue: &str, extra: Value, next: &str) -> Value {
    let mut body = json!({ "task_token.$": "$$.Task.Token" });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": { "QueueUrl": queue, "MessageBody": body },
        "ResultPath": null,
        "Next": next,
    })
}

/// A state of the real definition with the control queue filled in, a missed heartbeat failing
/// it (no Retry) into `Failed`.
fn real_state(name: &str, control_queue: &str, next: &str, heartbeat: u64) -> Value {
    let mut state = common::aws::asl_state(name, &[("ControlQueueUrl", control_queue)], next);
    assert_eq!(
        state["Resource"], "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "{name}"
    );
    let o = state.as_object_mut().unwrap();
    o.insert("HeartbeatSeconds".into(), json!(heartbeat));
    o.insert(
        "Catch".into(),
        json!([{ "ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed" }]),
    );
    state
}

/// The live part of the migration: StartTail → Copy → Barrier → Cutover → Drain.
fn definition(control: &str, test: &str) -> Value {
    json!({
        "StartAt": "Start the tail",
        "States": {
            "Start the tail": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Comment": "Stands in for ecs:runTask: the test starts the process.",
                "Parameters": { "QueueUrl": test, "MessageBody": {
                    "step": "start", "task_token.$": "$$.Task.Token",
                    "migration.$": "States.JsonToString($.migration)",
                    "execution.$": "$$.Execution.Id" } },
                "HeartbeatSeconds": 20,
                "ResultPath": "$.tail",
                "Catch": [{ "ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed" }],
                "Next": "Copy shards"
            },
            "Copy shards": stand_in(test, json!({ "step": "copy" }), "Barrier"),
            "Barrier": real_state("Barrier", control, "Cutover", 20),
            "Cutover": stand_in(test, json!({ "step": "cutover", "tail.$": "$.tail" }), "Drain the tail"),
            "Drain the tail": real_state("Drain the tail", control, "Migrated", 2),
            "Migrated": { "Type": "Succeed" },
            "Failed": { "Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause" }
        }
    })
}

struct Rig {
    _moto: Moto,
    moto_url: String,
    moto_port: u16,
    aws: Aws,
    control: String,
    test: String,
    machine: String,
}

async fn rig() -> Rig {
    let moto = Moto::start();
    moto.run_state_machines();
    let aws = common::aws::moto_aws(&moto).await;
    let control = queue(&aws, "ferry-control").await;
    let test = queue(&aws, "test-steps").await;
    let machine = aws
        .sfn
        .create_state_machine()
        .name("ferry-live")
        .definition(definition(&control, &test).to_string())
        .role_arn("arn:aws:iam::123456789012:role/ferry")
        .send()
        .await
        .unwrap()
        .state_machine_arn
        .clone();
    Rig {
        moto_url: moto.url(),
        moto_port: moto.port,
        _moto: moto,
        aws,
        control,
        test,
        machine,
    }
}

impl Rig {
    async fn start(&self, name: &str, migration: Value) -> String {
        self.aws
            .sfn
            .start_execution()
            .state_machine_arn(&self.machine)
            .name(name)
            .input(json!({ "migration": migration }).to_string())
            .send()
            .await
            .unwrap()
            .execution_arn
            .clone()
    }

    /// The next stand-in message, which must be `step`.
    async fn next_step(&self, step: &str) -> Value {
        let body = common::aws::next_message(&self.aws, &self.test, Duration::from_secs(60)).await;
        assert_eq!(body["step"], step, "{body}");
        body
    }

    async fn answer(&self, message: &Value) {
        self.aws
            .sfn
            .send_task_success()
            .task_token(message["task_token"].as_str().unwrap())
            .output("{}")
            .send()
            .await
            .unwrap();
    }

    /// What ECS would do for the real StartTail state: run the container with its overrides.
    fn launch_tail(&self, start: &Value) -> Child {
        self.launch_tail_via(start, &self.moto_url)
    }

    /// Like [`Rig::launch_tail`], with the tail's AWS calls sent to `endpoint`.
    fn launch_tail_via(&self, start: &Value, endpoint: &str) -> Child {
        Command::new(rig::ferry_bin())
            .args(["tail", "--from-state-machine", "--log-json", "-v"])
            .env("FERRY_TASK_TOKEN", start["task_token"].as_str().unwrap())
            .env("FERRY_MIGRATION", start["migration"].as_str().unwrap())
            .env("FERRY_EXECUTION", start["execution"].as_str().unwrap())
            .env("FERRY_CONTROL_QUEUE_URL", &self.control)
            .env("FERRY_POLL_SECS", "1")
            .env("FERRY_HEARTBEAT_SECS", "0.5")
            .env("FERRY_DRAIN_QUIET_SECS", "1")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    async fn wait_done(
        &self,
        execution: &str,
    ) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = self
                .aws
                .sfn
                .describe_execution()
                .execution_arn(execution)
                .send()
                .await
                .unwrap();
            if out.status != ExecutionStatus::Running || Instant::now() > deadline {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn source() -> Server {
    Server::with(Config {
        password: Some(MARKER.into()),
        args: vec!["--notify-keyspace-events".into(), "KA".into()],
        ..Config::default()
    })
}

async fn migration(rig: &Rig, source: &Server, target: &Server) -> Value {
    let secret = rig
        .aws
        .secrets
        .create_secret()
        .name(format!("source-{}", source.port))
        .secret_string(json!({ "password": MARKER }).to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    json!({
        "migration_id": format!("tail-{}", source.port),
        "mode": "live",
        "source": { "endpoint": format!("redis://127.0.0.1:{}", source.port), "secret_arn": secret },
        "target": { "endpoint": format!("redis://127.0.0.1:{}", target.port) },
        "options": { "workers": 2 },
    })
}

/// Waits for the child and returns its exit code and everything it printed.
fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_answers_ready_barrier_and_drain_and_the_target_ends_equal() {
    let rig = rig().await;
    let (source, target) = (source(), Server::start());
    let execution = rig
        .start("live-1", migration(&rig, &source, &target).await)
        .await;

    let start = rig.next_step("start").await;
    let tail = rig.launch_tail(&start);
    // Writers run from before the snapshot until the cutover.
    let writers = Writers::start(&source.plain_url(0), 2, 11, (false, false));
    let copy = rig.next_step("copy").await;
    let out = common::ferry(
        &[
            "replicate",
            "--mode",
            "snapshot",
            "--source",
            &source.plain_url(0),
            "--target",
            &target.url(),
            "--allow-nonempty-target",
            "--verify",
            "none",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", common::text(&out));
    rig.answer(&copy).await;

    let cutover = rig.next_step("cutover").await;
    assert_eq!(cutover["tail"]["phase"], "barrier", "{cutover}");
    assert!(
        cutover["tail"]["replayed"].as_u64().unwrap() > 0,
        "keys written during the snapshot are replayed: {cutover}"
    );
    // The writers slow down before they stop: the drain lasts longer than the Drain state's
    // 2 s HeartbeatSeconds, which only the tail's heartbeats keep from timing out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = writers.stop().await;
    rig.answer(&cutover).await;
    let slow = common::client(&source.plain_url(0)).await;
    for i in 0..30 {
        let mut c = slow.clone();
        let _: () = redis::cmd("SET")
            .arg(format!("late:{i}"))
            .arg(i)
            .query_async(&mut c)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    let done = rig.wait_done(&execution).await;
    let (code, output) = finish(tail);
    assert_eq!(
        done.status,
        ExecutionStatus::Succeeded,
        "{:?} {:?}\n{output}",
        done.error,
        done.cause
    );
    let result: Value = serde_json::from_str(done.output().unwrap()).unwrap();
    assert_eq!(result["tail"]["phase"], "drained", "{result}");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("tail ready"), "{output}");
    assert!(!output.contains(MARKER), "the password leaked:\n{output}");
    assert!(written > 100, "the writers wrote {written}");
    common::assert_servers_same(&source.plain_url(0), &target.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_off_fail_the_start_token_with_notifications_disabled() {
    let rig = rig().await;
    let source = Server::with(Config {
        password: Some(MARKER.into()),
        ..Config::default()
    });
    let target = Server::start();
    let execution = rig
        .start("off-1", migration(&rig, &source, &target).await)
        .await;
    let start = rig.next_step("start").await;
    let (code, output) = finish(rig.launch_tail(&start));
    let done = rig.wait_done(&execution).await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{output}");
    assert_eq!(
        done.error.as_deref(),
        Some("NotificationsDisabled"),
        "{done:?}"
    );
    assert_eq!(code, 1, "{output}");
    assert!(!output.contains(MARKER), "the password leaked:\n{output}");
    assert_eq!(target.cmd(&["DBSIZE"]), ":0", "nothing written");
}

/// The execution fails while the tail runs (here a CopyShard failure): the tail sees its
/// execution has ended and stops by itself. (moto keeps a StopExecution'd execution RUNNING
/// while a task token is outstanding, so an abort cannot be shown here; the tail checks the
/// same status either way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_execution_stops_the_tail() {
    let rig = rig().await;
    let (source, target) = (source(), Server::start());
    let execution = rig
        .start("fail-1", migration(&rig, &source, &target).await)
        .await;
    let start = rig.next_step("start").await;
    let tail = rig.launch_tail(&start);
    let copy = rig.next_step("copy").await;
    rig.aws
        .sfn
        .send_task_failure()
        .task_token(copy["task_token"].as_str().unwrap())
        .error("TargetOutOfMemory")
        .cause("the target ran out of memory")
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    let (code, output) = finish(tail);
    assert_eq!(code, 0, "{output}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped within a few polls"
    );
    assert!(output.contains("the execution has ended"), "{output}");
    let done = rig.wait_done(&execution).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
}

/// AWS failing every call for longer than the SDK's own retries (500 InternalFailure on SQS and
/// Step Functions for 8 s, through a proxy in the rig) does not end the tail: it retries with
/// backoff, then answers the barrier and the drain, and the execution succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_errors_do_not_kill_the_tail() {
    let rig = rig().await;
    let (source, target) = (source(), Server::start());
    let proxy = rig::FaultProxy::start(rig.moto_port);
    let execution = rig
        .start("faults-1", migration(&rig, &source, &target).await)
        .await;
    let start = rig.next_step("start").await;
    let tail = rig.launch_tail_via(&start, &proxy.url());
    let copy = rig.next_step("copy").await;
    proxy.fail_for(Duration::from_secs(8));
    tokio::time::sleep(Duration::from_millis(8500)).await;
    assert!(
        proxy.failed.load(std::sync::atomic::Ordering::Relaxed) > 3,
        "AWS calls failed"
    );
    source.cmd(&["SET", "after:outage", "1"]);
    rig.answer(&copy).await;
    let cutover = rig.next_step("cutover").await;
    rig.answer(&cutover).await;
    let done = rig.wait_done(&execution).await;
    let (code, output) = finish(tail);
    assert_eq!(
        done.status,
        ExecutionStatus::Succeeded,
        "{:?}\n{output}",
        done.cause
    );
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("AWS call failed; retrying"), "{output}");
    assert_eq!(target.cmd(&["GET", "after:outage"]), "1");
}
