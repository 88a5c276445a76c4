//! The kinds of server inventory tells apart: product, mode, and whether it takes writes.

use serde::Serialize;

/// Which server software: the two behave alike but differ in versions, RDB numbers and
/// features (design §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    /// Redis (OSS, Stack, Cloud, Enterprise, ElastiCache for Redis OSS).
    Redis,
    /// Valkey (and ElastiCache for Valkey).
    Valkey,
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Product::Redis => "redis",
            Product::Valkey => "valkey",
        })
    }
}

/// How a server runs (`redis_mode` in INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerMode {
    /// One server with its databases.
    Standalone,
    /// A Redis Cluster node (db 0 only, slots).
    Cluster,
    /// A Sentinel, which holds no data.
    Sentinel,
}

impl std::fmt::Display for ServerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerMode::Standalone => "standalone",
            ServerMode::Cluster => "cluster",
            ServerMode::Sentinel => "sentinel",
        })
    }
}

/// Whether a server takes writes (`role` in `INFO replication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReplicationRole {
    /// A primary: it takes writes.
    #[serde(rename = "master")]
    Primary,
    /// A read-only replica of another server.
    #[serde(rename = "slave")]
    Replica,
}

impl std::fmt::Display for ReplicationRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplicationRole::Primary => "primary",
            ReplicationRole::Replica => "replica",
        })
    }
}
