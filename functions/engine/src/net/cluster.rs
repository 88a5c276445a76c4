//! Redis Cluster discovery: asking a node for the primaries that own the slots (CLUSTER SHARDS,
//! or CLUSTER NODES on servers before 7.0; parsed in [`crate::net::topology`]), picking where
//! reads go, and the routed connection over them ([`Conn::keyspace`]).

use crate::endpoint::{Endpoint, NodeAddr};
use crate::error::{Error, Result};
use crate::net::conn::Conn;
use crate::net::info;
pub use crate::net::topology::Primary;
use crate::net::topology::{parse_nodes, parse_shards};

/// Where reads of this primary's slots go: with `from_replicas`, its first replica that is
/// linked to it and not loading (asked directly: gossip reports replica health late), else
/// the primary itself.
pub async fn reader(primary: &Primary, ep: &Endpoint, from_replicas: bool) -> Result<NodeAddr> {
    if from_replicas {
        for replica_addr in &primary.replicas {
            let Ok(mut replica) = Conn::connect(&ep.at(replica_addr)).await else {
                continue;
            };
            let Ok(replication) = info::read(&mut replica, "replication").await else {
                continue;
            };
            if info::field(&replication, "master_link_status") == Some("up")
                && info::field(&replication, "master_sync_in_progress") == Some("0")
            {
                return Ok(replica_addr.clone());
            }
        }
    }
    Ok(primary.node.clone())
}

/// Reads the cluster's primaries through `conn` (any node); `None` when the server is not a
/// cluster node. `tls` picks the TLS port where nodes announce one.
pub async fn primaries(conn: &mut Conn, tls: bool) -> Result<Option<Vec<Primary>>> {
    match conn.call(&["CLUSTER", "SHARDS"]).await {
        Ok(reply) => return parse_shards(&reply, tls).map(Some),
        Err(Error::Server { message, .. }) if message.contains("cluster support disabled") => {
            return Ok(None)
        }
        // Servers before 7.0 have no CLUSTER SHARDS.
        Err(Error::Server { .. }) => {}
        Err(e) => return Err(e),
    }
    match conn.call(&["CLUSTER", "NODES"]).await {
        Ok(reply) => Ok(Some(parse_nodes(&reply.as_text().unwrap_or_default()))),
        Err(Error::Server { message, .. }) if message.contains("cluster support disabled") => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The primaries behind `ep`, read through a fresh connection; `None` for a standalone server.
pub async fn discover(ep: &Endpoint) -> Result<Option<Vec<Primary>>> {
    let mut conn = Conn::connect(ep).await?;
    primaries(&mut conn, ep.tls.is_some()).await
}

/// Every primary behind `ep`: a cluster's, or the standalone server itself.
pub async fn primaries_behind(ep: &Endpoint) -> Result<Vec<Primary>> {
    Ok(discover(ep)
        .await?
        .unwrap_or_else(|| vec![Primary::standalone(ep.node.clone())]))
}

/// The endpoints of every primary behind `ep` (just `ep` for a standalone server).
pub async fn primary_endpoints(ep: &Endpoint) -> Result<Vec<Endpoint>> {
    Ok(primaries_behind(ep)
        .await?
        .iter()
        .map(|p| ep.at(&p.node))
        .collect())
}

/// How long a replica may take to hold what its primary had when a run starts reading it.
pub const REPLICA_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until every replica that serves reads (see [`Primary::reader`]) has applied what its
/// primary had written when this was called: reads from it then see every write made before
/// (live mode's subscription came first, so later writes raise events).
pub async fn wait_for_replicas(ep: &Endpoint, within: std::time::Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    for p in discover(ep).await?.unwrap_or_default() {
        let reader = reader(&p, ep, true).await?;
        if reader == p.node {
            continue;
        }
        let mut primary = Conn::connect(&ep.at(&p.node)).await?;
        let replication = info::read(&mut primary, "replication").await?;
        let wanted = info::number(&replication, "master_repl_offset").unwrap_or(0);
        let mut replica = Conn::connect(&ep.at(&reader)).await?;
        loop {
            let replication = info::read(&mut replica, "replication").await?;
            if info::number(&replication, "slave_repl_offset").unwrap_or(0) >= wanted {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::ConnectionLost {
                    addr: reader.to_string(),
                    reason: format!(
                        "this replica of {} has not caught up with its primary within {}s",
                        p.node,
                        within.as_secs()
                    ),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

impl Conn {
    /// Connects to the keyspace behind `ep`: the server itself, or, when it is a cluster node,
    /// every primary of the cluster with commands routed by slot.
    pub async fn keyspace(ep: &Endpoint) -> Result<Conn> {
        Self::keyspace_reading(ep, false).await
    }

    /// Like [`Conn::keyspace`]; with `from_replicas`, a cluster's slots are read from a replica
    /// of each primary (in READONLY mode) where there is one. For reads only.
    pub async fn keyspace_reading(ep: &Endpoint, from_replicas: bool) -> Result<Conn> {
        let mut seed = Conn::connect(ep).await?;
        let Some(primaries) = primaries(&mut seed, ep.tls.is_some()).await? else {
            return Ok(seed);
        };
        let mut nodes = Vec::with_capacity(primaries.len());
        for p in primaries {
            let reader = reader(&p, ep, from_replicas).await?;
            nodes.push((p, reader));
        }
        Conn::routed(ep, nodes).await
    }
}
