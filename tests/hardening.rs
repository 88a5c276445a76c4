//! Careless and hostile input (issue 13): repair that deletes only what the migration owns, the
//! target lease, hostile servers (a fake server sends what no real one does), passwords of any
//! shape, a stop that always ends and puts the source back, and the honest edges.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::live::Writers;
use common::{ferry, replicate, text};
use rig::fake::{self, Answer, FakeServer};
use rig::{Config, Server};

/// What a fake server sends for one command.
type Reply = fn() -> Answer;

/// A fake standalone Redis 7.0 that answers the handshake and inventory like a real one, with
/// `info` as its INFO text, and `hostile` for commands it names (upper case).
fn fake_redis(info: &str, hostile: Vec<(&'static str, Reply)>) -> FakeServer {
    let info = info.to_string();
    FakeServer::start(move |cmd| {
        let name = fake::name(cmd);
        if let Some((_, answer)) = hostile.iter().find(|(n, _)| *n == name) {
            return answer();
        }
        match name.as_str() {
            "PING" => Answer::Bytes(b"+PONG\r\n".to_vec()),
            "INFO" => Answer::Bytes(fake::bulk(info.as_bytes())),
            "DBSIZE" => Answer::Bytes(b":0\r\n".to_vec()),
            "CONFIG" => Answer::Bytes(b"*0\r\n".to_vec()),
            "CLUSTER" => {
                Answer::Bytes(b"-ERR This instance has cluster support disabled\r\n".to_vec())
            }
            _ => Answer::Bytes(b"+OK\r\n".to_vec()),
        }
    })
}

const INFO_70: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nrun_id:fake\r\n# Replication\r\nrole:master\r\n";

/// Runs `ferry inventory` against `source`, with a real target; exit code, output, seconds.
fn inventory_of(source: &str, extra: &[&str]) -> (Option<i32>, String, f64) {
    let target = Server::start();
    let start = Instant::now();
    let target_url = target.url();
    let mut args = vec!["inventory", "--source", source, "--target", &target_url];
    args.extend_from_slice(extra);
    let out = ferry(&args, &[]);
    (out.status.code(), text(&out), start.elapsed().as_secs_f64())
}

#[test]
fn hostile_replies_are_refused_quickly_without_growing_ferry() {
    let cases: Vec<(&str, Reply, &str)> = vec![
        (
            "arrays nested 100,000 deep",
            || Answer::Bytes("*1\r\n".repeat(100_000).into_bytes()),
            "nested deeper",
        ),
        (
            "a 2^40 bulk followed by bytes",
            || Answer::Endless(b"$1099511627776\r\nxxxxxxxx".to_vec()),
            "over the limit",
        ),
        (
            "a 2^31 array followed by bytes",
            || Answer::Endless(b"*2147483648\r\n$1\r\nx\r\n".to_vec()),
            "over the limit",
        ),
        (
            "a length of -5",
            || Answer::Bytes(b"$-5\r\n".to_vec()),
            "negative length",
        ),
        (
            "garbage without CRLF",
            || Answer::Endless(b"GARBAGE".to_vec()),
            "unexpected reply type byte",
        ),
        (
            "a reply trickled a byte a second",
            || Answer::Trickle(b"$5\r\nhello\r\n".to_vec(), Duration::from_secs(1)),
            "did not arrive within",
        ),
    ];
    for (what, answer, expected) in cases {
        let fake = fake_redis(INFO_70, vec![("INFO", answer)]);
        let (code, out, secs) = inventory_of(&fake.url(), &["--reply-timeout", "3"]);
        assert_eq!(code, Some(1), "{what}: killed or wrong exit: {out}");
        assert!(out.contains(expected), "{what}: {out}");
        assert!(secs < 12.0, "{what}: took {secs:.1}s");
    }
}

#[test]
fn server_error_text_is_sanitised_and_cut() {
    let fake = fake_redis(
        INFO_70,
        vec![("INFO", || {
            let mut line = b"-ERR \x1b[2J\x1b]0;owned\x07".to_vec();
            line.extend(std::iter::repeat_n(b'A', 512 << 10));
            line.extend_from_slice(b"\r\n");
            Answer::Bytes(line)
        })],
    );
    let (code, out, _) = inventory_of(&fake.url(), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(out.len() < 4000, "{} bytes printed", out.len());
    assert!(out.contains("bytes in all"), "{out}");
}

#[test]
fn an_info_without_a_keyspace_section_is_not_an_empty_source() {
    let fake = fake_redis(
        INFO_70,
        vec![("DBSIZE", || Answer::Bytes(b":5\r\n".to_vec()))],
    );
    let (code, out, _) = inventory_of(&fake.url(), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("DBSIZE counts 5"), "{out}");
}

#[test]
fn passwords_with_url_characters_work_and_never_show() {
    let password = "ab/Cd@Ef:gh%zz#Q?x";
    let source = Server::with(Config {
        password: Some(password.into()),
        ..Config::default()
    });
    let target = Server::start();
    let url = format!("redis://:{password}@127.0.0.1:{}", source.port);
    let out = ferry(
        &["inventory", "--source", &url, "--target", &target.url()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("Cd@Ef"), "{}", text(&out));
    let wrong = format!("redis://default:7601/S3cr3tZ@127.0.0.1:{}", source.port);
    let out = ferry(
        &["inventory", "--source", &wrong, "--target", &target.url()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for part in ["S3cr3t", "7601/", "3tZ"] {
        assert!(!text(&out).contains(part), "{part}: {}", text(&out));
    }
}

/// Keys `prefix1..=n` with a value each, in db `db` of `server`.
fn put(server: &Server, db: u32, prefix: &str, n: u32) {
    let pairs: Vec<String> = (1..=n)
        .flat_map(|i| [format!("{prefix}{i}"), format!("v{i}")])
        .collect();
    let mut args = vec!["MSET"];
    args.extend(pairs.iter().map(String::as_str));
    assert_eq!(server.cmd_db(db, &args), "+OK");
}

fn dbsize(server: &Server, db: u32) -> u64 {
    server
        .cmd_db(db, &["DBSIZE"])
        .trim_start_matches(':')
        .parse()
        .unwrap()
}

#[test]
fn repair_with_a_db_map_keeps_the_copy() {
    let (source, target) = (Server::start(), Server::start());
    put(&source, 0, "k:", 1000);
    let out = replicate(
        &source.url(),
        &target.url(),
        &["--db-map", "0=1", "--repair"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("outcome: verified"), "{}", text(&out));
    assert_eq!(dbsize(&target, 1), 1000);
}

#[test]
fn repair_deletes_only_what_the_migration_owns() {
    let (source, target) = (Server::start(), Server::start());
    put(&source, 0, "user:", 200);
    put(&source, 0, "order:", 50);
    put(&target, 7, "foreign:", 3); // a db no source db maps to
    put(&target, 1, "order:99", 1); // the mapped db, outside the pattern
    put(&target, 1, "user:99", 1); // the migration's: in scope, not on the source
    let out = replicate(
        &source.url(),
        &target.url(),
        &[
            "--db-map",
            "0=1",
            "--key-pattern",
            "user:*",
            "--allow-nonempty-target",
            "--repair",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("deleted 1 extra"), "{}", text(&out));
    assert_eq!(
        dbsize(&target, 7),
        3,
        "a key outside the migration was deleted"
    );
    assert_eq!(target.cmd_db(1, &["EXISTS", "order:991"]), ":1");
    assert_eq!(target.cmd_db(1, &["EXISTS", "user:991"]), ":0");
    assert_eq!(dbsize(&target, 1), 201);

    // With a prefix, target keys without it are not the migration's either.
    let other = Server::start();
    put(&other, 0, "mine:", 2);
    let out = replicate(
        &source.url(),
        &other.url(),
        &["--db-map", "0=0:p:", "--allow-nonempty-target", "--repair"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(dbsize(&other, 0), 252);
}

#[test]
fn the_url_db_is_honoured() {
    let (source, target) = (Server::start(), Server::start());
    put(&source, 3, "three:", 40);
    put(&source, 0, "zero:", 10);
    let out = replicate(&source.url_db(3), &target.url_db(4), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        (dbsize(&target, 4), dbsize(&target, 3), dbsize(&target, 0)),
        (40, 0, 0)
    );
    let out = replicate(&source.url(), &Server::start().url_db(4), &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("names db 4"), "{}", text(&out));
}

#[test]
fn a_second_run_into_the_same_target_is_refused() {
    let (source, target) = (Server::start(), Server::start());
    source.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KA"]);
    put(&source, 0, "k:", 100);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("live.json");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let run = common::live::LiveRun::start(&source.url(), &target.url(), &report);
        run.wait_for("target caught up", Duration::from_secs(30))
            .await;
        let second = replicate(
            &Server::start().url(),
            &target.url(),
            &["--allow-nonempty-target", "--repair"],
            &[],
        );
        assert_eq!(second.status.code(), Some(2), "{}", text(&second));
        assert!(
            text(&second).contains("another ferry run holds the target"),
            "{}",
            text(&second)
        );
        let (code, out) = run.finish().await;
        assert_eq!(code, 0, "{out}");
    });
    assert_eq!(
        target.cmd(&["EXISTS", "ferry:lease"]),
        ":0",
        "lease left behind"
    );
    assert_eq!(dbsize(&target, 0), 100);
}

/// `ferry replicate --mode live` with its own options, for signals.
fn live_child(source: &str, target: &str, extra: &[&str]) -> Child {
    Command::new(rig::ferry_bin())
        .args(["replicate", "--mode", "live", "--source", source])
        .args(["--target", target])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferry")
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits for the child to exit, at most `within`; its exit code and output.
fn wait_exit(mut child: Child, within: Duration) -> (Option<i32>, String) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > within {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!("ferry did not stop within {within:?}: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), text(&out))
}

/// Starts a live run with writers that never stop, waits until it follows; returns both.
fn live_with_endless_writers(source: &Server, target: &Server, extra: &[&str]) -> (Child, Writers) {
    put(source, 0, "k:", 2000);
    let writers = Writers::start(&source.url(), 2, 11, (false, false));
    let mut args = vec!["--enable-notifications"];
    args.extend_from_slice(extra);
    let child = live_child(&source.url(), &target.url(), &args);
    // 2,000 keys are copied in well under a second; then ferry follows the writers.
    std::thread::sleep(Duration::from_secs(3));
    (child, writers)
}

fn notify_flags(server: &Server) -> String {
    server
        .cmd(&["CONFIG", "GET", "notify-keyspace-events"])
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stop_with_writers_that_never_stop_ends_within_the_drain_timeout() {
    let (source, target) = (Server::start(), Server::start());
    let (child, writers) = live_with_endless_writers(&source, &target, &["--drain-timeout", "2"]);
    signal(&child, "-INT");
    let (code, out) = wait_exit(child, Duration::from_secs(30));
    writers.stop().await;
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("gave up draining"), "{out}");
    assert!(out.contains("still dirty"), "{out}");
    assert_eq!(
        notify_flags(&source),
        "",
        "notify-keyspace-events not restored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_twice_forces_the_exit_and_restores_the_source() {
    let (source, target) = (Server::start(), Server::start());
    let (child, writers) = live_with_endless_writers(&source, &target, &["--drain-timeout", "60"]);
    assert_ne!(notify_flags(&source), "", "ferry should have set the flags");
    signal(&child, "-TERM");
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "-TERM");
    let (code, out) = wait_exit(child, Duration::from_secs(15));
    writers.stop().await;
    assert_eq!(code, Some(130), "{out}");
    assert_eq!(
        notify_flags(&source),
        "",
        "notify-keyspace-events not restored"
    );
}

#[test]
fn sigint_during_verify_stops_it_with_a_partial_report_and_verify_obeys_the_rate_cap() {
    let (source, target) = (Server::start(), Server::start());
    put(&source, 0, "k:", 20_000);
    let out = replicate(&source.url(), &target.url(), &["--verify", "none"], &[]);
    assert!(out.status.success(), "{}", text(&out));

    // The cap holds for a compare: commands the source received over the run's time.
    let calls = |s: &Server| -> u64 {
        s.cmd(&["INFO", "commandstats"])
            .lines()
            .filter_map(|l| l.split("calls=").nth(1))
            .filter_map(|c| c.split(',').next()?.parse::<u64>().ok())
            .sum()
    };
    let before = calls(&source);
    let start = Instant::now();
    let out = replicate(
        &source.url(),
        &target.url(),
        &["--mode", "compare", "--max-ops-per-sec", "20000"],
        &[],
    );
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rate = (calls(&source) - before) as f64 / secs;
    assert!(
        rate < 20_000.0 * 1.25,
        "{rate:.0} commands/s under a cap of 20000"
    );

    // SIGINT mid-verify: a partial report, exit 130.
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let child = Command::new(rig::ferry_bin())
        .args(["replicate", "--mode", "compare", "--source", &source.url()])
        .args(["--target", &target.url(), "--max-ops-per-sec", "10000"])
        .args(["--json", report.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    signal(&child, "-INT");
    let (code, out) = wait_exit(child, Duration::from_secs(20));
    assert_eq!(code, Some(130), "{out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["outcome"], "interrupted", "{r}");
    assert_eq!(r["verify"]["complete"], false, "{r}");
    let ok = r["verify"]["total"]["ok"].as_u64().unwrap();
    assert!(ok > 0 && ok < 20_000, "{r}");
}

#[test]
fn honest_edges_are_refused_before_writing() {
    let (source, target) = (Server::start(), Server::start());
    put(&source, 0, "k:", 10);
    let usage = |extra: &[&str]| {
        let out = replicate(&source.url(), &target.url(), extra, &[]);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
        text(&out)
    };
    usage(&["--key-type", "strnig"]);
    usage(&["--mode", "live", "--idle-timeout", "NaN"]);
    source.cmd(&["CONFIG", "SET", "maxclients", "40"]);
    assert!(usage(&["--workers", "100"]).contains("maxclients"));
    source.cmd(&["CONFIG", "SET", "maxclients", "10000"]);

    let replica = Server::with(Config {
        args: vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            target.port.to_string(),
        ],
        ..Config::default()
    });
    let out = replicate(&source.url(), &replica.url(), &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("read-only replica"), "{}", text(&out));
    assert_eq!(dbsize(&target, 0), 0, "something was written");
}

#[test]
fn tls_pinning_and_client_certificates() {
    let tls = Server::with(Config {
        tls: true,
        tls_client_auth: true,
        ..Config::default()
    });
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let (source_url, target_url) = (tls.url(), target.url());
    let run = |extra: &[&str]| {
        let mut args = vec![
            "inventory",
            "--source",
            &source_url,
            "--target",
            &target_url,
        ];
        args.extend_from_slice(extra);
        ferry(&args, &[])
    };
    let out = run(&["--source-ca", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("holds no certificate"),
        "{}",
        text(&out)
    );
    let ca = tls.ca_file().unwrap().to_str().unwrap().to_string();
    let out = run(&["--source-ca", &ca]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a server that requires a client cert: {}",
        text(&out)
    );
    let (cert, key) = tls.client_identity().unwrap();
    let out = run(&[
        "--source-ca",
        &ca,
        "--source-cert",
        cert.to_str().unwrap(),
        "--source-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_corrupted_dump_payload_is_named_a_checksum_error() {
    let target = Server::start();
    // A real payload with its CRC64 broken, served by a fake source that holds one key.
    let real = Server::start();
    real.cmd(&["SET", "k", "value"]);
    let payload = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", real.plain_port)).unwrap();
        c.write_all(b"*2\r\n$4\r\nDUMP\r\n$1\r\nk\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut buf = vec![0u8; 256];
        let n = c.read(&mut buf).unwrap();
        let text = &buf[..n];
        let start = text.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let mut p = text[start..n - 2].to_vec();
        let last = p.len() - 1;
        p[last] ^= 0xff;
        p
    };
    static PAYLOAD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PAYLOAD.set(payload).unwrap();
    let info = format!("{INFO_70}# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n");
    let fake = fake_redis(
        &info,
        vec![
            ("DBSIZE", || Answer::Bytes(b":1\r\n".to_vec())),
            ("SCAN", || {
                Answer::Bytes(b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n".to_vec())
            }),
            ("TYPE", || Answer::Bytes(b"+string\r\n".to_vec())),
            ("PEXPIRETIME", || Answer::Bytes(b":-1\r\n".to_vec())),
            ("DUMP", || Answer::Bytes(fake::bulk(PAYLOAD.get().unwrap()))),
        ],
    );
    let out = replicate(&fake.url(), &target.url(), &["--type", "dump"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("checksum"), "{}", text(&out));
    assert!(
        !text(&out).contains("IncompatibleVersion"),
        "{}",
        text(&out)
    );
}

/// A key that expired on the source a moment before the target reclaimed its copy is not an
/// extra (issue 17 item 4: exact at TTL boundaries); one without such a TTL still is.
#[test]
fn a_target_key_about_to_expire_is_not_an_extra() {
    let (source, target) = (Server::start(), Server::start());
    put(&source, 0, "k:", 10);
    put(&target, 0, "k:", 10);
    target.cmd(&["SET", "expiring", "v", "PX", "1500"]);
    target.cmd(&["SET", "stray", "v"]);
    let out = replicate(&source.url(), &target.url(), &["--mode", "compare"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("extra 1,") && t.contains("stray"), "{t}");
    assert!(!t.contains("expiring"), "{t}");
}
