//! The Fargate tail (`ferry tail --from-state-machine`) steered by a state machine that moto
//! really executes: SQS control messages carrying task tokens, SendTaskSuccess /
//! SendTaskFailure / SendTaskHeartbeat answered by the real binary. The Barrier and Drain states
//! are taken verbatim from `statemachine/migration.asl.json`; moto cannot run ECS tasks, so the
//! test plays ECS: it reads the StartTail stand-in's token and starts the process with the
//! environment the real state's container overrides set.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use common::live::App;
use common::process::Watched;
use ferry_steps::contracts::TailAnswer;
use ferry_steps::cutover::Progress;
use ferry_steps::Aws;
use rig::{Config, Moto, Server};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

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

/// A state of the real definition with the stack's names filled in, `heartbeat` (if any) as
/// its HeartbeatSeconds, and its own Catch list, where "Clean up after failure" becomes the
/// test's `Failed`. moto names a missed heartbeat `States.Timeout` where AWS raises
/// `States.HeartbeatTimeout` (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html),
/// so each catch of the latter also matches the former here, and only here.
fn real(fill: &[(&str, &str)], name: &str, heartbeat: Option<u64>) -> Value {
    let mut state = common::aws::asl_definition(fill)["States"][name].clone();
    let o = state
        .as_object_mut()
        .unwrap_or_else(|| panic!("no state {name}"));
    o.remove("Retry");
    if let Some(secs) = heartbeat {
        o.insert("HeartbeatSeconds".into(), json!(secs));
    }
    if o.get("Next") == Some(&json!("Clean up after failure")) {
        o.insert("Next".into(), json!("Failed"));
    }
    for catch in o
        .get_mut("Catch")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if catch["Next"] == "Clean up after failure" {
            catch["Next"] = json!("Failed");
        }
        let errors = catch["ErrorEquals"].as_array_mut().unwrap();
        if errors.contains(&json!("States.HeartbeatTimeout")) {
            errors.push(json!("States.Timeout"));
        }
    }
    state
}

/// The live part of the migration as the real definition has it, from the tail's start to
/// the release: the Lambda steps in between (copy, verify) and the ECS starts are stand-ins
/// the test answers; every state that talks to the tail or the operator is the real one,
/// with short heartbeats, and so are the replacement path's Pass and Choice states.
fn with_next(mut state: Value, next: &str) -> Value {
    state["Next"] = json!(next);
    state
}

