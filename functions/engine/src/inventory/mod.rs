//! What ferry learns about a server before touching anything: product and version, mode, RDB
//! version, databases, memory, notification settings; and the checks that refuse a pairing of
//! source and target before a single key is written.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::endpoint::{Endpoint, NodeAddr};
use crate::error::{Error, Result};
use crate::model::migration::Method;
use crate::net::cluster::{self, Primary};
use crate::net::conn::Conn;
use crate::net::info::{self, config_get, DbStats};
use crate::net::resp::Reply;

mod kinds;
pub use kinds::{Product, ReplicationRole, ServerMode};

/// One server as `INFO` and `CONFIG` describe it.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    /// `host:port`.
    pub addr: String,
    /// Redis or Valkey.
    pub product: Product,
    /// The product's version, e.g. `7.0.15`.
    pub version: String,
    /// Standalone, cluster or sentinel.
    pub mode: ServerMode,
    /// The server's run id, to tell two URLs that reach the same server.
    #[serde(skip)]
    pub run_id: String,
    /// The RDB version of this server's DUMP payloads (design §3).
    pub rdb_version: u16,
    /// Keys per database that has any.
    pub dbs: BTreeMap<u32, DbStats>,
    /// `used_memory` in bytes.
    pub used_memory: u64,
    /// `maxmemory` in bytes; 0 means no limit.
    pub maxmemory: u64,
    /// `maxmemory-policy`.
    pub maxmemory_policy: String,
    /// `notify-keyspace-events`, or `None` where CONFIG is not allowed (as on ElastiCache).
    pub notify_keyspace_events: Option<String>,
    /// How many databases the server has, where CONFIG tells.
    pub databases: Option<u32>,
    /// Primary or read-only replica, from `INFO replication`.
    pub role: ReplicationRole,
    /// `maxclients`, where CONFIG tells.
    pub maxclients: Option<u64>,
    /// Loaded modules (`MODULE LIST` names, lowercase): they add key types.
    pub modules: Vec<String>,
    /// Clients connected when ferry looked (`INFO clients`).
    pub connected_clients: u64,
    /// The servers holding the keyspace: the server itself, or every cluster primary. Shards
    /// are planned per node.
    pub nodes: Vec<NodeShare>,
}

/// One server's share of a keyspace: a standalone server holds all of it, a cluster primary
/// its slots.
#[derive(Debug, Clone, Serialize)]
pub struct NodeShare {
    /// The node ferry connects to and the slots it serves.
    #[serde(flatten)]
    pub primary: Primary,
    /// Keys per database on this node.
    pub dbs: BTreeMap<u32, DbStats>,
    /// An online replica that can serve this node's reads, if any.
    pub replica: Option<NodeAddr>,
    /// The node's run id (a restart changes it).
    #[serde(skip)]
    pub run_id: String,
}

