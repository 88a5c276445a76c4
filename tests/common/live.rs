//! Live-mode helpers shared by the live and cluster tests: a randomized writer that hammers a
//! source (standalone or cluster) with many kinds of writes, `ferry replicate --mode live` as a
//! watched child process, and an application that switches at the cutover.

pub use super::process::Watched;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::aio::ConnectionLike;

/// One random write of many kinds; errors (WRONGTYPE, no such key, server restarting) are
/// part of the game and ignored. With `cluster` (a cluster on either side), the keys of one
/// write share a hash tag (so RENAME, COPY and Lua stay in one slot) and MOVE (to db 1) and
/// MULTI are left out.
pub async fn random_write(c: &mut impl ConnectionLike, rng: &mut StdRng, cluster: bool) {
    let tag = if cluster {
        format!("{{t{}}}", rng.random_range(0..12))
    } else {
        String::new()
    };
    let k = |rng: &mut StdRng| format!("{tag}w:{}", rng.random_range(0..400));
    let v = rng.random_range(0..1_000_000).to_string();
    let cmd = |args: Vec<String>| {
        let mut c = redis::cmd(&args[0]);
        for a in &args[1..] {
            c.arg(a);
        }
        c
    };
    let op = match rng.random_range(0..20) {
        0 | 1 => cmd(vec!["SET".into(), k(rng), v]),
        2 => cmd(vec![
            "SET".into(),
            k(rng),
            v,
            "PX".into(),
            rng.random_range(50..600).to_string(),
        ]),
        3 => cmd(vec!["DEL".into(), k(rng)]),
        4 => cmd(vec!["UNLINK".into(), k(rng)]),
        5 => cmd(vec!["RENAME".into(), k(rng), k(rng)]),
        6 if !cluster => cmd(vec!["MOVE".into(), k(rng), "1".into()]),
        7 if !cluster => {
            let key = k(rng);
            let mut p = redis::pipe();
            p.atomic()
                .cmd("INCR")
                .arg(&key)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(300);
            let _: redis::RedisResult<redis::Value> = p.query_async(c).await;
            return;
        }
        6 | 7 => cmd(vec!["INCR".into(), format!("{tag}counter")]),
        8 => cmd(vec![
            "EVAL".into(),
            "redis.call('SET', KEYS[1], ARGV[1]); redis.call('LPUSH', KEYS[2], ARGV[1]); return 1"
                .into(),
            "2".into(),
            format!("{tag}lua:{}", rng.random_range(0..50)),
            format!("{tag}lualist:{}", rng.random_range(0..20)),
            v,
        ]),
        9 => cmd(vec![
            "HSET".into(),
            format!("{tag}bighash"),
            format!("f{}", rng.random_range(0..6000)),
            v,
        ]),
        10 => cmd(vec![
            "HDEL".into(),
            format!("{tag}bighash"),
            format!("f{}", rng.random_range(0..6000)),
        ]),
        11 => cmd(vec![
            "ZADD".into(),
            format!("{tag}bigzset"),
            v,
            format!("m{}", rng.random_range(0..6000)),
        ]),
        12 => cmd(vec![
            "ZREM".into(),
            format!("{tag}bigzset"),
            format!("m{}", rng.random_range(0..6000)),
        ]),
        13 => cmd(vec![
            "XADD".into(),
            format!("{tag}events"),
            "*".into(),
            "v".into(),
            v,
        ]),
        14 => cmd(vec![
            "XTRIM".into(),
            format!("{tag}events"),
            "MAXLEN".into(),
            "200".into(),
        ]),
        15 => cmd(vec!["COPY".into(), k(rng), k(rng), "REPLACE".into()]),
        16 => cmd(vec!["EXPIRE".into(), k(rng), "1".into()]),
        17 => cmd(vec![
            "SADD".into(),
            format!("{tag}set:{}", rng.random_range(0..30)),
            v,
        ]),
        18 => cmd(vec!["APPEND".into(), k(rng), "x".into()]),
        _ => cmd(vec!["PERSIST".into(), k(rng)]),
    };
    let _: redis::RedisResult<redis::Value> = op.query_async(c).await;
}