fn definition(control: &str, topic: &str, test: &str) -> Value {
    let fill = [("ControlQueueUrl", control), ("CutoverTopicArn", topic)];
    let f = &fill[..];
    let mut replace = stand_in(
        test,
        json!({ "step": "replace", "migration.$": "States.JsonToString($.migration)", "execution.$": "$$.Execution.Id" }),
        "Resume after the replacement",
    );
    replace["ResultPath"] = json!("$.tail");
    json!({
        "StartAt": "Start",
        "States": {
            "Start": common::aws::asl_state("Start", f, "Start the tail"),
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
            "Barrier": with_next(real(f, "Barrier", Some(20)), "Verify shards"),
            "Verify shards": stand_in(test, json!({ "step": "verify", "tail.$": "$.tail" }), "Tell the operator"),
            "Tell the operator": real(f, "Tell the operator", None),
            "Await cutover": real(f, "Await cutover", Some(6)),
            "Fence and check": real(f, "Fence and check", Some(20)),
            "Cutover refused": real(f, "Cutover refused", None),
            "Await release": real(f, "Await release", Some(6)),
            "Release": with_next(real(f, "Release", Some(20)), "Migrated"),
            "Tail lost at the barrier": real(f, "Tail lost at the barrier", None),
            "Tail lost during the cutover": real(f, "Tail lost during the cutover", None),
            "Tell the operator the tail was lost": real(f, "Tell the operator the tail was lost", None),
            "Replaced too often?": real(f, "Replaced too often?", None),
            "Tail keeps stopping": real(f, "Tail keeps stopping", None),
            "Replace the tail": replace,
            "Resume after the replacement": real(f, "Resume after the replacement", None),
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

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ferry-cutover";

async fn rig() -> Rig {
    let moto = Moto::start();
    moto.run_state_machines();
    let aws = common::aws::moto_aws(&moto).await;
    let control = queue(&aws, "ferry-control").await;
    let test = queue(&aws, "test-steps").await;
    // The cutover topic (the SDK clients here have no SNS; CloudFormation on moto makes it).
    let topic = json!({ "Resources": { "Topic": { "Type": "AWS::SNS::Topic", "Properties": { "TopicName": "ferry-cutover" } } } });
    aws.cloudformation
        .create_stack()
        .stack_name("ferry-topic")
        .template_body(topic.to_string())
        .send()
        .await
        .unwrap();
    let machine = aws
        .sfn
        .create_state_machine()
        .name("ferry-live")
        .definition(definition(&control, TOPIC, &test).to_string())
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
            .input(migration.to_string())
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
    fn launch_tail(&self, start: &Value) -> Watched {
        self.launch_tail_via(start, &self.moto_url)
    }

    /// What ECS would do for the real "Replace the tail" state.
    fn launch_replacement(&self, replace: &Value) -> Watched {
        self.launch(replace, &self.moto_url, true)
    }

    /// Whether the execution enters `state` for the `nth` time (1-based) within 60 s.
    async fn wait_for_state(&self, execution: &str, state: &str, nth: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let events = self
                .aws
                .sfn
                .get_execution_history()
                .execution_arn(execution)
                .max_results(1000)
                .send()
                .await
                .unwrap()
                .events;
            let entered = events
                .iter()
                .filter_map(|e| e.state_entered_event_details())
                .filter(|d| d.name == state)
                .count();
            if entered >= nth {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    }

    /// The execution's history, one line per event: its type, the state entered and any
    /// error, to read when a test fails.
    async fn history(&self, execution: &str) -> String {
        let history = self
            .aws
            .sfn
            .get_execution_history()
            .execution_arn(execution);
        let events = history.max_results(1000).send().await.unwrap().events;
        let line = |e: &aws_sdk_sfn::types::HistoryEvent| {
            let state = e.state_entered_event_details().map(|d| d.name.as_str());
            let failed = e.task_failed_event_details();
            let timed_out = e.task_timed_out_event_details();
            let error = failed
                .and_then(|d| d.error())
                .or(timed_out.and_then(|d| d.error()));
            let seconds = (e.timestamp.secs(), e.timestamp.subsec_nanos() / 1_000_000);
            format!(
                "{}.{:03} {:?} {state:?} {error:?}",
                seconds.0, seconds.1, e.r#type
            )
        };
        events.iter().map(line).collect::<Vec<_>>().join("\n")
    }

    /// Like [`Rig::launch_tail`], with the tail's AWS calls sent to `endpoint`.
    fn launch_tail_via(&self, start: &Value, endpoint: &str) -> Watched {
        self.launch(start, endpoint, false)
    }

    fn launch(&self, start: &Value, endpoint: &str, replaces: bool) -> Watched {
        let mut tail = Command::new(rig::ferry_bin());
        tail.args(["tail", "--from-state-machine", "--log-json", "-v"])
            .env("FERRY_TASK_TOKEN", start["task_token"].as_str().unwrap())
            .env("FERRY_MIGRATION", start["migration"].as_str().unwrap())
            .env("FERRY_EXECUTION", start["execution"].as_str().unwrap())
            .env("FERRY_CONTROL_QUEUE_URL", &self.control)
            .env("FERRY_POLL_SECS", "1")
            .env("FERRY_HEARTBEAT_SECS", "0.5")
            .env("FERRY_DRAIN_QUIET_SECS", "1")
            .env("FERRY_REPLACES", if replaces { "true" } else { "" })
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
        Watched::spawn(tail)
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
        "options": { "workers": 2, "fence_secs": 10, "watch_secs": 2 },
    })
}

/// Waits for the tail to exit: its exit code and everything it printed.
async fn finish(tail: Watched) -> (i32, String) {
    tail.finish_within(Duration::from_secs(120)).await
}

/// The operator's `ferry cutover`, then `ferry cutover --release`, as the library runs them.
async fn operator(rig: &Rig, execution: &str, release: bool) -> Progress {
    let wait = Duration::from_secs(60);
    let progress = match release {
        false => ferry_steps::cutover::cutover(&rig.aws, execution, false, wait).await,
        true => ferry_steps::cutover::release(&rig.aws, execution, wait).await,
    };
    match progress {
        Ok(Some(p)) => p,
        Ok(None) => panic!(
            "the tail did not answer within the wait; the execution so far:\n{}",
            rig.history(execution).await
        ),
        Err(e) => panic!(
            "{e}; the execution so far:\n{}",
            rig.history(execution).await
        ),
    }
}

fn answered(p: Progress) -> TailAnswer {
    match p {
        Progress::Answered(a) => *a,
        Progress::Refused(why) => panic!("refused: {why}"),
    }
}

impl Rig {
    /// Starts execution `name` of `input` and, playing ECS, its tail.
    async fn start_with_tail(&self, name: &str, input: Value) -> (String, Watched) {
        let execution = self.start(name, input).await;
        let start = self.next_step("start").await;
        (execution, self.launch_tail(&start))
    }

    /// Waits for the execution to end, which must be a success, and for the tail process:
    /// the execution's output, the tail's exit code and everything it printed.
    async fn succeeded(&self, execution: &str, tail: Watched) -> (Value, i32, String) {
        let done = self.wait_done(execution).await;
        let (code, output) = finish(tail).await;
        assert_eq!(
            done.status,
            ExecutionStatus::Succeeded,
            "{:?} {:?}\n{output}",
            done.error,
            done.cause
        );
        let result = serde_json::from_str(done.output().unwrap()).unwrap();
        (result, code, output)
    }

    /// Plays the Lambda steps up to the cutover: the copy (a real snapshot of `source`), then
    /// the verify. Returns the verify step's message (it carries the barrier's answer).
    async fn copy_and_verify(&self, source: &Server, target: &Server) -> Value {
        let copy = self.next_step("copy").await;
        snapshot(source, target);
        self.answer(&copy).await;
        let verify = self.next_step("verify").await;
        self.answer(&verify).await;
        verify
    }
}

/// A copy of the source by `ferry replicate --mode snapshot` (what the Copy shards Map does).
fn snapshot(source: &Server, target: &Server) {
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
}

/// Issue 12 on AWS: the whole protocol through the real states with an application writing
/// to the source throughout. The tail heartbeats "Await cutover" past its 6 s
/// HeartbeatSeconds; `ferry cutover` gets the fenced, checked target; the application's write
/// in flight is held, lands after the release and is reported as a straggler with its client;
/// the execution succeeds with the cutover report and the target equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cutover_fences_checks_releases_and_reports_stragglers() {
    aws_cutover(&source(), "keyspace", |_| {}).await;
}

/// The same with the tail logging in to the source with IAM tokens (`source.iam` in the input,
/// no secret), signed with its role's credentials (here the environment's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_tail_logs_in_to_an_iam_source() {
    let source = source();
    aws_cutover(&source, "keyspace", |input| {
        let auth =
            json!({ "user_id": "ferry-tail", "cache_name": "my-group", "region": "us-east-1" });
        let parsed = serde_json::from_value(auth.clone()).unwrap();
        common::iam_user(&source, &parsed, ("test", "test"), 300);
        input["source"]
            .as_object_mut()
            .unwrap()
            .remove("secret_arn");
        input["source"]["iam"] = auth;
    })
    .await;
}

/// An ElastiCache Serverless source (a standalone server stands in for its data plane): `auto`
/// means client tracking there, decided from the input, so the tail needs no probe and the
/// state machine no EnableNotifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_tail_follows_a_serverless_source_by_client_tracking() {
    let source = source();
    aws_cutover(&source, "tracking", |input| {
        input["source"]["serverless_cache_name"] = json!("orders");
    })
    .await;
}

/// The same migration from a source whose notify-keyspace-events is off and stays off: `auto`
/// runs the real tail on client tracking, through the same cutover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cutover_on_the_tracking_channel_changes_nothing_on_the_source() {
    let source = Server::with(Config {
        password: Some(MARKER.into()),
        ..Config::default()
    });
    aws_cutover(&source, "tracking", |_| {}).await;
    assert_eq!(
        source.cmd(&["CONFIG", "GET", "notify-keyspace-events"]),
        "notify-keyspace-events\n"
    );
}

