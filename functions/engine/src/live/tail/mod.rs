//! The live tail (design §4): follows a live channel on the source ([`crate::live::channel`]: keyspace
//! notifications or client tracking) and keeps the target equal to it, losing nothing.
//!
//! 1. Subscribe first: a [`Feed`] on every source node, confirmed, then a canary key proves
//!    delivery, before any snapshot shard starts.
//! 2. State, not events: an event marks its key dirty ([`DirtySet`]); a worker reads the key's
//!    current state from the source and writes it (or deletes it) on the target.
//! 3. The reader task only parses and marks; target writes never block it.
//! 4. Barrier: keys touched during the snapshot are copied once more when it ends.
//! 5. Gaps (dropped subscription, restart, FLUSHALL/FLUSHDB/SWAPDB) are healed by a compare in
//!    both directions that marks every difference dirty, inside its own barrier window.
//!
//! Here: the [`Tail`] and its copy workers. `feed`: the subscriptions and what they mark;
//! `gaps`: the gap watcher; `heal`: heal passes; `notifications`: the keyspace channel's
//! `notify-keyspace-events`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::copy::{Copier, CopyContext};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::inventory::notifications_cover;
use crate::live::channel::{Feed, Heard, LiveChannel};
use crate::live::dirty::{DirtySet, Touched};
use crate::model::migration::Migration;
use crate::net::cluster;
use crate::net::conn::Conn;
use crate::net::info::config_get;
use crate::util::cancel::Stop;
use crate::util::retry::Backoff;
use crate::verify::{Status, VerifyOptions};

mod feed;
mod gaps;
mod heal;
mod notifications;

use crate::copy;
use feed::{choose_channel, source_nodes, Subscriptions};
use gaps::{gap_watcher, NodeWatch};
use heal::{healer, PRE_COUNTED};
pub use notifications::{ensure_notifications, merged_notify_flags, restore_notifications};

/// Whether a key is ferry's own canary (never copied, never verified).
pub fn is_canary(key: &[u8]) -> bool {
    key.starts_with(crate::model::scope::CANARY_PREFIX)
}

/// Settings of a tail.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// Copy workers (each a source and a target connection).
    pub workers: usize,
    /// Dirty keys per worker round.
    pub batch_keys: usize,
    /// Names the canary key `ferry:canary:<run_id>`.
    pub run_id: String,
    /// How long to wait for the canary's event before declaring notifications off.
    pub canary_timeout: Duration,
    /// How often each node's `INFO` is checked for flushes and restarts.
    pub gap_poll: Duration,
    /// The live channel; `Auto` picks keyspace notifications when the source has them on.
    pub channel: LiveChannel,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            workers: 4,
            batch_keys: 256,
            run_id: format!("{:016x}", rand::random::<u64>()),
            canary_timeout: Duration::from_secs(5),
            gap_poll: Duration::from_millis(500),
            channel: LiveChannel::Auto,
        }
    }
}

/// Counters of a tail, shared by its tasks.
#[derive(Debug, Default)]
pub struct TailStats {
    /// Keyspace events received.
    pub events: AtomicU64,
    /// Keys written to the target.
    pub copied: AtomicU64,
    /// Keys deleted on the target because the source no longer has them.
    pub deleted: AtomicU64,
    /// Gaps seen (dropped subscriptions, restarts, flushes).
    pub gaps: AtomicU64,
    /// Heal passes completed.
    pub heals: AtomicU64,
    /// Keys re-copied by barrier replays.
    pub replayed: AtomicU64,
    /// The largest output buffer a source node held for ferry's subscription at the last look
    /// (`CLIENT LIST` `omem`): near the server's pubsub limit, the subscription is cut (a gap).
    pub subscriber_omem: AtomicU64,
}

