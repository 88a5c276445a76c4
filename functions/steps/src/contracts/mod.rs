//! The step contracts (design §6): typed input and output of every step, shared by the
//! Lambdas, the CLI and the tests. Inputs refuse unknown fields, so a typo or a smuggled
//! field (a password) is an `InvalidInput`, never silently ignored. Credentials appear only as
//! Secrets Manager ARNs.
//!
//! The migration's input is here; each step's output is [`outputs`]'s, and the messages
//! between the state machine and the running tail [`control`]'s.

mod control;
mod outputs;

pub use control::*;
pub use outputs::*;

use ferry_engine::copy::Counts;
use ferry_engine::live::channel::LiveChannel;
use ferry_engine::model::migration::Method;
use ferry_engine::model::plan::Shard;
pub use ferry_engine::verify::VerifyChoice;
use ferry_engine::verify::{DiffSample, StatusCounts};
use serde::{Deserialize, Serialize};

use crate::error::StepError;
use crate::iam::IamAuth;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Copy every key once, then verify.
    Snapshot,
    /// Copy while the tail follows live writes, until the operator's cutover.
    Live,
    /// Verify only; nothing is written.
    Compare,
}

/// The execution input: what the operator starts a migration with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationInput {
    /// A name for this migration: names the backup snapshot and the canary key.
    pub migration_id: String,
    /// snapshot, live or compare.
    pub mode: Mode,
    /// Where keys come from.
    pub source: SourceSpec,
    /// Where keys go.
    pub target: TargetSpec,
    /// How to run.
    #[serde(default)]
    pub options: Options,
}

/// The source: an endpoint, and where it is an ElastiCache cache, which one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// `redis://host:port[/db]` or `rediss://…`, without credentials.
    pub endpoint: String,
    /// The ElastiCache replication group (node-based caches): backup and parameter group.
    #[serde(default)]
    pub replication_group_id: Option<String>,
    /// The ElastiCache serverless cache name, instead of a replication group.
    #[serde(default)]
    pub serverless_cache_name: Option<String>,
    /// Secrets Manager ARN of `{"username"?, "password"? | "auth_token"?, "ca_pem"?,
    /// "client_cert_pem"?, "client_key_pem"?}`.
    #[serde(default)]
    pub secret_arn: Option<String>,
    /// IAM authentication instead of a password: a token per connection, signed with the
    /// step's role (a secret may still carry the TLS material).
    #[serde(default)]
    pub iam: Option<IamAuth>,
}

/// The target endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// `redis://host:port[/db]` or `rediss://…`, without credentials.
    pub endpoint: String,
    /// Secrets Manager ARN of the target's credentials (same shape as the source's).
    #[serde(default)]
    pub secret_arn: Option<String>,
    /// IAM authentication (an ElastiCache target), as for the source.
    #[serde(default)]
    pub iam: Option<IamAuth>,
}

/// Options of a run; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Take an ElastiCache snapshot of the source first.
    pub backup: bool,
    /// Let EnableNotifications change the source's parameter group (live mode, keyspace or
    /// auto channel).
    pub enable_notifications: bool,
    /// The live channel: `auto` (keyspace notifications when on, client tracking otherwise),
    /// `keyspace`, or `tracking` (no configuration change on the source: the state machine
    /// skips EnableNotifications).
    pub live_channel: LiveChannel,
    /// Shards per source database (design §2).
    pub shards_per_db: u32,
    /// Copy method: auto, dump or struct.
    pub copy_type: Method,
    /// Verify level: full, quick or none.
    pub verify: VerifyChoice,
    /// SCAN MATCH glob.
    pub key_pattern: Option<String>,
    /// SCAN TYPE filter.
    pub key_type: Option<String>,
    /// `SRC=DST[:PREFIX]` entries, as `--db-map`.
    pub db_map: Vec<String>,
    /// Cap on commands per second sent to the source, per CopyShard invocation (0: none).
    pub max_ops_per_sec: u64,
    /// Copy hash fields without their TTLs into a target that cannot hold them (counted).
    pub drop_field_ttls: bool,
    /// Leave out keys of types the target cannot take (counted) instead of refusing the run.
    pub skip_unsupported: bool,
    /// Write into a target that already holds keys.
    pub allow_nonempty_target: bool,
    /// Read a cluster source's slots from replicas.
    pub read_from_replicas: bool,
    /// Pipelined workers per CopyShard invocation.
    pub workers: usize,
    /// Time kept back from the Lambda's deadline: a CopyShard stops scanning this long before it.
    pub safety_margin_ms: u64,
    /// Map concurrency for the state machine.
    pub max_concurrency: u32,
    /// Cutover: the longest time writes are held on the source (`CLIENT PAUSE`); the server
    /// lifts the fence by itself then. Longer than the CLI's default: the operator's switch
    /// and `ferry cutover --release` travel through Step Functions and SQS.
    pub fence_secs: f64,
    /// Cutover: how long the tail keeps following after the release, counting stragglers.
    pub watch_secs: f64,
    /// How long the parameter-group and backup polls wait before failing with `PollTimeout`
    /// (through Cleanup) instead of polling until the execution's history limit.
    pub poll_timeout_secs: u64,
    /// How long the backup poll waits for the snapshot (big caches take hours).
    pub backup_timeout_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backup: true,
            enable_notifications: true,
            live_channel: LiveChannel::Auto,
            shards_per_db: 8,
            copy_type: Method::Auto,
            verify: VerifyChoice::Full,
            key_pattern: None,
            key_type: None,
            db_map: Vec::new(),
            max_ops_per_sec: 0,
            drop_field_ttls: false,
            skip_unsupported: false,
            allow_nonempty_target: false,
            read_from_replicas: false,
            workers: 4,
            safety_margin_ms: 30_000,
            max_concurrency: 16,
            fence_secs: 30.0,
            watch_secs: 30.0,
            poll_timeout_secs: 1800,
            backup_timeout_secs: 6 * 3600,
        }
    }
}

