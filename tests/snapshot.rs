//! Snapshot copy and verify through the engine, against real redis-server processes, each result
//! also checked with an independent client (redis-rs).

mod common;

use std::sync::Arc;
use std::time::Instant;

use ferry_engine::copy;
use ferry_engine::copy::Counts;
use ferry_engine::inventory::Inventory;
use ferry_engine::model::migration::{Method, Migration};
use ferry_engine::model::scope::Scope;
use ferry_engine::prepare;
use ferry_engine::prepare::Purpose;
use ferry_engine::util::cancel::StopWhen;
use ferry_engine::verify;
use ferry_engine::verify::{Level, Status, VerifyOptions, VerifyReport};
use ferry_engine::{Endpoint, Error, Role};
use rig::{Config, Server, Version};

/// A migration between two URLs, adjusted by `tune`.
fn migration(source: &str, target: &str, tune: impl FnOnce(&mut Migration)) -> Migration {
    let mut m = Migration::new(
        Endpoint::parse(Role::Source, source).unwrap(),
        Endpoint::parse(Role::Target, target).unwrap(),
    );
    tune(&mut m);
    m
}

/// Inventory, copy every shard, then a full verify; the way `ferry replicate` runs.
async fn copy_and_verify(m: &Migration) -> Result<(Inventory, Counts, VerifyReport), Error> {
    let inv = prepare::inventory(m, Purpose::Copy).await?;
    let ctx = m.copy_context(&inv);
    let shards = copy::copy_shards(
        m,
        ctx.clone(),
        prepare::plan_shards(m, &inv.source),
        StopWhen::default(),
    )
    .await?;
    assert!(shards.iter().all(|s| s.done), "every shard finishes");
    let vctx = verify::verify_context(m, &inv, &[], None, VerifyOptions::default());
    let (report, _) =
        verify::verify_all(m, &inv, vctx, Arc::new(|_| {}), StopWhen::default()).await?;
    Ok((inv, ctx.stats.counts(), report))
}

#[tokio::test]
async fn every_type_and_encoding_copies_exactly_with_each_method() {
    for method in [Method::Auto, Method::Dump, Method::Struct] {
        let (source, target) = (Server::start(), Server::start());
        common::write_every_type(&source.url()).await;
        let m = migration(&source.url(), &target.url(), |m| m.copy.method = method);
        let (_, counts, report) = copy_and_verify(&m).await.unwrap();
        assert_eq!(report.total.differences(), 0, "{method:?}: {report:?}");
        assert!(report.total.ok >= 17, "{method:?}: {report:?}");
        if method == Method::Struct {
            assert_eq!(counts.struct_copied, counts.copied);
        } else {
            assert_eq!(
                counts.struct_copied, 0,
                "{method:?} between equal versions uses RESTORE"
            );
        }
        common::assert_servers_same(&source.url(), &target.url()).await;
        // Stream consumer groups: last-delivered id, entries-read and pending counts.
        let groups = target.cmd(&["XINFO", "GROUPS", "x:s"]);
        let source_groups = source.cmd(&["XINFO", "GROUPS", "x:s"]);
        assert_eq!(groups, source_groups, "{method:?}");
        assert!(
            groups.contains("alice") || target.cmd(&["XPENDING", "x:s", "g1"]).contains("alice")
        );
        assert_eq!(
            target
                .cmd(&["XINFO", "CONSUMERS", "x:s", "g1"])
                .matches("name")
                .count(),
            2
        );
        assert_eq!(target.cmd(&["OBJECT", "ENCODING", "set:int"]), "intset");
        assert_eq!(target.cmd(&["OBJECT", "ENCODING", "s:int"]), "int");
        // Absolute expiry: the same expiry instant on both sides.
        let (a, b) = (
            source.cmd(&["PEXPIRETIME", "s:ttl"]),
            target.cmd(&["PEXPIRETIME", "s:ttl"]),
        );
        let (a, b): (i64, i64) = (
            a.trim_start_matches(':').parse().unwrap(),
            b.trim_start_matches(':').parse().unwrap(),
        );
        assert!((a - b).abs() <= 1, "{method:?}: expiry {a} vs {b}");
    }
}

#[tokio::test]
async fn redis7_to_redis62_falls_back_to_struct_and_verifies() {
    let source = Server::start();
    let target = Server::with(Config {
        version: Version::Redis62,
        ..Config::default()
    });
    common::write_every_type(&source.url()).await;
    let m = migration(&source.url(), &target.url(), |_| {});
    let (inv, counts, report) = copy_and_verify(&m).await.unwrap();
    assert_eq!(inv.copy_method, Method::Struct);
    assert!(
        inv.notes.iter().any(|n| n.contains("struct")),
        "{:?}",
        inv.notes
    );
    assert!(
        counts.copied > 0 && counts.struct_copied == counts.copied,
        "{counts:?}"
    );
    assert_eq!(report.total.differences(), 0, "{report:?}");
    common::assert_servers_same(&source.url(), &target.url()).await;

    // --type dump cannot work here, and says so before writing anything.
    let fresh = Server::with(Config {
        version: Version::Redis62,
        ..Config::default()
    });
    let m = migration(&source.url(), &fresh.url(), |m| {
        m.copy.method = Method::Dump
    });
    let err = copy_and_verify(&m).await.unwrap_err();
    assert!(matches!(err, Error::Incompatible(_)), "{err}");
    assert_eq!(fresh.cmd(&["DBSIZE"]), ":0");
}