impl ServerInfo {
    /// Reads INFO and (where allowed) CONFIG from a connected server.
    pub async fn read(conn: &mut Conn) -> Result<ServerInfo> {
        let info = info::read(conn, "ALL").await?;
        let fields = info::fields(&info);
        let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
        let num = |k: &str| get(k).parse::<u64>().unwrap_or(0);
        let (product, version) = match fields.get("valkey_version") {
            Some(v) => (Product::Valkey, v.clone()),
            None if get("server_name") == "valkey" => (Product::Valkey, get("redis_version")),
            None => (Product::Redis, get("redis_version")),
        };
        let dbs = info::keyspace(&info);
        // INFO's keyspace section is what the plan trusts: a server whose INFO lacks it, or
        // contradicts DBSIZE, would be "verified" with nothing copied.
        // A user that may not run DBSIZE skips the check rather than the migration.
        let selected = conn.db();
        let dbsize = match conn.call(&["DBSIZE"]).await {
            Ok(reply) => reply.as_int().unwrap_or(0).max(0) as u64,
            Err(Error::Server { .. } | Error::AuthFailed { .. }) => 0,
            Err(e) => return Err(e),
        };
        let listed = dbs.get(&selected).map_or(0, |d: &DbStats| d.keys);
        if dbsize > 0 && listed == 0 {
            return Err(Error::Protocol {
                addr: conn.addr(),
                message: format!(
                    "INFO keyspace lists no keys in db {selected} but DBSIZE counts {dbsize}: ferry cannot plan from this server's INFO"
                ),
            });
        }
        let notify = config_get(conn, "notify-keyspace-events").await?;
        let maxclients = config_get(conn, "maxclients")
            .await?
            .and_then(|d| d.parse().ok());
        let modules = info::module_names(&info);
        let databases = config_get(conn, "databases")
            .await?
            .and_then(|d| d.parse().ok());
        let dbs_copy = dbs.clone();
        Ok(ServerInfo {
            addr: conn.addr(),
            rdb_version: rdb_version_of(product, &version),
            product,
            version,
            mode: match get("redis_mode").as_str() {
                "cluster" => ServerMode::Cluster,
                "sentinel" => ServerMode::Sentinel,
                _ => ServerMode::Standalone,
            },
            run_id: get("run_id"),
            dbs,
            used_memory: num("used_memory"),
            maxmemory: num("maxmemory"),
            maxmemory_policy: get("maxmemory_policy"),
            notify_keyspace_events: notify,
            databases,
            // Only a replica says `slave`; a server that hides the field takes writes.
            role: match get("role").as_str() {
                "slave" | "replica" => ReplicationRole::Replica,
                _ => ReplicationRole::Primary,
            },
            maxclients,
            modules,
            connected_clients: num("connected_clients"),
            nodes: vec![NodeShare {
                primary: Primary::standalone(conn.node().clone()),
                dbs: dbs_copy,
                replica: None,
                run_id: get("run_id"),
            }],
        })
    }

    /// Reads the keyspace behind `ep`: one server, or a cluster's primaries summed (keys and
    /// memory), each kept in [`ServerInfo::nodes`]. Returns a connection to `ep` too.
    pub async fn read_keyspace(ep: &Endpoint) -> Result<(Conn, ServerInfo)> {
        let mut conn = Conn::connect(ep).await?;
        let mut info = ServerInfo::read(&mut conn).await?;
        let Some(primaries) = cluster::primaries(&mut conn, ep.tls.is_some()).await? else {
            return Ok((conn, info));
        };
        let seed = info.clone();
        info.dbs.clear();
        info.nodes.clear();
        let (mut used, mut max, mut unlimited) = (0, 0, false);
        for p in primaries {
            let node = if p.node == *conn.node() {
                seed.clone()
            } else {
                ServerInfo::read(&mut Conn::connect(&ep.at(&p.node)).await?).await?
            };
            for (db, s) in &node.dbs {
                let sum = info.dbs.entry(*db).or_default();
                sum.keys += s.keys;
                sum.expires += s.expires;
                sum.field_ttl_keys += s.field_ttl_keys;
            }
            used += node.used_memory;
            max += node.maxmemory;
            unlimited |= node.maxmemory == 0;
            let reader = cluster::reader(&p, ep, true).await?;
            info.nodes.push(NodeShare {
                replica: (reader != p.node).then_some(reader),
                primary: p,
                dbs: node.dbs.clone(),
                run_id: node.run_id.clone(),
            });
        }
        info.used_memory = used;
        info.maxmemory = if unlimited { 0 } else { max };
        info.mode = ServerMode::Cluster;
        Ok((conn, info))
    }

