//! The real `statemachine/migration.asl.json`, run end to end by aws-local-stepfunctions
//! (`tests/sfn/run.mjs`) with every Lambda task sent to `cargo lambda watch`, which runs
//! ferry's real step binaries against real redis-servers, with credentials in moto's Secrets
//! Manager. The waitForTaskToken tasks (the Fargate tail's ready/barrier/drain answers and the
//! operator's cutover) are answered by stand-ins in the runner, which count the calls.

mod common;

use std::process::Command;
use std::time::Duration;

use ferry_engine::copy;
use ferry_engine::prepare;
use ferry_engine::verify;
use rig::{Config, LambdaWatch, Moto, Server};
use serde_json::{json, Value};

const MARKER: &str = "MARKER-sfn-5e2b";

/// Where the runner finds AWS: moto (the plan bucket's S3) and the port it serves the Map Run
/// APIs on (the Lambdas' `AWS_ENDPOINT_URL_SFN`).
struct Aws {
    moto: String,
    sfn_port: u16,
}

/// The plan bucket every run here uses (the stack's `PlanBucket`).
const PLAN_BUCKET: &str = "ferry-plans";

/// Runs the state machine on `input`; returns the runner's `{status, output|error, cause,
/// calls, largest_state_bytes, largest_child_state_bytes}`.
fn run(watch: &LambdaWatch, aws: &Aws, input: &Value) -> Value {
    run_with(&watch.url(), aws, input, &[])
}

/// [`run`] with the runner's extra arguments (`--stubs FILE`).
fn run_with(lambda_url: &str, aws: &Aws, input: &Value, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.json");
    std::fs::write(&file, input.to_string()).unwrap();
    let sfn = format!("{}/tests/sfn", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&format!("{sfn}/node_modules/aws-local-stepfunctions")).exists(),
        "aws-local-stepfunctions is missing: run scripts/setup.sh (npm ci in tests/sfn)"
    );
    let out = Command::new("node")
        .current_dir(&sfn)
        .args(["run.mjs", file.to_str().unwrap(), lambda_url])
        .args(["--aws", &aws.moto, "--sfn-port", &aws.sfn_port.to_string()])
        .args(extra)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains(MARKER) && !stderr.contains(MARKER),
        "a secret leaked: {stdout} {stderr}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("runner output: {stdout}\n{stderr}"))
}

fn calls(result: &Value, state: &str) -> u64 {
    result["calls"][state].as_u64().unwrap_or(0)
}

fn input(mode: &str, source: &Server, target: &Server, secret: &str) -> Value {
    json!({
        "migration_id": "sfn-test",
        "mode": mode,
        "source": { "endpoint": format!("redis://127.0.0.1:{}", source.port), "secret_arn": secret },
        "target": { "endpoint": format!("redis://127.0.0.1:{}", target.port) },
        "options": { "shards_per_db": 4, "max_concurrency": 4, "workers": 2 },
    })
}

