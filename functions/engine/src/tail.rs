//! The live tail (design §4): follows a live channel on the source ([`crate::channel`]: keyspace
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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::channel::{Feed, Heard, LiveChannel};
use crate::cluster;
use crate::conn::Conn;
use crate::copy::{Copier, CopyContext};
use crate::dirty::{DirtySet, Touched};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::inventory::{config_get, notifications_cover};
use crate::migrate::{self, Migration};
use crate::verify::{Status, VerifyOptions};

/// Whether a key is ferry's own canary (never copied, never verified).
pub fn is_canary(key: &[u8]) -> bool {
    key.starts_with(crate::scope::CANARY_PREFIX)
}

/// The notification flags live mode needs, added to what the server already has.
pub fn merged_notify_flags(current: &str) -> String {
    // `A` stands for every event class, but not for the keyspace channel `K`.
    let has_all = current.contains('A');
    let mut flags = current.to_string();
    for c in "Kg$lshzxet".chars() {
        let present = current.contains(c) || (has_all && c != 'K');
        if !present {
            flags.push(c);
        }
    }
    flags
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    stop: Arc<AtomicBool>,
    stopped: Arc<Notify>,
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
    stop: Arc<AtomicBool>,
    stopped: Arc<Notify>,
    unhealed: Arc<AtomicU64>,
    dbs: Vec<u32>,
    /// The dbs a tracking invalidation's key is marked dirty in (it names no db): those in
    /// scope that held keys at the start, and any the gap watcher sees gain keys later.
    key_dbs: std::sync::RwLock<std::collections::BTreeSet<u32>>,
    /// The channel that runs (`options.channel` resolved).
    channel: LiveChannel,
    /// Each node's subscriber client id (`host:port` → id), for its `omem`.
    subscriber_ids: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    options: TailOptions,
    fatal: mpsc::UnboundedSender<Error>,
    /// Keys copied or deleted since [`Tail::record_touched`], while recording.
    touched: Arc<std::sync::Mutex<Option<Touched>>>,
}

