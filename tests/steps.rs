//! The AWS steps, called as plain async functions (exactly what each Lambda binary runs)
//! against real redis-servers, with Secrets Manager and ElastiCache replication groups and
//! snapshots served by moto. Cache parameter groups and serverless caches, which moto does not
//! implement, are served by the SDK's own test facility (aws-smithy-mocks) with responses shaped
//! like ElastiCache's; those tests say so.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_engine::copy::Counts;
use ferry_engine::live::channel::LiveChannel;
use ferry_engine::verify::StatusCounts;
use ferry_steps::contracts::{ControlAction, ControlRequest, MigrationInput, Mode};
use ferry_steps::elasticache::{self, BackupRequest, BackupStep};
use ferry_steps::handlers::{self, ShardStep, VerifyItem, VerifyPass};
use ferry_steps::notifications::{self, NotificationsStep};
use ferry_steps::plans;
use ferry_steps::{Aws, Ctx, StepError};
use rig::{Config, Moto, Server, Version};
use serde_json::json;

/// The password the credentialed cases use; it must never appear in any output or error.
const MARKER: &str = "MARKER-s3cret-7f1d";

async fn moto_aws(moto: &Moto) -> Arc<Aws> {
    Arc::new(common::aws::moto_aws(moto).await)
}

/// The stack's plan bucket, in moto: the Plan steps write their shards there.
async fn plan_bucket(aws: &Aws) {
    let bucket = "ferry-plans";
    std::env::set_var(plans::BUCKET_ENV, bucket);
    aws.s3.create_bucket().bucket(bucket).send().await.unwrap();
}

fn ctx(aws: &Arc<Aws>, budget: Option<Duration>) -> Ctx {
    Ctx {
        aws: aws.clone(),
        deadline: budget.map(|b| Instant::now() + b),
    }
}

/// A secret in moto holding `{"password": …}`; returns its ARN.
async fn secret(aws: &Aws, name: &str, password: &str) -> String {
    let out = aws
        .secrets
        .create_secret()
        .name(name)
        .secret_string(json!({ "password": password }).to_string())
        .send()
        .await
        .expect("create secret in moto");
    out.arn().unwrap().to_string()
}

/// An execution input for two local servers.
fn input(source: &Server, target: &Server, source_secret: Option<&str>) -> MigrationInput {
    let value = json!({
        "migration_id": "test-1",
        "mode": "snapshot",
        "source": {
            "endpoint": format!("redis://127.0.0.1:{}", source.port),
            "secret_arn": source_secret,
        },
        "target": { "endpoint": format!("redis://127.0.0.1:{}", target.port) },
        "options": { "shards_per_db": 4, "safety_margin_ms": 0, "workers": 2 },
    });
    MigrationInput::from_json(value).expect("valid input")
}

fn with_password() -> Server {
    Server::with(Config {
        password: Some(MARKER.into()),
        ..Config::default()
    })
}

#[test]
fn fixtures_parse_and_bad_input_is_refused_without_echoing_it() {
    let read = |name: &str| -> serde_json::Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let execution = MigrationInput::from_json(read("execution-input.json")).unwrap();
    assert_eq!(execution.mode, Mode::Live);
    let copy: ShardStep<Counts> =
        ferry_steps::lambda::parse(read("copy-shard-input.json")).unwrap();
    assert_eq!(copy.shard.cursor, 13835058055282163712);
    let _: ShardStep<StatusCounts> =
        ferry_steps::lambda::parse(read("verify-shard-input.json")).unwrap();
    let _: BackupStep = ferry_steps::lambda::parse(read("backup-status-input.json")).unwrap();
    let _: NotificationsStep =
        ferry_steps::lambda::parse(read("notifications-step-input.json")).unwrap();
    let control: ControlRequest = ferry_steps::lambda::parse(read("control-barrier.json")).unwrap();
    assert_eq!(control.action, ControlAction::Barrier);

    let mut unknown = read("execution-input.json");
    unknown["source"]["password"] = json!(MARKER);
    let err = MigrationInput::from_json(unknown).unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(
        err.to_string().contains("unknown field `password`"),
        "{err}"
    );
    assert!(!err.to_string().contains(MARKER));

    let mut inline = read("execution-input.json");
    inline["target"]["endpoint"] = json!(format!("redis://default:{MARKER}@10.0.0.1:6379"));
    let err = MigrationInput::from_json(inline).unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(err.to_string().contains("Secrets Manager"), "{err}");
    assert!(!err.to_string().contains(MARKER));

    let mut wrong_type = read("execution-input.json");
    wrong_type["options"]["shards_per_db"] = json!(MARKER);
    let err = MigrationInput::from_json(wrong_type).unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(!err.to_string().contains(MARKER), "{err}");

    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "InvalidInput");

    // The enumerated options name what they take, at parse time, before any step runs.
    for (option, value, takes) in [
        ("copy_type", "fast", "`auto`, `dump`"),
        ("verify", "deep", "`full`, `quick`, `none`"),
        ("live_channel", "bcast", "`auto`, `keyspace`, `tracking`"),
    ] {
        let mut bad = read("execution-input.json");
        bad["options"][option] = json!(value);
        let err = MigrationInput::from_json(bad).unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        assert!(err.to_string().contains(takes), "{option}: {err}");
    }
}