/// Starts a Lua script that keeps the server busy (BUSY replies) for about `ms` milliseconds
/// (the server's password is `MARKER`).
fn keep_busy(server: &Server, ms: u64) -> std::thread::JoinHandle<()> {
    let port = server.port;
    let script = format!(
        "local t=redis.call('TIME') local s=t[1]*1000000+t[2] while true do local n=redis.call('TIME') if n[1]*1000000+n[2]-s > {} then break end end return 1",
        ms * 1000
    );
    let handle = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{MARKER}\r\n", MARKER.len());
        let eval = format!(
            "*3\r\n$4\r\nEVAL\r\n${}\r\n{script}\r\n$1\r\n0\r\n",
            script.len()
        );
        s.write_all(auth.as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"+OK\r\n");
        s.write_all(eval.as_bytes()).unwrap();
        let _ = s.read(&mut buf);
    });
    std::thread::sleep(Duration::from_millis(100));
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_machine_runs_every_mode_retries_and_fails_cleanly() {
    let moto = Moto::start();
    let aws = Aws {
        moto: moto.url(),
        sfn_port: rig::free_port(),
    };
    let aws_env = vec![
        ("AWS_ENDPOINT_URL", moto.url()),
        (
            "AWS_ENDPOINT_URL_SFN",
            format!("http://127.0.0.1:{}", aws.sfn_port),
        ),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("FERRY_PLAN_BUCKET", PLAN_BUCKET.to_string()),
    ];
    let watch = LambdaWatch::start(&aws_env);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "test", "test", None, None, "t",
        ))
        .load()
        .await;
    let steps_aws = ferry_steps::Aws::from_config(&config);
    let s3 = &steps_aws.s3;
    s3.create_bucket().bucket(PLAN_BUCKET).send().await.unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let arn = secrets
        .create_secret()
        .name("ferry/sfn-source")
        .secret_string(json!({ "password": MARKER }).to_string())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let source = Server::with(Config {
        password: Some(MARKER.into()),
        args: ["--busy-reply-threshold", "10"].map(String::from).to_vec(),
        ..Config::default()
    });
    common::seed(&source.url(), "5000");
    source.cmd(&["SET", "sfn:probe", "source"]);

    // Snapshot: several CopyShard rounds per shard (each invocation keeps the default 30 s
    // safety margin, so it stops after one SCAN), then both verify passes.
    let target = Server::start();
    let r = run(&watch, &aws, &input("snapshot", &source, &target, &arn));
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert!(
        calls(&r, "Copy shard") > 4,
        "CopyShard looped from its checkpoints: {r}"
    );
    assert!(calls(&r, "Verify shard") >= 4, "{r}");
    assert_eq!(
        calls(&r, "Start the tail") + calls(&r, "Await cutover"),
        0,
        "snapshot mode has no tail: {r}"
    );
    assert_eq!(r["output"]["backup_step"]["backup"]["ready"], true);
    common::assert_servers_same(&source.url(), &target.url()).await;

    // `verify: none` means none: no verify step runs.
    let unverified = Server::start();
    let mut none = input("snapshot", &source, &unverified, &arn);
    none["options"]["verify"] = json!("none");
    let r = run(&watch, &aws, &none);
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(
        calls(&r, "Plan verify") + calls(&r, "Verify shard"),
        0,
        "{r}"
    );
    assert!(calls(&r, "Copy shard") >= 4, "{r}");

    // A key that differs: its VerifyShard child fails with VerifyFailed; AWS fails the Map
    // with States.ExceedToleratedFailureThreshold (the harness does the same), and "Find the
    // failed shard" reads the child's error back, so the run ends with the step's own error.
    unverified.cmd(&["SET", "sfn:probe", "changed on the target"]);
    let r = run(&watch, &aws, &input("compare", &source, &unverified, &arn));
    assert_eq!(r["status"], "FAILED", "{r}");
    assert_eq!(r["error"], "VerifyFailed", "{r}");
    let cause = r["cause"].as_str().unwrap();
    assert!(cause.contains("value 1"), "the shard's cause: {r}");
    // The counts add up over rounds, the sample is one round's: no empty example (seen so).
    assert!(!cause.contains("e.g. []"), "{cause}");
    assert_eq!(calls(&r, "Find the failed shard"), 1, "{r}");
    assert_eq!(calls(&r, "Clean up after failure"), 1, "{r}");

    // Compare: only the verify runs. The input is pasted as in the console, without options:
    // the Maps' concurrency must come from the defaults (a `MaxConcurrencyPath` that does not
    // resolve is a States.Runtime failure on AWS, after the steps before it ran).
    let mut pasted = input("compare", &source, &target, &arn);
    pasted.as_object_mut().unwrap().remove("options");
    let r = run(&watch, &aws, &pasted);
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(
        calls(&r, "Copy shard") + calls(&r, "Back up the source"),
        0,
        "{r}"
    );
    assert!(calls(&r, "Verify shard") >= 4, "{r}");

    // A fatal error: the target is no longer empty → Cleanup → Fail with the step's error.
    let r = run(&watch, &aws, &input("snapshot", &source, &target, &arn));
    assert_eq!(r["status"], "FAILED", "{r}");
    assert_eq!(r["error"], "TargetNotEmpty", "{r}");
    assert!(
        r["cause"].as_str().unwrap().contains("already holds"),
        "a readable cause: {r}"
    );
    assert_eq!(calls(&r, "Clean up after failure"), 1, "{r}");
    assert_eq!(calls(&r, "Copy shard"), 0);

    // Retryable: the source answers BUSY for 2.5 s; Inventory is retried, then all goes on.
    let fresh = Server::start();
    let busy = keep_busy(&source, 2500);
    let r = run(&watch, &aws, &input("snapshot", &source, &fresh, &arn));
    busy.join().unwrap();
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert!(calls(&r, "Inventory") >= 2, "Inventory was retried: {r}");
    common::assert_servers_same(&source.url(), &fresh.url()).await;

    // Live: the tail's and the operator's tokens answered by the runner's stand-ins; the verify
    // runs once, before the cutover (after the release the application writes to the target,
    // so a verify then would compare a target that moved on with a source that stopped).
    let live_target = Server::start();
    let r = run(&watch, &aws, &input("live", &source, &live_target, &arn));
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    for state in [
        "Start the tail",
        "Barrier",
        "Tell the operator",
        "Await cutover",
        "Fence and check",
        "Await release",
        "Release",
        "Clean up",
    ] {
        assert_eq!(calls(&r, state), 1, "{state}: {r}");
    }
    assert_eq!(calls(&r, "Plan verify"), 1, "{r}");
    assert_eq!(calls(&r, "Replace the tail"), 0, "{r}");
    assert_eq!(calls(&r, "Enable notifications"), 1, "{r}");

    // The tracking channel leaves the source's configuration alone: no EnableNotifications,
    // the tail starts straight after the backup.
    let tracked_target = Server::start();
    let mut tracking = input("live", &source, &tracked_target, &arn);
    tracking["options"]["live_channel"] = json!("tracking");
    let r = run(&watch, &aws, &tracking);
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(calls(&r, "Enable notifications"), 0, "{r}");
    assert_eq!(calls(&r, "Start the tail"), 1, "{r}");
    assert_eq!(calls(&r, "Clean up"), 1, "{r}");

    // A serverless source (no parameter groups, no keyspace notifications): `auto` means client
    // tracking there, so EnableNotifications is skipped the same way. (No backup: moto has no
    // serverless snapshots; tests/elasticache_mocked.rs covers that step.)
    let serverless_target = Server::start();
    let mut serverless = input("live", &source, &serverless_target, &arn);
    serverless["source"]["serverless_cache_name"] = json!("orders");
    serverless["options"]["backup"] = json!(false);
    let r = run(&watch, &aws, &serverless);
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(calls(&r, "Enable notifications"), 0, "{r}");
    assert_eq!(calls(&r, "Start the tail"), 1, "{r}");
}