impl MigrationInput {
    /// Parses and checks an execution input: unknown fields, credentials written into an
    /// endpoint URL and malformed values are `InvalidInput`, and the message never repeats
    /// the offending value (it may be a secret).
    pub fn from_json(value: serde_json::Value) -> Result<MigrationInput, StepError> {
        let input: MigrationInput = serde_json::from_value(value).map_err(|e| {
            StepError::invalid(format!("execution input: {}", redact_serde_error(&e)))
        })?;
        input.check()?;
        Ok(input)
    }

    /// The live channel this run follows: `options.live_channel`, where `auto` on an
    /// ElastiCache Serverless source is client tracking (a serverless cache has no parameter
    /// groups and delivers no keyspace notifications).
    pub fn live_channel(&self) -> LiveChannel {
        match self.options.live_channel {
            LiveChannel::Auto if self.source.serverless_cache_name.is_some() => {
                LiveChannel::Tracking
            }
            chosen => chosen,
        }
    }

    /// The checks `from_json` runs after parsing.
    pub fn check(&self) -> Result<(), StepError> {
        if self.migration_id.is_empty()
            || !self
                .migration_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(StepError::invalid(
                "migration_id must be letters, digits and '-' (it names the snapshot)",
            ));
        }
        for (role, url) in [
            ("source", &self.source.endpoint),
            ("target", &self.target.endpoint),
        ] {
            let (_, rest) = url.split_once("://").unwrap_or(("", url));
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains('@') {
                return Err(StepError::invalid(format!(
                    "{role}.endpoint carries credentials; put them in Secrets Manager and give {role}.secret_arn (the value was not logged)"
                )));
            }
        }
        let o = &self.options;
        let fence_ok = o.fence_secs > 0.0 && o.fence_secs <= 3600.0;
        if !fence_ok || !(0.0..=86_400.0).contains(&o.watch_secs) {
            return Err(StepError::invalid(
                "options.fence_secs must be in (0, 3600] and options.watch_secs in [0, 86400]",
            ));
        }
        if self.source.replication_group_id.is_some() && self.source.serverless_cache_name.is_some()
        {
            return Err(StepError::invalid(
                "source names both a replication group and a serverless cache; give one",
            ));
        }
        Ok(())
    }
}

/// serde's message without the value it quotes (an inline secret would be echoed otherwise).
fn redact_serde_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find("unknown field `") {
        Some(_) => text.split(", expected").next().unwrap_or(&text).to_string(),
        None => text.split(':').next().unwrap_or("malformed").to_string(),
    }
}

/// Whether a poll that began at `started_at_ms` has waited `limit_secs` or more (never, when
/// it recorded no start).
pub fn poll_timed_out(started_at_ms: Option<u64>, limit_secs: u64) -> bool {
    started_at_ms.is_some_and(|t| epoch_ms().saturating_sub(t) >= limit_secs.saturating_mul(1000))
}

/// Now, in ms since the epoch (the engine's clock), as the `started_at_ms` fields the status
/// polls measure their timeouts by hold it.
pub fn epoch_ms() -> u64 {
    ferry_engine::util::now_ms().max(0) as u64
}