    /// `(major, minor)` of the version, for feature checks.
    pub fn major_minor(&self) -> (u32, u32) {
        let mut parts = self.version.split('.').map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Whether the server has PEXPIRETIME (Redis/Valkey ≥ 7.0); older ones get PTTL.
    pub fn has_pexpiretime(&self) -> bool {
        self.major_minor() >= (7, 0)
    }

    /// Whether the server takes `XSETID … ENTRIESADDED` and `XGROUP CREATE … ENTRIESREAD` (≥ 7.0).
    pub fn has_stream_counters(&self) -> bool {
        self.major_minor() >= (7, 0)
    }

    /// Whether the server has hash-field TTLs (Redis ≥ 7.4, Valkey ≥ 9.0).
    pub fn has_field_ttls(&self) -> bool {
        match self.product {
            Product::Valkey => self.major_minor() >= (9, 0),
            Product::Redis => self.major_minor() >= (7, 4),
        }
    }

    /// Whether this is a cluster node whose SCAN cursor carries the slot in its low 14 bits
    /// (one dict per slot: Redis ≥ 7.4, Valkey ≥ 8), so shards can be slot ranges (design §2).
    pub fn scans_by_slot(&self) -> bool {
        self.mode == ServerMode::Cluster
            && match self.product {
                Product::Valkey => self.major_minor() >= (8, 0),
                Product::Redis => self.major_minor() >= (7, 4),
            }
    }

    /// Keys holding hash fields with a TTL, over all databases.
    pub fn field_ttl_keys(&self) -> u64 {
        self.dbs.values().map(|d| d.field_ttl_keys).sum()
    }

    /// Total keys over all databases.
    pub fn total_keys(&self) -> u64 {
        self.dbs.values().map(|d| d.keys).sum()
    }

    /// Whether `db` exists on this server, as far as it can be told without writing.
    pub fn has_db(&self, db: u32) -> bool {
        match self.databases {
            Some(n) => db < n,
            None => true,
        }
    }
}

/// The RDB version a server writes into DUMP payloads (design §3).
pub fn rdb_version_of(product: Product, version: &str) -> u16 {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    match (product, v) {
        (Product::Valkey, (9.., _)) => 80,
        (Product::Valkey, _) => 11,
        (_, (8.., _)) | (_, (7, 4..)) => 12,
        (_, (7, 2..)) => 11,
        (_, (7, _)) => 10,
        (_, (5..=6, _)) => 9,
        (_, (4, _)) => 8,
        _ => 7,
    }
}

/// Whether a server writing RDB `target` loads a DUMP payload of RDB `payload`.
/// Valkey 9 (RDB 80) reads Redis payloads up to 11, not Redis 7.4's 12.
pub fn restore_accepts(target: u16, payload: u16) -> bool {
    match (target, payload) {
        (t, p) if t == p => true,
        (80, p) => p <= 11,
        (t, p) => p <= t && t < 80,
    }
}

/// The RDB version in a DUMP payload's trailer (2 bytes little-endian, then an 8-byte CRC64).
pub fn payload_rdb_version(payload: &[u8]) -> Option<u16> {
    let n = payload.len();
    (n >= 10).then(|| u16::from_le_bytes([payload[n - 10], payload[n - 9]]))
}

/// A count of key types seen in a random sample of one database.
pub async fn sample_types(
    conn: &mut Conn,
    db: u32,
    samples: usize,
) -> Result<BTreeMap<String, u64>> {
    conn.select(db).await?;
    for _ in 0..samples {
        conn.queue(&["RANDOMKEY"]);
    }
    conn.send().await?;
    let mut keys = Vec::with_capacity(samples);
    for _ in 0..samples {
        if let Reply::Bulk(k) = conn.recv().await? {
            keys.push(k);
        }
    }
    for k in &keys {
        conn.queue(&[&b"TYPE"[..], k]);
    }
    conn.send().await?;
    let mut histogram = BTreeMap::new();
    for _ in &keys {
        let t = conn.recv().await?.as_text().unwrap_or_default();
        if t != "none" {
            *histogram.entry(t).or_insert(0) += 1;
        }
    }
    Ok(histogram)
}

/// What a migration needs to know before it starts, and what it found questionable.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The source server.
    pub source: ServerInfo,
    /// The target server.
    pub target: ServerInfo,
    /// Types seen in a random sample of the source, over the dbs in scope.
    pub type_sample: BTreeMap<String, u64>,
    /// Whether keys are copied with DUMP/RESTORE (`dump`) or per type (`struct`) by default
    /// (`auto` where no copy was planned: an inventory made for verify only).
    pub copy_method: Method,
    /// Warnings and explanations for the user (capacity, notifications, versions).
    pub notes: Vec<String>,
}

