//! Copying keys from source to target (design §3).
//!
//! A [`Copier`] owns one source and one target connection and copies a batch of keys with a
//! few pipelined round trips, whatever the batch size:
//! - **dump**: `DUMP` + `PEXPIRETIME` (PTTL before 7.0) on the source, then
//!   `RESTORE … REPLACE ABSTTL` on the target; a payload over the big-key limit is dropped as it
//!   is read and the key copied in chunks instead;
//! - **struct**: `TYPE` + TTL + `MEMORY USAGE`, then one native read per key, then one
//!   `MULTI`/`DEL`/write/`PEXPIREAT`/`EXEC` per key; big keys and streams go key by key in
//!   bounded chunks;
//! - **auto**: dump, and struct for any key whose payload the target cannot load.
//!
//! The methods live in [`dump`], [`per_type`] and [`big`]; the pass over a shard plan in
//! [`pass`]; what copiers share in [`context`] and [`stats`].

mod big;
mod context;
mod dump;
mod pass;
mod per_type;
mod stats;

pub use big::temp_key;
pub use context::CopyContext;
pub use pass::copy_shards;
pub use stats::{Counts, Stats};

use big::queue_set;
use context::refuses_restore;
use stats::bump;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::inventory::{payload_rdb_version, restore_accepts};
use crate::keys::field_ttl::{self, FieldTtls};
use crate::keys::module_values;
use crate::keys::stream_meta::StreamMeta;
use crate::keys::stream_pel::Placeholders;
use crate::keys::value::{self, ChunkReader, Kind, Ttl};
use crate::model::migration::{CopyOptions, Method};
use crate::model::scope::Scope;
use crate::net::conn::Conn;
use crate::net::resp::{self, Reply};
use crate::util::ratelimit::RateLimiter;

/// What a live sync of some keys did on the target.
#[derive(Debug, Default, Clone, Copy)]
pub struct Synced {
    /// Keys the source holds, copied.
    pub copied: u64,
    /// Keys the source no longer holds that were removed from the target (absent there too:
    /// not counted).
    pub deleted: u64,
}

/// A source and a target connection that copy batches of keys.
pub struct Copier {
    /// Source connection.
    pub source: Conn,
    /// Target connection.
    pub target: Conn,
    ctx: Arc<CopyContext>,
    /// Average DUMP payload seen so far, to size each pipeline round by bytes.
    avg_payload: f64,
    /// Keys found gone from the source during the current `copy_keys` call.
    gone: Vec<Bytes>,
    /// Replies to per-type writes not read yet: like RESTOREs, they are read once per batch,
    /// so the target works through one round while the source serves the next.
    unacked_writes: usize,
}

/// Payload bytes one pipeline round aims at: enough to keep the servers busy, small enough that
/// the source's output buffer never holds much at once.
const ROUND_BYTES: f64 = 4.0 * 1024.0 * 1024.0;
/// A first round assumes payloads this big until real sizes are seen (a round of 64 keys).
const FIRST_GUESS_PAYLOAD: f64 = 64.0 * 1024.0;
/// A batch is copied in at least this many rounds, so rounds overlap on the two servers.
const ROUNDS_PER_BATCH: usize = 4;
/// The target pipeline is sent whenever this much is queued, so payloads are not held.
const FLUSH_BYTES: usize = 1024 * 1024;

impl Copier {
    /// Wraps two connections.
    pub fn new(source: Conn, target: Conn, ctx: Arc<CopyContext>) -> Copier {
        Copier {
            source,
            target,
            ctx,
            avg_payload: 0.0,
            gone: Vec::new(),
            unacked_writes: 0,
        }
    }