#[tokio::test]
async fn redis62_source_copies_ttls_with_pttl() {
    let source = Server::with(Config {
        version: Version::Redis62,
        ..Config::default()
    });
    let target = Server::start();
    common::write_every_type(&source.url()).await;
    let m = migration(&source.url(), &target.url(), |_| {});
    let (inv, counts, report) = copy_and_verify(&m).await.unwrap();
    assert_eq!(
        inv.copy_method,
        Method::Dump,
        "a 7.0 target loads 6.2 payloads"
    );
    assert_eq!(counts.struct_copied, 0);
    assert_eq!(report.total.differences(), 0, "{report:?}");
    common::assert_servers_same(&source.url(), &target.url()).await;
}

#[tokio::test]
async fn big_keys_are_copied_in_chunks() {
    let (source, target) = (Server::start(), Server::start());
    let mut c = common::client(&source.url()).await;
    for chunk in 0..30 {
        let mut p = redis::pipe();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            p.cmd("HSET")
                .arg("big:hash")
                .arg(format!("f{i}"))
                .arg(i)
                .ignore();
            p.cmd("RPUSH").arg("big:list").arg(i).ignore();
            p.cmd("SADD").arg("big:set").arg(i).ignore();
            p.cmd("ZADD")
                .arg("big:zset")
                .arg(i)
                .arg(format!("m{i}"))
                .ignore();
            p.cmd("XADD")
                .arg("big:stream")
                .arg("*")
                .arg("i")
                .arg(i)
                .ignore();
        }
        let _: () = p.query_async(&mut c).await.unwrap();
    }
    let mut p = redis::pipe();
    p.cmd("SET")
        .arg("big:string")
        .arg("z".repeat(9 * 1024 * 1024))
        .ignore();
    p.cmd("PEXPIRE").arg("big:hash").arg(5_000_000).ignore();
    p.cmd("SET").arg("small").arg("1").ignore();
    let _: () = p.query_async(&mut c).await.unwrap();
    let m = migration(&source.url(), &target.url(), |m| {
        m.copy.big_key_bytes = 64 * 1024
    });
    let (_, counts, report) = copy_and_verify(&m).await.unwrap();
    assert_eq!(counts.big_keys, 6, "{counts:?}");
    assert_eq!(counts.copied, 7, "{counts:?}");
    assert_eq!(report.total.differences(), 0, "{report:?}");
    common::assert_servers_same(&source.url(), &target.url()).await;
}

#[tokio::test]
async fn every_db_is_copied_and_db_map_folds_dbs_into_db0() {
    let source = Server::start();
    for db in [0u32, 2, 5] {
        let mut c = common::client(&source.url_db(db)).await;
        for i in 0..200 {
            let _: () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(format!("db{db}"))
                .query_async(&mut c)
                .await
                .unwrap();
        }
    }
    // Same dbs on a 16-db target.
    let target = Server::start();
    let (_, counts, report) = copy_and_verify(&migration(&source.url(), &target.url(), |_| {}))
        .await
        .unwrap();
    assert_eq!(
        (counts.copied >= 600, report.total.differences()),
        (true, 0),
        "{report:?}"
    );
    assert_eq!(
        target
            .cmd(&["INFO", "keyspace"])
            .matches("keys=200")
            .count(),
        3
    );

    // A single-db target refuses until --db-map says where the keys go.
    let single = Server::with(Config {
        args: vec!["--databases".into(), "1".into()],
        ..Config::default()
    });
    let err = copy_and_verify(&migration(&source.url(), &single.url(), |_| {}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Incompatible(m) if m.contains("--db-map")),
        "{err}"
    );
    assert_eq!(single.cmd(&["DBSIZE"]), ":0", "refused before writing");
    let mapped = migration(&source.url(), &single.url(), |m| {
        m.scope.db_map = Scope::parse_db_map(&["2=0:db2:".into(), "5=0:db5:".into()]).unwrap();
    });
    let (_, _, report) = copy_and_verify(&mapped).await.unwrap();
    assert_eq!(report.total.differences(), 0, "{report:?}");
    assert_eq!(single.cmd(&["DBSIZE"]), ":600");
    assert_eq!(single.cmd(&["GET", "db5:k7"]), "db5");
    assert_eq!(single.cmd(&["GET", "k7"]), "db0");
}