/// Runs CopyShard on every shard, each invocation with a time budget of `budget`, until done;
/// returns the invocations made.
async fn copy_all(
    ctx_of: impl Fn() -> Ctx,
    m: &MigrationInput,
    shards: Vec<ferry_engine::model::plan::Shard>,
) -> (usize, Vec<String>) {
    let mut invocations = 0;
    let mut outputs = Vec::new();
    for shard in shards {
        let mut step = ShardStep {
            migration: m.clone(),
            shard,
            counts: None,
            pass: None,
        };
        loop {
            invocations += 1;
            assert!(invocations < 10_000, "CopyShard makes progress");
            let out = handlers::copy_shard(ctx_of(), step.clone())
                .await
                .expect("copy shard");
            outputs.push(serde_json::to_string(&out).unwrap());
            if out.done {
                break;
            }
            step.shard = out.shard;
            step.counts = Some(out.counts);
        }
    }
    (invocations, outputs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_cut_into_many_short_invocations_ends_verified_and_reruns_are_harmless() {
    let moto = Moto::start();
    let aws = moto_aws(&moto).await;
    let (source, target) = (with_password(), Server::start());
    common::seed(&source.url(), "20000");
    let arn = secret(&aws, "ferry/source", MARKER).await;
    let m = input(&source, &target, Some(&arn));
    let mut outputs = Vec::new();

    let inv = handlers::inventory(ctx(&aws, None), m.clone())
        .await
        .unwrap();
    assert!(inv.source_keys >= 20_000, "{inv:?}");
    outputs.push(serde_json::to_string(&inv).unwrap());
    plan_bucket(&aws).await;
    let plan = handlers::plan(ctx(&aws, None), m.clone()).await.unwrap();
    assert_eq!(plan.count, 4);
    outputs.push(serde_json::to_string(&plan).unwrap());
    // The shards as the Map's ItemReader reads them.
    let shards: Vec<ferry_engine::model::plan::Shard> = plans::load(&aws, &plan).await.unwrap();
    assert_eq!(shards.len(), 4);

    // No time at all: each invocation makes one SCAN call's worth of progress and hands
    // back its cursor.
    let (invocations, copied) =
        copy_all(|| ctx(&aws, Some(Duration::ZERO)), &m, shards.clone()).await;
    assert!(
        invocations > 2 * plan.count,
        "the copy was cut into many invocations: {invocations}"
    );
    outputs.extend(copied);

    // Re-running the very first invocation after the end changes nothing.
    let first = ShardStep {
        migration: m.clone(),
        shard: shards[0].clone(),
        counts: None,
        pass: None,
    };
    handlers::copy_shard(ctx(&aws, Some(Duration::from_millis(25))), first)
        .await
        .unwrap();

    let verify = handlers::plan_verify(ctx(&aws, None), m.clone())
        .await
        .unwrap();
    let items: Vec<VerifyItem> = plans::load(&aws, &verify).await.unwrap();
    assert_eq!(verify.count, items.len());
    assert!(
        items.iter().any(|i| i.pass == VerifyPass::Reverse),
        "both directions are planned"
    );
    let mut ok = 0;
    for item in items {
        let mut step = ShardStep {
            migration: m.clone(),
            shard: item.shard,
            counts: None,
            pass: Some(item.pass),
        };
        loop {
            let out =
                handlers::verify_shard(ctx(&aws, Some(Duration::from_millis(25))), step.clone())
                    .await
                    .expect("verify shard finds no difference");
            outputs.push(serde_json::to_string(&out).unwrap());
            if out.done {
                ok += out.counts.ok;
                break;
            }
            step.shard = out.shard;
            step.counts = Some(out.counts);
        }
    }
    assert!(ok >= 20_000, "every key verified: {ok}");
    common::assert_servers_same(&source.url(), &target.url()).await;
    for out in &outputs {
        assert!(
            !out.contains(MARKER),
            "an output carries the password: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_type_comes_from_a_real_failing_condition() {
    let moto = Moto::start();
    let aws = moto_aws(&moto).await;
    let source = with_password();
    common::seed(&source.url(), "20000");
    let good = secret(&aws, "ferry/good", MARKER).await;
    let wrong = secret(&aws, "ferry/wrong", "not-the-password").await;
    let c = || ctx(&aws, None);
    let kind = |r: Result<ferry_steps::contracts::InventoryOutput, StepError>| {
        let e = r.expect_err("the step fails");
        assert!(!e.to_string().contains(MARKER), "{e}");
        let d: lambda_runtime::Diagnostic = StepError::Named {
            kind: e.error_type(),
            message: e.to_string(),
        }
        .into();
        assert_eq!(d.error_type, e.error_type());
        e.error_type()
    };

    let target = Server::start();
    let nonempty = Server::start();
    nonempty.cmd(&["SET", "already", "here"]);
    assert_eq!(
        kind(handlers::inventory(c(), input(&source, &nonempty, Some(&good))).await),
        "TargetNotEmpty"
    );
    assert_eq!(
        kind(handlers::inventory(c(), input(&source, &target, Some(&wrong))).await),
        "AuthFailed"
    );
    let mut closed = input(&source, &target, Some(&good));
    closed.source.endpoint = format!("redis://127.0.0.1:{}", rig::free_port());
    assert_eq!(
        kind(handlers::inventory(c(), closed).await),
        "SourceUnreachable"
    );
    let old = Server::with(Config {
        version: Version::Redis62,
        ..Config::default()
    });
    let mut dump_only = input(&source, &old, Some(&good));
    dump_only.options.copy_type = ferry_engine::model::migration::Method::Dump;
    assert_eq!(
        kind(handlers::inventory(c(), dump_only).await),
        "IncompatibleVersion"
    );
    let mut missing_secret = input(&source, &target, Some(&good));
    missing_secret.source.secret_arn =
        Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:nope".into());
    assert_eq!(
        kind(handlers::inventory(c(), missing_secret).await),
        "InvalidInput"
    );

    // Out of memory: a target with a tiny noeviction maxmemory.
    let small = Server::with(Config {
        args: ["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]
            .map(String::from)
            .to_vec(),
        ..Config::default()
    });
    let m = input(&source, &small, Some(&good));
    let shards = handlers::copy_plan(&c(), &m).await.unwrap();
    let mut oom = None;
    for shard in shards {
        let step = ShardStep {
            migration: m.clone(),
            shard,
            counts: None,
            pass: None,
        };
        if let Err(e) = handlers::copy_shard(c(), step).await {
            oom = Some(e);
            break;
        }
    }
    assert_eq!(
        oom.expect("the copy runs out of memory").error_type(),
        "TargetOutOfMemory"
    );

    // Retryable: the source is busy running a script (BUSY replies until it is killed).
    let busy = Server::with(Config {
        args: ["--busy-reply-threshold", "10"].map(String::from).to_vec(),
        ..Config::default()
    });
    let port = busy.port;
    let script = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        use std::io::{Read, Write};
        s.write_all(b"*3\r\n$4\r\nEVAL\r\n$17\r\nwhile true do end\r\n$1\r\n0\r\n")
            .unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
    });
    std::thread::sleep(Duration::from_millis(100));
    let m = input(&busy, &target, None);
    let step = ShardStep {
        migration: m.clone(),
        shard: ferry_engine::model::plan::Shard::new(
            &ferry_engine::NodeAddr::new("127.0.0.1", port),
            0,
            ferry_engine::model::plan::Range::Classic { bits: 0, index: 0 },
        ),
        counts: None,
        pass: None,
    };
    let e = handlers::copy_shard(c(), step).await.unwrap_err();
    assert_eq!(e.error_type(), "Retryable", "{e}");
    assert!(e.is_retryable());
    assert!(busy.cmd(&["SCRIPT", "KILL"]).starts_with("+OK"));
    script.join().unwrap();

    // Live mode on an ElastiCache Serverless source: `auto` follows client tracking, so there
    // is nothing to configure; the keyspace channel, asked for by name, cannot be had there.
    let mut serverless = input(&source, &target, Some(&good));
    serverless.mode = Mode::Live;
    serverless.source.serverless_cache_name = Some("orders".into());
    assert_eq!(serverless.live_channel(), LiveChannel::Tracking);
    let skipped = notifications::enable_notifications(c(), serverless.clone())
        .await
        .unwrap();
    assert!(skipped.in_sync && !skipped.changed, "{skipped:?}");
    assert!(skipped.skipped.unwrap().contains("client tracking"));
    serverless.options.live_channel = LiveChannel::Keyspace;
    let e = notifications::enable_notifications(c(), serverless)
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "NotificationsDisabled");
    assert!(e.to_string().contains("live_channel tracking"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_snapshots_a_replication_group_once_and_reports_when_ready() {
    let plain_request = |migration| BackupRequest {
        migration,
        execution_start: None,
    };
    let moto = Moto::start();
    let aws = moto_aws(&moto).await;
    aws.elasticache
        .create_replication_group()
        .replication_group_id("orders")
        .replication_group_description("orders cache")
        .engine("redis")
        .cache_node_type("cache.t4g.small")
        .num_cache_clusters(2)
        .send()
        .await
        .expect("create a replication group in moto");
    let (source, target) = (Server::start(), Server::start());
    let mut m = input(&source, &target, None);
    m.source.replication_group_id = Some("orders".into());

    let run = |start: &str| BackupRequest {
        migration: m.clone(),
        execution_start: Some(start.into()),
    };
    let first = elasticache::backup(ctx(&aws, None), run("2026-11-30T14:03:31.123Z"))
        .await
        .unwrap();
    assert_eq!(
        first.snapshot_name.as_deref(),
        Some("ferry-test-1-20261130t140331")
    );
    let again = elasticache::backup(ctx(&aws, None), run("2026-11-30T14:03:31.123Z"))
        .await
        .unwrap();
    assert_eq!(
        again.snapshot_name, first.snapshot_name,
        "a retry finds the same snapshot"
    );
    let snapshots = aws.elasticache.describe_snapshots().send().await.unwrap();
    assert_eq!(
        snapshots.snapshots().len(),
        1,
        "one snapshot, however many runs"
    );
    let status = elasticache::backup_status(
        ctx(&aws, None),
        BackupStep {
            migration: m.clone(),
            backup: first,
        },
    )
    .await
    .unwrap();
    assert!(
        status.ready,
        "moto's snapshots are available at once: {status:?}"
    );
    // A later run of the same migration takes a snapshot of its own, never the old one.
    let later = elasticache::backup(ctx(&aws, None), run("2026-12-01T09:00:00.000Z"))
        .await
        .unwrap();
    assert_eq!(
        later.snapshot_name.as_deref(),
        Some("ferry-test-1-20261201t090000")
    );
    let snapshots = aws.elasticache.describe_snapshots().send().await.unwrap();
    assert_eq!(snapshots.snapshots().len(), 2);

    let mut off = m.clone();
    off.options.backup = false;
    assert!(elasticache::backup(ctx(&aws, None), plain_request(off))
        .await
        .unwrap()
        .skipped
        .is_some());
    m.source.replication_group_id = None;
    let plain = elasticache::backup(ctx(&aws, None), plain_request(m))
        .await
        .unwrap();
    assert!(plain.ready && plain.skipped.unwrap().contains("not an ElastiCache"));
}

/// Mutual TLS from the secret: `ca_pem`, `client_cert_pem` and `client_key_pem` reach the
/// connection; without the client certificate the server refuses the handshake.
#[tokio::test]
async fn client_certificates_come_from_the_secret() {
    let moto = Moto::start();
    let aws = moto_aws(&moto).await;
    let source = Server::with(Config {
        tls: true,
        tls_client_auth: true,
        ..Config::default()
    });
    let target = Server::start();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let ca = read(source.ca_file().unwrap());
    let (cert, key) = source.client_identity().unwrap();
    let put = |name: &'static str, value: serde_json::Value| {
        let aws = aws.clone();
        async move {
            let out = aws
                .secrets
                .create_secret()
                .name(name)
                .secret_string(value.to_string());
            out.send().await.unwrap().arn().unwrap().to_string()
        }
    };
    let with_cert = put(
        "ferry/mtls",
        json!({ "ca_pem": ca, "client_cert_pem": read(cert), "client_key_pem": read(key) }),
    )
    .await;
    let without = put("ferry/ca-only", json!({ "ca_pem": ca })).await;
    let run = |arn: String| {
        let mut m = input(&source, &target, Some(&arn));
        m.source.endpoint = format!("rediss://127.0.0.1:{}", source.port);
        handlers::inventory(ctx(&aws, None), m)
    };
    run(with_cert).await.expect("inventory over mutual TLS");
    let e = run(without).await.expect_err("no client certificate");
    assert!(
        ["TlsFailed", "SourceUnreachable"].contains(&e.error_type()),
        "{e}"
    );
}