/// The tail's figures, for progress lines, JSON and logs.
/// Fields added later default when absent, so the answer of a tail from an older build (or a
/// stand-in) still reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TailReport {
    /// The channel that ran: keyspace or tracking.
    pub channel: LiveChannel,
    pub events: u64,
    pub keys_copied: u64,
    pub keys_deleted: u64,
    pub events_per_sec: f64,
    pub copies_per_sec: f64,
    pub queue_depth: usize,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub replayed: u64,
    pub remembered_peak: usize,
    pub remembered_bytes_now: usize,
    pub gaps: u64,
    pub heals: u64,
    /// Bytes a source node held for ferry's subscription at the last look (the most of any
    /// node): the headroom left before the server's pubsub output-buffer limit cuts it.
    pub subscriber_omem_bytes: u64,
    pub seconds: f64,
}

/// A running tail.
pub struct Tail {
    /// Dirty keys and lag.
    pub dirty: Arc<DirtySet>,
    /// Counters.
    pub stats: Arc<TailStats>,
    stop: Stop,
    /// Gaps received and not healed yet: a drain waits for them.
    unhealed: Arc<AtomicU64>,
    tasks: tokio::task::JoinSet<Result<()>>,
    fatal: mpsc::UnboundedReceiver<Error>,
    started: Instant,
    touched: Arc<std::sync::Mutex<Option<Touched>>>,
    /// The healer's gap channel, for gaps the tail's driver knows of ([`Tail::heal`]).
    gaps: mpsc::UnboundedSender<String>,
    channel: LiveChannel,
}

struct Shared {
    migration: Migration,
    copy: Arc<CopyContext>,
    dirty: Arc<DirtySet>,
    stats: Arc<TailStats>,
    stop: Stop,
    unhealed: Arc<AtomicU64>,
    dbs: Vec<u32>,
    /// The dbs a tracking invalidation's key is marked dirty in (it names no db): those in
    /// scope that held keys at the start, and any the gap watcher sees gain keys later.
    key_dbs: std::sync::RwLock<std::collections::BTreeSet<u32>>,
    /// The channel that runs (`options.channel` resolved).
    channel: LiveChannel,
    /// Each node's subscriber client id (`host:port` → id), for its `omem`.
    subscriber_ids: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// CLIENT LIST was refused (a user without admin commands): omem is not asked again.
    omem_refused: AtomicBool,
    options: TailOptions,
    fatal: mpsc::UnboundedSender<Error>,
    /// Keys copied or deleted since [`Tail::record_touched`], while recording.
    touched: Arc<std::sync::Mutex<Option<Touched>>>,
}

impl Tail {
    /// Subscribes on every source node (standalone: the source), proves delivery with the canary,
    /// starts the copy workers and the gap watcher, and waits for replicas a run reads to catch
    /// up. With `remember`, keys touched from now on are kept until [`Tail::barrier`].
    pub async fn start(
        m: &Migration,
        copy: Arc<CopyContext>,
        dbs: Vec<u32>,
        options: TailOptions,
        remember: bool,
    ) -> Result<Tail> {
        let dbs = if dbs.is_empty() {
            vec![m.source.db]
        } else {
            dbs
        };
        let dirty = Arc::new(DirtySet::new());
        if remember {
            dirty.open_window();
        }
        let (fatal_tx, fatal) = mpsc::unbounded_channel();
        let nodes = source_nodes(&m.source).await?;
        let channel = match options.channel {
            LiveChannel::Auto => choose_channel(&nodes[0], dbs[0], &options).await?,
            chosen => chosen,
        };
        let shared = Arc::new(Shared {
            migration: m.clone(),
            copy,
            dirty: dirty.clone(),
            stats: Arc::new(TailStats::default()),
            stop: Stop::new(),
            unhealed: Arc::new(AtomicU64::new(0)),
            key_dbs: std::sync::RwLock::new(dbs.iter().copied().collect()),
            dbs,
            channel,
            subscriber_ids: Default::default(),
            omem_refused: AtomicBool::new(false),
            options,
            fatal: fatal_tx,
            touched: Default::default(),
        });
        let mut tasks = tokio::task::JoinSet::new();
        let (gap_tx, gap_rx) = mpsc::unbounded_channel::<String>();
        let mut subscriptions = Subscriptions::default();
        for node in nodes {
            subscriptions.add(&shared, node, &gap_tx).await?;
        }
        for _ in 0..shared.options.workers.max(1) {
            tasks.spawn(copy_worker(shared.clone()));
        }
        // The first look at every node is taken now, subscribed and before any copy: a flush or
        // a silent write from this moment on is a change the watcher sees.
        let watch = NodeWatch::first_look(&shared, &subscriptions).await?;
        tasks.spawn(gap_watcher(
            shared.clone(),
            subscriptions,
            watch,
            gap_tx.clone(),
        ));
        tasks.spawn(healer(shared.clone(), gap_rx, gap_tx.clone()));
        if m.read_from_replicas {
            // Else a key written just before subscribing may be read stale, and no event follows.
            cluster::wait_for_replicas(&m.source, cluster::REPLICA_CATCH_UP).await?;
        }
        Ok(Tail {
            gaps: gap_tx,
            touched: shared.touched.clone(),
            dirty,
            stats: shared.stats.clone(),
            stop: shared.stop.clone(),
            unhealed: shared.unhealed.clone(),
            tasks,
            fatal,
            started: Instant::now(),
            channel,
        })
    }

