//! An embedded sample dataset: mixed types with TTLs, written fast with pipelines. The demo,
//! the benchmark and tests load it; it is the benchmark's "1,000,000 mixed keys".

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use ferry_engine::endpoint::Endpoint;
use ferry_engine::error::Result;
use ferry_engine::net::conn::Conn;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SeedSpec {
    /// Mixed keys: 70% strings of ~100 bytes, 10% hashes, 10% lists, 5% sets, 5% zsets
    /// (collections of 10 elements).
    pub keys: u64,
    /// Percent of keys given a TTL of 1 to 24 hours.
    pub ttl_percent: u8,
    /// Streams of 20 entries with a consumer group and pending entries.
    pub streams: u64,
    /// Big hashes (for the big-keys benchmark).
    pub big_hashes: u64,
    /// Fields per big hash.
    pub big_hash_fields: u64,
    /// Database to write into.
    pub db: u32,
    /// Random seed, so a dataset can be regenerated.
    pub seed: u64,
}

impl Default for SeedSpec {
    fn default() -> Self {
        SeedSpec {
            keys: 10_000,
            ttl_percent: 20,
            streams: 0,
            big_hashes: 0,
            big_hash_fields: 10_000,
            db: 0,
            seed: 1,
        }
    }
}

const PIPELINE: u64 = 1000;

/// Writes the dataset; calls `progress` with keys written so far. Returns the keys written.
pub async fn seed(ep: &Endpoint, spec: &SeedSpec, progress: impl Fn(u64)) -> Result<u64> {
    let mut conn = Conn::keyspace(ep).await?;
    conn.select(spec.db).await?;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut written = 0u64;
    let mut queued = 0u64;
    for i in 0..spec.keys {
        queued += queue_mixed_key(&mut conn, &mut rng, i, spec.ttl_percent);
        written += 1;
        if written.is_multiple_of(PIPELINE) {
            flush(&mut conn, &mut queued).await?;
            progress(written);
        }
    }
    for i in 0..spec.streams {
        queued += queue_stream(&mut conn, i);
        written += 1;
    }
    flush(&mut conn, &mut queued).await?;
    for i in 0..spec.big_hashes {
        let key = format!("ferry:sample:bighash:{i}");
        let mut f = 0;
        while f < spec.big_hash_fields {
            let end = (f + PIPELINE).min(spec.big_hash_fields);
            let mut args = vec![b"HSET".to_vec(), key.clone().into_bytes()];
            for j in f..end {
                args.push(format!("field:{j}").into_bytes());
                args.push(format!("value:{j}:{}", rng.random::<u32>()).into_bytes());
            }
            conn.queue(&args);
            queued += 1;
            f = end;
        }
        written += 1;
        if written.is_multiple_of(10) {
            flush(&mut conn, &mut queued).await?;
            progress(written);
        }
    }
    flush(&mut conn, &mut queued).await?;
    progress(written);
    Ok(written)
}

async fn flush(conn: &mut Conn, queued: &mut u64) -> Result<()> {
    conn.send().await?;
    for _ in 0..*queued {
        let reply = conn.recv().await?;
        conn.check(reply, b"seed write")?;
    }
    *queued = 0;
    Ok(())
}

