//! The gap watcher (design §4.5): each node's INFO for flushes, restarts, dbs that gain keys
//! and silent writes; a cluster's primaries for failovers and slot moves; and the output buffer
//! each node holds for ferry's subscription.

use super::*;
use crate::keys::functions;
use crate::net::info;

/// Counts of the commands that change a keyspace without per-key events.
pub(super) fn flush_calls(commandstats: &str) -> u64 {
    let calls = info::command_calls(commandstats);
    ["flushall", "flushdb", "swapdb"]
        .iter()
        .filter_map(|c| calls.get(*c))
        .sum()
}

/// The gap watcher's last look at every node, and its connections.
pub(super) struct NodeWatch {
    pub(super) marks: std::collections::HashMap<String, NodeMark>,
    pub(super) conns: std::collections::HashMap<String, Conn>,
    /// The function libraries last copied to the target.
    pub(super) libraries: functions::Libraries,
}

impl NodeWatch {
    /// A look at every subscribed node.
    pub(super) async fn first_look(
        shared: &Shared,
        subscriptions: &Subscriptions,
    ) -> Result<NodeWatch> {
        let libraries = functions::source_libraries(&shared.migration.source)
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
pub(super) struct NodeMark {
    /// A restart changes it.
    pub(super) run_id: String,
    /// FLUSHALL, FLUSHDB and SWAPDB calls.
    pub(super) flushes: u64,
    /// Calls of writes that raise no keyspace event, per key type they write.
    pub(super) silent: std::collections::BTreeMap<&'static str, u64>,
    /// Calls of FUNCTION LOAD/DELETE/FLUSH/RESTORE.
    pub(super) function_changes: u64,
    /// Dbs holding keys (read on the tracking channel only, whose invalidations name no db).
    pub(super) dbs: Vec<u32>,
    /// The output buffer the node holds for ferry's subscriber (`omem`), 0 when unknown.
    pub(super) omem: u64,
}

/// Adds the dbs in scope that `mark` saw holding keys to those tracking invalidations are
/// marked in; returns the ones that were new.
pub(super) fn new_key_dbs(shared: &Shared, mark: &NodeMark) -> Vec<u32> {
    let mut key_dbs = shared.key_dbs.write().expect("dbs");
    mark.dbs
        .iter()
        .copied()
        .filter(|db| shared.migration.scope.covers_db(*db) && key_dbs.insert(*db))
        .collect()
}

/// The dbs an `INFO keyspace` lists with keys.
pub(super) fn dbs_with_keys(keyspace: &str) -> Vec<u32> {
    info::keyspace(keyspace)
        .into_iter()
        .filter_map(|(db, stats)| (stats.keys > 0).then_some(db))
        .collect()
}

/// Watches the source for gaps (design §4.5): each node's INFO for flushes (commandstats) and
/// restarts (run id), and a cluster's primaries for failovers and slot moves, which it follows
/// by subscribing to new primaries before reporting the gap.
pub(super) async fn gap_watcher(
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
    let clustered = subscriptions
        .nodes
        .iter()
        .any(|(n, _)| !n.primary.slots.is_empty());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.options.gap_poll) => {}
            _ = shared.stop.stopped() => break,
        }
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
pub(super) async fn node_mark(
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
        true => dbs_with_keys(&info::read(c, "keyspace").await?),
        false => Vec::new(),
    };
    let server = info::read(c, "server").await?;
    let stats = info::read(c, "commandstats").await?;
    let run_id = info::field(&server, "run_id")
        .unwrap_or_default()
        .to_string();
    Ok(NodeMark {
        run_id,
        flushes: flush_calls(&stats),
        silent: crate::keys::module_types::silent_write_calls(&stats),
        function_changes: functions::change_calls(&stats),
        dbs,
        omem: subscriber_omem(c, shared, &addr).await,
    })
}

/// What `node` holds for ferry's subscriber there, by `CLIENT LIST ID` (an admin command): 0
/// when the subscriber is not known yet, and from the first refusal on (a user without CLIENT
/// LIST is asked once, not every poll).
pub(super) async fn subscriber_omem(c: &mut Conn, shared: &Shared, node: &str) -> u64 {
    if shared.omem_refused.load(Ordering::Relaxed) {
        return 0;
    }
    let id = shared
        .subscriber_ids
        .lock()
        .expect("ids")
        .get(node)
        .copied();
    let Some(id) = id else { return 0 };
    match c.call(&["CLIENT", "LIST", "ID", &id.to_string()]).await {
        Ok(reply) => reply
            .as_text()
            .and_then(|line| {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix("omem="))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0),
        Err(e) => {
            if !e.is_transient() {
                tracing::info!(error = %e, "CLIENT LIST refused: the subscription's output buffer is not reported");
                shared.omem_refused.store(true, Ordering::Relaxed);
            }
            0
        }
    }
}

/// Loads `node`'s function libraries on the target and deletes there the ones the migration
/// copied earlier that the source no longer has; `known` is what was copied last.
pub(super) async fn resync_functions(
    shared: &Shared,
    node: &Endpoint,
    known: &mut functions::Libraries,
) -> Result<()> {
    use crate::keys::functions;
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
pub(super) type SilentCalls<'a> = (
    &'a std::collections::BTreeMap<&'static str, u64>,
    &'a std::collections::BTreeMap<&'static str, u64>,
);

/// Re-syncs every key of each type whose silent writes moved on `node` since the last look
/// (see `silent`), counting each as a gap. On an error the caller reports a gap instead, and
/// the heal pass's compare covers these keys too.
pub(super) async fn resync_silent_writes(
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
            crate::live::silent::keys_to_resync(&shared.migration, node, &shared.dbs, type_name)
                .await?;
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
pub(super) async fn follow_topology(
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
            subscriptions.nodes.iter().any(|(n, _)| {
                n.endpoint.addr() == c.endpoint.addr() && n.primary.slots == c.primary.slots
            })
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

#[cfg(test)]
mod tests {
    use super::*;

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
