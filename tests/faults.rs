//! Faults during a snapshot: the copy rides them out by reconnecting, retrying the interrupted
//! batch (idempotent) and resuming each shard from its cursor, and still ends verified.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rig::{Config, Server};

/// Runs `ferry replicate` in the background, calls `fault` once the target holds `at` keys,
/// and returns the exit code and output.
fn copy_through(
    source: &Server,
    target: &mut Server,
    at: u64,
    fault: impl FnOnce(&mut Server, &Server),
) -> (i32, String) {
    let child = Command::new(rig::ferry_bin())
        .args([
            "replicate",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
            "--batch-keys",
            "128",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferry");
    let start = Instant::now();
    loop {
        let n: u64 = target
            .cmd(&["DBSIZE"])
            .trim_start_matches(':')
            .parse()
            .unwrap_or(0);
        if n >= at {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the copy never reached {at} keys"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    fault(target, source);
    let out = child.wait_with_output().expect("ferry finished");
    (out.status.code().unwrap_or(-1), common::text(&out))
}

fn seeded_source(keys: &str) -> Server {
    let source = Server::start();
    common::seed(&source.url(), keys);
    source
}

#[test]
fn target_killed_and_restarted_mid_snapshot_the_copy_resumes_and_verifies() {
    let source = seeded_source("150000");
    // The target keeps what it acknowledged across the crash (AOF, fsync always).
    let mut target = Server::with(Config {
        args: vec![
            "--appendonly".into(),
            "yes".into(),
            "--appendfsync".into(),
            "always".into(),
        ],
        ..Config::default()
    });
    let (code, text) = copy_through(&source, &mut target, 20_000, |target, _| {
        target.kill();
        std::thread::sleep(Duration::from_millis(800));
        target.restart();
    });
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("retrying"),
        "the restart hit the copy mid-way: {text}"
    );
    assert!(
        text.contains("missing 0, extra 0, type 0, ttl 0, value 0"),
        "{text}"
    );
    assert_eq!(target.cmd(&["DBSIZE"]), source.cmd(&["DBSIZE"]));
}

#[test]
fn source_connections_dropped_mid_shard_are_retried() {
    let source = seeded_source("150000");
    let mut target = Server::start();
    let (code, text) = copy_through(&source, &mut target, 20_000, |_, source| {
        let killed = source.cmd(&["CLIENT", "KILL", "TYPE", "normal"]);
        assert!(
            killed.trim_start_matches(':').parse::<u64>().unwrap_or(0) > 0,
            "{killed}"
        );
    });
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("interrupted"),
        "connections were dropped mid-copy: {text}"
    );
    assert!(text.contains("outcome: verified"), "{text}");
}
