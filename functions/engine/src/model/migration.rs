//! A migration's settings, from the user: the two endpoints, which keys, how they are copied
//! and with how much parallelism. Pure data; every pass takes a [`Migration`].

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::error::Result;
use crate::model::scope::Scope;

/// How keys are copied (the CLI's `--type`, the execution input's `copy_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Method {
    /// DUMP/RESTORE, per-type commands for keys the target cannot RESTORE.
    #[default]
    Auto,
    /// DUMP/RESTORE only; a payload the target refuses is an error.
    Dump,
    /// Per-type reads and writes (across RDB versions).
    Struct,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Auto => "auto",
            Method::Dump => "dump",
            Method::Struct => "struct",
        })
    }
}

/// Settings for copying that do not change during a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CopyOptions {
    /// The copy method.
    pub method: Method,
    /// Keys bigger than this (DUMP payload, or `MEMORY USAGE` in struct mode) are copied in
    /// chunks, so ferry's memory stays bounded; 0 turns the limit off.
    pub big_key_bytes: u64,
    /// Keys per pipelined batch.
    pub batch_keys: usize,
    /// SCAN COUNT hint.
    pub scan_count: u32,
    /// Cap on commands per second sent to the source; 0 for none.
    pub max_source_ops: u64,
    /// Copy into a target that cannot hold hash-field TTLs, without them (counted).
    pub drop_field_ttls: bool,
    /// Skip keys of types the target cannot take (counted) instead of refusing the run.
    pub skip_unsupported: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            method: Method::Auto,
            big_key_bytes: 16 * 1024 * 1024,
            batch_keys: 1024,
            scan_count: 1000,
            max_source_ops: 0,
            drop_field_ttls: false,
            skip_unsupported: false,
        }
    }
}

/// Everything a migration run needs to know, from the user.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Where keys come from.
    pub source: Endpoint,
    /// Where keys go.
    pub target: Endpoint,
    /// Which keys, and where they land.
    pub scope: Scope,
    /// How keys are copied.
    pub copy: CopyOptions,
    /// Shards per source database (a power of two is used, no more than the table has buckets).
    pub shards_per_db: u32,
    /// Shards scanned at once.
    pub parallel: usize,
    /// Pipelined workers (each a source and a target connection).
    pub workers: usize,
    /// Write into a target that already holds keys.
    pub allow_nonempty_target: bool,
    /// Snapshot reads (SCAN, DUMP) from a replica of each cluster primary, sparing the primaries.
    pub read_from_replicas: bool,
    /// Copy workers of the live tail (0 without a tail): their connections count too.
    pub tail_workers: usize,
    /// This run holds the target lease, whose key is one of target db 0's keys.
    pub holds_lease: bool,
}

impl Migration {
    /// A migration with default settings between two endpoints.
    pub fn new(source: Endpoint, target: Endpoint) -> Migration {
        Migration {
            source,
            target,
            scope: Scope::default(),
            copy: CopyOptions::default(),
            shards_per_db: 8,
            parallel: 4,
            workers: 8,
            allow_nonempty_target: false,
            read_from_replicas: false,
            tail_workers: 0,
            holds_lease: false,
        }
    }

    /// A migration between two endpoints over the databases their URLs and `db_map`
    /// (`SRC=DST[:PREFIX]` entries, as `--db-map` and the execution input give them) name.
    pub fn scoped(source: Endpoint, target: Endpoint, db_map: &[String]) -> Result<Migration> {
        let mut m = Migration::new(source, target);
        m.scope.db_map = Scope::parse_db_map(db_map)?;
        m.scope
            .apply_url_dbs(m.source.db_in_url, m.target.db_in_url)?;
        Ok(m)
    }
}