/// Writes as fast as it can until stopped, counting its writes in `ops`; reconnects when the
/// server goes away. A `cluster` source gets redis-rs's cluster client (it follows failovers);
/// `db0_only` keeps the writes fit for a cluster on either side (see [`random_write`]).
pub fn start_writer(
    url: String,
    seed: u64,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    (cluster, db0_only): (bool, bool),
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        while !stop.load(Ordering::Relaxed) {
            if cluster {
                let Ok(client) = redis::cluster::ClusterClient::new(vec![url.as_str()]) else {
                    return;
                };
                match client.get_async_connection().await {
                    Ok(mut c) => write_until_broken(&mut c, &mut rng, &stop, &ops, true).await,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            } else {
                let Ok(client) = redis::Client::open(url.as_str()) else {
                    return;
                };
                match client.get_multiplexed_async_connection().await {
                    Ok(mut c) => write_until_broken(&mut c, &mut rng, &stop, &ops, db0_only).await,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    })
}

async fn write_until_broken(
    c: &mut impl ConnectionLike,
    rng: &mut StdRng,
    stop: &AtomicBool,
    ops: &AtomicU64,
    cluster: bool,
) {
    while !stop.load(Ordering::Relaxed) {
        random_write(c, rng, cluster).await;
        ops.fetch_add(1, Ordering::Relaxed);
        if ops.load(Ordering::Relaxed).is_multiple_of(64)
            && redis::cmd("PING").query_async::<String>(c).await.is_err()
        {
            return;
        }
    }
}

/// Several writers from [`start_writer`] sharing a stop flag and a write counter.
pub struct Writers {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// Starts `n` writers on `url` with seeds `seed`, `seed + 1`, …; `kind` as in [`start_writer`].
    /// Where the writers MOVE keys to db 1, a key that stays is put there first: a db gaining
    /// its first key while ferry follows is a gap on the tracking channel (by design), and a
    /// test that asks for no gap must not depend on whether ferry started before the first MOVE.
    pub fn start(url: &str, n: u64, seed: u64, kind: (bool, bool)) -> Writers {
        let (cluster, db0_only) = kind;
        if !cluster && !db0_only {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let _: () = redis::pipe()
                .cmd("SELECT")
                .arg(1)
                .cmd("SET")
                .arg("writers:db1")
                .arg("stays")
                .query(&mut c)
                .unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let tasks = (0..n)
            .map(|w| start_writer(url.to_string(), seed + w, stop.clone(), ops.clone(), kind))
            .collect();
        Writers { stop, ops, tasks }
    }

    /// Writes so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Stops every writer and waits for them; returns the writes made.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.ops.load(Ordering::Relaxed)
    }
}

/// `ferry replicate --mode live`, as a watched child process.
pub struct LiveRun;

impl LiveRun {
    /// Starts ferry live from `source` to `target` (URLs), ending 1.5 s after writes stop,
    /// with its JSON report written to `report`.
    pub fn start(source: &str, target: &str, report: &std::path::Path) -> Watched {
        LiveRun::start_with(source, target, report, &["--idle-timeout", "1.5"])
    }

    /// Starts ferry live with other options (`extra`), its JSON report written to `report`.
    pub fn start_with(
        source: &str,
        target: &str,
        report: &std::path::Path,
        extra: &[&str],
    ) -> Watched {
        let mut ferry = Command::new(rig::ferry_bin());
        ferry
            .args(["replicate", "--mode", "live", "--source", source])
            .args(["--target", target])
            .args(extra)
            .args(["--json", report.to_str().unwrap()]);
        Watched::spawn(ferry)
    }
}

/// The application: writes `app:<n>` to the source as fast as it can until told to switch; the
/// write in flight then (held by the fence) completes, is recorded, and the connection stays
/// open (an old client that has not reconnected).
pub struct App {
    /// Set: the application switches (stops writing to the source).
    pub switch: Arc<AtomicBool>,
    /// The key of the last write that completed.
    pub last: Arc<Mutex<Option<String>>>,
    /// Writes completed.
    pub written: Arc<AtomicU64>,
    /// The local port of its connection (how `CLIENT LIST` names it).
    pub local_port: u16,
}

impl App {
    /// Starts writing to `url` on one connection named `app`.
    pub fn start(url: &str) -> App {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_connection().unwrap();
        let _: () = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg("app")
            .query(&mut conn)
            .unwrap();
        let local: String = redis::cmd("CLIENT").arg("INFO").query(&mut conn).unwrap();
        let local_port = local
            .split(' ')
            .find_map(|f| f.strip_prefix("addr="))
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap();
        let (switch, last, written) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(Mutex::new(None)),
            Arc::new(AtomicU64::new(0)),
        );
        let (sw, la, wr) = (switch.clone(), last.clone(), written.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !sw.load(Ordering::SeqCst) {
                let key = format!("app:{n}");
                let _: () = redis::cmd("SET").arg(&key).arg(n).query(&mut conn).unwrap();
                *la.lock().unwrap() = Some(key);
                wr.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
            std::thread::sleep(Duration::from_secs(120)); // keeps the connection open
        });
        App {
            switch,
            last,
            written,
            local_port,
        }
    }
}