#[test]
fn the_definition_is_valid_asl_with_only_substituted_placeholders() {
    let sfn = format!("{}/tests/sfn", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(format!("{sfn}/node_modules/.bin/asl-validator"))
        .args(["--json-path", "../../statemachine/migration.asl.json"])
        .current_dir(&sfn)
        .output()
        .expect("asl-validator is missing: run scripts/setup.sh (npm ci in tests/sfn)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(format!(
        "{}/statemachine/migration.asl.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let placeholders: std::collections::BTreeSet<&str> = text
        .match_indices("${")
        .map(|(i, _)| &text[i + 2..i + 2 + text[i + 2..].find('}').unwrap()])
        .collect();
    let expected = [
        "BackupFunctionArn",
        "BackupStatusFunctionArn",
        "CleanupFunctionArn",
        "ControlQueueUrl",
        "CopyShardFunctionArn",
        "CutoverTopicArn",
        "EnableNotificationsFunctionArn",
        "InventoryFunctionArn",
        "NotificationsStatusFunctionArn",
        "PlanFunctionArn",
        "PlanVerifyFunctionArn",
        "SecurityGroupIds",
        "SubnetIds",
        "TailClusterArn",
        "TailTaskDefinitionArn",
        "VerifyShardFunctionArn",
    ];
    assert_eq!(placeholders.into_iter().collect::<Vec<_>>(), expected);
}

/// Every Lambda task retries the transient Lambda errors AWS's best practice names
/// (https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html) and a
/// function that timed out (`Sandbox.Timedout`): each step resumes from its checkpoint.
/// AWS's own language service (npm `amazon-states-language-service`), stricter than
/// asl-validator: it rejects unknown fields, dangling transitions and unreachable states. Seen
/// failing on a copy of the definition with a misspelt Retry field.
#[test]
fn the_definition_passes_aws_language_service() {
    let sfn = format!("{}/tests/sfn", env!("CARGO_MANIFEST_DIR"));
    let check = |file: &str| {
        let out = Command::new("node")
            .args(["check-asl.mjs", file])
            .current_dir(&sfn)
            .output()
            .expect("node");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let definition = format!(
        "{}/statemachine/migration.asl.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let clean = check(&definition);
    assert!(clean.ends_with("{\"diagnostics\":0}\n"), "{clean}");
    // The check can fail: a misspelt Retry field is a finding.
    let mut broken: Value =
        serde_json::from_str(&std::fs::read_to_string(&definition).unwrap()).unwrap();
    broken["States"]["Plan"]["Retry"][0]["MaxAttempt"] = json!(3);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.asl.json");
    std::fs::write(&file, broken.to_string()).unwrap();
    let found = check(file.to_str().unwrap());
    assert!(found.contains("not supported"), "{found}");
}

#[test]
fn every_lambda_task_retries_what_aws_recommends() {
    let definition = common::aws::asl_definition(&[]);
    let mut tasks = Vec::new();
    fn visit<'a>(states: &'a serde_json::Value, tasks: &mut Vec<(&'a str, &'a serde_json::Value)>) {
        for (name, state) in states.as_object().unwrap() {
            if state["Resource"] == "arn:aws:states:::lambda:invoke" {
                tasks.push((name.as_str(), state));
            }
            if let Some(inner) = state.get("ItemProcessor") {
                visit(&inner["States"], tasks);
            }
        }
    }
    visit(&definition["States"], &mut tasks);
    assert!(tasks.len() >= 10, "{}", tasks.len());
    for (name, state) in tasks {
        let retried: Vec<&str> = state["Retry"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no Retry"))
            .iter()
            .flat_map(|r| r["ErrorEquals"].as_array().unwrap())
            .filter_map(|e| e.as_str())
            .collect();
        for error in [
            "Lambda.ClientExecutionTimeoutException",
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
            "Sandbox.Timedout",
            "Retryable",
        ] {
            assert!(retried.contains(&error), "{name} does not retry {error}");
        }
    }
}

/// Issue 14: the execution's state stays small however many shards there are. A Valkey 9
/// cluster of 500 primaries with 16 dbs and 16 shards per db: the real Plan code plans it and
/// the real plan store writes it to (moto's) S3, and the real definition runs over it, with
/// every Lambda answered by a stand-in of its contract's shape (Inventory, Backup, Cleanup) or
/// echoing its shard (CopyShard, VerifyShard; the verify plan is the forward shards twice, the
/// reverse pass's share). The runner measures every state's input and output, in the parent
/// and in the children, and enforces the 256 KiB limit. Each Map reads all 128,000 (256,000)
/// items from S3 and runs 200 children: the children are alike (a run of all 128,000 copy
/// children measured the same largest states), and running them all takes over ten minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_primary_cluster_with_16_dbs_keeps_the_state_under_64_kib() {
    use ferry_engine::inventory::{NodeShare, Product, ReplicationRole, ServerInfo, ServerMode};
    use ferry_engine::model::migration::Method;
    use ferry_engine::net::info::DbStats;
    use ferry_engine::net::topology::Primary;
    use ferry_engine::NodeAddr;
    use ferry_steps::contracts::{BackupOutput, CleanupOutput, InventoryOutput, MigrationInput};
    use ferry_steps::handlers::{VerifyItem, VerifyPass};

    let moto = Moto::start();
    let aws = Aws {
        moto: moto.url(),
        sfn_port: rig::free_port(),
    };
    let steps = common::aws::moto_aws(&moto).await;
    steps
        .s3
        .create_bucket()
        .bucket(PLAN_BUCKET)
        .send()
        .await
        .unwrap();

    let (primaries, dbs, shards_per_db) = (500u16, 16u32, 16u32);
    let slots_each = 16384 / primaries;
    let nodes = (0..primaries)
        .map(|i| NodeShare {
            primary: Primary {
                node: NodeAddr::new(
                    format!("ferry-source-{i:04}.abcdef.clustercfg.euw1.cache.amazonaws.com"),
                    6379,
                ),
                slots: vec![(
                    i * slots_each,
                    if i == primaries - 1 {
                        16383
                    } else {
                        (i + 1) * slots_each - 1
                    },
                )],
                replicas: Vec::new(),
            },
            dbs: (0..dbs)
                .map(|db| {
                    (
                        db,
                        DbStats {
                            keys: 2_000_000,
                            expires: 1_000_000,
                            field_ttl_keys: 10,
                        },
                    )
                })
                .collect(),
            replica: Some(NodeAddr::new(
                format!("ferry-source-{i:04}-002.abcdef.cache.amazonaws.com"),
                6379,
            )),
            run_id: String::new(),
        })
        .collect();
    let source = ServerInfo {
        addr: "ferry-source.abcdef.clustercfg.euw1.cache.amazonaws.com:6379".into(),
        product: Product::Valkey,
        version: "9.0.0".into(),
        mode: ServerMode::Cluster,
        run_id: String::new(),
        rdb_version: 80,
        dbs: (0..dbs)
            .map(|db| {
                (
                    db,
                    DbStats {
                        keys: 1_000_000_000,
                        expires: 0,
                        field_ttl_keys: 0,
                    },
                )
            })
            .collect(),
        used_memory: 500 << 30,
        maxmemory: 0,
        maxmemory_policy: "noeviction".into(),
        notify_keyspace_events: None,
        databases: Some(16),
        role: ReplicationRole::Primary,
        maxclients: Some(65000),
        modules: vec![],
        connected_clients: 20_000,
        nodes,
    };
    let endpoint = |role, url: &str| ferry_engine::Endpoint::parse(role, url).unwrap();
    let mut m = ferry_engine::model::migration::Migration::new(
        endpoint(ferry_engine::Role::Source, "rediss://127.0.0.1:6379"),
        endpoint(ferry_engine::Role::Target, "rediss://127.0.0.1:6380"),
    );
    m.shards_per_db = shards_per_db;
    let shards = prepare::plan_copy_shards(&m, &source);
    assert!(shards.len() >= 500 * 16 * 16, "{} shards", shards.len());
    let copy = ferry_steps::plans::store(&steps, PLAN_BUCKET, "big", "copy", &shards)
        .await
        .unwrap();
    let items: Vec<VerifyItem> = [VerifyPass::Forward, VerifyPass::Reverse]
        .iter()
        .flat_map(|pass| {
            shards.iter().map(|shard| VerifyItem {
                shard: shard.clone(),
                pass: *pass,
            })
        })
        .collect();
    let verify = ferry_steps::plans::store(&steps, PLAN_BUCKET, "big", "verify", &items)
        .await
        .unwrap();

    let input = json!({
        "migration_id": "big",
        "mode": "snapshot",
        "source": {
            "endpoint": "rediss://ferry-source.abcdef.clustercfg.euw1.cache.amazonaws.com:6379",
            "replication_group_id": "ferry-source",
            "secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ferry/source-AbCdEf",
        },
        "target": {
            "endpoint": "rediss://redis-12345.c1.eu-west-1-2.ec2.cloud.redislabs.com:12345",
            "secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ferry/target-AbCdEf",
        },
        "options": { "shards_per_db": shards_per_db, "max_concurrency": 1000 },
    });
    MigrationInput::from_json(input.clone()).unwrap();
    let inventory = InventoryOutput {
        source: "valkey 9.0.0 (cluster, 500 primaries, RDB 80)".into(),
        target: "redis 8.2.3 (standalone, RDB 12)".into(),
        source_keys: 16_000_000_000,
        copy_method: Method::Struct,
        notes: vec!["the target is Redis: hash-field TTLs are carried by HPEXPIREAT".into(); 20],
        max_concurrency: 1000,
        verify: Default::default(),
        live_channel: Default::default(),
    };
    let backup = BackupOutput {
        snapshot_name: Some("ferry-big-20261130t120000".into()),
        status: Some("available".into()),
        ready: true,
        ..Default::default()
    };
    let stubs = json!({
        "ferry-inventory": inventory,
        "ferry-backup": backup,
        "ferry-plan": copy,
        "ferry-plan-verify": verify,
        "ferry-copy-shard": { "echo_shard": { "counts": copy::Counts::default() } },
        "ferry-verify-shard": { "echo_shard": {
            "shard_id": "x", "counts": verify::StatusCounts::default(), "sample": [], "ok": true } },
        "ferry-cleanup": CleanupOutput { restored: vec![] },
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stubs.json");
    std::fs::write(&file, stubs.to_string()).unwrap();
    // Every child is alike: each Map reads all its items and runs the first 200 children.
    let extra = ["--stubs", file.to_str().unwrap(), "--map-items", "200"];
    let r = run_with("http://127.0.0.1:9", &aws, &input, &extra);
    assert_eq!(
        r["status"],
        "SUCCEEDED",
        "{}",
        &r.to_string()[..2000.min(r.to_string().len())]
    );
    assert_eq!(
        r["maps"]["Copy shards"]["items"],
        shards.len(),
        "{}",
        r["maps"]
    );
    assert_eq!(
        r["maps"]["Verify shards"]["items"],
        items.len(),
        "{}",
        r["maps"]
    );
    assert_eq!(calls(&r, "Copy shard"), 200);
    assert_eq!(calls(&r, "Verify shard"), 200);
    let (parent, child) = (
        r["largest_state_bytes"].as_u64().unwrap(),
        r["largest_child_state_bytes"].as_u64().unwrap(),
    );
    eprintln!(
        "{} shards: largest state {parent} bytes ({}), largest child state {child} bytes",
        shards.len(),
        r["largest_state"]
    );
    assert!(parent < 64 * 1024, "{parent}");
    assert!(child < 64 * 1024, "{child}");
}
