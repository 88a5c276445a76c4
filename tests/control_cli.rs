//! `ferry start|status|cutover|abort` against Step Functions, SQS, SNS and CloudFormation as
//! moto serves them, with moto running the executions. The state machine holds the real
//! Barrier and Await cutover states of `statemachine/migration.asl.json`; the Lambda steps
//! before them (moto cannot run Lambda code) are Pass states with outputs shaped like theirs,
//! and the test answers the Barrier token as the tail would.

mod common;

use std::time::{Duration, Instant};

use ferry_steps::Aws;
use rig::Moto;
use serde_json::{json, Value};

const STACK: &str = "ferry-test";

struct Deployed {
    moto: Moto,
    aws: Aws,
    queue: String,
}

/// moto with a stack whose `StateMachineArn` output names the test state machine, running
/// its executions.
async fn deployed() -> Deployed {
    deployed_with(true).await
}

/// Like [`deployed`]; without `run`, moto only records executions (they stay RUNNING).
async fn deployed_with(run: bool) -> Deployed {
    let moto = Moto::start();
    if run {
        moto.run_state_machines();
    }
    let aws = common::aws::moto_aws(&moto).await;
    let queue = aws
        .sqs
        .create_queue()
        .queue_name("ferry-control")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    // The stack: the cutover topic, and the output the CLI reads (the state machine's ARN,
    // which moto derives from its name, is created right after).
    let machine_name = "ferry-test-migration";
    let machine_arn = format!("arn:aws:states:us-east-1:123456789012:stateMachine:{machine_name}");
    let template = json!({
        "Resources": { "Topic": { "Type": "AWS::SNS::Topic", "Properties": { "TopicName": "ferry-cutover" } } },
        "Outputs": { "StateMachineArn": { "Value": machine_arn } }
    });
    aws.cloudformation
        .create_stack()
        .stack_name(STACK)
        .template_body(template.to_string())
        .send()
        .await
        .unwrap();
    let topic = "arn:aws:sns:us-east-1:123456789012:ferry-cutover";
    let fill = [
        ("ControlQueueUrl", queue.as_str()),
        ("CutoverTopicArn", topic),
    ];
    let definition = json!({
        "StartAt": "Start",
        "States": {
            "Start": common::aws::asl_state("Start", &fill, "Inventory"),
            // Shaped like the real Inventory's result (`$.inventory.summary`), and
            // `$.migration.migration_id` must exist, as the real step needs it: an input
            // wrapped the wrong way fails the execution here.
            "Inventory": { "Type": "Pass", "Parameters": { "summary": { "source_keys": 1000, "migration_id.$": "$.migration.migration_id" } }, "ResultPath": "$.inventory", "Next": "Plan" },
            "Plan": { "Type": "Pass", "Result": { "count": 4 }, "ResultPath": "$.plan", "Next": "Barrier" },
            "Barrier": common::aws::asl_state("Barrier", &fill, "Await cutover"),
            "Await cutover": common::aws::asl_state("Await cutover", &fill, "Fence and check"),
            "Fence and check": common::aws::asl_state("Fence and check", &fill, "Await release"),
            "Await release": common::aws::asl_state("Await release", &fill, "Release"),
            "Release": common::aws::asl_state("Release", &fill, "Migrated"),
            "Migrated": { "Type": "Succeed" }
        }
    });
    let created = aws
        .sfn
        .create_state_machine()
        .name(machine_name)
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/ferry")
        .send()
        .await
        .unwrap()
        .state_machine_arn;
    assert_eq!(created, machine_arn);
    Deployed { moto, aws, queue }
}

fn ferry(d: &Deployed, args: &[&str]) -> (i32, String, String) {
    ferry_on(&d.moto.url(), args)
}

