//! Across engines (issue 17): Valkey 9.1 and Redis 8.2 (both with hash-field TTLs) to each other
//! and to themselves, and into Redis 7.0, which cannot hold field TTLs. Each copy ends in ferry's
//! verify and an independent comparison that reads every field's expiry on both sides.

mod common;

use common::{replicate, text};
use rig::{Config, Server, Version};

fn server(version: Version) -> Server {
    Server::with(Config {
        version,
        ..Config::default()
    })
}

/// Expiry instants far enough ahead that no field expires during the test.
const LATER: i64 = 4_102_444_800_000;

/// Hashes with field TTLs (a small one with two expiry instants and a key TTL, a big one copied
/// in chunks), plus keys of every core type.
async fn seed_field_ttls(s: &Server) {
    common::write_every_type(&s.url()).await;
    s.cmd(&["HSET", "fttl:small", "a", "1", "b", "2", "c", "3"]);
    s.cmd(&[
        "HPEXPIREAT",
        "fttl:small",
        &LATER.to_string(),
        "FIELDS",
        "1",
        "a",
    ]);
    s.cmd(&[
        "HPEXPIREAT",
        "fttl:small",
        &(LATER + 1234).to_string(),
        "FIELDS",
        "1",
        "b",
    ]);
    s.cmd(&["PEXPIREAT", "fttl:small", &(LATER + 99).to_string()]);
    let mut args = vec!["HSET".to_string(), "fttl:big".into()];
    for i in 0..3000 {
        args.push(format!("field:{i}"));
        args.push(format!("value-{i}-{}", "x".repeat(20)));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.cmd(&args);
    let mut timed = vec![
        "HPEXPIREAT".to_string(),
        "fttl:big".into(),
        (LATER + 7).to_string(),
    ];
    timed.extend(["FIELDS".to_string(), "1000".into()]);
    timed.extend((0..1000).map(|i| format!("field:{}", i * 3)));
    let timed: Vec<&str> = timed.iter().map(String::as_str).collect();
    assert_eq!(s.cmd(&timed).lines().count(), 1000);
}

/// Every field of `key` with its expiry (-1 for none), read independently with redis-rs.
async fn fields_with_expiry(url: &str, key: &str) -> Vec<(String, String, i64)> {
    let mut c = common::client(url).await;
    let all: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap();
    let mut out = Vec::new();
    for (field, value) in all {
        let at: Vec<i64> = redis::cmd("HPEXPIRETIME")
            .arg(key)
            .arg("FIELDS")
            .arg(1)
            .arg(&field)
            .query_async(&mut c)
            .await
            .unwrap();
        out.push((field, value, at[0]));
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_ttls_cross_valkey_9_and_redis_8_both_ways_and_to_themselves() {
    for (from, to) in [
        (Version::Valkey91, Version::Redis82),
        (Version::Redis82, Version::Valkey91),
        (Version::Redis82, Version::Redis82),
        (Version::Valkey91, Version::Valkey91),
    ] {
        let (source, target) = (server(from), server(to));
        seed_field_ttls(&source).await;
        let out = replicate(
            &source.url(),
            &target.url(),
            &["--big-key-bytes", "20000"],
            &[],
        );
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{from:?} -> {to:?}: {t}");
        assert!(t.contains("outcome: verified"), "{from:?} -> {to:?}: {t}");
        for key in ["fttl:small", "fttl:big"] {
            let (s, d) = (
                fields_with_expiry(&source.url(), key).await,
                fields_with_expiry(&target.url(), key).await,
            );
            assert_eq!(s, d, "{from:?} -> {to:?}: {key}");
            let timed = s.iter().filter(|(_, _, at)| *at > 0).count();
            assert!(timed >= 2, "{key}: the test meant field TTLs to be there");
        }
        common::assert_servers_same(&source.url(), &target.url()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_counts_a_lost_field_ttl_as_a_difference() {
    let (source, target) = (server(Version::Valkey91), server(Version::Redis82));
    seed_field_ttls(&source).await;
    let out = replicate(&source.url(), &target.url(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    target.cmd(&["HPERSIST", "fttl:small", "FIELDS", "1", "a"]);
    target.cmd(&[
        "HPEXPIREAT",
        "fttl:big",
        &(LATER + 8).to_string(),
        "FIELDS",
        "1",
        "field:3",
    ]);
    for level in ["full", "quick"] {
        let out = replicate(
            &source.url(),
            &target.url(),
            &["--mode", "compare", "--verify", level],
            &[],
        );
        let t = text(&out);
        assert_eq!(out.status.code(), Some(3), "{level}: {t}");
        assert!(t.contains("ttl 2"), "{level}: {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_without_field_ttls_is_refused_unless_they_may_be_dropped() {
    let (source, target) = (server(Version::Redis82), server(Version::Redis7));
    seed_field_ttls(&source).await;
    let out = replicate(&source.url(), &target.url(), &[], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("field TTLs") && t.contains("--drop-field-ttls"),
        "{t}"
    );
    assert_eq!(target.cmd(&["DBSIZE"]), ":0", "written before refusing");

    let out = replicate(
        &source.url(),
        &target.url(),
        &["--drop-field-ttls", "--big-key-bytes", "20000"],
        &[],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let dropped: u64 = t
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_suffix(" hash fields copied without their TTL (--drop-field-ttls)")
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of dropped field TTLs: {t}"));
    // SCAN may return a key twice; each copy counts its fields.
    assert!(dropped >= 1002, "{dropped}: {t}");
    let copied = fields_with_expiry_on_7(&target, "fttl:small").await;
    assert_eq!(copied, vec!["a", "b", "c"]);
}

/// Field names of a hash on a server without field TTLs.
async fn fields_with_expiry_on_7(s: &Server, key: &str) -> Vec<String> {
    let mut c = common::client(&s.url()).await;
    let mut fields: Vec<String> = redis::cmd("HKEYS")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap();
    fields.sort();
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_follows_field_ttl_changes_across_engines() {
    let (source, target) = (server(Version::Valkey91), server(Version::Redis82));
    source.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KA"]);
    seed_field_ttls(&source).await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("live.json");
    let run = common::live::LiveRun::start(&source.url(), &target.url(), &report);
    run.wait_for("target caught up", std::time::Duration::from_secs(30))
        .await;
    let at = (LATER + 555).to_string();
    source.cmd(&["HPEXPIREAT", "fttl:small", &at, "FIELDS", "1", "c"]);
    source.cmd(&["HPERSIST", "fttl:small", "FIELDS", "1", "a"]);
    source.cmd(&["HSET", "fttl:new", "x", "1", "y", "2"]);
    source.cmd(&["HPEXPIREAT", "fttl:new", &at, "FIELDS", "1", "y"]);
    let (code, out) = run.finish().await;
    assert_eq!(code, 0, "{out}");
    for key in ["fttl:small", "fttl:new"] {
        assert_eq!(
            fields_with_expiry(&source.url(), key).await,
            fields_with_expiry(&target.url(), key).await,
            "{key}"
        );
    }
    let small = fields_with_expiry(&target.url(), "fttl:small").await;
    assert_eq!(small[0].2, -1, "a's TTL was removed on the source");
    assert_eq!(small[2].2, LATER + 555);
}

/// Keys of a type ferry reads no further than TYPE (here Redis 8's built-in vector sets) are
/// verified by payload: a deleted or changed one is a difference, never "ok".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_sees_vector_sets() {
    let (source, target) = (server(Version::Redis82), server(Version::Redis82));
    for (key, n) in [("vs:a", 3), ("vs:b", 5)] {
        for i in 0..n {
            let i = i.to_string();
            source.cmd(&["VADD", key, "VALUES", "3", "1", &i, "2", &format!("e{i}")]);
        }
    }
    source.cmd(&["SET", "plain", "1"]);
    let out = replicate(&source.url(), &target.url(), &[], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("ok 3,"), "{t}");
    target.cmd(&["DEL", "vs:a"]);
    target.cmd(&["VREM", "vs:b", "e0"]);
    let out = replicate(&source.url(), &target.url(), &["--mode", "compare"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("ok 1, missing 1,") && t.contains("value 1"),
        "{t}"
    );
}

/// A vector set (Redis 8) cannot go to Valkey 9 (no such type; the copy is per type there): the
/// run is refused before a key is written, or copies the rest with --skip-unsupported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_the_target_cannot_take_is_refused_before_writing() {
    let (source, target) = (server(Version::Redis82), server(Version::Valkey91));
    for i in 0..200 {
        source.cmd(&["SET", &format!("k:{i}"), "v"]);
    }
    source.cmd(&["VADD", "vs:1", "VALUES", "2", "1", "2", "e"]);
    source.cmd(&["VADD", "vs:2", "VALUES", "2", "3", "4", "e"]);
    let out = replicate(&source.url(), &target.url(), &[], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("type 'vectorset'") && t.contains("vs:") && t.contains("--skip-unsupported"),
        "{t}"
    );
    assert_eq!(target.cmd(&["DBSIZE"]), ":0", "written before refusing");

    let out = replicate(&source.url(), &target.url(), &["--skip-unsupported"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("2 keys of a type the target cannot take left out"),
        "{t}"
    );
    assert!(t.contains("ok 200,") && t.contains("skipped 2"), "{t}");
    assert_eq!(target.cmd(&["DBSIZE"]), ":200");
}

/// A big key that expires while it is copied in chunks ends absent on the target: not failing
/// the run, not left truncated without a TTL (design §3; issue 17 item 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_expiring_during_its_chunked_copy_ends_absent() {
    let (source, target) = (Server::start(), Server::start());
    for key in ["big:hash", "big:list"] {
        let mut args = vec![
            if key == "big:hash" { "HSET" } else { "RPUSH" }.to_string(),
            key.to_string(),
        ];
        for i in 0..40_000 {
            args.push(format!("f{i}"));
            if key == "big:hash" {
                args.push("v".into());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        source.cmd(&args);
        source.cmd(&["PEXPIRE", key, "3000"]);
    }
    source.cmd(&["SET", "small", "1"]);
    // Chunks of 1,000 at 8 commands a second: the keys expire (3 s) after some chunks of each
    // were written and before the last (40 chunks, 5 s).
    let out = replicate(
        &source.url(),
        &target.url(),
        &[
            "--type",
            "struct",
            "--big-key-bytes",
            "1000",
            "--max-ops-per-sec",
            "8",
        ],
        &[],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("outcome: verified"), "{t}");
    assert!(
        t.contains("2 big, 2 gone meanwhile"),
        "both went the chunked way: {t}"
    );
    assert_eq!(target.cmd(&["EXISTS", "big:hash", "big:list"]), ":0", "{t}");
    assert_eq!(
        target.cmd(&["DBSIZE"]),
        ":1",
        "a temporary key was left: {t}"
    );
}

/// Vector-set writes raise no keyspace event; live mode still carries them (their command
/// counters move, every vector set is re-synced), including a VREM that deletes its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_carries_writes_that_raise_no_keyspace_event() {
    let (source, target) = (server(Version::Redis82), server(Version::Redis82));
    source.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KA"]);
    source.cmd(&["VADD", "vs:kept", "VALUES", "2", "1", "2", "a"]);
    source.cmd(&["VADD", "vs:emptied", "VALUES", "2", "3", "4", "only"]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("live.json");
    let run = common::live::LiveRun::start(&source.url(), &target.url(), &report);
    run.wait_for("target caught up", std::time::Duration::from_secs(30))
        .await;
    source.cmd(&["VADD", "vs:kept", "VALUES", "2", "5", "6", "b"]);
    source.cmd(&["VSETATTR", "vs:kept", "a", r#"{"n":1}"#]);
    source.cmd(&["VADD", "vs:new", "VALUES", "2", "7", "8", "c"]);
    source.cmd(&["VREM", "vs:emptied", "only"]);
    // An ordinary write now and then keeps the run from going idle before the watcher looks.
    for i in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        source.cmd(&["SET", "tick", &i.to_string()]);
    }
    let (code, out) = run.finish().await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(target.cmd(&["EXISTS", "vs:emptied"]), ":0", "{out}");
    assert_eq!(target.cmd(&["VCARD", "vs:kept"]), ":2", "{out}");
    assert_eq!(
        target.cmd(&["VGETATTR", "vs:kept", "a"]),
        r#"{"n":1}"#,
        "{out}"
    );
    assert_eq!(target.cmd(&["VCARD", "vs:new"]), ":1", "{out}");
}

/// A function library, as `FUNCTION LOAD` takes it.
fn library(name: &str, returns: u32) -> String {
    format!("#!lua name={name}\nredis.register_function('{name}_f', function(keys, args) return {returns} end)")
}

/// The target's libraries as `name=code` lines, read independently (redis-rs).
async fn libraries_on(url: &str) -> Vec<(String, String)> {
    let mut c = common::client(url).await;
    let list: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("WITHCODE")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut out = Vec::new();
    if let redis::Value::Array(libs) = list {
        for lib in libs {
            let fields: Vec<String> = match lib {
                redis::Value::Array(f) => f
                    .into_iter()
                    .map(|v| redis::from_redis_value::<String>(v).unwrap_or_default())
                    .collect(),
                _ => continue,
            };
            let get = |k: &str| {
                let at = fields.iter().position(|f| f == k).unwrap();
                fields[at + 1].clone()
            };
            out.push((get("library_name"), get("library_code")));
        }
    }
    out.sort();
    out
}

/// Functions are copied to the target, verified by name and code, and followed in live mode
/// (a library loaded and one deleted on the source while ferry follows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_libraries_are_copied_verified_and_followed() {
    for (from, to) in [
        (Version::Redis7, Version::Redis7),
        (Version::Valkey91, Version::Redis82),
    ] {
        let (source, target) = (server(from), server(to));
        source.cmd(&["FUNCTION", "LOAD", &library("first", 1)]);
        source.cmd(&["FUNCTION", "LOAD", &library("second", 2)]);
        source.cmd(&["SET", "k", "v"]);
        let out = replicate(&source.url(), &target.url(), &[], &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{from:?} -> {to:?}: {t}");
        assert!(t.contains("functions: ok 2, missing 0, different 0"), "{t}");
        assert_eq!(
            libraries_on(&source.url()).await,
            libraries_on(&target.url()).await
        );

        // A changed library on the target is a difference, and --repair puts it back.
        target.cmd(&["FUNCTION", "LOAD", "REPLACE", &library("first", 99)]);
        let out = replicate(&source.url(), &target.url(), &["--mode", "compare"], &[]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert!(text(&out).contains("different 1"), "{}", text(&out));
        let out = replicate(
            &source.url(),
            &target.url(),
            &["--mode", "compare", "--repair"],
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(
            libraries_on(&source.url()).await,
            libraries_on(&target.url()).await
        );
    }

    // Live: a library loaded and one deleted while ferry follows.
    let (source, target) = (server(Version::Redis7), server(Version::Redis7));
    source.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KA"]);
    source.cmd(&["FUNCTION", "LOAD", &library("kept", 1)]);
    source.cmd(&["FUNCTION", "LOAD", &library("dropped", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("live.json");
    let run = common::live::LiveRun::start(&source.url(), &target.url(), &report);
    run.wait_for("target caught up", std::time::Duration::from_secs(30))
        .await;
    source.cmd(&["FUNCTION", "LOAD", &library("added", 3)]);
    source.cmd(&["FUNCTION", "DELETE", "dropped"]);
    for i in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        source.cmd(&["SET", "tick", &i.to_string()]);
    }
    let (code, out) = run.finish().await;
    assert_eq!(code, 0, "{out}");
    let names: Vec<String> = libraries_on(&target.url())
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["added", "kept"], "{out}");
}

/// What cannot be carried is refused before anything is written: a target without functions
/// (Redis 6.2), and a target library of the same name with other code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_libraries_that_cannot_be_carried_are_refused_before_writing() {
    let source = server(Version::Redis7);
    source.cmd(&["FUNCTION", "LOAD", &library("lib", 1)]);
    source.cmd(&["SET", "k", "v"]);
    let old = server(Version::Redis62);
    let out = replicate(&source.url(), &old.url(), &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("has no functions"), "{}", text(&out));
    assert_eq!(old.cmd(&["DBSIZE"]), ":0");

    let clash = server(Version::Redis7);
    clash.cmd(&["FUNCTION", "LOAD", &library("lib", 2)]);
    let out = replicate(&source.url(), &clash.url(), &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("other code"), "{}", text(&out));
    assert_eq!(clash.cmd(&["DBSIZE"]), ":0");
}

/// A target whose user may not RESTORE (as Redis Enterprise's Active-Active databases refuse
/// it too) is copied per type: found by inventory's probe, or by a refused RESTORE mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_refuses_restore_is_copied_per_type() {
    let source = Server::start();
    common::write_every_type(&source.url()).await;
    common::seed(&source.url(), "2000");
    let target = Server::start();
    let rules = [
        "ACL",
        "SETUSER",
        "norestore",
        "on",
        ">pw",
        "~*",
        "&*",
        "+@all",
        "-restore",
    ];
    assert_eq!(target.cmd(&rules), "+OK");
    let url = format!("redis://norestore:pw@127.0.0.1:{}", target.port);

    let out = replicate(&source.url(), &url, &["--type", "dump"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("refuses RESTORE"), "{}", text(&out));
    assert_eq!(target.cmd(&["DBSIZE"]), ":0");

    let out = replicate(&source.url(), &url, &[], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("refuses RESTORE") && t.contains("method struct"),
        "{t}"
    );
    common::assert_servers_same(&source.url(), &target.url()).await;

    // No probe before a compare: the repair's first RESTORE is refused, and it goes per type.
    let fresh = Server::start();
    assert_eq!(fresh.cmd(&rules), "+OK");
    let url = format!("redis://norestore:pw@127.0.0.1:{}", fresh.port);
    let out = replicate(&source.url(), &url, &["--mode", "compare", "--repair"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("outcome: repaired"), "{}", text(&out));
    common::assert_servers_same(&source.url(), &fresh.url()).await;
}

fn with_modules(version: Version) -> Server {
    Server::with(Config {
        version,
        modules: true,
        ..Config::default()
    })
}

/// JSON documents and Bloom and Cuckoo filters (RedisJSON, RedisBloom) go per type where the
/// target has the modules but cannot load the source's payloads (Redis 8.2 → 7.0), and by
/// payload between equal servers; verify compares them by their own reads; live mode carries
/// BF.ADD, which raises no keyspace event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_filters_are_copied_verified_and_followed() {
    let doc = r#"{"user":{"name":"Ann","tags":["a","b"],"age":41.5},"n":null}"#;
    for (from, to) in [
        (Version::Redis82, Version::Redis7),
        (Version::Redis82, Version::Redis82),
    ] {
        let (source, target) = (with_modules(from), with_modules(to));
        source.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KA"]);
        source.cmd(&["JSON.SET", "doc", "$", doc]);
        source.cmd(&["PEXPIREAT", "doc", &LATER.to_string()]);
        let items: Vec<String> = (0..500).map(|i| format!("item{i}")).collect();
        let mut add = vec!["BF.MADD", "bloom"];
        add.extend(items.iter().map(String::as_str));
        source.cmd(&add);
        source.cmd(&["CF.ADD", "cuckoo", "x"]);
        source.cmd(&["SET", "plain", "1"]);
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("live.json");
        let run = common::live::LiveRun::start(&source.url(), &target.url(), &report);
        run.wait_for("target caught up", std::time::Duration::from_secs(30))
            .await;
        source.cmd(&["BF.ADD", "bloom", "added-live"]);
        source.cmd(&["JSON.SET", "doc", "$.user.age", "42"]);
        for i in 0..3 {
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            source.cmd(&["SET", "tick", &i.to_string()]);
        }
        let (code, out) = run.finish().await;
        assert_eq!(code, 0, "{from:?} -> {to:?}: {out}");
        assert!(out.contains("outcome: verified"), "{out}");
        let json = |s: &Server| -> serde_json::Value {
            serde_json::from_str(&s.cmd(&["JSON.GET", "doc", "$"])).unwrap()
        };
        assert_eq!(json(&source), json(&target), "{from:?} -> {to:?}");
        assert_eq!(json(&target)[0]["user"]["age"], 42);
        assert_eq!(target.cmd(&["PEXPIRETIME", "doc"]), format!(":{LATER}"));
        for item in ["item0", "item499", "added-live"] {
            assert_eq!(target.cmd(&["BF.EXISTS", "bloom", item]), ":1", "{item}");
        }
        assert_eq!(target.cmd(&["CF.EXISTS", "cuckoo", "x"]), ":1");

        // A changed document is a difference, whatever the RDB versions.
        target.cmd(&["JSON.SET", "doc", "$.n", "1"]);
        let out = replicate(&source.url(), &target.url(), &["--mode", "compare"], &[]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert!(text(&out).contains("value 1"), "{}", text(&out));
    }
}

/// The rest of the matrix: Redis 7.0 → Valkey 9.1 and → Redis 8.2 (both load RDB 10 payloads)
/// and Valkey 9.1 → Redis 7.0 (per type), every core type and encoding and streams with groups, each ending
/// verified and compared independently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_7_to_the_new_engines_and_back() {
    for (from, to, method) in [
        (Version::Redis7, Version::Valkey91, "method dump"),
        (Version::Redis7, Version::Redis82, "method dump"),
        (Version::Valkey91, Version::Redis7, "method struct"),
    ] {
        let (source, target) = (server(from), server(to));
        common::write_every_type(&source.url()).await;
        common::seed(&source.url(), "3000");
        let out = replicate(&source.url(), &target.url(), &[], &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{from:?} -> {to:?}: {t}");
        assert!(t.contains("outcome: verified") && t.contains(method), "{t}");
        common::assert_servers_same(&source.url(), &target.url()).await;
    }
}
