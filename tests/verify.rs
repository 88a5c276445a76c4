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