impl Tail {
    /// Subscribes on every source node (standalone: the source), proves delivery with the canary,
    /// and starts the copy workers and the gap watcher. With `remember`, keys touched from now on
    /// are remembered until [`Tail::barrier`] (a snapshot is about to run).
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
            stop: Arc::new(AtomicBool::new(false)),
            stopped: Arc::new(Notify::new()),
            unhealed: Arc::new(AtomicU64::new(0)),
            key_dbs: std::sync::RwLock::new(dbs.iter().copied().collect()),
            dbs,
            channel,
            subscriber_ids: Default::default(),
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
        Ok(Tail {
            gaps: gap_tx,
            touched: shared.touched.clone(),
            dirty,
            stats: shared.stats.clone(),
            stop: shared.stop.clone(),
            stopped: shared.stopped.clone(),
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
            .map(|(db, k)| (db, crate::scope::display_key(&k)))
            .collect()
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
        self.stop.store(true, Ordering::Relaxed);
        self.stopped.notify_waiters();
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

/// Keyspace notifications when the source's `notify-keyspace-events` covers live mode, client
/// tracking when it is readable and does not; `None` where CONFIG is blocked (ElastiCache),
/// where only trying tells.
async fn channel_by_config(node: &Endpoint) -> Result<Option<LiveChannel>> {
    let mut conn = Conn::connect(node).await?;
    Ok(config_get(&mut conn, "notify-keyspace-events").await?.map(
        |flags| match notifications_cover(&flags) {
            true => LiveChannel::Keyspace,
            false => LiveChannel::Tracking,
        },
    ))
}

/// The channel `auto` runs on: keyspace notifications where they are on (by CONFIG, or where
/// CONFIG is blocked, by the canary's event arriving), client tracking otherwise.
async fn choose_channel(node: &SourceNode, db: u32, options: &TailOptions) -> Result<LiveChannel> {
    if let Some(channel) = channel_by_config(&node.endpoint).await? {
        return Ok(channel);
    }
    let mut feed = Feed::open(&node.endpoint, LiveChannel::Keyspace).await?;
    let key = canary_key(&options.run_id, &node.slots);
    write_canary(node, db, &key).await?;
    let heard = tokio::time::timeout(options.canary_timeout, async {
        loop {
            if let Heard::Key { key: k, .. } = feed.next().await? {
                if k[..] == key[..] {
                    return Ok::<_, Error>(());
                }
            }
        }
    })
    .await;
    match heard {
        Ok(Ok(())) => Ok(LiveChannel::Keyspace),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(LiveChannel::Tracking),
    }
}

/// Reads a node's changes for ever, reopening its feed after a drop; a reopen is a gap. A
/// feed logged in with a changing password (IAM) is renewed before it expires, without a gap.
async fn subscriber(
    shared: Arc<Shared>,
    node: SourceNode,
    ready: oneshot::Sender<Result<()>>,
    canary_seen: Arc<Notify>,
    gaps: mpsc::UnboundedSender<String>,
) -> Result<()> {
    let ep = &node.endpoint;
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    while !shared.stop.load(Ordering::Relaxed) {
        let mut feed = match Feed::open(ep, shared.channel).await {
            Ok(f) => f,
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return Ok(());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        note_subscriber(&shared, ep, &feed);
        match ready.take() {
            Some(r) => {
                let _ = r.send(Ok(()));
            }
            None => {
                let _ = gaps.send(format!("subscription to {} re-established", ep.addr()));
            }
        }
        loop {
            let renewal = feed.renew_at();
            let heard = tokio::select! {
                h = feed.next() => h,
                _ = shared.stopped.notified() => return Ok(()),
                _ = sleep_until(renewal) => match renew(&shared, &node, &mut feed, &canary_seen, &gaps).await {
                    Ok(renewed) => {
                        feed = renewed;
                        note_subscriber(&shared, ep, &feed);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match heard {
                Ok(heard) => {
                    take(&shared, heard, &canary_seen, &gaps, ep);
                }
                Err(e) => {
                    tracing::warn!(error = %e, channel = %shared.channel, "live subscription dropped; resubscribing");
                    let _ = gaps.send(format!("subscription to {} dropped", ep.addr()));
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Remembers `feed`'s client id on `ep`, whose `omem` the gap watcher reads.
fn note_subscriber(shared: &Shared, ep: &Endpoint, feed: &Feed) {
    if let Some(id) = feed.client_id() {
        let mut ids = shared.subscriber_ids.lock().expect("ids");
        ids.insert(ep.addr(), id);
    }
}

/// Sleeps until `at`, or for ever without one.
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Make before break: opens a new feed, then reads the old one up to a canary written after
/// the new one was confirmed. Every change published before the canary was read from the old
/// feed, every change after it arrives on the new one: nothing falls between them.
async fn renew(
    shared: &Shared,
    node: &SourceNode,
    old: &mut Feed,
    canary_seen: &Notify,
    gaps: &mpsc::UnboundedSender<String>,
) -> Result<Feed> {
    let new = Feed::open(&node.endpoint, shared.channel).await?;
    let key = canary_key(&shared.options.run_id, &node.slots);
    write_canary(node, shared.dbs[0], &key).await?;
    let drained = tokio::time::timeout(shared.options.canary_timeout, async {
        loop {
            if take(shared, old.next().await?, canary_seen, gaps, &node.endpoint) {
                return Ok::<_, Error>(());
            }
        }
    })
    .await;
    match drained {
        Ok(Ok(())) => {
            tracing::info!(node = %node.endpoint.addr(), "live subscription renewed (a new login before the old one expires)");
            Ok(new)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Protocol {
            addr: node.endpoint.addr(),
            message: "the old subscription did not deliver the renewal canary".into(),
        }),
    }
}

/// Acts on what a feed heard: marks keys dirty, reports a flush as a gap, and wakes whoever
/// waits for a canary. Returns whether it was a canary.
fn take(
    shared: &Shared,
    heard: Heard,
    canary_seen: &Notify,
    gaps: &mpsc::UnboundedSender<String>,
    ep: &Endpoint,
) -> bool {
    let mut canary = false;
    match heard {
        Heard::Key { db, key, by_writer } => {
            shared.stats.events.fetch_add(1, Ordering::Relaxed);
            if is_canary(&key) {
                canary = true;
            } else if shared.migration.scope.covers(db, &key) {
                shared.dirty.mark_as((db, key), by_writer);
            }
        }
        Heard::Keys(keys) => {
            let dbs: Vec<u32> = shared
                .key_dbs
                .read()
                .expect("dbs")
                .iter()
                .copied()
                .collect();
            for key in keys {
                shared.stats.events.fetch_add(1, Ordering::Relaxed);
                if is_canary(&key) {
                    canary = true;
                    continue;
                }
                for &db in &dbs {
                    if shared.migration.scope.covers(db, &key) {
                        shared.dirty.mark((db, key.clone()));
                    }
                }
            }
        }
        Heard::Everything => {
            let _ = gaps.send(format!("{} was flushed (a null invalidation)", ep.addr()));
        }
        Heard::Nothing => {}
    }
    if canary {
        canary_seen.notify_waiters();
    }
    canary
}

/// A source node the tail subscribes to: the server itself, or one cluster primary.
#[derive(Debug, Clone)]
struct SourceNode {
    endpoint: Endpoint,
    /// Slots it serves (empty for a standalone server).
    slots: Vec<(u16, u16)>,
}

/// The nodes whose keyspace events the tail must hear: every primary of a cluster.
async fn source_nodes(source: &Endpoint) -> Result<Vec<SourceNode>> {
    Ok(match cluster::discover(source).await? {
        None => vec![SourceNode {
            endpoint: source.clone(),
            slots: Vec::new(),
        }],
        Some(primaries) => primaries
            .into_iter()
            .map(|p| SourceNode {
                endpoint: source.at(&p.host, p.port),
                slots: p.slots,
            })
            .collect(),
    })
}

/// The running subscriptions, one per source node, owned by the gap watcher.
#[derive(Default)]
struct Subscriptions {
    nodes: Vec<(SourceNode, tokio::task::AbortHandle)>,
    tasks: tokio::task::JoinSet<Result<()>>,
}

impl Subscriptions {
    /// Subscribes on `node`, waits for the confirmation, and proves delivery with a canary.
    async fn add(
        &mut self,
        shared: &Arc<Shared>,
        node: SourceNode,
        gaps: &mpsc::UnboundedSender<String>,
    ) -> Result<()> {
        let canary_seen = Arc::new(Notify::new());
        let (ready_tx, ready_rx) = oneshot::channel();
        let handle = self.tasks.spawn(subscriber(
            shared.clone(),
            node.clone(),
            ready_tx,
            canary_seen.clone(),
            gaps.clone(),
        ));
        let confirmed = match ready_rx.await {
            Ok(r) => r,
            Err(_) => Err(Error::Cancelled("subscriber stopped".into())),
        };
        let proven = match confirmed {
            Ok(()) => prove_delivery(shared, &node, &canary_seen).await,
            Err(e) => Err(e),
        };
        match proven {
            Ok(()) => {
                self.nodes.push((node, handle));
                Ok(())
            }
            Err(e) => {
                handle.abort();
                Err(e)
            }
        }
    }

    /// Stops following a node that is no longer a primary.
    fn remove(&mut self, addr: &str) {
        self.nodes.retain(|(n, handle)| {
            let keep = n.endpoint.addr() != addr;
            if !keep {
                handle.abort();
            }
            keep
        });
    }

    fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|(n, _)| n.endpoint.addr()).collect()
    }
}

/// The canary key for a node: `ferry:canary:<run>`, with a hash tag on a cluster so the key
/// lives on that node.
fn canary_key(run_id: &str, slots: &[(u16, u16)]) -> Vec<u8> {
    let mut key = [crate::scope::CANARY_PREFIX, run_id.as_bytes()].concat();
    if let Some(tag) = (0u32..).map(|i| i.to_string()).find(|t| {
        let slot = cluster::key_slot(t.as_bytes());
        slots.is_empty() || slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }) {
        if !slots.is_empty() {
            key.extend_from_slice(format!(":{{{tag}}}").as_bytes());
        }
    }
    key
}

/// Writes the canary `key` (60 s TTL) on `node`, in `db` unless it is a cluster node.
async fn write_canary(node: &SourceNode, db: u32, key: &[u8]) -> Result<()> {
    let mut conn = Conn::connect(&node.endpoint).await?;
    if node.slots.is_empty() {
        conn.select(db).await?;
    }
    conn.call(&[&b"SET"[..], key, b"1", b"PX", b"60000"])
        .await?;
    Ok(())
}

/// Writes the node's canary and waits for it on the channel: changes are proven to flow.
async fn prove_delivery(shared: &Shared, node: &SourceNode, seen: &Notify) -> Result<()> {
    let key = canary_key(&shared.options.run_id, &node.slots);
    let waiting = seen.notified();
    tokio::pin!(waiting);
    waiting.as_mut().enable();
    write_canary(node, shared.dbs[0], &key).await?;
    let how_to_fix = match shared.channel {
        LiveChannel::Tracking => "client tracking delivered no invalidation; check that nothing kills ferry's connections, or use --live-channel keyspace",
        _ => "enable notify-keyspace-events (K plus g$lshzxet; on ElastiCache, in a custom cache parameter group), or use --live-channel tracking, which needs no configuration",
    };
    tokio::time::timeout(shared.options.canary_timeout, waiting)
        .await
        .map_err(|_| {
            Error::NotificationsDisabled(format!(
                "the canary key {} on {} was not heard on the {} channel within {}s: {how_to_fix}",
                String::from_utf8_lossy(&key),
                node.endpoint.addr(),
                shared.channel,
                shared.options.canary_timeout.as_secs()
            ))
        })
}

/// Copies dirty keys: current source state to the target, or a delete when the source has
/// none. Connection trouble puts the keys back and reconnects; anything else is fatal.
async fn copy_worker(shared: Arc<Shared>) -> Result<()> {
    let m = &shared.migration;
    let mut copier: Option<Copier> = None;
    let mut backoff = Duration::from_millis(50);
    while !shared.stop.load(Ordering::Relaxed) {
        let notified = shared.dirty.changed.notified();
        let batch = shared.dirty.take(shared.options.batch_keys);
        if batch.is_empty() {
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
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
            let mut synced = crate::copy::Synced::default();
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
                shared
                    .stats
                    .deleted
                    .fetch_add(synced.deleted, Ordering::Relaxed);
                shared
                    .stats
                    .copied
                    .fetch_add(synced.copied, Ordering::Relaxed);
                if let Some(t) = shared.touched.lock().expect("touched").as_mut() {
                    batch.iter().for_each(|((db, key), _)| t.add(*db, key));
                }
                shared.dirty.complete(&batch);
                backoff = Duration::from_millis(50);
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "tail copy interrupted; retrying");
                shared.dirty.requeue(&batch);
                copier = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                shared.dirty.requeue(&batch);
                return fail(&shared, e);
            }
        }
    }
    Ok(())
}

/// Counts of the commands that change a keyspace without per-key events.
fn flush_calls(commandstats: &str) -> u64 {
    let calls = crate::inventory::command_calls(commandstats);
    ["flushall", "flushdb", "swapdb"]
        .iter()
        .filter_map(|c| calls.get(*c))
        .sum()
}

/// The gap watcher's last look at every node, and its connections.
struct NodeWatch {
    marks: std::collections::HashMap<String, NodeMark>,
    conns: std::collections::HashMap<String, Conn>,
    /// The function libraries last copied to the target.
    libraries: crate::functions::Libraries,
}

impl NodeWatch {
    /// A look at every subscribed node.
    async fn first_look(shared: &Shared, subscriptions: &Subscriptions) -> Result<NodeWatch> {
        let libraries = crate::functions::source_libraries(&shared.migration.source)
            .await?
            .unwrap_or_default();
        let mut watch = NodeWatch {
            marks: Default::default(),
            conns: Default::default(),
            libraries,
        };
        for (node, _) in &subscriptions.nodes {
            let mark = node_mark(&mut watch.conns, &node.endpoint, shared).await?;
            // Dbs that gained keys since inventory: the snapshot, planned after this, copies
            // them; invalidations from now on are marked in them too.
            new_key_dbs(shared, &mark);
            watch.marks.insert(node.endpoint.addr(), mark);
        }
        Ok(watch)
    }
}

/// What the gap watcher last saw of a node.
struct NodeMark {
    /// A restart changes it.
    run_id: String,
    /// FLUSHALL, FLUSHDB and SWAPDB calls.
    flushes: u64,
    /// Calls of writes that raise no keyspace event, per key type they write.
    silent: std::collections::BTreeMap<&'static str, u64>,
    /// Calls of FUNCTION LOAD/DELETE/FLUSH/RESTORE.
    function_changes: u64,
    /// Dbs holding keys (read on the tracking channel only, whose invalidations name no db).
    dbs: Vec<u32>,
    /// The output buffer the node holds for ferry's subscriber (`omem`), 0 when unknown.
    omem: u64,
}

/// Adds the dbs in scope that `mark` saw holding keys to those tracking invalidations are
/// marked in; returns the ones that were new.
fn new_key_dbs(shared: &Shared, mark: &NodeMark) -> Vec<u32> {
    let mut key_dbs = shared.key_dbs.write().expect("dbs");
    mark.dbs
        .iter()
        .copied()
        .filter(|db| shared.migration.scope.covers_db(*db) && key_dbs.insert(*db))
        .collect()
}

/// The dbs an `INFO keyspace` lists with keys.
fn dbs_with_keys(keyspace: &str) -> Vec<u32> {
    keyspace
        .lines()
        .filter_map(|l| {
            let (db, stats) = l.split_once(':')?;
            let db = db.strip_prefix("db")?.parse().ok()?;
            let keys: u64 = stats
                .strip_prefix("keys=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            (keys > 0).then_some(db)
        })
        .collect()
}

/// Watches the source for gaps (design §4.5): each node's INFO for flushes (commandstats) and
/// restarts (run id), and a cluster's primaries for failovers and slot moves, which it follows
/// by subscribing to new primaries before reporting the gap.
async fn gap_watcher(
    shared: Arc<Shared>,
    mut subscriptions: Subscriptions,
    watch: NodeWatch,
    gaps: mpsc::UnboundedSender<String>,
) -> Result<()> {
    let NodeWatch {
        mut marks,
        mut conns,
        mut libraries,
    } = watch;
    let clustered = subscriptions.nodes.iter().any(|(n, _)| !n.slots.is_empty());
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(shared.options.gap_poll).await;
        if clustered {
            if let Err(e) = follow_topology(&shared, &mut subscriptions, &gaps).await {
                if !e.is_transient() {
                    return fail(&shared, e);
                }
                tracing::warn!(error = %e, "cluster topology not readable yet; retrying");
            }
        }
        for addr in subscriptions.addrs() {
            let ep = subscriptions
                .nodes
                .iter()
                .find(|(n, _)| n.endpoint.addr() == addr)
                .map(|(n, _)| n.endpoint.clone())
                .expect("subscribed node");
            match node_mark(&mut conns, &ep, &shared).await {
                Ok(mut now) => {
                    let gained = new_key_dbs(&shared, &now);
                    if !gained.is_empty() {
                        // Invalidations for keys there arrived before the db was known.
                        let _ = gaps.send(format!("dbs {gained:?} gained keys on {addr}"));
                    }
                    if let Some(before) = marks.get(&addr) {
                        if before.run_id != now.run_id {
                            let _ = gaps.send(format!("{addr} restarted"));
                        } else if before.flushes != now.flushes {
                            let _ = gaps.send(format!("FLUSHALL/FLUSHDB/SWAPDB on {addr}"));
                        } else {
                            if before.function_changes != now.function_changes {
                                if let Err(e) = resync_functions(&shared, &ep, &mut libraries).await
                                {
                                    if !e.is_transient() {
                                        return fail(&shared, e);
                                    }
                                    tracing::warn!(error = %e, "could not re-sync function libraries; trying again");
                                    now.function_changes = before.function_changes;
                                }
                            }
                            let moved = (&before.silent, &now.silent);
                            if let Err(e) = resync_silent_writes(&shared, &ep, moved).await {
                                tracing::warn!(error = %e, "could not list the keys silent writes touched: healing");
                                let _ = gaps.send(format!("silent writes on {addr}"));
                            }
                        }
                    }
                    marks.insert(addr, now);
                }
                Err(_) => {
                    conns.remove(&addr);
                }
            }
        }
        let omem = marks.values().map(|m| m.omem).max().unwrap_or(0);
        shared.stats.subscriber_omem.store(omem, Ordering::Relaxed);
        while let Some(done) = subscriptions.tasks.try_join_next() {
            if let Ok(Err(e)) = done {
                return fail(&shared, e);
            }
        }
    }
    Ok(())
}

/// A node's run id and flush count, through a connection kept per node.
async fn node_mark(
    conns: &mut std::collections::HashMap<String, Conn>,
    ep: &Endpoint,
    shared: &Shared,
) -> Result<NodeMark> {
    let addr = ep.addr();
    if conns.get(&addr).is_some_and(Conn::due_for_renewal) {
        conns.remove(&addr);
    }
    if !conns.contains_key(&addr) {
        conns.insert(addr.clone(), Conn::connect(ep).await?);
    }
    let c = conns.get_mut(&addr).expect("connected");
    let tracking = shared.channel == LiveChannel::Tracking;
    shared.copy.throttle(2 + u64::from(tracking)).await;
    let dbs = match tracking {
        true => dbs_with_keys(
            &c.call(&["INFO", "keyspace"])
                .await?
                .as_text()
                .unwrap_or_default(),
        ),
        false => Vec::new(),
    };
    let server = c
        .call(&["INFO", "server"])
        .await?
        .as_text()
        .unwrap_or_default();
    let stats = c
        .call(&["INFO", "commandstats"])
        .await?
        .as_text()
        .unwrap_or_default();
    let run_id = server
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(NodeMark {
        run_id,
        flushes: flush_calls(&stats),
        silent: crate::module_types::silent_write_calls(&stats),
        function_changes: crate::functions::change_calls(&stats),
        dbs,
        omem: subscriber_omem(c, shared, &addr).await,
    })
}

/// What `node` holds for ferry's subscriber there, by `CLIENT LIST ID`; 0 where CLIENT is
/// refused or the subscriber is not known yet.
async fn subscriber_omem(c: &mut Conn, shared: &Shared, node: &str) -> u64 {
    let id = shared
        .subscriber_ids
        .lock()
        .expect("ids")
        .get(node)
        .copied();
    let Some(id) = id else { return 0 };
    let listed = c.call(&["CLIENT", "LIST", "ID", &id.to_string()]).await;
    listed
        .ok()
        .and_then(|r| r.as_text())
        .and_then(|line| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix("omem="))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Loads `node`'s function libraries on the target and deletes there the ones the migration
/// copied earlier that the source no longer has; `known` is what was copied last.
async fn resync_functions(
    shared: &Shared,
    node: &Endpoint,
    known: &mut crate::functions::Libraries,
) -> Result<()> {
    use crate::functions;
    let now = functions::libraries(&mut Conn::connect(node).await?)
        .await?
        .unwrap_or_default();
    let dropped = functions::dropped(known, &now);
    functions::sync(&now, &dropped, &shared.migration.target).await?;
    tracing::warn!(
        libraries = now.len(),
        deleted = dropped.len(),
        "function libraries changed on {}: re-synced",
        node.addr()
    );
    shared.stats.gaps.fetch_add(1, Ordering::Relaxed);
    *known = now;
    Ok(())
}

/// Calls of silent writes per key type, at the last look and now.
type SilentCalls<'a> = (
    &'a std::collections::BTreeMap<&'static str, u64>,
    &'a std::collections::BTreeMap<&'static str, u64>,
);

/// Re-syncs every key of each type whose silent writes moved on `node` since the last look
/// (see `silent`), counting each as a gap. On an error the caller reports a gap instead, and
/// the heal pass's compare covers these keys too.
async fn resync_silent_writes(
    shared: &Shared,
    node: &Endpoint,
    moved: SilentCalls<'_>,
) -> Result<()> {
    let (before, now) = moved;
    for (type_name, calls) in now {
        if before.get(type_name) == Some(calls) {
            continue;
        }
        shared.stats.gaps.fetch_add(1, Ordering::Relaxed);
        let keys =
            crate::silent::keys_to_resync(&shared.migration, node, &shared.dbs, type_name).await?;
        tracing::warn!(
            type_name,
            keys = keys.len(),
            "writes that raise no keyspace event on {}: re-syncing every key of the type",
            node.addr()
        );
        for key in keys {
            shared.dirty.mark(key);
        }
    }
    Ok(())
}

/// Compares the cluster's primaries with the subscribed nodes; on a change (failover, slot
/// move), subscribes to the new primaries first, then reports the gap so a heal pass runs.
async fn follow_topology(
    shared: &Arc<Shared>,
    subscriptions: &mut Subscriptions,
    gaps: &mpsc::UnboundedSender<String>,
) -> Result<()> {
    let mut last_error = None;
    let mut current = None;
    let known: Vec<Endpoint> = subscriptions
        .nodes
        .iter()
        .map(|(n, _)| n.endpoint.clone())
        .collect();
    for ep in std::iter::once(&shared.migration.source).chain(known.iter()) {
        match source_nodes(ep).await {
            Ok(nodes) => {
                current = Some(nodes);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some(current) = current else {
        return Err(last_error.expect("at least one node was asked"));
    };
    let unchanged = current.len() == subscriptions.nodes.len()
        && current.iter().all(|c| {
            subscriptions
                .nodes
                .iter()
                .any(|(n, _)| n.endpoint.addr() == c.endpoint.addr() && n.slots == c.slots)
        });
    if unchanged {
        return Ok(());
    }
    let before = subscriptions.addrs();
    for addr in &before {
        subscriptions.remove(addr);
    }
    for node in current {
        subscriptions.add(shared, node, gaps).await?;
    }
    let _ = gaps.send(format!(
        "cluster topology changed: primaries {:?} -> {:?}",
        before,
        subscriptions.addrs()
    ));
    Ok(())
}

/// A gap notice that is a retry of a heal pass, not a new gap.
const HEAL_RETRY: &str = "retry of an interrupted heal pass";

/// Marks a gap notice already counted in `unhealed` by its sender ([`Tail::heal`]).
const PRE_COUNTED: &str = "(reported) ";

/// Heals gaps: a compare of source and target in both directions marks every difference dirty,
/// inside a remember window whose replay covers the races with live events.
async fn healer(
    shared: Arc<Shared>,
    mut gaps: mpsc::UnboundedReceiver<String>,
    retry: mpsc::UnboundedSender<String>,
) -> Result<()> {
    // `unhealed` counts gaps taken off the channel and retries queued, until their heal pass
    // ends: a drain must not end before it (stopping never cuts a heal short).
    let count_in = |reason: &String| {
        if reason != HEAL_RETRY && !reason.starts_with(PRE_COUNTED) {
            shared.unhealed.fetch_add(1, Ordering::SeqCst);
        }
    };
    while let Some(reason) = gaps.recv().await {
        count_in(&reason);
        // Coalesce gaps that arrive together into one heal pass.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut reasons = vec![reason];
        while let Ok(more) = gaps.try_recv() {
            count_in(&more);
            reasons.push(more);
        }
        let taken = reasons.len() as u64;
        shared.dirty.note_activity();
        let new_gaps = reasons.iter().filter(|r| *r != HEAL_RETRY).count();
        shared
            .stats
            .gaps
            .fetch_add(new_gaps as u64, Ordering::Relaxed);
        tracing::warn!(gaps = ?reasons, "gap on the source: healing with a compare pass");
        shared.dirty.open_window();
        let healed = heal_pass(&shared).await;
        shared.dirty.drained().await;
        let replayed = shared.dirty.close_window();
        shared
            .stats
            .replayed
            .fetch_add(replayed as u64, Ordering::Relaxed);
        // Quiet is counted from the end of the heal: it is the first moment changes are known.
        shared.dirty.note_activity();
        match healed {
            Ok(n) => {
                shared.stats.heals.fetch_add(1, Ordering::Relaxed);
                tracing::info!(differences = n, replayed, "heal pass done");
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "heal pass interrupted (the node may still be coming back); healing again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                shared.unhealed.fetch_add(1, Ordering::SeqCst);
                let _ = retry.send(HEAL_RETRY.to_string());
            }
            Err(e) => {
                shared.unhealed.fetch_sub(taken, Ordering::SeqCst);
                return fail(&shared, e);
            }
        }
        // A retry was queued above before this pass's gaps are let go, so a drain never sees
        // an interrupted heal as done.
        shared.unhealed.fetch_sub(taken, Ordering::SeqCst);
    }
    Ok(())
}

/// One compare in both directions; marks every differing key dirty and returns how many.
async fn heal_pass(shared: &Shared) -> Result<usize> {
    let m = &shared.migration;
    let options = VerifyOptions {
        keep_diffs: usize::MAX,
        sample_limit: 0,
        ..VerifyOptions::default()
    };
    let (inv, ctx) =
        migrate::current_verify_context(m, &shared.dbs, shared.copy.limiter.clone(), options)
            .await?;
    let dbs = ctx.source_dbs.clone();
    let (report, _) =
        migrate::verify_all(m, &inv, ctx, Arc::new(|_| {}), migrate::StopWhen::default()).await?;
    let mut n = 0;
    for d in report.diffs {
        let key = match d.status {
            Status::Extra => m.scope.owners_of(d.db, &d.key, &dbs).into_iter().next(),
            _ => Some((d.db, d.key)),
        };
        if let Some(key) = key {
            shared.dirty.mark(key);
            n += 1;
        }
    }
    Ok(n)
}

/// Checks the source's `notify-keyspace-events` for live mode (on every cluster primary) and,
/// when asked and allowed, turns the needed flags on. Returns the original value to restore at
/// the end, if changed.
pub async fn ensure_notifications(source: &Endpoint, enable: bool) -> Result<Option<String>> {
    let mut original = None;
    for node in cluster::primary_endpoints(source).await? {
        let mut conn = Conn::connect(&node).await?;
        let Some(current) = config_get(&mut conn, "notify-keyspace-events").await? else {
            // CONFIG is blocked (ElastiCache): the canary proves delivery or refuses.
            continue;
        };
        if notifications_cover(&current) {
            continue;
        }
        if !enable {
            return Err(Error::NotificationsDisabled(format!(
                "the source {} has notify-keyspace-events '{current}'; live mode needs K plus g$lshzxet: run CONFIG SET notify-keyspace-events KA, pass --enable-notifications, or on ElastiCache set it in a custom cache parameter group",
                node.addr()
            )));
        }
        let wanted = merged_notify_flags(&current);
        conn.call(&["CONFIG", "SET", "notify-keyspace-events", &wanted])
            .await?;
        original.get_or_insert(current);
    }
    Ok(original)
}

/// Puts back the `notify-keyspace-events` value live mode found, on every primary.
pub async fn restore_notifications(source: &Endpoint, original: &str) -> Result<()> {
    for node in cluster::primary_endpoints(source).await? {
        let mut conn = Conn::connect(&node).await?;
        conn.call(&["CONFIG", "SET", "notify-keyspace-events", original])
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_flags() {
        assert_eq!(merged_notify_flags(""), "Kg$lshzxet");
        assert_eq!(merged_notify_flags("Ex"), "ExKg$lshzet");
        assert_eq!(merged_notify_flags("AK"), "AK");
        assert!(notifications_cover(&merged_notify_flags("E")));
    }

    #[test]
    fn counts_flushes() {
        let s = "cmdstat_get:calls=5,usec=1\r\ncmdstat_flushdb:calls=2,usec=9\r\ncmdstat_flushall:calls=1,usec=3\r\n";
        assert_eq!(flush_calls(s), 3);
    }

    #[test]
    fn lists_dbs_with_keys() {
        let s = "# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb3:keys=1,expires=1,avg_ttl=9\r\ndb4:keys=0,expires=0\r\n";
        assert_eq!(dbs_with_keys(s), vec![0, 3]);
    }
}