/// A live run through the real state machine and tail, on `channel`: snapshot, barrier, a
/// fenced check, the application's switch, the release and its stragglers; `adapt` changes the
/// execution input first.
async fn aws_cutover(source: &Server, channel: &str, adapt: impl FnOnce(&mut Value)) {
    let rig = rig().await;
    let target = Server::start();
    let app = App::start(&source.plain_url(0));
    let mut input = migration(&rig, source, &target).await;
    adapt(&mut input);
    let (execution, tail) = rig.start_with_tail(&format!("live-{channel}"), input).await;
    let verify = rig.copy_and_verify(source, &target).await;
    assert_eq!(verify["tail"]["phase"], "barrier", "{verify}");
    assert_eq!(verify["tail"]["report"]["channel"], channel, "{verify}");
    assert!(
        verify["tail"]["replayed"].as_u64().unwrap() > 0,
        "keys written during the snapshot are replayed: {verify}"
    );
    // Longer than Await cutover's HeartbeatSeconds: only the tail's heartbeats keep it open.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let fenced = answered(operator(&rig, &execution, false).await);
    assert_eq!(fenced.phase, "fenced");
    let c = fenced.cutover.clone().unwrap();
    assert_eq!(c.fence, "client pause", "{c:?}");
    assert!(c.checked_keys > 0, "{c:?}");
    assert_eq!(c.check.differences(), 0, "{c:?}");
    let written = app.written.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.written.load(Ordering::SeqCst),
        written,
        "writes are held"
    );
    app.switch.store(true, Ordering::SeqCst);

    let released = answered(operator(&rig, &execution, true).await);
    let c = released.cutover.clone().unwrap();
    assert!(c.fence_ms > 0 && c.fence_ms < 10_000, "{c:?}");
    assert!(c.stragglers >= 1, "{c:?}");
    let app_port = format!(":{}", app.local_port);
    assert!(
        c.source_clients
            .iter()
            .any(|cl| cl.name == "app" && cl.addr.ends_with(&app_port)),
        "the application's old connection is named: {c:?}"
    );
    let (result, code, output) = rig.succeeded(&execution, tail).await;
    assert_eq!(result["tail"]["phase"], "released", "{result}");
    assert_eq!(
        result["tail"]["cutover"]["stragglers"].as_u64(),
        Some(c.stragglers),
        "{result}"
    );
    assert_eq!(code, 0, "{output}");
    assert!(!output.contains(MARKER), "the password leaked:\n{output}");
    assert!(
        !output.contains("X-Amz-Signature"),
        "a token leaked:\n{output}"
    );
    let straggler = app.last.lock().unwrap().clone().unwrap();
    assert_eq!(
        target.cmd(&["EXISTS", &straggler]),
        ":1",
        "the held write was copied"
    );
    common::assert_servers_same(&source.plain_url(0), &target.url()).await;
}