    /// Copies `keys` of source database `db` to their place on the target. A key that no
    /// longer exists on the source is skipped (the live tail owns deletions).
    pub async fn copy_keys(&mut self, db: u32, keys: &[Bytes]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.source.select(db).await?;
        self.target.select(self.ctx.scope.target_of(db).db).await?;
        self.gone.clear();
        let mut big = Vec::new();
        let mut rest = keys;
        // RESTORE replies are read once per batch, not per round: while the target works
        // through one round's RESTOREs, the source already serves the next round's DUMPs.
        let mut unacknowledged = Vec::new();
        while !rest.is_empty() {
            let (round, next) = rest.split_at(self.round_keys().min(rest.len()));
            rest = next;
            if self.ctx.per_type() {
                big.extend(self.struct_copy(db, round).await?);
            } else {
                let (refused, too_big) = self.dump_copy(db, round, &mut unacknowledged).await?;
                big.extend(too_big);
                big.extend(self.struct_copy(db, &refused).await?);
            }
        }
        let refused = self.restore_replies(&unacknowledged).await?;
        big.extend(self.struct_copy(db, &refused).await?);
        self.ack_writes().await?;
        for key in &big {
            bump(&self.ctx.stats.big_keys, 1);
            self.chunked_copy(db, key).await?;
        }
        Ok(())
    }

    /// Makes the target match the source for `keys` (the live tail's copy): existing keys are
    /// copied, keys the source no longer has are deleted.
    pub async fn sync_keys(&mut self, db: u32, keys: &[Bytes]) -> Result<Synced> {
        self.copy_keys(db, keys).await?;
        let gone = std::mem::take(&mut self.gone);
        for k in &gone {
            let target_key = self.ctx.scope.target_key(db, k);
            self.target.queue(&[&b"UNLINK"[..], &target_key]);
        }
        self.target.send().await?;
        Ok(Synced {
            copied: (keys.len() - gone.len()) as u64,
            deleted: self.expect_ok(gone.len()).await?,
        })
    }

    fn note_gone(&mut self, key: &Bytes) {
        bump(&self.ctx.stats.gone, 1);
        self.gone.push(key.clone());
    }

    /// Adds a round of `keys` keys that moved `bytes` to the average that sizes rounds.
    fn note_round(&mut self, keys: usize, bytes: usize) {
        if keys > 0 {
            let round_avg = bytes as f64 / keys as f64;
            self.avg_payload = match self.avg_payload {
                0.0 => round_avg,
                avg => 0.7 * avg + 0.3 * round_avg,
            };
        }
    }

    /// Reads the replies of the per-type writes sent so far.
    async fn ack_writes(&mut self) -> Result<()> {
        let n = std::mem::take(&mut self.unacked_writes);
        self.expect_ok(n).await.map(|_| ())
    }

    /// Keys per pipeline round: the batch, cut so a round moves about [`ROUND_BYTES`].
    fn round_keys(&self) -> usize {
        let avg = if self.avg_payload == 0.0 {
            FIRST_GUESS_PAYLOAD
        } else {
            self.avg_payload
        };
        let by_bytes = ROUND_BYTES / avg.max(1.0);
        let quarter = self
            .ctx
            .options
            .batch_keys
            .div_ceil(ROUNDS_PER_BATCH)
            .max(1);
        (by_bytes as usize).clamp(1, quarter)
    }

    /// The DUMP payload size above which a key is copied in chunks instead.
    fn big_limit(&self) -> usize {
        match self.ctx.options.big_key_bytes {
            0 => usize::MAX,
            n => n as usize,
        }
    }

    /// Reads `n` replies from the target and fails on the first error reply, including errors
    /// inside a transaction's EXEC reply; returns the sum of the integer replies (an UNLINK's
    /// count of keys it removed).
    async fn expect_ok(&mut self, n: usize) -> Result<u64> {
        let mut first_error = None;
        let mut counted = 0;
        for _ in 0..n {
            let reply = self.target.recv().await?;
            if let Reply::Int(k) = reply {
                counted += k.max(0) as u64;
            }
            let nested = match &reply {
                Reply::Array(items) => items.iter().find_map(Reply::error_text),
                other => other.error_text(),
            };
            if let Some(msg) = nested {
                first_error.get_or_insert_with(|| self.target.server_error(b"write", &msg));
            }
        }
        first_error.map_or(Ok(counted), Err)
    }
}

impl Copier {}
