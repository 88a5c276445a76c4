//! Running shards: scanner tasks walk each shard's cursor range with SCAN and hand batches of
//! keys to a pool of workers, each with its own connections, so both servers always have
//! pipelines in flight. Copy, verify and the reverse verify pass all run this way.
//!
//! A shard's cursor is returned as a checkpoint only after every batch scanned before it has
//! been processed, so resuming from it is exactly as correct as never having stopped (design §2).

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use crate::endpoint::{Endpoint, NodeAddr};
use crate::error::{Error, Result};
use crate::model::migration::Migration;
use crate::model::plan::{Range, Shard};
use crate::model::scan_boundary::Boundaries;
use crate::net::conn::Conn;
use crate::net::resp::Reply;
use crate::util::cancel::StopWhen;
use crate::util::ratelimit::RateLimiter;
use crate::util::retry::Backoff;

/// Something that processes batches of keys of one database, with its own connections.
pub trait BatchWorker: Send + 'static {
    /// Handles one batch; an error stops the whole run.
    fn process(&mut self, db: u32, keys: Vec<Bytes>) -> impl Future<Output = Result<()>> + Send;

    /// Whether its connections have lived as long as a changing password allows (IAM): it is
    /// then replaced by a fresh worker before its next batch.
    fn due_for_renewal(&self) -> bool {
        false
    }
}

/// How to scan: on which server, with which filters, how wide.
#[derive(Clone)]
pub struct ScanConfig {
    /// The server whose keyspace the shards cover (source for copy and verify, target for
    /// the reverse pass). Shard nodes are `host:port` on the same credentials.
    pub endpoint: Endpoint,
    /// SCAN MATCH.
    pub pattern: Option<String>,
    /// SCAN TYPE.
    pub key_type: Option<String>,
    /// SCAN COUNT.
    pub count: u32,
    /// Keys per batch handed to a worker.
    pub batch_keys: usize,
    /// Shards scanned at once.
    pub parallel: usize,
    /// Workers processing batches.
    pub workers: usize,
    /// When to stop scanning and return checkpoints (a deadline, a signal).
    pub stop: StopWhen,
    /// Counts SCAN commands against the source load cap.
    pub limiter: Option<Arc<RateLimiter>>,
    /// Called with the number of keys each SCAN returned (progress counters).
    pub on_scanned: Arc<dyn Fn(u64) + Send + Sync>,
    /// Hand each key of a shard to the workers once, though SCAN may return it again (while
    /// the server's table is resized): verify counts distinct keys. Costs about 16 bytes per
    /// key of the shards being scanned; copy, where a repeat is harmless, leaves it off.
    pub distinct: bool,
}

