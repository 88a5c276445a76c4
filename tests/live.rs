//! Live mode end to end: `ferry replicate --mode live` against real servers while a randomized
//! writer hammers the source during the snapshot and after it, with the tail's subscription
//! killed, a FLUSHDB, or a source restart mid-run. Each run must end with ferry's own full
//! verify finding 0 differences, and an independent client must see equal keyspaces.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::live::{LiveRun, Writers};
use rig::{Config, Server};

fn source_with_notifications() -> Server {
    Server::with(Config {
        args: vec!["--notify-keyspace-events".into(), "KA".into()],
        ..Config::default()
    })
}

/// ferry's JSON report.
fn report_of(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Asserts, with an independent client, that dbs 0 and 1 (the writers MOVE keys to 1) hold the
/// same keys on both servers.
async fn assert_dbs_0_and_1_same(source: &Server, target: &Server) {
    for db in [0, 1] {
        let (s, t) = (
            common::keyspace(&source.url_db(db)).await,
            common::keyspace(&target.url_db(db)).await,
        );
        common::assert_same(&s, &t, 1000);
    }
}

/// The live channel a run follows. Each is chosen by `auto`: the keyspace run's source has
/// notifications on, the tracking run's source has them off (its default) and must stay so.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Channel {
    Keyspace,
    Tracking,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    KillSubscription,
    /// Tracking: the connection that holds CLIENT TRACKING on (its invalidations stop).
    KillTrackingClient,
    FlushDb,
    RestartSource,
}

/// Kills the source's connections with CLIENT TRACKING on (flag `t` in CLIENT LIST).
fn kill_tracking_clients(source: &Server) -> usize {
    let list = source.cmd(&["CLIENT", "LIST"]);
    let ids: Vec<String> = list
        .lines()
        .filter(|l| {
            l.split(' ')
                .any(|f| f.strip_prefix("flags=").is_some_and(|f| f.contains('t')))
        })
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_string)
        .collect();
    for id in &ids {
        assert_eq!(source.cmd(&["CLIENT", "KILL", "ID", id]), ":1");
    }
    ids.len()
}

