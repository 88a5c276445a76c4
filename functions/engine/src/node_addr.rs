//! A server's address, `host:port`, as one value: the only parser and printer of node
//! addresses (URLs, redirects, CLUSTER SHARDS/NODES, shard plans, inventories, reports).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a server listens. Printed and serialized as `host:port` (an IPv6 host in brackets),
/// so plans and reports name a node the way operators and Redis itself do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    pub fn new(host: impl Into<String>, port: u16) -> NodeAddr {
        NodeAddr {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port` (`[v6]:port` too); `None` when `addr` is not one. An empty host is
    /// kept (a node CLUSTER NODES lists with no address must fail where it is used, not
    /// vanish).
    pub fn parse(addr: &str) -> Option<NodeAddr> {
        let (host, port) = addr.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(NodeAddr::new(host, port.parse().ok()?))
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for NodeAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NodeAddr, D::Error> {
        let text = String::deserialize(d)?;
        NodeAddr::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not host:port")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_one_way() {
        let v4 = NodeAddr::parse("10.0.0.7:6379").unwrap();
        assert_eq!((v4.host.as_str(), v4.port), ("10.0.0.7", 6379));
        let v6 = NodeAddr::parse("[::1]:7000").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.to_string()),
            ("::1", "[::1]:7000".into())
        );
        let bare_v6 = NodeAddr::parse("2001:db8::1:6379").unwrap();
        assert_eq!(bare_v6.to_string(), "[2001:db8::1]:6379");
        assert_eq!(NodeAddr::parse(":0"), Some(NodeAddr::new("", 0)));
        for bad in ["no-port", "host:", "host:99999"] {
            assert_eq!(NodeAddr::parse(bad), None, "{bad}");
        }
        let json = serde_json::to_string(&v6).unwrap();
        assert_eq!(json, r#""[::1]:7000""#);
        assert_eq!(serde_json::from_str::<NodeAddr>(&json).unwrap(), v6);
        assert!(serde_json::from_str::<NodeAddr>(r#""nope""#).is_err());
    }
}