/// Issue 12 item 2: the tail killed (SIGKILL) while the run waits for the operator. Its
/// heartbeat stops, "Await cutover" times out, and the real replacement path runs: the count,
/// the limit check, a new task started with `FERRY_REPLACES` (the test plays ECS), which heals
/// the writes made while no tail followed before it answers, and the operator is asked again.
/// That replacement is then retired (SIGTERM) and hands over at once. The cutover then goes
/// through and the target equals the source, deletes included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tail_is_replaced_heals_and_the_run_ends_verified() {
    let rig = rig().await;
    let (source, target) = (source(), Server::start());
    for i in 0..200 {
        source.cmd(&["SET", &format!("before:{i}"), &i.to_string()]);
    }
    let input = migration(&rig, &source, &target).await;
    let (execution, mut tail) = rig.start_with_tail("lost-1", input).await;
    rig.copy_and_verify(&source, &target).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    tail.kill();
    // Written while no tail follows: only a heal can carry these.
    for i in 0..100 {
        source.cmd(&["SET", &format!("unseen:{i}"), &i.to_string()]);
        source.cmd(&["DEL", &format!("before:{i}")]);
    }
    let replace = rig.next_step("replace").await;
    let retired = rig.launch_replacement(&replace);
    let resumed = rig.wait_for_state(&execution, "Await cutover", 2).await;
    assert!(
        resumed,
        "the run went back to Await cutover after the replacement"
    );
    // Fargate retires the replacement (SIGTERM): it hands the wait over at once (TailStopped)
    // and a second replacement takes over.
    tokio::time::sleep(Duration::from_secs(1)).await;
    retired.signal("-TERM");
    let (code, output) = finish(retired).await;
    assert_eq!(code, 0, "{output}");
    let replace = rig.next_step("replace").await;
    let replacement = rig.launch_replacement(&replace);
    assert!(rig.wait_for_state(&execution, "Await cutover", 3).await);
    let history = rig
        .aws
        .sfn
        .get_execution_history()
        .execution_arn(&execution)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    assert!(
        history
            .events
            .iter()
            .filter_map(|e| e.task_failed_event_details())
            .any(|d| d.error() == Some("TailStopped")),
        "the retired tail handed over"
    );
    let fenced = answered(operator(&rig, &execution, false).await);
    assert_eq!(fenced.phase, "fenced");
    answered(operator(&rig, &execution, true).await);
    let (result, code, output) = rig.succeeded(&execution, replacement).await;
    common::assert_servers_same(&source.plain_url(0), &target.url()).await;
    assert!(
        fenced.report.heals >= 1,
        "the replacement healed: {:?}",
        fenced.report
    );
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("healed after the replacement"), "{output}");
    assert_eq!(result["replacements"]["count"], 2, "{result}");
    // Each loss was told to the operator (SNS), the alarm for a tail that stopped reporting.
    let told = "Tell the operator the tail was lost";
    assert!(rig.wait_for_state(&execution, told, 2).await, "{told}");
    assert!(result.get("notify_error").is_none(), "{result}");
}

