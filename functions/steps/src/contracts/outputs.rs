//! What each step returns to the state machine.

use super::*;

/// Inventory: what both servers are, and what the copy will do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryOutput {
    /// `redis 7.0.15 (cluster, 3 primaries, RDB 10)`.
    pub source: String,
    /// The same for the target.
    pub target: String,
    /// Keys over every db of the source.
    pub source_keys: u64,
    /// `dump` or `struct`.
    pub copy_method: Method,
    /// Warnings for the operator.
    pub notes: Vec<String>,
    /// The Maps' concurrency: the input's `options.max_concurrency`, or its default when the
    /// input (pasted in the console, sent by the schedule) leaves it out.
    pub max_concurrency: u32,
    /// `options.verify` (or its default): the state machine skips the verify on `none`.
    pub verify: VerifyChoice,
    /// `options.live_channel` (or its default): the state machine skips EnableNotifications on
    /// `tracking`.
    pub live_channel: LiveChannel,
}

/// Plan and Plan verify: where the items the Distributed Map reads are (`plans`), and how many.
/// The items themselves never enter the execution's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    /// The plan bucket.
    pub bucket: String,
    /// The object: one JSON array of items.
    pub key: String,
    /// How many items.
    pub count: usize,
}

/// CopyShard: the shard's checkpoint and what this invocation copied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyShardOutput {
    /// The shard with its new cursor; `done` once its range is scanned.
    pub shard: Shard,
    /// Whether the shard is finished (the state machine's loop condition).
    pub done: bool,
    /// This invocation's counts.
    pub counts: Counts,
}

/// VerifyShard: the shard's counts per status and a sample of differing keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyShardOutput {
    /// The shard verified.
    pub shard_id: String,
    /// The shard with its checkpoint.
    pub shard: Shard,
    /// Whether the shard is finished (the state machine's loop condition).
    pub done: bool,
    /// Counts per status.
    pub counts: StatusCounts,
    /// Some differing keys (names only).
    pub sample: Vec<DiffSample>,
    /// Whether every key so far was ok.
    pub ok: bool,
}

/// Backup: the snapshot started, or why none was.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupOutput {
    /// The snapshot's name, when one was requested.
    #[serde(default)]
    pub snapshot_name: Option<String>,
    /// Whether it is a serverless cache snapshot.
    #[serde(default)]
    pub serverless: bool,
    /// Why no snapshot was taken.
    #[serde(default)]
    pub skipped: Option<String>,
    /// `creating`, `available`, … as ElastiCache reports it.
    #[serde(default)]
    pub status: Option<String>,
    /// Whether the snapshot is finished (or skipped): the state machine's loop condition.
    #[serde(default)]
    pub ready: bool,
    /// When the snapshot was requested (ms since the epoch): the status poll's clock.
    #[serde(default)]
    pub started_at_ms: Option<u64>,
}

/// EnableNotifications: what was changed, so Cleanup can put it back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsOutput {
    /// The parameter group the source now uses.
    #[serde(default)]
    pub parameter_group: Option<String>,
    /// The group the source used before, when ferry attached its own copy of a default group.
    #[serde(default)]
    pub original_group: Option<String>,
    /// `notify-keyspace-events` before ferry changed it.
    #[serde(default)]
    pub original_value: Option<String>,
    /// Whether anything was changed (false: already enabled, or skipped).
    #[serde(default)]
    pub changed: bool,
    /// Why nothing was done.
    #[serde(default)]
    pub skipped: Option<String>,
    /// Whether every node applies the parameter: the state machine's loop condition.
    #[serde(default)]
    pub in_sync: bool,
    /// When the change was made (ms since the epoch): the status poll's clock.
    #[serde(default)]
    pub started_at_ms: Option<u64>,
}

/// Cleanup's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CleanupOutput {
    /// What was restored.
    pub restored: Vec<String>,
}
