//! What verify proves (issue 17 item 4 and 10): each key counted once though SCAN repeats it,
//! streams' metadata compared where both sides keep it, and streams whose pending entries were
//! deleted copied per type with their pending lists exact.

mod common;

use common::{replicate, text};
use rig::fake::FakeServer;
use rig::{Config, Server, Version};

fn server(version: Version) -> Server {
    Server::with(Config {
        version,
        ..Config::default()
    })
}

/// A SCAN reply with every key in it twice.
fn repeat_scanned_keys(command: &[Vec<u8>], reply: redis::Value) -> redis::Value {
    match (rig::fake::name(command).as_str(), reply) {
        ("SCAN", redis::Value::Array(mut parts)) if parts.len() == 2 => {
            if let redis::Value::Array(keys) = &mut parts[1] {
                let again = keys.clone();
                keys.extend(again);
            }
            redis::Value::Array(parts)
        }
        (_, reply) => reply,
    }
}

/// A real server changes its table size during a SCAN only now and then, and then returns some
/// keys twice; a proxy that repeats every key of every SCAN reply makes that certain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_scan_returns_twice_are_counted_once() {
    let (source, target) = (server(Version::Redis7), server(Version::Redis7));
    for s in [&source, &target] {
        for i in 0..300 {
            s.cmd(&["SET", &format!("k:{i}"), "v"]);
        }
    }
    let repeating = FakeServer::proxy(source.port, repeat_scanned_keys);
    let out = replicate(
        &repeating.url(),
        &target.url(),
        &["--mode", "compare", "--shards", "1"],
        &[],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("ok 300,"), "{t}");
    // The reverse pass counts each extra once too.
    for i in 0..5 {
        target.cmd(&["SET", &format!("extra:{i}"), "v"]);
    }
    let repeating_target = FakeServer::proxy(target.port, repeat_scanned_keys);
    let out = replicate(
        &source.url(),
        &repeating_target.url(),
        &["--mode", "compare", "--shards", "1"],
        &[],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("ok 300,") && t.contains("extra 5,"), "{t}");
}

/// A stream whose pending entries were deleted (XDEL, XTRIM) before, between and after its
/// remaining entries, with delivery counts above 1 and a consumer with nothing pending.
fn seed_trimmed_stream(s: &Server) {
    for i in 1..=6 {
        s.cmd(&["XADD", "x:trimmed", &format!("{i}-1"), "f", &i.to_string()]);
    }
    s.cmd(&["XGROUP", "CREATE", "x:trimmed", "g", "0"]);
    s.cmd(&["XGROUP", "CREATE", "x:trimmed", "idle", "$"]);
    s.cmd(&["XGROUP", "CREATECONSUMER", "x:trimmed", "g", "carol"]);
    s.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "alice",
        "COUNT",
        "4",
        "STREAMS",
        "x:trimmed",
        ">",
    ]);
    s.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "bob",
        "COUNT",
        "2",
        "STREAMS",
        "x:trimmed",
        ">",
    ]);
    s.cmd(&[
        "XCLAIM",
        "x:trimmed",
        "g",
        "bob",
        "0",
        "2-1",
        "RETRYCOUNT",
        "7",
    ]);
    s.cmd(&["XTRIM", "x:trimmed", "MINID", "2-0"]);
    for id in ["2-1", "4-1", "6-1"] {
        s.cmd(&["XDEL", "x:trimmed", id]);
    }
}

/// The `name value` pairs of a flattened XINFO reply whose names are in `names`.
fn pairs(reply: &str, names: &[&str]) -> String {
    let lines: Vec<&str> = reply.lines().collect();
    lines
        .chunks(2)
        .filter(|p| p.len() == 2 && names.contains(&p[0]))
        .map(|p| format!("{}={}", p[0], p[1]))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an independent client sees of a stream: its ids and counters, each group's, each
/// consumer's pending count, and the pending lists (id, consumer, delivery count; idle times
/// differ by nature).
fn stream_state(s: &Server, key: &str) -> Vec<String> {
    let info = s.cmd(&["XINFO", "STREAM", key]);
    let lines: Vec<&str> = info.lines().collect();
    let mut state: Vec<String> = [
        "length",
        "last-generated-id",
        "max-deleted-entry-id",
        "entries-added",
    ]
    .iter()
    .map(|f| {
        let at = lines.iter().position(|l| l == f).expect(f);
        format!("{f}={}", lines[at + 1])
    })
    .collect();
    let groups = s.cmd(&["XINFO", "GROUPS", key]);
    state.push(pairs(
        &groups,
        &[
            "name",
            "consumers",
            "pending",
            "last-delivered-id",
            "entries-read",
            "lag",
        ],
    ));
    for group in ["g", "idle"] {
        let consumers = s.cmd(&["XINFO", "CONSUMERS", key, group]);
        state.push(pairs(&consumers, &["name", "pending"]));
        let pending = s.cmd(&["XPENDING", key, group, "-", "+", "100"]);
        let rows: Vec<&str> = pending.lines().collect();
        let kept: Vec<String> = rows
            .chunks(4)
            .map(|r| format!("{} {} {}", r[0], r[1], r[3]))
            .collect();
        state.push(format!("{group}: {}", kept.join(", ")));
    }
    state
}

/// Valkey 9.1 -> Redis 8.2 goes per type (no payload loads across): the pending entries whose
/// messages are gone are recreated exactly, and ferry's verify and an independent reading of
/// both streams agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_deleted_pending_entries_is_copied_exactly_per_type() {
    let (source, target) = (server(Version::Valkey91), server(Version::Redis82));
    seed_trimmed_stream(&source);
    let out = replicate(&source.url(), &target.url(), &[], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("ok 1,"), "{t}");
    assert_eq!(
        stream_state(&source, "x:trimmed"),
        stream_state(&target, "x:trimmed")
    );
}

