//! Redis Cluster topology: the primaries that own the slots (CLUSTER SHARDS, or CLUSTER NODES
//! on servers before 7.0), and the routed connection over them ([`Conn::keyspace`]). Slot
//! hashing is [`crate::net::slot`]'s.

use serde::{Deserialize, Serialize};

use crate::endpoint::{split_addr, Endpoint};
use crate::error::{Error, Result};
use crate::net::conn::{Conn, RoutedNode};
use crate::net::info;
use crate::net::resp::Reply;

/// A primary of a cluster and the slot ranges it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Primary {
    /// `host:port` clients use (the TLS port on a TLS cluster).
    pub addr: String,
    /// Host part of `addr`.
    pub host: String,
    /// Port part of `addr`.
    pub port: u16,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
    /// Its online replicas, `(host, port)`.
    pub replicas: Vec<(String, u16)>,
}

impl Primary {
    /// Where reads of this primary's slots go: with `from_replicas`, its first replica that is
    /// linked to it and not loading (asked directly: gossip reports replica health late), else
    /// the primary itself.
    pub async fn reader(&self, ep: &Endpoint, from_replicas: bool) -> Result<(String, u16)> {
        if from_replicas {
            for (host, port) in &self.replicas {
                let Ok(mut replica) = Conn::connect(&ep.at(host, *port)).await else {
                    continue;
                };
                let Ok(replication) = info::read(&mut replica, "replication").await else {
                    continue;
                };
                if info::field(&replication, "master_link_status") == Some("up")
                    && info::field(&replication, "master_sync_in_progress") == Some("0")
                {
                    return Ok((host.clone(), *port));
                }
            }
        }
        Ok((self.host.clone(), self.port))
    }

    /// Whether this primary serves `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }

    /// Whether `(host, port)` is this primary itself.
    pub fn is_self(&self, (host, port): (&str, u16)) -> bool {
        host == self.host && port == self.port
    }
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

/// The endpoints of every primary behind `ep` (just `ep` for a standalone server).
pub async fn primary_endpoints(ep: &Endpoint) -> Result<Vec<Endpoint>> {
    Ok(match discover(ep).await? {
        None => vec![ep.clone()],
        Some(nodes) => nodes.iter().map(|p| ep.at(&p.host, p.port)).collect(),
    })
}

/// Waits until every replica that serves reads (see [`Primary::reader`]) has applied what its
/// primary had written when this was called: reads from it then see every write made before
/// (live mode's subscription came first, so later writes raise events).
pub async fn wait_for_replicas(ep: &Endpoint, within: std::time::Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    for p in discover(ep).await?.unwrap_or_default() {
        let (host, port) = p.reader(ep, true).await?;
        if p.is_self((&host, port)) {
            continue;
        }
        let mut primary = Conn::connect(&ep.at(&p.host, p.port)).await?;
        let replication = info::read(&mut primary, "replication").await?;
        let wanted = info::number(&replication, "master_repl_offset").unwrap_or(0);
        let mut replica = Conn::connect(&ep.at(&host, port)).await?;
        loop {
            let replication = info::read(&mut replica, "replication").await?;
            if info::number(&replication, "slave_repl_offset").unwrap_or(0) >= wanted {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::ConnectionLost {
                    addr: format!("{host}:{port}"),
                    reason: format!(
                        "this replica of {} has not caught up with its primary within {}s",
                        p.addr,
                        within.as_secs()
                    ),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// A flat `[name, value, name, value…]` RESP2 map as pairs.
fn pairs(reply: &Reply) -> Vec<(String, &Reply)> {
    match reply {
        Reply::Array(items) => items
            .chunks(2)
            .filter_map(|p| match p {
                [k, v] => Some((k.as_text()?.to_string(), v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn parse_shards(reply: &Reply, tls: bool) -> Result<Vec<Primary>> {
    let bad = |what: &str| Error::Protocol {
        addr: String::new(),
        message: format!("CLUSTER SHARDS: {what}"),
    };
    let Reply::Array(shards) = reply else {
        return Err(bad("not an array"));
    };
    let mut out = Vec::new();
    for shard in shards {
        let fields = pairs(shard);
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let slots: Vec<u16> = match field("slots") {
            Some(Reply::Array(s)) => s
                .iter()
                .filter_map(|v| v.as_int())
                .map(|n| n as u16)
                .collect(),
            _ => return Err(bad("shard without slots")),
        };
        let slots: Vec<(u16, u16)> = slots
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0], c[1]))
            .collect();
        if slots.is_empty() {
            continue;
        }
        let Some(Reply::Array(nodes)) = field("nodes") else {
            return Err(bad("shard without nodes"));
        };
        let mut primary = None;
        let mut replicas = Vec::new();
        for node in nodes.iter().map(pairs) {
            let text = |name: &str| {
                node.iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.as_text())
            };
            let int = |name: &str| {
                node.iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.as_int())
            };
            let host = text("endpoint")
                .filter(|h| !h.is_empty() && h != "?")
                .or_else(|| text("ip"))
                .ok_or_else(|| bad("node without an address"))?;
            let port = match (tls, int("tls-port")) {
                (true, Some(p)) => p,
                _ => int("port").ok_or_else(|| bad("node without a port"))?,
            } as u16;
            match (text("role").as_deref(), text("health").as_deref()) {
                (Some("master"), health) if health != Some("fail") => primary = Some((host, port)),
                (Some("replica"), health) if health != Some("fail") => replicas.push((host, port)),
                _ => {}
            }
        }
        let Some((host, port)) = primary else {
            return Err(bad("a slot range has no healthy primary"));
        };
        let mut p = primary_at(&host, port, slots);
        p.replicas = replicas;
        out.push(p);
    }
    Ok(out)
}

fn primary_at(host: &str, port: u16, slots: Vec<(u16, u16)>) -> Primary {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Primary {
        addr,
        host: host.to_string(),
        port,
        slots,
        replicas: Vec::new(),
    }
}

/// Primaries from `CLUSTER NODES` text: `id ip:port@cport[,hostname] flags master … slots…`.
fn parse_nodes(text: &str) -> Vec<Primary> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 || !fields[2].split(',').any(|f| f == "master") {
            continue;
        }
        if fields[2].contains("fail") && !fields[2].contains("fail?") {
            continue;
        }
        let address = fields[1].split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = split_addr(address) else {
            continue;
        };
        let slots: Vec<(u16, u16)> = fields[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        if !slots.is_empty() {
            out.push(primary_at(host, port, slots));
        }
    }
    out
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
        for p in &primaries {
            let (host, port) = p.reader(ep, from_replicas).await?;
            nodes.push(RoutedNode {
                endpoint: ep.at(&host, port),
                replica: !p.is_self((&host, port)),
                slots: p.slots.clone(),
            });
        }
        Conn::routed(ep, nodes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7001@17001,host1 master - 0 0 2 connected 5461-10922 [5461->-x]\n\
                    c3 127.0.0.1:7003@17003 slave a1 0 0 1 connected\n\
                    d4 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16000 16383\n";
        let p = parse_nodes(text);
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].addr, "127.0.0.1:7001");
        assert_eq!(p[2].slots, vec![(10923, 16000), (16383, 16383)]);
        assert!(p[2].owns(16383) && !p[2].owns(16001));
    }
}