/// A fence the operator does not release in time: the tail lifts it (writes flow to the source
/// again, and it follows them), fails "Await release" with `CutoverRefused`, and the real
/// states ask the operator again; the second cutover goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_not_released_in_time_is_refused_and_the_operator_asked_again() {
    let rig = rig().await;
    let (source, target) = (source(), Server::start());
    let mut input = migration(&rig, &source, &target).await;
    input["options"]["fence_secs"] = json!(2);
    let (execution, tail) = rig.start_with_tail("expire-1", input).await;
    rig.copy_and_verify(&source, &target).await;
    answered(operator(&rig, &execution, false).await);
    // No release: the fence expires, the cutover is refused, and the run asks again.
    assert!(rig.wait_for_state(&execution, "Cutover refused", 1).await);
    assert!(rig.wait_for_state(&execution, "Await cutover", 2).await);
    source.cmd(&["SET", "after:expiry", "1"]);
    let status = ferry_steps::executions::status(&rig.aws, &execution)
        .await
        .unwrap();
    assert!(status.awaiting_cutover, "{status:?}");
    // moto drops SendTaskFailure's cause (its responses.py passes only the error), so the
    // reason is checked in the tail's log below; on AWS `ferry status` shows it.
    assert!(status.refused.is_some(), "{status:?}");
    answered(operator(&rig, &execution, false).await);
    answered(operator(&rig, &execution, true).await);
    let (_, code, output) = rig.succeeded(&execution, tail).await;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("the fence expired before the switch was confirmed"),
        "{output}"
    );
    assert_eq!(target.cmd(&["GET", "after:expiry"]), "1");
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
    // The keyspace channel asked for by name (auto would follow client tracking instead).
    let mut input = migration(&rig, &source, &target).await;
    input["options"]["live_channel"] = json!("keyspace");
    let execution = rig.start("off-1", input).await;
    let start = rig.next_step("start").await;
    let (code, output) = finish(rig.launch_tail(&start)).await;
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
    let input = migration(&rig, &source, &target).await;
    let (execution, tail) = rig.start_with_tail("fail-1", input).await;
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
    let (code, output) = finish(tail).await;
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
    let verify = rig.next_step("verify").await;
    rig.answer(&verify).await;
    answered(operator(&rig, &execution, false).await);
    answered(operator(&rig, &execution, true).await);
    let done = rig.wait_done(&execution).await;
    let (code, output) = finish(tail).await;
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