/// A stream's metadata is part of its value: a delivery count, the entries-added counter or a
/// group's entries-read that differ make the key differ, on servers that keep them (7.0+).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_compares_stream_metadata() {
    let (source, target) = (server(Version::Valkey91), server(Version::Redis82));
    seed_trimmed_stream(&source);
    source.cmd(&["XADD", "x:plain", "1-1", "f", "v"]);
    let out = replicate(&source.url(), &target.url(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let compare = || {
        let out = replicate(&source.url(), &target.url(), &["--mode", "compare"], &[]);
        (out.status.code(), text(&out))
    };
    let changes: [&[&str]; 3] = [
        &[
            "XCLAIM",
            "x:trimmed",
            "g",
            "bob",
            "0",
            "5-1",
            "RETRYCOUNT",
            "9",
            "JUSTID",
        ],
        &["XSETID", "x:trimmed", "6-1", "ENTRIESADDED", "60"],
        &[
            "XGROUP",
            "SETID",
            "x:trimmed",
            "g",
            "6-1",
            "ENTRIESREAD",
            "4",
        ],
    ];
    for change in changes {
        target.cmd(&["FLUSHALL"]);
        let out = replicate(&source.url(), &target.url(), &[], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let (code, t) = compare();
        assert_eq!(code, Some(0), "{t}");
        target.cmd(change);
        let (code, t) = compare();
        assert_eq!(code, Some(3), "after {change:?}: {t}");
        assert!(
            t.contains("ok 1,") && t.contains("value 1"),
            "after {change:?}: {t}"
        );
    }
}

/// A SCAN call that ends a shard runs on into the next shard's first buckets, so neighbouring
/// shards return some keys twice (47 of 1,000,000 with 8 shards): each is copied and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_at_shard_boundaries_are_counted_once() {
    let (source, target) = (server(Version::Redis7), server(Version::Redis7));
    let out = common::ferry(
        &[
            "seed",
            "--target",
            &source.url(),
            "--keys",
            "30000",
            "--ttl-percent",
            "0",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = replicate(&source.url(), &target.url(), &["--shards", "64"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("copied 30000 keys") && t.contains("ok 30000,"),
        "{t}"
    );
    let out = replicate(
        &source.url(),
        &target.url(),
        &["--mode", "compare", "--shards", "64"],
        &[],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("ok 30000,"), "{t}");
}

/// Across engines verify reads every key by its contents (payloads never match): small keys in
/// one bounded read each, keys past the bound in chunks. A change to either kind is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_engines_verify_reads_small_and_big_keys_by_contents() {
    let (source, target) = (server(Version::Valkey91), server(Version::Redis82));
    common::write_every_type(&source.url()).await;
    let fields: Vec<String> = (0..1500).map(|i| format!("f{i}")).collect();
    for chunk in fields.chunks(500) {
        let mut list = vec!["RPUSH", "big:list"];
        list.extend(chunk.iter().map(String::as_str));
        source.cmd(&list);
        let mut set = vec!["SADD", "big:set"];
        set.extend(chunk.iter().map(String::as_str));
        source.cmd(&set);
        let mut hash = vec!["HSET", "big:hash"];
        hash.extend(chunk.iter().flat_map(|f| [f.as_str(), "v"]));
        source.cmd(&hash);
    }
    let out = replicate(&source.url(), &target.url(), &[], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    target.cmd(&["LSET", "big:list", "1200", "changed"]);
    target.cmd(&["SREM", "big:set", "f7"]);
    target.cmd(&["HSET", "big:hash", "f1499", "changed"]);
    target.cmd(&["SET", "s:int", "changed"]);
    let out = replicate(&source.url(), &target.url(), &["--mode", "compare"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("value 4"), "{t}");
    for key in ["big:list", "big:set", "big:hash", "s:int"] {
        assert!(t.contains(&format!("Value db0 {key}")), "{key}: {t}");
    }
}