/// `ferry args` with its AWS calls sent to moto at `url`: exit code, stdout, stderr.
fn ferry_on(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = common::ferry(
        args,
        &[
            ("AWS_ENDPOINT_URL", url),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status(d: &Deployed) -> Value {
    let (code, stdout, stderr) = ferry(d, &["status", "--stack", STACK, "--json"]);
    assert!(code == 0 || code == 1, "{stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}{stderr}"))
}

/// Takes the next control message, which must ask for `action`.
async fn control_message(d: &Deployed, action: &str) -> Value {
    let body = common::aws::next_message(&d.aws, &d.queue, Duration::from_secs(30)).await;
    assert_eq!(body["action"], action, "{body}");
    body
}

/// Answers a control message as the tail does, with `phase` and `cutover` figures.
async fn answer_as_tail(d: &Deployed, body: &Value, phase: &str, cutover: Value) {
    let mut answer = json!({ "phase": phase, "replayed": 17, "report": {
        "events": 500, "keys_copied": 480, "keys_deleted": 3, "events_per_sec": 50.0,
        "copies_per_sec": 48.0, "queue_depth": 0, "lag_p50_ms": 2.0, "lag_p99_ms": 9.5,
        "replayed": 17, "remembered_peak": 40, "remembered_bytes_now": 0, "gaps": 0,
        "heals": 0, "seconds": 10.0 } });
    if !cutover.is_null() {
        answer["cutover"] = cutover;
    }
    d.aws
        .sfn
        .send_task_success()
        .task_token(body["task_token"].as_str().unwrap())
        .output(answer.to_string())
        .send()
        .await
        .unwrap();
}

/// Answers the Barrier's control message as the tail does.
async fn answer_barrier(d: &Deployed) {
    let body = control_message(d, "barrier").await;
    answer_as_tail(d, &body, "barrier", Value::Null).await;
}

/// Runs `ferry` with `args` on a thread (it waits for the execution while the test plays the
/// tail).
fn ferry_in_background(
    d: &Deployed,
    args: &[&str],
) -> std::thread::JoinHandle<(i32, String, String)> {
    let url = d.moto.url();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ferry_on(&url, &args)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_status_cutover_and_abort_drive_a_deployed_migration() {
    let d = deployed().await;
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/execution-input.json"
    );

    let (code, stdout, stderr) = ferry(
        &d,
        &["start", "--stack", STACK, "--input", fixture, "--json"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let arn = serde_json::from_str::<Value>(&stdout).unwrap()["execution_arn"]
        .as_str()
        .unwrap()
        .to_string();

    answer_barrier(&d).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = status(&d);
    while s["awaiting_cutover"] != true && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s = status(&d);
    }
    assert_eq!(s["execution_arn"], arn.as_str());
    assert_eq!(s["status"], "RUNNING", "{s}");
    assert_eq!(s["current_state"], "Await cutover", "{s}");
    assert_eq!(s["awaiting_cutover"], true, "{s}");
    assert_eq!(s["source_keys"], 1000, "{s}");
    assert_eq!(s["shards_planned"], 4, "{s}");
    assert_eq!(s["tail"]["phase"], "barrier", "{s}");
    assert_eq!(s["tail"]["report"]["lag_p99_ms"], 9.5, "{s}");
    let (code, text, _) = ferry(&d, &["status", &arn]);
    assert_eq!(code, 0);
    assert!(
        text.contains("ferry cutover"),
        "the operator is told what to run: {text}"
    );
    assert!(text.contains("lag p99 10 ms"), "{text}");

    // `ferry cutover` answers "Await cutover" and waits until the tail has fenced and checked.
    control_message(&d, "await_cutover").await;
    let cutover = ferry_in_background(&d, &["cutover", "--stack", STACK]);
    let fence = control_message(&d, "fence").await;
    assert_eq!(
        fence["operator"],
        json!({ "writers_stopped": false }),
        "{fence}"
    );
    let fenced = json!({ "fence": "client pause", "fence_ms": 0, "checked_keys": 77, "check": { "ok": 77, "missing": 0, "extra": 0, "type": 0, "ttl": 0, "value": 0, "unverified": 0, "skipped": 0 },
        "stragglers": 0, "source_clients": [] });
    answer_as_tail(&d, &fence, "fenced", fenced).await;
    control_message(&d, "await_release").await;
    let (code, stdout, stderr) = cutover.join().unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("77 keys checked"), "{stdout}");
    assert!(
        stdout.contains("ferry cutover --release"),
        "the operator is told what comes next: {stdout}"
    );
    assert_eq!(status(&d)["awaiting_release"], true);

    // `ferry cutover --release` answers "Await release" and waits for the tail's report.
    let release = ferry_in_background(&d, &["cutover", "--release", "--stack", STACK]);
    let body = control_message(&d, "release").await;
    let released = json!({ "fence": "client pause", "fence_ms": 840, "checked_keys": 77,
        "check": { "ok": 77, "missing": 0, "extra": 0, "type": 0, "ttl": 0, "value": 0, "unverified": 0, "skipped": 0 }, "stragglers": 2, "source_clients": [
            { "node": "127.0.0.1:6379", "addr": "10.0.3.7:51234", "name": "orders", "last_command": "set" }] });
    answer_as_tail(&d, &body, "released", released).await;
    let (code, stdout, stderr) = release.join().unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("writes were held 840 ms"), "{stdout}");
    assert!(stdout.contains("10.0.3.7:51234 orders (set)"), "{stdout}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&d)["status"] != "SUCCEEDED" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(status(&d)["status"], "SUCCEEDED");
    let (code, _, stderr) = ferry(&d, &["cutover", &arn]);
    assert_eq!(code, 2, "a second cutover is refused: {stderr}");
    assert!(stderr.contains("not waiting for a cutover"), "{stderr}");

    // Bad input is refused before anything is started.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("input.json");
    let mut input: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    input["source"]["password"] = json!("MARKER-cli-9c1");
    std::fs::write(&bad, input.to_string()).unwrap();
    let (code, stdout, stderr) = ferry(
        &d,
        &["start", "--stack", STACK, "--input", bad.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("unknown field `password`"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("MARKER-cli-9c1"));
    let (code, _, stderr) = ferry(&d, &["status", "--stack", "no-such-stack"]);
    assert_eq!(code, 2, "{stderr}");
}

/// `ferry abort` stops the newest execution. (Its own moto: moto fails any second execution.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stops_the_newest_execution() {
    let d = deployed().await;
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/execution-input.json"
    );
    let waiting = d
        .aws
        .sfn
        .create_state_machine()
        .name("ferry-waiting")
        .definition(json!({ "StartAt": "Wait", "States": { "Wait": { "Type": "Wait", "Seconds": 30, "End": true } } }).to_string())
        .role_arn("arn:aws:iam::123456789012:role/ferry")
        .send()
        .await
        .unwrap()
        .state_machine_arn;
    let (code, stdout, stderr) = ferry(
        &d,
        &[
            "start",
            "--state-machine",
            &waiting,
            "--input",
            fixture,
            "--name",
            "second",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = ferry(&d, &["abort", "--state-machine", &waiting, "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let arn = serde_json::from_str::<Value>(&stdout).unwrap()["aborted"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(arn.ends_with(":ferry-waiting:second"), "{arn}");
    let s = ferry_steps::executions::status(&d.aws, &arn).await.unwrap();
    assert_eq!(s.status, "ABORTED");
}

/// `ferry start --stack STACK` with `input` written to a file in `dir`.
fn start_input(d: &Deployed, dir: &tempfile::TempDir, input: &Value) -> (i32, String, String) {
    let file = dir
        .path()
        .join(format!("{}.json", input["migration_id"].as_str().unwrap()));
    std::fs::write(&file, input.to_string()).unwrap();
    ferry(
        d,
        &["start", "--stack", STACK, "--input", file.to_str().unwrap()],
    )
}

/// Executions are named after their migration_id: the same migration cannot be started twice,
/// and with several migrations running, cutover and abort refuse to guess and take
/// `--migration ID` (moto here only records executions, so they stay RUNNING).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_are_named_after_their_migration_and_never_guessed() {
    let d = deployed_with(false).await;
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/execution-input.json"
    );
    let (code, stdout, stderr) = ferry(
        &d,
        &["start", "--stack", STACK, "--input", fixture, "--json"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(":execution:ferry-test-migration:orders-2026-11"),
        "{stdout}"
    );

    // The same migration again (other settings, same id) is refused: one id, one execution.
    // AWS (StartExecution API reference): a name already used by a closed execution, or by a
    // running one with a different input, is `ExecutionAlreadyExists`; the same name and
    // input while it runs returns that execution again (idempotent), never a second one.
    let dir = tempfile::tempdir().unwrap();
    let mut input: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    input["options"] = json!({ "verify": "quick" });
    let (code, stdout, stderr) = start_input(&d, &dir, &input);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("already exists") && stderr.contains("orders-2026-11"),
        "{stderr}"
    );

    // A second migration: now two are running, and no command guesses between them.
    input["migration_id"] = json!("invoices-2026-11");
    let (code, stdout, stderr) = start_input(&d, &dir, &input);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for command in ["cutover", "abort", "status"] {
        let (code, stdout, stderr) = ferry(&d, &[command, "--stack", STACK]);
        assert_eq!(code, 2, "{command}: {stdout}{stderr}");
        assert!(
            stderr.contains("2 executions are running") && stderr.contains("--migration"),
            "{command}: {stderr}"
        );
    }
    let (code, stdout, stderr) = ferry(
        &d,
        &[
            "abort",
            "--stack",
            STACK,
            "--migration",
            "invoices-2026-11",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(":invoices-2026-11"), "{stdout}");
    // One running again: it is the one commands act on.
    let s = status(&d);
    assert!(
        s["execution_arn"]
            .as_str()
            .unwrap()
            .ends_with(":orders-2026-11"),
        "{s}"
    );
}

/// `ferry cutover` (and `ferry status`) look the tail's Fargate task up from the StartTail
/// submission in the execution's history and ask ECS about it: a stopped task refuses the
/// cutover. Neither emulator can play this: moto's Step Functions fails the real StartTail
/// state (`States.Runtime` on `LaunchType` and `Overrides`), and its ECS answers `cpu` as a
/// number where AWS (and the SDK) have a string. So the submission event is built as AWS
/// records it, and ECS is the SDK's own test facility (aws-smithy-mocks), answering
/// DescribeTasks for exactly that cluster and task.
#[tokio::test]
async fn a_stopped_tail_task_refuses_the_cutover() {
    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::types::Task;
    use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType, TaskSubmittedEventDetails};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    const CLUSTER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/ferry-tail";
    const TASK: &str = "arn:aws:ecs:us-east-1:123456789012:task/ferry-tail/2cf787af60da";
    // The TaskSubmitted event of `ecs:runTask.waitForTaskToken`: its output is the task's
    // description (DescribeTasks' shape, capitalised).
    let output = json!({ "Tasks": [{ "TaskArn": TASK, "ClusterArn": CLUSTER,
        "LastStatus": "PROVISIONING" }], "Failures": [] });
    let events = [HistoryEvent::builder()
        .id(9)
        .timestamp(aws_sdk_sfn::primitives::DateTime::from_secs(0))
        .r#type(HistoryEventType::TaskSubmitted)
        .task_submitted_event_details(
            TaskSubmittedEventDetails::builder()
                .resource_type("ecs")
                .resource("runTask.waitForTaskToken")
                .output(output.to_string())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()];
    let answering = |status: &'static str, reason: Option<&'static str>| {
        mock!(aws_sdk_ecs::Client::describe_tasks)
            .match_requests(|r| r.cluster() == Some(CLUSTER) && r.tasks() == [TASK])
            .then_output(move || {
                let task = Task::builder()
                    .task_arn(TASK)
                    .last_status(status)
                    .set_stopped_reason(reason.map(str::to_string));
                DescribeTasksOutput::builder().tasks(task.build()).build()
            })
    };
    let with_ecs = |rule: &aws_smithy_mocks::Rule| {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Aws {
            ecs: mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &[rule]),
            ..Aws::from_config(&config)
        }
    };

    let running = answering("RUNNING", None);
    let alive = ferry_steps::executions::tail_task(&with_ecs(&running), &events)
        .await
        .unwrap()
        .unwrap();
    assert!(alive.running(), "{alive:?}");
    alive.ready_for_cutover().unwrap();
    assert_eq!(running.num_calls(), 1);

    let stopped = answering("STOPPED", Some("Task retired by Fargate"));
    let dead = ferry_steps::executions::tail_task(&with_ecs(&stopped), &events)
        .await
        .unwrap()
        .unwrap();
    let refused = dead.ready_for_cutover().unwrap_err().to_string();
    assert!(
        refused.contains("is STOPPED (Task retired by Fargate)")
            && refused.contains("Do not switch"),
        "{refused}"
    );
    // No StartTail submission (snapshot mode): nothing to ask.
    let none = ferry_steps::executions::tail_task(&with_ecs(&running), &[])
        .await
        .unwrap();
    assert!(none.is_none());
}
