//! What hearing keyspace events costs on ferry's own pub/sub connection
//! (`live::channel::Feed`) and on the redis crate's (`redis::aio::PubSub`): the CPU time of the
//! subscribing thread per event, each turned into the same (db, key, by_writer) the tail
//! needs. Run by `bench/control_plane.sh` against a server with `notify-keyspace-events KA`:
//!
//!   pubsub_cost redis://127.0.0.1:6379 1000000 3

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use ferry_engine::live::channel::{parse_keyspace_channel, Feed, Heard, LiveChannel};
use ferry_engine::{Endpoint, Role};

#[derive(Clone, Copy, Debug)]
enum Subscriber {
    Ferry,
    RedisRs,
}

/// CPU time this thread has run, in ns (the scheduler's own count: no 10 ms ticks).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat's first field")
}

/// Subscribes with `which`, tells `ready` once the server confirmed, and hears `events` key
/// events; returns the thread's CPU time and the wall time from the first event on.
async fn hear(which: Subscriber, url: &str, events: u64, ready: mpsc::Sender<()>) -> (u64, f64) {
    let mut heard = 0u64;
    let mut key_bytes = 0usize;
    let (mut cpu0, mut t0) = (0, Instant::now());
    match which {
        Subscriber::Ferry => {
            let ep = Endpoint::parse(Role::Source, url).expect("url");
            let mut feed = Feed::open(&ep, LiveChannel::Keyspace).await.expect("feed");
            ready.send(()).expect("ready");
            while heard < events {
                if let Heard::Key { key, by_writer, .. } = feed.next().await.expect("event") {
                    if heard == 0 {
                        (cpu0, t0) = (thread_cpu_ns(), Instant::now());
                    }
                    heard += 1;
                    key_bytes += key.len() + usize::from(by_writer);
                }
            }
        }
        Subscriber::RedisRs => {
            let client = redis::Client::open(url).expect("url");
            let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
            pubsub
                .psubscribe("__keyspace@*__:*")
                .await
                .expect("psubscribe");
            ready.send(()).expect("ready");
            let mut messages = pubsub.on_message();
            while heard < events {
                let msg = messages.next().await.expect("a message");
                let channel: Vec<u8> = msg.get_channel().expect("channel");
                let Some((_db, key)) = parse_keyspace_channel(&channel) else {
                    continue;
                };
                if heard == 0 {
                    (cpu0, t0) = (thread_cpu_ns(), Instant::now());
                }
                let key = Bytes::copy_from_slice(key);
                let by_writer = !matches!(msg.get_payload_bytes(), b"expired" | b"evicted");
                heard += 1;
                key_bytes += key.len() + usize::from(by_writer);
            }
        }
    }
    std::hint::black_box(key_bytes);
    (thread_cpu_ns() - cpu0, t0.elapsed().as_secs_f64())
}

/// One round: a subscriber thread of its own (a current-thread runtime, so its CPU time is
/// the subscriber's alone) while this thread writes `events` keys in pipelines of 1,000.
fn round(which: Subscriber, url: &str, events: u64) -> (u64, f64) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let sub_url = url.to_string();
    let subscriber = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(hear(which, &sub_url, events, ready_tx))
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");
    let client = redis::Client::open(url).expect("url");
    let mut writer = client.get_connection().expect("writer");
    let mut written = 0u64;
    while written < events {
        let mut pipe = redis::pipe();
        for i in written..(written + 1000).min(events) {
            pipe.cmd("SET").arg(format!("bench:{i}")).arg("v").ignore();
        }
        pipe.query::<()>(&mut writer).expect("writes");
        written = (written + 1000).min(events);
    }
    subscriber.join().expect("subscriber")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("redis://127.0.0.1:6379");
    let events: u64 = args
        .get(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(3);
    println!("| subscriber | CPU ns per event (median of {rounds}) | events/s heard |");
    println!("|---|---|---|");
    for which in [Subscriber::Ferry, Subscriber::RedisRs] {
        let mut results: Vec<(u64, f64)> = (0..rounds).map(|_| round(which, url, events)).collect();
        results.sort_by_key(|r| r.0);
        let (cpu_ns, seconds) = results[rounds / 2];
        let name = match which {
            Subscriber::Ferry => "ferry (live::channel::Feed)",
            Subscriber::RedisRs => "redis crate (aio::PubSub)",
        };
        println!(
            "| {name} | {:.0} | {:.0} |",
            cpu_ns as f64 / events as f64,
            events as f64 / seconds.max(1e-9)
        );
    }
}
