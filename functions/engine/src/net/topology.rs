//! Cluster topology as data: a primary and its slots, parsed from CLUSTER SHARDS or (servers
//! before 7.0) CLUSTER NODES. Pure: asking a node is the cluster module's.

use serde::{Deserialize, Serialize};

use crate::endpoint::NodeAddr;
use crate::error::{Error, Result};
use crate::net::resp::Reply;

/// A primary and the slot ranges it serves: a cluster's primary, or a standalone server
/// (no slots: it serves them all). The one type for "a node and its slots".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Primary {
    /// Where clients reach it (the TLS port on a TLS cluster).
    pub node: NodeAddr,
    /// Inclusive slot ranges; empty for a standalone server.
    pub slots: Vec<(u16, u16)>,
    /// Its online replicas.
    #[serde(default)]
    pub replicas: Vec<NodeAddr>,
}

impl Primary {
    /// A standalone server.
    pub fn standalone(node: NodeAddr) -> Primary {
        Primary {
            node,
            slots: Vec::new(),
            replicas: Vec::new(),
        }
    }

    /// Whether this primary serves `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
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

pub(crate) fn parse_shards(reply: &Reply, tls: bool) -> Result<Vec<Primary>> {
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
            let node = NodeAddr::new(host, port);
            match (text("role").as_deref(), text("health").as_deref()) {
                (Some("master"), health) if health != Some("fail") => primary = Some(node),
                (Some("replica"), health) if health != Some("fail") => replicas.push(node),
                _ => {}
            }
        }
        let Some(node) = primary else {
            return Err(bad("a slot range has no healthy primary"));
        };
        out.push(Primary {
            node,
            slots,
            replicas,
        });
    }
    Ok(out)
}

/// Primaries from `CLUSTER NODES` text: `id ip:port@cport[,hostname] flags master … slots…`.
pub(crate) fn parse_nodes(text: &str) -> Vec<Primary> {
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
        let Some(node) = NodeAddr::parse(address) else {
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
            out.push(Primary {
                node,
                slots,
                replicas: Vec::new(),
            });
        }
    }
    out
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
        assert_eq!(p[1].node.to_string(), "127.0.0.1:7001");
        assert_eq!(p[2].slots, vec![(10923, 16000), (16383, 16383)]);
        assert!(p[2].owns(16383) && !p[2].owns(16001));
    }
}
