//! The cutover of a live run (issue 12 item 1, CLI): fence → drain → check → release → watch,
//! with an application writing to the source the whole time. Its write in flight when the
//! fence goes up waits, and lands on the source after the release: a straggler, copied to the
//! target and reported with the client that sent it.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::live::{App, LiveRun, Watched};
use rig::{Config, Server};

fn server() -> Server {
    Server::with(Config {
        args: vec!["--notify-keyspace-events".into(), "KA".into()],
        ..Config::default()
    })
}

/// A live run from `source` to `target` with `extra` options, once it has caught up; its JSON
/// report goes to `live.json` in the returned directory.
async fn caught_up(
    source: &Server,
    target: &Server,
    extra: &[&str],
) -> (Watched, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let run = LiveRun::start_with(
        &source.url(),
        &target.url(),
        &dir.path().join("live.json"),
        extra,
    );
    run.wait_for("target caught up", Duration::from_secs(60))
        .await;
    (run, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_with_writers_running_fences_checks_releases_and_reports_stragglers() {
    let (source, target) = (server(), server());
    common::seed(&source.url(), "20000");
    let app = App::start(&source.url());
    let (run, dir) = caught_up(
        &source,
        &target,
        &["--fence-secs", "20", "--watch-secs", "2"],
    )
    .await;
    let report = dir.path().join("live.json");
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.signal("-USR1");
    run.wait_for(
        "Switch the application to the target now",
        Duration::from_secs(60),
    )
    .await;
    // The fence holds the application's write in flight: it has not completed for a while.
    let written = app.written.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.written.load(Ordering::SeqCst),
        written,
        "writes are held"
    );
    // The application switches: new writes go to the target; its old connection's held write
    // will still land on the source.
    app.switch.store(true, Ordering::SeqCst);
    target.cmd(&["SET", "after:switch", "1"]);
    let released = Instant::now();
    run.signal("-USR1");
    let (code, text) = run.finish().await;
    assert_eq!(code, 0, "{text}");
    assert!(released.elapsed() < Duration::from_secs(30), "{text}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let c = &r["cutover"];
    assert_eq!(r["outcome"], "cut over", "{r}");
    assert_eq!(c["fence"], "client pause", "{r}");
    assert_eq!(c["check"]["ok"].as_u64(), c["checked_keys"].as_u64(), "{r}");
    assert!(c["checked_keys"].as_u64().unwrap() > 0, "{r}");
    let fence_ms = c["fence_ms"].as_u64().unwrap();
    assert!(fence_ms < 20_000, "the release lifted the fence: {r}");
    assert!(c["stragglers"].as_u64().unwrap() >= 1, "{r}");
    let straggler = app
        .last
        .lock()
        .unwrap()
        .clone()
        .expect("the held write completed");
    assert_eq!(
        target.cmd(&["GET", &straggler]),
        source.cmd(&["GET", &straggler]),
        "the straggler {straggler} was copied: {text}"
    );
    let clients = c["source_clients"].as_array().unwrap();
    let app_client = clients
        .iter()
        .find(|cl| {
            cl["addr"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{}", app.local_port))
        })
        .unwrap_or_else(|| panic!("the application's connection is reported: {r}"));
    assert_eq!(app_client["name"], "app");
    assert_eq!(app_client["last_command"], "set");
    assert_eq!(
        target.cmd(&["GET", "after:switch"]),
        "1",
        "the target's own writes stay"
    );
    eprintln!("fence held {fence_ms} ms");
}

/// A difference no write explains (a key changed on the target behind ferry's back) fails the
/// fenced check: the fence is lifted at once, the cutover refused, and the run goes on following
/// until it is stopped, ending with the difference reported (exit 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_lifts_the_fence_and_refuses_the_cutover() {
    let (source, target) = (server(), server());
    common::seed(&source.url(), "2000");
    source.cmd(&["SET", "steady", "source"]);
    let (run, _dir) = caught_up(&source, &target, &["--fence-secs", "30"]).await;
    target.cmd(&["SET", "steady", "changed behind ferry's back"]);
    run.signal("-USR1");
    run.wait_for("cutover refused", Duration::from_secs(60))
        .await;
    let text = run.text();
    assert!(
        text.contains("fenced check found 1 differences") && text.contains("steady"),
        "{text}"
    );
    assert!(!text.contains("Switch the application"), "{text}");
    // The fence is down: the source takes writes at once.
    let start = Instant::now();
    source.cmd(&["SET", "after", "1"]);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the fence was lifted"
    );
    run.signal("-INT");
    let (code, text) = run.finish().await;
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("Value db0 steady"), "{text}");
}