impl ScanConfig {
    /// The scan settings of a migration's pass over `endpoint`: its scope, batch sizes and
    /// parallelism, with no deadline and no stop yet.
    pub fn for_run(
        m: &Migration,
        endpoint: &Endpoint,
        limiter: Option<Arc<RateLimiter>>,
        on_scanned: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> ScanConfig {
        ScanConfig {
            endpoint: endpoint.clone(),
            pattern: m.scope.pattern.clone(),
            key_type: m.scope.key_type.clone(),
            count: m.copy.scan_count,
            batch_keys: m.copy.batch_keys,
            parallel: m.parallel,
            workers: m.workers,
            stop: StopWhen::default(),
            limiter,
            on_scanned,
            distinct: false,
        }
    }
}

impl ScanConfig {
    fn should_stop(&self) -> bool {
        self.stop.is_stopped()
    }
}

struct Batch {
    db: u32,
    keys: Vec<Bytes>,
}

/// Runs `shards` to completion (or until the deadline / stop flag), feeding `workers` made by
/// `make_worker`. Returns the shards with their cursors advanced.
pub async fn run_shards<W, F, Fut>(
    shards: Vec<Shard>,
    config: ScanConfig,
    make_worker: F,
) -> Result<Vec<Shard>>
where
    W: BatchWorker,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<W>> + Send,
{
    let total = shards.len();
    let queue = Arc::new(Mutex::new(
        shards.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    queue.lock().expect("queue").reverse();
    let finished: Arc<Mutex<Vec<(usize, Shard)>>> = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let failed = Arc::new(AtomicBool::new(false));
    let (tx, rx) = async_channel::bounded::<Batch>(config.workers.max(1) * 2);
    let make_worker = Arc::new(make_worker);

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.workers.max(1) {
        let worker = make_worker().await?;
        let (rx, failed, make_worker) = (rx.clone(), failed.clone(), make_worker.clone());
        workers.spawn(async move {
            let mut worker = Some(worker);
            while let Ok(batch) = rx.recv().await {
                if let Err(e) = process_with_retry(&mut worker, &*make_worker, batch).await {
                    failed.store(true, Ordering::Relaxed);
                    rx.close();
                    return Err(e);
                }
            }
            Ok(())
        });
    }
    drop(rx);

    let boundaries = Arc::new(Boundaries::default());
    let mut scanners = tokio::task::JoinSet::new();
    for _ in 0..config.parallel.max(1).min(total.max(1)) {
        let (queue, finished, failed, tx, config, boundaries) = (
            queue.clone(),
            finished.clone(),
            failed.clone(),
            tx.clone(),
            config.clone(),
            boundaries.clone(),
        );
        scanners.spawn(async move {
            let mut conns: Vec<(NodeAddr, Conn)> = Vec::new();
            let at = Scanning {
                config: &config,
                tx: &tx,
                failed: &failed,
                boundaries: &boundaries,
            };
            loop {
                let next = queue.lock().expect("queue").pop();
                let Some((index, mut shard)) = next else {
                    return Ok(());
                };
                let result = scan_with_retry(&mut conns, &mut shard, &at).await;
                finished.lock().expect("finished").push((index, shard));
                result?;
            }
        });
    }

    let mut first_error: Option<Error> = None;
    while let Some(r) = scanners.join_next().await {
        if let Err(e) = r.unwrap_or_else(|e| Err(Error::Cancelled(e.to_string()))) {
            failed.store(true, Ordering::Relaxed);
            first_error.get_or_insert(e);
        }
    }
    for (db, keys) in boundaries.unsettled() {
        // A send fails only when the workers stopped on an error, reported below.
        let _ = send_batches(&tx, db, keys, config.batch_keys).await;
    }
    drop(tx);
    while let Some(r) = workers.join_next().await {
        if let Err(e) = r.unwrap_or_else(|e| Err(Error::Cancelled(e.to_string()))) {
            // A worker's error is the cause; a scanner's "channel closed" is its consequence.
            if first_error
                .as_ref()
                .is_none_or(|f| matches!(f, Error::Cancelled(_)))
            {
                first_error = Some(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut done = std::mem::take(&mut *finished.lock().expect("finished"));
    done.extend(std::mem::take(&mut *queue.lock().expect("queue")));
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, s)| s).collect())
}

/// Processes a batch, reconnecting (a fresh worker) and retrying it while errors are transient:
/// a batch copy is idempotent, so doing it again after a broken connection is always right.
async fn process_with_retry<W, F, Fut>(
    worker: &mut Option<W>,
    make_worker: &F,
    batch: Batch,
) -> Result<()>
where
    W: BatchWorker,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<W>>,
{
    let mut backoff = Backoff::for_pass();
    if worker.as_ref().is_some_and(W::due_for_renewal) {
        *worker = None;
    }
    loop {
        let result = match worker.as_mut() {
            Some(w) => w.process(batch.db, batch.keys.clone()).await,
            None => match make_worker().await {
                Ok(w) => {
                    *worker = Some(w);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "batch interrupted; reconnecting and retrying it");
                *worker = None;
                if !backoff.wait().await {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// What a scanner task shares with the rest of the run.
struct Scanning<'a> {
    config: &'a ScanConfig,
    tx: &'a async_channel::Sender<Batch>,
    failed: &'a AtomicBool,
    boundaries: &'a Boundaries,
}

/// Scans a shard, reconnecting and resuming from its cursor (its checkpoint) while errors are
/// transient.
async fn scan_with_retry(
    conns: &mut Vec<(NodeAddr, Conn)>,
    shard: &mut Shard,
    at: &Scanning<'_>,
) -> Result<()> {
    let mut backoff = Backoff::for_pass();
    let mut seen = HashSet::new();
    loop {
        let result = match node_conn(conns, &at.config.endpoint, &shard.node).await {
            Ok(conn) => scan_shard(conn, shard, at, &mut seen).await,
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.is_transient() && !at.failed.load(Ordering::Relaxed) => {
                tracing::warn!(error = %e, shard = %shard.id, "scan interrupted; resuming from the shard's cursor");
                conns.retain(|(n, _)| n != &shard.node);
                if !backoff.wait().await {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

/// A connection to `node` (on `endpoint`'s credentials), reused per scanner.
async fn node_conn<'a>(
    conns: &'a mut Vec<(NodeAddr, Conn)>,
    endpoint: &Endpoint,
    node: &NodeAddr,
) -> Result<&'a mut Conn> {
    conns.retain(|(_, c)| !c.due_for_renewal());
    let at = match conns.iter().position(|(n, _)| n == node) {
        Some(i) => i,
        None => {
            conns.push((node.clone(), Conn::connect(&endpoint.at(node)).await?));
            conns.len() - 1
        }
    };
    Ok(&mut conns[at].1)
}

async fn scan_shard(
    conn: &mut Conn,
    shard: &mut Shard,
    at: &Scanning<'_>,
    seen: &mut HashSet<u64>,
) -> Result<()> {
    let (config, failed) = (at.config, at.failed);
    conn.select(shard.db).await?;
    // A shard that starts at its range's start meets the shard before it (scan_boundary).
    let mut meeting = shard.cursor == shard.range.start_cursor();
    let start_fraction = shard.range.fraction_done(shard.cursor);
    let mut scanned = 0u64;
    let mut first = true;
    while !shard.done {
        if failed.load(Ordering::Relaxed) {
            return Err(Error::Cancelled("another worker failed".into()));
        }
        // Every run advances by at least one SCAN call, so a caller out of time still makes
        // progress (a Lambda invoked with little time left cannot loop forever).
        if !first && config.should_stop() {
            return Ok(());
        }
        first = false;
        if let Some(l) = &config.limiter {
            l.acquire(1).await;
        }
        let cursor = shard.cursor.to_string();
        let count = count_hint(
            config.count,
            shard.keys_hint,
            scanned,
            start_fraction,
            shard.range.fraction_done(shard.cursor),
        )
        .to_string();
        let mut args: Vec<&[u8]> = vec![b"SCAN", cursor.as_bytes()];
        if let Some(p) = &config.pattern {
            args.extend([&b"MATCH"[..], p.as_bytes()]);
        }
        args.extend([&b"COUNT"[..], count.as_bytes()]);
        if let Some(t) = &config.key_type {
            args.extend([&b"TYPE"[..], t.as_bytes()]);
        }
        let reply = conn.call(&args).await?;
        let (next, keys) = parse_scan_reply(reply).ok_or_else(|| Error::Protocol {
            addr: conn.addr(),
            message: "SCAN reply is not [cursor, keys]".into(),
        })?;
        (config.on_scanned)(keys.len() as u64);
        scanned += keys.len() as u64;
        let mut keys = keys;
        // ferry's own canary key is never copied or verified.
        keys.retain(|k| !crate::model::scope::is_ferry_key(k));
        // A per-slot SCAN call runs on into the following slots until it has COUNT keys; those
        // belong to the next shard.
        if let Range::Slots { start, end } = shard.range {
            keys.retain(|k| (start..end).contains(&crate::net::slot::key_slot(k)));
        }
        if config.distinct {
            keys.retain(|k| seen.insert(xxh3_64(k)));
        }
        if meeting {
            let (released, again) = at.boundaries.later(shard, &keys, next);
            meeting = again;
            send_batches(at.tx, shard.db, released, config.batch_keys).await?;
        }
        if shard.range.is_done(next) {
            keys = at.boundaries.crossing(shard, keys, next);
        }
        send_batches(at.tx, shard.db, keys, config.batch_keys).await?;
        shard.advance(next);
    }
    Ok(())
}

/// Hands `keys` of `db` to the workers in batches of at most `batch_keys`.
async fn send_batches(
    tx: &async_channel::Sender<Batch>,
    db: u32,
    mut keys: Vec<Bytes>,
    batch_keys: usize,
) -> Result<()> {
    while !keys.is_empty() {
        let rest = keys.split_off(keys.len().min(batch_keys.max(1)));
        if tx.send(Batch { db, keys }).await.is_err() {
            return Err(Error::Cancelled("workers stopped".into()));
        }
        keys = rest;
    }
    Ok(())
}

/// The SCAN COUNT for the next call. SCAN collects about COUNT keys from consecutive buckets,
/// so a call asking for more keys than the shard has left runs on into the next shard's buckets
/// (harmless duplicates, but wasted work, and many of them on small tables). COUNT is cut to
/// the keys expected to remain: from the plan's estimate at first, then from the keys seen per
/// fraction of the range so far.
fn count_hint(count: u32, keys_hint: u64, scanned: u64, start: f64, now: f64) -> u32 {
    let covered = now - start;
    let remaining = if covered >= 0.05 && scanned > 0 {
        scanned as f64 * (1.0 - now) / covered
    } else if keys_hint > 0 {
        keys_hint as f64 * (1.0 - now)
    } else {
        return count;
    };
    (remaining as u32 + 1).clamp(1, count.max(1))
}

/// Splits a SCAN reply into the next cursor and the keys.
pub fn parse_scan_reply(reply: Reply) -> Option<(u64, Vec<Bytes>)> {
    let mut parts = reply.into_array()?.into_iter();
    let cursor = std::str::from_utf8(parts.next()?.as_bytes()?)
        .ok()?
        .parse()
        .ok()?;
    let keys = parts
        .next()?
        .into_array()?
        .into_iter()
        .filter_map(|k| match k {
            Reply::Bulk(b) => Some(b),
            _ => None,
        })
        .collect();
    Some((cursor, keys))
}
