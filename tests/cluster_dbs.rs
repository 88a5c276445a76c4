//! Valkey 9 clusters with several databases (issue 17 item 9): Valkey 9 keeps numbered
//! databases in cluster mode (`cluster-databases`), and ElastiCache for Valkey 9 offers them.
//! ferry plans, copies, verifies and tails every db of such a source; into a target that has
//! only db 0 (a Redis cluster) the `--db-map` rules apply as for a standalone source.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::live::LiveRun;
use common::{replicate, text, KeyState};
use rig::Cluster;
use rig::{Config, Server, Version};

const DBS: [u32; 3] = [0, 1, 3];

fn valkey_cluster() -> Cluster {
    Cluster::with(
        Version::Valkey91,
        3,
        0,
        &["--cluster-databases", "4", "--notify-keyspace-events", "KA"],
    )
}

/// Runs a command about `key` in `db` on the primary that owns the key.
fn on_owner(cluster: &Cluster, db: u32, key: &str, args: &[&str]) -> String {
    for node in cluster.primaries() {
        let reply = node.cmd_db(db, &[&["EXISTS", key][..]].concat());
        if !reply.starts_with("-MOVED") {
            return node.cmd_db(db, args);
        }
    }
    panic!("no primary owns {key}");
}

/// Distinct data per db: the same names with other values, and names of each db's own.
fn seed_dbs(cluster: &Cluster) {
    for db in DBS {
        for i in 0..200 {
            let key = format!("k:{i}");
            on_owner(cluster, db, &key, &["SET", &key, &format!("db{db}-{i}")]);
            let own = format!("db{db}:h:{i}");
            on_owner(cluster, db, &own, &["HSET", &own, "f", &i.to_string()]);
        }
    }
}

/// One db of the whole cluster, read node by node (each node's SCAN sees its own slots).
async fn cluster_db(cluster: &Cluster, db: u32) -> BTreeMap<Vec<u8>, KeyState> {
    let mut all = BTreeMap::new();
    for node in cluster.primaries() {
        all.extend(common::keyspace(&node.url_db(db)).await);
    }
    all
}

async fn assert_dbs_same(cluster: &Cluster, target: &Server) {
    for db in DBS {
        let source = cluster_db(cluster, db).await;
        assert_eq!(source.len(), 400, "db {db} of the source");
        let copy = common::keyspace(&target.url_db(db)).await;
        common::assert_same(&source, &copy, 1000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_db_of_a_valkey_9_cluster_is_copied_verified_and_tailed() {
    let cluster = valkey_cluster();
    seed_dbs(&cluster);
    let target = Server::with(Config {
        version: Version::Valkey91,
        ..Config::default()
    });
    let out = replicate(&cluster.url(), &target.url(), &[], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("ok 1200,"), "{t}");
    assert_dbs_same(&cluster, &target).await;

    // Live: writes to every db while the tail runs reach the right db of the target.
    target.cmd(&["FLUSHALL"]);
    let dir = tempfile::tempdir().unwrap();
    let run = LiveRun::start(&cluster.url(), &target.url(), &dir.path().join("live.json"));
    run.wait_for("target caught up", Duration::from_secs(60))
        .await;
    for db in DBS {
        for i in 0..20 {
            let key = format!("k:{i}");
            on_owner(
                &cluster,
                db,
                &key,
                &["SET", &key, &format!("live-db{db}-{i}")],
            );
            let own = format!("db{db}:h:{i}");
            on_owner(&cluster, db, &own, &["DEL", &own]);
            on_owner(&cluster, db, &own, &["HSET", &own, "g", "live"]);
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, t) = run.finish().await;
    assert_eq!(code, 0, "live: {t}");
    assert_dbs_same(&cluster, &target).await;
    assert_eq!(target.cmd_db(1, &["GET", "k:3"]), "live-db1-3");
    assert_eq!(target.cmd_db(3, &["HGET", "db3:h:3", "g"]), "live");
}

/// A Redis cluster target has db 0 only: a source db elsewhere is refused before a key is
/// written, and lands in db 0 under a prefix with `--db-map`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn into_a_single_db_target_the_db_map_applies() {
    let source = valkey_cluster();
    seed_dbs(&source);
    let target = Cluster::start(3, 0, &[]);
    let out = replicate(&source.url(), &target.url(), &[], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("--db-map"), "{t}");
    assert_eq!(target.dbsize(), 0, "nothing written: {t}");

    let out = replicate(
        &source.url(),
        &target.url(),
        &["--db-map", "1=0:db1:", "--db-map", "3=0:db3:"],
        &[],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("ok 1200,"), "{t}");
    assert_eq!(target.dbsize(), 1200);
    let owner = |key: &str| on_owner(&target, 0, key, &["GET", key]);
    assert_eq!(owner("db1:k:7"), "db1-7");
    assert_eq!(owner("db3:k:7"), "db3-7");
    assert_eq!(owner("k:7"), "db0-7");
}