/// Issue 14: a tail task that stops before it is ready (here: its image cannot be pulled)
/// fails StartTail at once with ECS's reason, instead of the state waiting out its heartbeat.
/// The Cleanup Lambda gets the task's STOPPED event from EventBridge (shaped as AWS documents
/// "ECS Task State Change") and fails the start token found in the task's overrides; the same
/// event again is no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_task_that_stops_before_ready_fails_start_tail_at_once() {
    use ferry_steps::after_end::{self, CleanupRequest};

    let rig = rig().await;
    let (source, target) = (source(), Server::start());
    let input = migration(&rig, &source, &target).await;
    let execution = rig.start("stopped-1", input).await;
    let start = rig.next_step("start").await;
    let event = json!({
        "version": "0", "id": "3317b2af-7005-947d-b652-f55e762e571a",
        "detail-type": "ECS Task State Change", "source": "aws.ecs",
        "account": "123456789012", "time": "2026-11-30T10:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:ecs:us-east-1:123456789012:task/ferry/0f1e2d"],
        "detail": {
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/ferry",
            "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/ferry/0f1e2d",
            "lastStatus": "STOPPED", "desiredStatus": "STOPPED", "stopCode": "TaskFailedToStart",
            "stoppedReason": "CannotPullContainerError: pull image manifest has been retried 5 time(s)",
            "containers": [{ "name": "tail", "lastStatus": "STOPPED",
                "reason": "CannotPullContainerError: ref pull has been retried 5 time(s)" }],
            "overrides": { "containerOverrides": [{ "name": "tail", "environment": [
                { "name": "FERRY_TASK_TOKEN", "value": start["task_token"] },
                { "name": "FERRY_MIGRATION", "value": start["migration"] },
                { "name": "FERRY_EXECUTION", "value": start["execution"] }] }] }
        }
    });
    let ctx = ferry_steps::Ctx {
        aws: std::sync::Arc::new(rig.aws.clone()),
        deadline: None,
    };
    let request: CleanupRequest = ferry_steps::lambda::parse(event.clone()).unwrap();
    let out = after_end::cleanup_request(ctx.clone(), request)
        .await
        .unwrap();
    let out = serde_json::to_value(out).unwrap();
    assert!(
        out["restored"][0]
            .as_str()
            .unwrap()
            .contains("CannotPullContainerError"),
        "{out}"
    );
    let done = rig.wait_done(&execution).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("TailTaskStopped"), "{done:?}");
    // Again for a token no longer open: AWS answers TaskTimedOut, which the handler takes as
    // done (moto accepts the second failure instead); either way it is no error.
    let again: CleanupRequest = ferry_steps::lambda::parse(event).unwrap();
    after_end::cleanup_request(ctx, again).await.unwrap();
}
