//! The SCAN cursor-range planner on a real server: the union of all shards' keys is the whole
//! keyspace, for tables smaller and larger than the shard count, and while keys are added and
//! removed (forcing rehashes) during the scan.

mod common;

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferry_engine::model::plan::{Range, Shard};
use ferry_engine::scan::{self, BatchWorker, ScanConfig};
use ferry_engine::{Endpoint, Result, Role};
use rig::Server;

/// Collects every key it is handed.
struct Collect(Arc<Mutex<HashSet<Vec<u8>>>>);

impl BatchWorker for Collect {
    async fn process(&mut self, _db: u32, keys: Vec<Bytes>) -> Result<()> {
        self.0
            .lock()
            .unwrap()
            .extend(keys.into_iter().map(|k| k.to_vec()));
        Ok(())
    }
}

async fn scan_all(server: &Server, bits: u8, count: u32, parallel: usize) -> HashSet<Vec<u8>> {
    let endpoint = Endpoint::parse(Role::Source, &server.url()).unwrap();
    let node = endpoint.node.clone();
    let shards: Vec<Shard> = (0..1u64 << bits)
        .map(|index| Shard::new(&node, 0, Range::Classic { bits, index }))
        .collect();
    let config = ScanConfig {
        endpoint,
        pattern: None,
        key_type: None,
        count,
        batch_keys: 100,
        parallel,
        workers: 2,
        stop: Default::default(),
        limiter: None,
        on_scanned: Arc::new(|_| {}),
        distinct: false,
    };
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let collected = seen.clone();
    let shards = scan::run_shards(shards, config, move || {
        let collected = collected.clone();
        async move { Ok(Collect(collected)) }
    })
    .await
    .unwrap();
    assert!(shards.iter().all(|s| s.done));
    let keys = seen.lock().unwrap().clone();
    keys
}

async fn fill(url: &str, prefix: &str, n: usize) {
    let mut c = common::client(url).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.cmd("SET").arg(format!("{prefix}{i}")).arg(1).ignore();
        }
        let _: () = p.query_async(&mut c).await.unwrap();
    }
}

#[tokio::test]
async fn shards_cover_the_keyspace_for_small_and_large_tables() {
    for keys in [3usize, 40, 5000] {
        let server = Server::start();
        fill(&server.url(), "k", keys).await;
        let all: HashSet<Vec<u8>> = (0..keys).map(|i| format!("k{i}").into_bytes()).collect();
        // 64 shards is more than the 4- and 64-bucket tables have; 4 is fewer than 8192.
        for bits in [0u8, 2, 6] {
            for count in [1u32, 10, 1000] {
                let seen = scan_all(&server, bits, count, 3).await;
                assert_eq!(
                    seen,
                    all,
                    "{keys} keys, {} shards, COUNT {count}",
                    1 << bits
                );
            }
        }
    }
}

#[tokio::test]
async fn keys_present_throughout_are_found_while_others_come_and_go() {
    let server = Server::start();
    fill(&server.url(), "stable:", 20_000).await;
    fill(&server.url(), "vol:", 5_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, stop) = (server.url(), stop.clone());
        tokio::spawn(async move {
            let mut c = common::client(&url).await;
            let mut round = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && round < 200 {
                let mut p = redis::pipe();
                for i in 0..500 {
                    // Growth forces the table to rehash mid-scan; deletes shrink buckets.
                    p.cmd("SET").arg(format!("new:{round}:{i}")).arg(1).ignore();
                    p.cmd("DEL")
                        .arg(format!("vol:{}", (round * 500 + i) % 5000))
                        .ignore();
                }
                let _: () = p.query_async(&mut c).await.unwrap();
                round += 1;
                tokio::task::yield_now().await;
            }
            round
        })
    };
    let seen = scan_all(&server, 4, 20, 4).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.await.unwrap();
    assert!(rounds > 0, "the writer ran during the scan");
    let missing: Vec<_> = (0..20_000)
        .map(|i| format!("stable:{i}").into_bytes())
        .filter(|k| !seen.contains(k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "stable keys not returned: {missing:?} (writer rounds: {rounds})"
    );
}
