//! IAM authentication (issue 15 item 1) against a real Redis standing in for ElastiCache: an
//! ACL user whose passwords are the tokens ferry's signer makes for these credentials at each
//! second of the test's window. A token for another user, cache, region, time or key is not
//! among them, so the server refuses it, as ElastiCache would. An "enforcer" closes the user's
//! connections older than their allowed lifetime, as ElastiCache does after 12 hours (here a
//! few seconds); ferry must renew before that without a gap in live mode.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::live::{Watched, Writers};
use ferry_steps::iam::IamAuth;
use rig::{Config, Server};

const USER: &str = "ferry-iam";
const REGION: &str = "eu-west-1";
const KEY_ID: &str = "AKIDFERRYTEST";
const SECRET_KEY: &str = "ferry-test-secret-access-key";

fn aws_env(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
        ("AWS_REGION", REGION.to_string()),
        // No profile files or instance metadata: only the environment's credentials.
        ("AWS_CONFIG_FILE", "/nonexistent".to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}

/// The IAM user on `server`, for `cache`, with the test's credentials, for `secs` seconds.
fn iam_user(server: &Server, cache: &str, secs: u64) {
    let auth: IamAuth = format!("user={USER},cache={cache},region={REGION}")
        .parse()
        .unwrap();
    common::iam_user(server, &auth, (KEY_ID, SECRET_KEY), secs);
}

/// ElastiCache's limit on an IAM connection, shortened: closes `USER`'s connections older than
/// `max_age` seconds; counts them, and the subscribers among them.
struct Enforcer {
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicU64>,
    killed_subscribers: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Enforcer {
    fn start(port: u16, max_age: u64) -> Enforcer {
        let stop = Arc::new(AtomicBool::new(false));
        let (killed, killed_subscribers) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, k, ks) = (stop.clone(), killed.clone(), killed_subscribers.clone());
        let thread = std::thread::spawn(move || {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .unwrap()
                .get_connection()
                .unwrap();
            while !s.load(Ordering::Relaxed) {
                let list: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .query(&mut c)
                    .unwrap_or_default();
                for line in list.lines() {
                    let field = |name: &str| {
                        line.split(' ')
                            .find_map(|f| f.strip_prefix(name))
                            .unwrap_or_default()
                            .to_string()
                    };
                    let age: u64 = field("age=").parse().unwrap_or(0);
                    if field("user=") == USER && age > max_age {
                        let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                            .arg("KILL")
                            .arg("ID")
                            .arg(field("id="))
                            .query(&mut c);
                        k.fetch_add(1, Ordering::Relaxed);
                        if field("sub=") != "0" || field("psub=") != "0" {
                            ks.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Enforcer {
            stop,
            killed,
            killed_subscribers,
            thread,
        }
    }

    /// Stops; returns (connections closed, subscribers among them).
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (
            self.killed.load(Ordering::Relaxed),
            self.killed_subscribers.load(Ordering::Relaxed),
        )
    }
}

fn source_url(source: &Server) -> String {
    format!("redis://127.0.0.1:{}", source.port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_logs_in_with_iam_tokens_and_wrong_credentials_are_refused() {
    let (source, target) = (Server::start(), Server::start());
    common::seed(&source.url(), "2000");
    iam_user(&source, "my-group", 120);
    let iam = format!("user={USER},cache=my-group,region={REGION}");
    let run = |secret: &str, iam: &str| {
        let env = aws_env(secret);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        common::replicate(
            &source_url(&source),
            &target.url(),
            &["--mode", "snapshot", "--source-iam", iam],
            &env,
        )
    };
    let out = run(SECRET_KEY, &iam);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("outcome: verified"), "{text}");
    assert!(
        text.contains(&format!("redis://{USER}:***@")),
        "the report names the IAM user, never a token: {text}"
    );
    assert!(
        !text.contains("X-Amz-Signature") && !text.contains(SECRET_KEY),
        "{text}"
    );

    // Another secret key signs another token: refused, named, exit 2, nothing written.
    let fresh = Server::start();
    let out = common::replicate(
        &source_url(&source),
        &fresh.url(),
        &["--mode", "snapshot", "--source-iam", &iam],
        &aws_env("not-the-key")
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    );
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("AuthFailed") && text.contains("WRONGPASS"),
        "{text}"
    );
    assert!(
        !text.contains("X-Amz-Signature") && !text.contains("not-the-key"),
        "{text}"
    );
    assert_eq!(fresh.cmd(&["DBSIZE"]), ":0");

    // An IAM-only target the same way (--target-iam), here beside an IAM source.
    let iam_target = Server::start();
    iam_user(&iam_target, "new-group", 120);
    let env = aws_env(SECRET_KEY);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let target_iam = format!("user={USER},cache=new-group,region={REGION}");
    let target_url = format!("redis://127.0.0.1:{}", iam_target.port);
    let out = common::replicate(
        &source_url(&source),
        &target_url,
        &[
            "--mode",
            "snapshot",
            "--source-iam",
            &iam,
            "--target-iam",
            &target_iam,
        ],
        &env,
    );
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("outcome: verified"), "{text}");
    common::assert_servers_same(&source.url(), &iam_target.url()).await;

    // A token for another cache is not this cache's.
    let out = run(
        SECRET_KEY,
        &format!("user={USER},cache=other-group,region={REGION}"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
}

/// A live run whose IAM connections may live 4 s (the enforcer closes older ones): ferry
/// renews them every 2 s, subscriptions make-before-break, and the run ends verified with no
/// gap: no subscriber was ever closed under it.
async fn live_renewal(notify: bool) {
    let mut config = Config::default();
    if notify {
        config.args = vec!["--notify-keyspace-events".into(), "KA".into()];
    }
    let (source, target) = (Server::with(config), Server::start());
    common::seed(&source.url(), "3000");
    iam_user(&source, "my-group", 180);
    let enforcer = Enforcer::start(source.port, 4);
    let writers = Writers::start(&source.url(), 2, 70, (false, false));
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("live.json");
    let mut ferry = Command::new(rig::ferry_bin());
    ferry
        .args(["-v", "replicate", "--mode", "live", "--idle-timeout", "1.5"])
        .args(["--source", &source_url(&source), "--target", &target.url()])
        .args([
            "--source-iam",
            &format!("user={USER},cache=my-group,renew_secs=2"),
        ])
        .args(["--json", report.to_str().unwrap()])
        .envs(aws_env(SECRET_KEY));
    let run = Watched::spawn(ferry);
    run.wait_for("target caught up", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    writers.stop().await;
    let (code, text) = run.finish().await;
    let (killed, killed_subscribers) = enforcer.stop();
    assert_eq!(code, 0, "{text}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["outcome"], "verified", "{r}");
    assert_eq!(r["live"]["gaps"], 0, "renewal left no gap: {r}\n{text}");
    assert!(
        text.matches("live subscription renewed").count() >= 3,
        "the subscription was renewed: {text}"
    );
    assert_eq!(
        killed_subscribers, 0,
        "no subscriber outlived its login ({killed} closed)"
    );
    common::assert_servers_same(&source.url(), &target.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_renews_iam_connections_without_a_gap_on_keyspace_events() {
    live_renewal(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_renews_iam_connections_without_a_gap_on_client_tracking() {
    live_renewal(false).await;
}