/// A source that refuses CLIENT PAUSE (here an ACL user without it) gets the operator's fence:
/// ferry asks for the writers to be stopped and a SIGUSR1, then checks and releases as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_client_pause_the_operator_confirms_the_fence() {
    let source = Server::with(Config {
        acl_user: Some(("migrator".into(), "s3cret".into())),
        args: vec!["--notify-keyspace-events".into(), "KA".into()],
        ..Config::default()
    });
    source.cmd(&["ACL", "SETUSER", "migrator", "-client|pause"]);
    let target = server();
    common::seed(&source.url(), "2000");
    let (run, dir) = caught_up(&source, &target, &["--watch-secs", "1"]).await;
    let report = dir.path().join("live.json");
    run.signal("-USR1");
    run.wait_for("stop every writer of the source", Duration::from_secs(60))
        .await;
    assert!(run.text().contains("NOPERM"), "{}", run.text());
    run.signal("-USR1");
    run.wait_for(
        "Switch the application to the target now",
        Duration::from_secs(60),
    )
    .await;
    run.signal("-USR1");
    let (code, text) = run.finish().await;
    assert_eq!(code, 0, "{text}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["cutover"]["fence"], "operator", "{r}");
    assert_eq!(r["outcome"], "cut over", "{r}");
}

/// The operator does not confirm the switch before the fence expires: ferry refuses the
/// cutover (it never declares one nobody confirmed), writes reach the source again and are
/// followed, and a stop then ends verified as a plain live run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_not_confirmed_before_the_fence_expires_is_refused() {
    let (source, target) = (server(), server());
    common::seed(&source.url(), "2000");
    let (run, dir) = caught_up(&source, &target, &["--fence-secs", "1"]).await;
    let report = dir.path().join("live.json");
    run.signal("-USR1");
    run.wait_for("cutover refused", Duration::from_secs(60))
        .await;
    let text = run.text();
    assert!(
        text.contains("Switch the application to the target now"),
        "{text}"
    );
    assert!(
        text.contains("not confirmed before the fence expired"),
        "{text}"
    );
    source.cmd(&["SET", "after:expiry", "1"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.signal("-INT");
    let (code, text) = run.finish().await;
    assert_eq!(code, 0, "{text}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_ne!(r["outcome"], "cut over", "{r}");
    assert!(r.get("cutover").is_none_or(|c| c.is_null()), "{r}");
    assert_eq!(target.cmd(&["GET", "after:expiry"]), "1");
}

/// The clients still connected after a cutover are counted in full but named only up to
/// `CLIENTS_LISTED`: the tail's Release answer is a Step Functions task output (256 KiB at
/// most), and a source can have tens of thousands of clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_left_on_the_source_are_counted_but_named_only_up_to_a_limit() {
    use std::io::{Read, Write};
    let source = Server::start();
    let clients: Vec<std::net::TcpStream> = (0..150)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", source.port)).unwrap();
            // An application's write (ferry's own commands, PING among them, are not counted).
            c.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
                .unwrap();
            let mut ok = [0u8; 5];
            c.read_exact(&mut ok).unwrap();
            c
        })
        .collect();
    let endpoint =
        ferry_engine::Endpoint::parse(ferry_engine::Role::Source, &source.url()).unwrap();
    let (listed, total) = ferry_engine::live::fence::source_clients(&endpoint)
        .await
        .unwrap();
    assert_eq!(total, 150);
    assert_eq!(listed.len(), ferry_engine::live::fence::CLIENTS_LISTED);
    let report = ferry_engine::live::cutover::CutoverReport {
        source_clients: listed,
        source_clients_total: total,
        ..Default::default()
    };
    assert!(
        report.clients_line().ends_with("and 50 more (150 in all)"),
        "{}",
        report.clients_line()
    );
    drop(clients);
}