    /// The channel this tail follows (never `Auto`).
    pub fn channel(&self) -> LiveChannel {
        self.channel
    }

    /// The snapshot has finished: copy every key touched since subscription once more.
    /// Returns how many keys were replayed.
    pub fn barrier(&self) -> usize {
        let n = self.dirty.close_window();
        self.stats.replayed.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Reports a gap the driver knows of (a replacement tail: writes made while no tail
    /// followed are unseen): a heal pass runs, and a drain waits for it from this call on.
    pub fn heal(&self, reason: &str) {
        self.unhealed.fetch_add(1, Ordering::SeqCst);
        let _ = self.gaps.send(format!("{PRE_COUNTED}{reason}"));
    }

    /// Starts recording the keys copied or deleted from now on (at most `limit`), for a
    /// cutover's fenced check; replaces an earlier recording.
    pub fn record_touched(&self, limit: usize) {
        let mut touched = Touched::new(limit);
        touched.gaps_at_start = self.stats.gaps.load(Ordering::Relaxed);
        *self.touched.lock().expect("touched") = Some(touched);
    }

    /// Stops recording and returns what was recorded.
    pub fn take_touched(&self) -> Option<Touched> {
        self.touched.lock().expect("touched").take()
    }

    /// A fatal error a task hit (target out of memory, auth revoked), if any.
    pub fn failure(&mut self) -> Option<Error> {
        self.fatal.try_recv().ok()
    }

    /// Waits until nothing is dirty or in flight, no gap is waiting for (or in) a heal pass,
    /// and no event has arrived for `quiet`, failing if a task hit a fatal error meanwhile.
    /// Gives up after `timeout` (writers that never stop keep the tail busy for ever): `Ok(false)`.
    pub async fn drain(&mut self, quiet: Duration, timeout: Duration) -> Result<bool> {
        let give_up = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.failure() {
                return Err(e);
            }
            if tokio::time::Instant::now() >= give_up {
                return Ok(false);
            }
            let _ = tokio::time::timeout_at(give_up, self.dirty.drained()).await;
            let healed = self.unhealed.load(Ordering::SeqCst) == 0;
            if healed
                && self.dirty.quiet_for().is_none_or(|q| q >= quiet)
                && self.dirty.depth() == 0
            {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Up to `n` keys still dirty, as `(db, key)` for reports.
    pub fn dirty_sample(&self, n: usize) -> Vec<(u32, String)> {
        self.dirty
            .sample(n)
            .into_iter()
            .map(|(db, k)| (db, crate::model::scope::display_key(&k)))
            .collect()
    }

    /// Up to `n` keys dirty now, for a stop that gave up draining. A tail that keeps up with
    /// writers that never stop may hold none at one instant; then the first keys dirtied
    /// within `wait` are the sample (the writers are why the drain gave up).
    pub async fn dirty_sample_within(&self, n: usize, wait: Duration) -> Vec<(u32, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.dirty.changed.notified();
            let sample = self.dirty_sample(n);
            if !sample.is_empty() || tokio::time::Instant::now() >= deadline {
                return sample;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }

    /// The current figures.
    pub fn report(&self) -> TailReport {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let (p50, _) = self.dirty.lag.quantile(0.5);
        let (p99, _) = self.dirty.lag.quantile(0.99);
        let (_, peak, bytes) = self.dirty.remembered();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TailReport {
            channel: self.channel,
            events: g(&self.stats.events),
            keys_copied: g(&self.stats.copied),
            keys_deleted: g(&self.stats.deleted),
            events_per_sec: g(&self.stats.events) as f64 / secs,
            copies_per_sec: (g(&self.stats.copied) + g(&self.stats.deleted)) as f64 / secs,
            queue_depth: self.dirty.depth(),
            lag_p50_ms: p50.as_secs_f64() * 1e3,
            lag_p99_ms: p99.as_secs_f64() * 1e3,
            replayed: g(&self.stats.replayed),
            remembered_peak: peak,
            remembered_bytes_now: bytes,
            gaps: g(&self.stats.gaps),
            heals: g(&self.stats.heals),
            subscriber_omem_bytes: g(&self.stats.subscriber_omem),
            seconds: secs,
        }
    }

    /// Stops every task and returns the final figures.
    pub async fn stop(mut self) -> Result<TailReport> {
        self.stop.stop();
        let report = self.report();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        match self.failure() {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// Sends a fatal error to whoever drives the tail and stops the task.
fn fail(shared: &Shared, e: Error) -> Result<()> {
    let _ = shared.fatal.send(e);
    Ok(())
}

/// Copies dirty keys: current source state to the target, or a delete when the source has
/// none. Connection trouble puts the keys back and reconnects; anything else is fatal.
async fn copy_worker(shared: Arc<Shared>) -> Result<()> {
    let m = &shared.migration;
    let mut copier: Option<Copier> = None;
    let mut backoff = Backoff::for_tail();
    while !shared.stop.is_stopped() {
        // Made before the take, so no later mark is missed (see `DirtySet::drained`).
        let notified = shared.dirty.changed.notified();
        let batch = shared.dirty.take(shared.options.batch_keys);
        if batch.is_empty() {
            tokio::select! {
                _ = notified => {}
                _ = shared.stop.stopped() => {}
            }
            continue;
        }
        if copier
            .as_ref()
            .is_some_and(crate::scan::BatchWorker::due_for_renewal)
        {
            copier = None;
        }
        let result = async {
            if copier.is_none() {
                let (s, t) = tokio::join!(Conn::keyspace(&m.source), Conn::keyspace(&m.target));
                copier = Some(Copier::new(s?, t?, shared.copy.clone()));
            }
            let c = copier.as_mut().expect("connected");
            let mut by_db: std::collections::BTreeMap<u32, Vec<Bytes>> = Default::default();
            for ((db, key), _) in &batch {
                by_db.entry(*db).or_default().push(key.clone());
            }
            let mut synced = copy::Synced::default();
            for (db, keys) in by_db {
                let s = c.sync_keys(db, &keys).await?;
                synced.copied += s.copied;
                synced.deleted += s.deleted;
            }
            Ok::<_, Error>(synced)
        }
        .await;
        match result {
            Ok(synced) => {
                let stats = &shared.stats;
                stats.deleted.fetch_add(synced.deleted, Ordering::Relaxed);
                stats.copied.fetch_add(synced.copied, Ordering::Relaxed);
                if let Some(t) = shared.touched.lock().expect("touched").as_mut() {
                    batch.iter().for_each(|((db, key), _)| t.add(*db, key));
                }
                shared.dirty.complete(&batch);
                backoff.reset();
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "tail copy interrupted; retrying");
                shared.dirty.requeue(&batch);
                copier = None;
                backoff.wait().await;
            }
            Err(e) => {
                shared.dirty.requeue(&batch);
                return fail(&shared, e);
            }
        }
    }
    Ok(())
}