async fn live_run(seed: u64, fault: Fault, channel: Channel) {
    let mut source = match channel {
        Channel::Keyspace => source_with_notifications(),
        Channel::Tracking => Server::start(),
    };
    let notify_before = source.cmd(&["CONFIG", "GET", "notify-keyspace-events"]);
    let target = Server::start();
    let out = common::ferry(
        &[
            "seed",
            "--target",
            &source.url(),
            "--keys",
            "30000",
            "--streams",
            "5",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", common::text(&out));
    let mut c = common::client(&source.url()).await;
    let mut p = redis::pipe();
    for i in 0..6000 {
        p.cmd("HSET")
            .arg("bighash")
            .arg(format!("f{i}"))
            .arg(i)
            .ignore();
        p.cmd("ZADD")
            .arg("bigzset")
            .arg(i)
            .arg(format!("m{i}"))
            .ignore();
    }
    let _: () = p.query_async(&mut c).await.unwrap();
    let writers = Writers::start(&source.url(), 3, seed * 10, (false, false));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("live.json");
    let run = LiveRun::start(&source.url(), &target.url(), &report);
    run.wait_for("target caught up", Duration::from_secs(30))
        .await;
    let during_snapshot = writers.ops();
    tokio::time::sleep(Duration::from_millis(500)).await;
    match fault {
        Fault::None => {}
        Fault::KillSubscription => assert!(source
            .cmd(&["CLIENT", "KILL", "TYPE", "pubsub"])
            .starts_with(':')),
        Fault::KillTrackingClient => assert_eq!(kill_tracking_clients(&source), 1),
        Fault::FlushDb => assert_eq!(source.cmd(&["FLUSHDB"]), "+OK"),
        Fault::RestartSource => source.restart(),
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let written = writers.stop().await;
    let (code, text) = run.finish().await;
    assert_eq!(code, 0, "seed {seed}, {fault:?}, {channel:?}:\n{text}");
    let r = report_of(&report);
    assert_eq!(r["outcome"], "verified", "{r}");
    let ran = format!("{channel:?}").to_lowercase();
    assert_eq!(r["live"]["channel"], ran.as_str(), "{r}");
    assert!(
        text.contains(match channel {
            Channel::Keyspace => "subscribed to keyspace events",
            Channel::Tracking => "subscribed to client tracking",
        }),
        "{text}"
    );
    if fault != Fault::RestartSource {
        // A restart resets CONFIG; otherwise the source's configuration is as it was.
        assert_eq!(
            source.cmd(&["CONFIG", "GET", "notify-keyspace-events"]),
            notify_before
        );
    }
    assert!(
        during_snapshot > 0 && written > during_snapshot,
        "writes ran during and after the snapshot"
    );
    assert!(r["live"]["events"].as_u64().unwrap() > 100, "{r}");
    if fault != Fault::None {
        assert!(
            r["live"]["gaps"].as_u64().unwrap() >= 1,
            "the {fault:?} was seen as a gap: {r}"
        );
        assert!(r["live"]["heals"].as_u64().unwrap() >= 1, "and healed: {r}");
    }
    assert_dbs_0_and_1_same(&source, &target).await;
}

/// A run on each channel: the keyspace one from a source with notifications on, the tracking
/// one (seed + 20) from a source with them off.
async fn on_both_channels(seed: u64, fault: Fault) {
    live_run(seed, fault, Channel::Keyspace).await;
    live_run(seed + 20, fault, Channel::Tracking).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_follows_a_busy_writer_during_and_after_the_snapshot() {
    for seed in [1, 2] {
        on_both_channels(seed, Fault::None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_heals_a_killed_subscription() {
    on_both_channels(11, Fault::KillSubscription).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_heals_a_killed_tracking_connection() {
    live_run(32, Fault::KillTrackingClient, Channel::Tracking).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_heals_a_flushdb() {
    on_both_channels(12, Fault::FlushDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_heals_a_source_restart() {
    on_both_channels(13, Fault::RestartSource).await;
}

#[test]
fn the_keyspace_channel_refuses_without_notifications_and_says_how_to_enable_them() {
    let (source, target) = (Server::start(), Server::start());
    source.cmd(&["SET", "k", "v"]);
    let out = common::replicate(
        &source.url(),
        &target.url(),
        &["--mode", "live", "--live-channel", "keyspace"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    let t = common::text(&out);
    assert!(
        t.contains("NotificationsDisabled")
            && t.contains("--enable-notifications")
            && t.contains("parameter group"),
        "{t}"
    );
    assert_eq!(target.cmd(&["DBSIZE"]), ":0");

    // Asking to change the source's configuration for the channel that needs none is a mistake.
    let out = common::replicate(
        &source.url(),
        &target.url(),
        &[
            "--mode",
            "live",
            "--live-channel",
            "tracking",
            "--enable-notifications",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(common::text(&out).contains("needs no change"));
    assert_eq!(target.cmd(&["DBSIZE"]), ":0");

    // With --enable-notifications ferry turns them on and puts the old value back at the end.
    source.cmd(&["CONFIG", "SET", "notify-keyspace-events", "Ex"]);
    let out = common::replicate(
        &source.url(),
        &target.url(),
        &[
            "--mode",
            "live",
            "--enable-notifications",
            "--idle-timeout",
            "0.5",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    assert_eq!(
        source.cmd(&["CONFIG", "GET", "notify-keyspace-events"]),
        "notify-keyspace-events\nxE"
    );
    assert_eq!(target.cmd(&["GET", "k"]), "v");
}

#[tokio::test]
async fn ferry_tail_drains_and_exits_0_on_sigterm() {
    let (source, target) = (source_with_notifications(), Server::start());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("tail.json");
    let mut child = Command::new(rig::ferry_bin())
        .args([
            "tail",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
            "--json",
            report.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.contains("following"), "{ready}");
    for i in 0..500 {
        source.cmd(&["SET", &format!("k{i}"), "v"]);
    }
    source.cmd(&["DEL", "k7"]);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let r = report_of(&report);
    assert_eq!(r["outcome"], "drained", "{r}");
    assert_eq!(
        target.cmd(&["DBSIZE"]),
        ":499",
        "every write before SIGTERM arrived"
    );
    assert_eq!(target.cmd(&["EXISTS", "k7"]), ":0");
}

/// Source protection (design §6): ferry only reads the source, except its canary key. The live
/// run connects to the source as an ACL user that may read every key but write only
/// `ferry:canary:*`, with no write, admin or scripting command but SET (and CONFIG GET): any
/// other write would be refused and logged, so the run must verify and leave the ACL log empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_writes_nothing_to_the_source_but_its_canary() {
    let source = source_with_notifications();
    let target = Server::start();
    common::seed(&source.url(), "5000");
    let rules = [
        "ACL",
        "SETUSER",
        "reader",
        "on",
        ">reader-pw",
        "resetkeys",
        "%R~*",
        "%W~ferry:canary:*",
        "resetchannels",
        "&*",
        "+@all",
        "-@write",
        "-@admin",
        "-@scripting",
        "+config|get",
        "+set",
    ];
    assert_eq!(source.cmd(&rules), "+OK");
    source.cmd(&["ACL", "LOG", "RESET"]);
    let reader = format!("redis://reader:reader-pw@127.0.0.1:{}", source.port);
    let writers = Writers::start(&source.url(), 2, 77, (false, false));
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("live.json");
    let run = LiveRun::start(&reader, &target.url(), &report);
    run.wait_for("target caught up", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    writers.stop().await;
    let (code, text) = run.finish().await;
    assert_eq!(code, 0, "{text}");
    let r = report_of(&report);
    assert_eq!(r["outcome"], "verified", "{r}");
    // The one refusal allowed: ferry asks once for its own subscription's output buffer
    // (CLIENT LIST, an admin read), and stops asking when refused.
    let log = source.cmd(&["ACL", "LOG"]);
    let refused: Vec<&str> = log
        .split("\nobject\n")
        .skip(1)
        .filter_map(|entry| entry.lines().next())
        .collect();
    assert!(
        refused.iter().all(|object| *object == "client|list"),
        "ferry tried something the read-only user may not do: {log}"
    );
    assert!(
        log.is_empty() || log.starts_with("count\n:1\n"),
        "asked once: {log}"
    );
    common::assert_servers_same(&source.url(), &target.url()).await;
}

/// Stopping never cuts a heal short (issue 12): a FLUSHDB raises no per-key event, so only the
/// heal pass deletes the target's copies; a stop sent the moment that heal starts still ends
/// with the target emptied and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_heal_waits_for_it() {
    let (source, target) = (Server::start(), Server::start());
    source.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KA"]);
    common::seed(&source.url(), "60000");
    source.cmd(&["SET", "survivor", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("live.json");
    let run = LiveRun::start_with(&source.url(), &target.url(), &report, &[]);
    run.wait_for("target caught up", Duration::from_secs(60))
        .await;
    source.cmd(&["FLUSHDB"]);
    source.cmd(&["SET", "after-the-flush", "1"]);
    run.wait_for("gap on the source", Duration::from_secs(10))
        .await;
    run.signal("-INT");
    let (code, out) = run.finish().await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("outcome: verified"), "{out}");
    assert_eq!(target.cmd(&["DBSIZE"]), ":1", "{out}");
    assert_eq!(target.cmd(&["GET", "after-the-flush"]), "1");
}

/// Where CONFIG is blocked (as on ElastiCache), `auto` cannot read `notify-keyspace-events`:
/// it listens for the canary's keyspace event and follows client tracking when none comes.
#[test]
fn auto_without_config_tells_the_channel_by_the_canary() {
    for (notify, channel) in [(true, "keyspace"), (false, "tracking")] {
        let mut args: Vec<String> = ["--rename-command", "CONFIG", ""]
            .map(String::from)
            .to_vec();
        if notify {
            args.extend(["--notify-keyspace-events".into(), "KA".into()]);
        }
        let source = Server::with(Config {
            args,
            ..Config::default()
        });
        let target = Server::start();
        source.cmd(&["SET", "k", "v"]);
        let out = common::replicate(
            &source.url(),
            &target.url(),
            &["--mode", "live", "--idle-timeout", "0.5", "--json", "-"],
            &[],
        );
        let text = common::text(&out);
        assert_eq!(out.status.code(), Some(0), "{text}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["live"]["channel"], channel, "{r}");
        assert_eq!(target.cmd(&["GET", "k"]), "v");
    }
}

/// A subscriber that falls behind is cut off by the server's pubsub output-buffer limit (set
/// tiny once the copy caught up, with ferry frozen by SIGSTOP under a flood of kilobyte-named
/// keys): on either channel that is a dropped subscription, a gap, healed; the run ends
/// verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_cut_off_for_falling_behind_is_a_gap_healed() {
    for channel in [Channel::Keyspace, Channel::Tracking] {
        let source = match channel {
            Channel::Keyspace => source_with_notifications(),
            Channel::Tracking => Server::start(),
        };
        let target = Server::start();
        common::seed(&source.url(), "3000");
        let writers = Writers::start(&source.url(), 3, 90, (false, false));
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("live.json");
        // Idle only well after the writers stop: the frozen seconds must not end the run early.
        let idle = ["--idle-timeout", "4"];
        let run = LiveRun::start_with(&source.url(), &target.url(), &report, &idle);
        run.wait_for("target caught up", Duration::from_secs(30))
            .await;
        let limit = |value: &str| {
            let set = ["CONFIG", "SET", "client-output-buffer-limit", value];
            assert_eq!(source.cmd(&set), "+OK");
        };
        limit("pubsub 128kb 64kb 1");
        run.signal("-STOP");
        // Kilobyte key names: enough changes to outgrow the kernel's socket buffers on either
        // channel (tracking batches invalidations, and small ones fit in the socket for seconds).
        let mut c = common::client(&source.url()).await;
        let flood_until = std::time::Instant::now() + Duration::from_secs(3);
        let mut i = 0u64;
        while std::time::Instant::now() < flood_until {
            let mut p = redis::pipe();
            for _ in 0..100 {
                i += 1;
                let key = format!("long:{:0>1000}", i % 3000);
                p.cmd("SET").arg(key).arg(i).ignore();
            }
            let _: () = p.query_async(&mut c).await.unwrap();
        }
        run.signal("-CONT");
        limit("pubsub 32mb 8mb 60");
        tokio::time::sleep(Duration::from_secs(2)).await;
        writers.stop().await;
        let (code, text) = run.finish().await;
        assert_eq!(code, 0, "{channel:?}: {text}");
        let r = report_of(&report);
        assert_eq!(r["outcome"], "verified", "{r}");
        assert!(
            text.contains("subscription") && text.contains("dropped"),
            "{text}"
        );
        assert!(r["live"]["gaps"].as_u64().unwrap() >= 1, "{channel:?}: {r}");
        assert!(r["live"]["heals"].as_u64().unwrap() >= 1, "{r}");
        assert!(r["live"]["subscriber_omem_bytes"].is_u64(), "{r}");
        assert_dbs_0_and_1_same(&source, &target).await;
    }
}