/// Refuses pairings that would lose or overwrite data, before anything is written (design §6).
pub fn check_pairing(source: &ServerInfo, target: &ServerInfo) -> Result<()> {
    let shared = source
        .nodes
        .iter()
        .any(|s| !s.run_id.is_empty() && target.nodes.iter().any(|t| t.run_id == s.run_id));
    if shared || (!source.run_id.is_empty() && source.run_id == target.run_id) {
        return Err(Error::Incompatible(format!(
            "source {} and target {} are the same server",
            source.addr, target.addr
        )));
    }
    Ok(())
}

/// Notes on capacity and notifications that do not stop a snapshot but the user should see.
pub fn capacity_and_notification_notes(source: &ServerInfo, target: &ServerInfo) -> Vec<String> {
    let mut notes = Vec::new();
    if target.maxmemory > 0 && target.maxmemory < source.used_memory {
        notes.push(format!(
            "target maxmemory ({} bytes) is below the source's used memory ({} bytes): the copy may run out of memory",
            target.maxmemory, source.used_memory
        ));
    }
    match &source.notify_keyspace_events {
        None => notes.push(
            "source does not allow CONFIG (as on ElastiCache): notify-keyspace-events cannot be read here; set it in the cache parameter group for live mode".into(),
        ),
        Some(flags) if !notifications_cover(flags) => notes.push(format!(
            "source notify-keyspace-events is '{flags}': live mode needs K plus g$lshzxet (or KA)"
        )),
        Some(_) => {}
    }
    notes
}

/// Whether a `notify-keyspace-events` value delivers every event the live tail needs:
/// keyspace channel (`K`) and generic, string, list, set, hash, zset, expired, evicted,
/// stream events (`g$lshzxet`, or `A` for all).
pub fn notifications_cover(flags: &str) -> bool {
    let has = |c: char| flags.contains(c);
    has('K') && (has('A') || "g$lshzxet".chars().all(has))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdb_versions_follow_the_design_table() {
        assert_eq!(rdb_version_of(Product::Redis, "6.2.14"), 9);
        assert_eq!(rdb_version_of(Product::Redis, "7.0.15"), 10);
        assert_eq!(rdb_version_of(Product::Redis, "7.2.4"), 11);
        assert_eq!(rdb_version_of(Product::Redis, "7.4.1"), 12);
        assert_eq!(rdb_version_of(Product::Redis, "8.0.0"), 12);
        assert_eq!(rdb_version_of(Product::Valkey, "8.1.0"), 11);
        assert_eq!(rdb_version_of(Product::Valkey, "9.0.0"), 80);
        assert!(restore_accepts(10, 9));
        assert!(!restore_accepts(9, 10));
        assert!(restore_accepts(80, 11));
        assert!(!restore_accepts(80, 12));
        assert!(!restore_accepts(12, 80));
    }

    #[test]
    fn notification_flags() {
        assert!(notifications_cover("KA"));
        assert!(notifications_cover("Kg$lshzxet"));
        assert!(notifications_cover("AKE"));
        assert!(!notifications_cover("Ex"));
        assert!(!notifications_cover("KA".trim_end_matches('A')));
        assert!(!notifications_cover("Kg$lshzxe"));
    }

    #[test]
    fn payload_trailer() {
        let mut p = vec![0u8; 5];
        p.extend_from_slice(&10u16.to_le_bytes());
        p.extend_from_slice(&[0; 8]);
        assert_eq!(payload_rdb_version(&p), Some(10));
        assert_eq!(payload_rdb_version(&[1, 2]), None);
    }
}
