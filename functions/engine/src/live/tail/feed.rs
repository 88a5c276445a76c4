//! The tail's subscriptions: choosing the live channel, one feed per source node with its
//! canary proof, renewal without a gap, and what each message marks dirty.

use super::*;
use crate::net::topology::Primary;
use crate::util::retry::Backoff;

/// Keyspace notifications when the source's `notify-keyspace-events` covers live mode, client
/// tracking when it is readable and does not; `None` where CONFIG is blocked (ElastiCache),
/// where only trying tells.
pub(super) async fn channel_by_config(node: &Endpoint) -> Result<Option<LiveChannel>> {
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
pub(super) async fn choose_channel(
    node: &SourceNode,
    db: u32,
    options: &TailOptions,
) -> Result<LiveChannel> {
    if let Some(channel) = channel_by_config(&node.endpoint).await? {
        return Ok(channel);
    }
    let mut feed = Feed::open(&node.endpoint, LiveChannel::Keyspace).await?;
    let key = canary_key(&options.run_id, &node.primary.slots);
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
pub(super) async fn subscriber(
    shared: Arc<Shared>,
    node: SourceNode,
    ready: oneshot::Sender<Result<()>>,
    canary_seen: Arc<Notify>,
    gaps: mpsc::UnboundedSender<String>,
) -> Result<()> {
    let ep = &node.endpoint;
    let mut ready = Some(ready);
    let mut backoff = Backoff::for_tail();
    while !shared.stop.is_stopped() {
        let mut feed = match Feed::open(ep, shared.channel).await {
            Ok(f) => f,
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return Ok(());
                }
                backoff.wait().await;
                continue;
            }
        };
        backoff.reset();
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
                _ = shared.stop.stopped() => return Ok(()),
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
pub(super) fn note_subscriber(shared: &Shared, ep: &Endpoint, feed: &Feed) {
    if let Some(id) = feed.client_id() {
        let mut ids = shared.subscriber_ids.lock().expect("ids");
        ids.insert(ep.addr(), id);
    }
}

/// Sleeps until `at`, or for ever without one.
pub(super) async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Make before break: opens a new feed, then reads the old one up to a canary written after
/// the new one was confirmed. Every change published before the canary was read from the old
/// feed, every change after it arrives on the new one: nothing falls between them.
pub(super) async fn renew(
    shared: &Shared,
    node: &SourceNode,
    old: &mut Feed,
    canary_seen: &Notify,
    gaps: &mpsc::UnboundedSender<String>,
) -> Result<Feed> {
    let new = Feed::open(&node.endpoint, shared.channel).await?;
    let key = canary_key(&shared.options.run_id, &node.primary.slots);
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
pub(super) fn take(
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

/// A source node the tail subscribes to (the server itself, or one cluster primary), with
/// the credentials to reach it.
#[derive(Debug, Clone)]
pub(super) struct SourceNode {
    pub(super) endpoint: Endpoint,
    pub(super) primary: Primary,
}

/// The nodes whose keyspace events the tail must hear: every primary of a cluster.
pub(super) async fn source_nodes(source: &Endpoint) -> Result<Vec<SourceNode>> {
    Ok(cluster::primaries_behind(source)
        .await?
        .into_iter()
        .map(|primary| SourceNode {
            endpoint: source.at(&primary.node),
            primary,
        })
        .collect())
}

/// The running subscriptions, one per source node, owned by the gap watcher.
#[derive(Default)]
pub(super) struct Subscriptions {
    pub(super) nodes: Vec<(SourceNode, tokio::task::AbortHandle)>,
    pub(super) tasks: tokio::task::JoinSet<Result<()>>,
}

impl Subscriptions {
    /// Subscribes on `node`, waits for the confirmation, and proves delivery with a canary.
    pub(super) async fn add(
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
    pub(super) fn remove(&mut self, addr: &str) {
        self.nodes.retain(|(n, handle)| {
            let keep = n.endpoint.addr() != addr;
            if !keep {
                handle.abort();
            }
            keep
        });
    }

    pub(super) fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|(n, _)| n.endpoint.addr()).collect()
    }
}

/// The canary key for a node: `ferry:canary:<run>`, with a hash tag on a cluster so the key
/// lives on that node.
pub(super) fn canary_key(run_id: &str, slots: &[(u16, u16)]) -> Vec<u8> {
    let mut key = [crate::model::scope::CANARY_PREFIX, run_id.as_bytes()].concat();
    if let Some(tag) = (0u32..).map(|i| i.to_string()).find(|t| {
        let slot = crate::net::slot::key_slot(t.as_bytes());
        slots.is_empty() || slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }) {
        if !slots.is_empty() {
            key.extend_from_slice(format!(":{{{tag}}}").as_bytes());
        }
    }
    key
}

/// Writes the canary `key` (60 s TTL) on `node`, in `db` unless it is a cluster node.
pub(super) async fn write_canary(node: &SourceNode, db: u32, key: &[u8]) -> Result<()> {
    let mut conn = Conn::connect(&node.endpoint).await?;
    if node.primary.slots.is_empty() {
        conn.select(db).await?;
    }
    conn.call(&[&b"SET"[..], key, b"1", b"PX", b"60000"])
        .await?;
    Ok(())
}

/// Writes the node's canary and waits for it on the channel: changes are proven to flow.
pub(super) async fn prove_delivery(
    shared: &Shared,
    node: &SourceNode,
    seen: &Notify,
) -> Result<()> {
    let key = canary_key(&shared.options.run_id, &node.primary.slots);
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