#[tokio::test]
async fn key_pattern_and_type_filters_limit_the_copy() {
    let (source, target) = (Server::start(), Server::start());
    common::write_every_type(&source.url()).await;
    let m = migration(&source.url(), &target.url(), |m| {
        m.scope.pattern = Some("h:*".into());
    });
    let (_, _, report) = copy_and_verify(&m).await.unwrap();
    assert_eq!(report.total.differences(), 0);
    assert_eq!(target.cmd(&["DBSIZE"]), ":2");
    let target2 = Server::start();
    let m = migration(&source.url(), &target2.url(), |m| {
        m.scope.key_type = Some("zset".into())
    });
    copy_and_verify(&m).await.unwrap();
    assert_eq!(target2.cmd(&["DBSIZE"]), ":2");
}

#[tokio::test]
async fn max_ops_per_sec_caps_the_load_on_the_source() {
    let (source, target) = (Server::start(), Server::start());
    common::seed(&source.url(), "4000");
    let cap = 8000;
    let m = migration(&source.url(), &target.url(), |m| {
        m.copy.max_source_ops = cap
    });
    let inv = prepare::inventory(&m, Purpose::Copy).await.unwrap();
    let ctx = m.copy_context(&inv);
    source.cmd(&["CONFIG", "RESETSTAT"]);
    let start = Instant::now();
    copy::copy_shards(
        &m,
        ctx.clone(),
        prepare::plan_shards(&m, &inv.source),
        StopWhen::default(),
    )
    .await
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let stats = source.cmd(&["INFO", "commandstats"]);
    let calls: u64 = ferry_engine::net::info::command_calls(&stats)
        .iter()
        .filter(|(name, _)| !["info", "config"].contains(&name.as_str()))
        .map(|(_, n)| n)
        .sum();
    let rate = calls as f64 / secs;
    assert!(calls > 8000, "{calls} commands");
    assert!(
        rate <= cap as f64 * 1.1 && rate >= cap as f64 * 0.75,
        "{rate:.0} ops/s against a cap of {cap}"
    );
    // The source received no write.
    for write in [
        "cmdstat_set",
        "cmdstat_del",
        "cmdstat_restore",
        "cmdstat_expire",
    ] {
        assert!(!stats.contains(write), "{write} on the source: {stats}");
    }
}

#[tokio::test]
async fn quick_verify_finds_missing_type_and_ttl_and_full_finds_values() {
    let (source, target) = (Server::start(), Server::start());
    common::write_every_type(&source.url()).await;
    let m = migration(&source.url(), &target.url(), |_| {});
    copy_and_verify(&m).await.unwrap();
    target.cmd(&["DEL", "s:raw"]);
    target.cmd(&["DEL", "l:small"]);
    target.cmd(&["SET", "l:small", "not a list"]);
    target.cmd(&["PERSIST", "s:ttl"]);
    target.cmd(&["HSET", "h:big", "field7", "changed"]);
    target.cmd(&["SET", "only:target", "1"]);
    let inv = prepare::inventory(&m, Purpose::Compare).await.unwrap();
    for (level, value_diffs) in [(Level::Quick, 0), (Level::Full, 1)] {
        let vctx = verify::verify_context(
            &m,
            &inv,
            &[],
            None,
            VerifyOptions {
                level,
                ..Default::default()
            },
        );
        let (report, _) = verify::verify_all(&m, &inv, vctx, Arc::new(|_| {}), StopWhen::default())
            .await
            .unwrap();
        // SCAN may return a key twice, so count distinct keys per status.
        let distinct: std::collections::BTreeSet<_> = report
            .diffs
            .iter()
            .map(|d| (d.status, d.key.clone()))
            .collect();
        let count = |s| distinct.iter().filter(|(st, _)| *st == s).count();
        assert_eq!(
            (
                count(Status::Missing),
                count(Status::Type),
                count(Status::Ttl),
                count(Status::Extra),
                count(Status::Value)
            ),
            (1, 1, 1, 1, value_diffs),
            "{level:?}: {report:?}"
        );
        assert!(report.sample.iter().any(|d| d.key == "only:target"));
    }
    // Repair re-copies exactly those keys and deletes the extra one.
    let vctx = verify::verify_context(&m, &inv, &[], None, VerifyOptions::default());
    let (report, _) = verify::verify_all(
        &m,
        &inv,
        vctx.clone(),
        Arc::new(|_| {}),
        StopWhen::default(),
    )
    .await
    .unwrap();
    let ctx = m.copy_context(&inv);
    let repaired = verify::repair(&m, ctx.clone(), vctx, &report.diffs)
        .await
        .unwrap();
    assert_eq!(
        (
            repaired.recopied,
            repaired.deleted,
            repaired.still_different
        ),
        (4, 1, 0),
        "{repaired:?}"
    );
    assert_eq!(
        ctx.stats.counts().copied,
        4,
        "exactly the differing keys were copied"
    );
    common::assert_servers_same(&source.url(), &target.url()).await;
}