fn queue_mixed_key(conn: &mut Conn, rng: &mut StdRng, i: u64, ttl_percent: u8) -> u64 {
    let roll = rng.random_range(0..100u32);
    let value = |rng: &mut StdRng, n: usize| -> Vec<u8> {
        (0..n).map(|_| rng.random_range(b'a'..=b'z')).collect()
    };
    let key = match roll {
        0..70 => {
            let key = format!("ferry:sample:string:{i}");
            conn.queue(&[b"SET".to_vec(), key.clone().into_bytes(), value(rng, 100)]);
            key
        }
        70..80 => {
            let key = format!("ferry:sample:hash:{i}");
            let mut args = vec![b"HSET".to_vec(), key.clone().into_bytes()];
            for f in 0..10 {
                args.push(format!("f{f}").into_bytes());
                args.push(value(rng, 10));
            }
            conn.queue(&args);
            key
        }
        80..90 => {
            let key = format!("ferry:sample:list:{i}");
            let mut args = vec![b"RPUSH".to_vec(), key.clone().into_bytes()];
            args.extend((0..10).map(|_| value(rng, 10)));
            conn.queue(&args);
            key
        }
        90..95 => {
            let key = format!("ferry:sample:set:{i}");
            let mut args = vec![b"SADD".to_vec(), key.clone().into_bytes()];
            args.extend((0..10).map(|m| format!("m{m}").into_bytes()));
            conn.queue(&args);
            key
        }
        _ => {
            let key = format!("ferry:sample:zset:{i}");
            let mut args = vec![b"ZADD".to_vec(), key.clone().into_bytes()];
            for m in 0..10 {
                args.push(format!("{}", rng.random_range(0..1000) as f64 / 4.0).into_bytes());
                args.push(format!("m{m}").into_bytes());
            }
            conn.queue(&args);
            key
        }
    };
    if rng.random_range(0..100u8) < ttl_percent {
        let secs = rng.random_range(3600..86400u32).to_string();
        conn.queue(&[b"EXPIRE".to_vec(), key.into_bytes(), secs.into_bytes()]);
        2
    } else {
        1
    }
}

fn queue_stream(conn: &mut Conn, i: u64) -> u64 {
    let key = format!("ferry:sample:stream:{i}");
    const ENTRIES: u64 = 20;
    for e in 1..=ENTRIES {
        conn.queue(&["XADD", &key, &format!("{e}-0"), "event", &format!("e{e}")]);
    }
    conn.queue(&["XGROUP", "CREATE", &key, "workers", "0"]);
    conn.queue(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "alice",
        "COUNT",
        "5",
        "STREAMS",
        &key,
        ">",
    ]);
    conn.queue(&["XACK", &key, "workers", "1-0"]);
    ENTRIES + 3
}

/// What a steady write load did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LoadReport {
    /// Writes sent.
    pub writes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Writes `SET key value` at a steady `rate` per second for `seconds` over `keyspace` random
/// keys (the live benchmark's load), over `connections` pipelined connections. Ends with
/// `SET ferry:bench:done <unix ms>`, a marker whose arrival on the target shows convergence.
pub async fn load(
    ep: &Endpoint,
    rate: u64,
    seconds: f64,
    keyspace: u64,
    connections: usize,
) -> Result<LoadReport> {
    let limiter = std::sync::Arc::new(ferry_engine::util::ratelimit::RateLimiter::new(rate));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
    let start = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections.max(1) {
        let (ep, limiter) = (ep.clone(), limiter.clone());
        tasks.spawn(async move {
            let mut conn = Conn::keyspace(&ep).await?;
            let mut rng = StdRng::seed_from_u64(c as u64);
            let mut writes = 0u64;
            const BATCH: u64 = 50;
            while std::time::Instant::now() < deadline {
                limiter.acquire(BATCH).await;
                for _ in 0..BATCH {
                    let key = format!("load:{}", rng.random_range(0..keyspace.max(1)));
                    conn.queue(&[
                        b"SET".as_slice(),
                        key.as_bytes(),
                        b"0123456789abcdef0123456789abcdef",
                    ]);
                }
                let mut queued = BATCH;
                flush(&mut conn, &mut queued).await?;
                writes += BATCH;
            }
            Ok::<u64, ferry_engine::error::Error>(writes)
        });
    }
    let mut writes = 0;
    while let Some(r) = tasks.join_next().await {
        writes += r.map_err(|e| ferry_engine::error::Error::Cancelled(e.to_string()))??;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut conn = Conn::keyspace(ep).await?;
    let now = ferry_engine::util::now_ms().to_string();
    conn.call(&["SET", "ferry:bench:done", &now]).await?;
    Ok(LoadReport {
        writes,
        seconds: secs,
    })
}
