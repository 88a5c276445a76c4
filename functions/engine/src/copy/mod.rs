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

mod context;
mod pass;
pub use pass::*;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::inventory::{payload_rdb_version, restore_accepts};
use crate::keys::field_ttl::{self, FieldTtls};
use crate::keys::module_values;
use crate::keys::stream_pel::Placeholders;
use crate::keys::value::{self, ChunkReader, Kind, StreamMeta, Ttl};
use crate::model::migration::{CopyOptions, Method};
use crate::model::scope::Scope;
use crate::net::conn::Conn;
use crate::net::resp::{self, Reply};
use crate::util::ratelimit::RateLimiter;

/// Counters of one run, shared by every worker and read by progress displays.
#[derive(Debug, Default)]
pub struct Stats {
    /// Keys returned by SCAN (may count a key twice, as SCAN may).
    pub scanned: AtomicU64,
    /// Keys written to the target.
    pub copied: AtomicU64,
    /// Of those, keys copied with native commands rather than RESTORE.
    pub struct_copied: AtomicU64,
    /// Keys copied in chunks because they were big.
    pub big_keys: AtomicU64,
    /// Keys that vanished between SCAN and the copy (expired or deleted).
    pub gone: AtomicU64,
    /// DUMP payload bytes moved.
    pub bytes: AtomicU64,
    /// Hash fields whose TTL was not copied (`--drop-field-ttls`).
    pub field_ttls_dropped: AtomicU64,
    /// Keys of a type the target cannot take, left out (`--skip-unsupported`).
    pub skipped: AtomicU64,
}

/// A plain snapshot of [`Stats`], for reports and JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub scanned: u64,
    pub copied: u64,
    pub struct_copied: u64,
    pub big_keys: u64,
    pub gone: u64,
    pub bytes: u64,
    #[serde(default)]
    pub field_ttls_dropped: u64,
    #[serde(default)]
    pub skipped: u64,
}

impl Stats {
    /// The current values.
    pub fn counts(&self) -> Counts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            scanned: g(&self.scanned),
            copied: g(&self.copied),
            struct_copied: g(&self.struct_copied),
            big_keys: g(&self.big_keys),
            gone: g(&self.gone),
            bytes: g(&self.bytes),
            field_ttls_dropped: g(&self.field_ttls_dropped),
            skipped: g(&self.skipped),
        }
    }
}

impl Counts {
    /// Adds another run's counts (shards summed into a report).
    pub fn add(&mut self, other: &Counts) {
        self.scanned += other.scanned;
        self.copied += other.copied;
        self.struct_copied += other.struct_copied;
        self.big_keys += other.big_keys;
        self.gone += other.gone;
        self.bytes += other.bytes;
        self.field_ttls_dropped += other.field_ttls_dropped;
        self.skipped += other.skipped;
    }
}

fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// What every copier of a run shares: options, what the servers support, counters, limits.
#[derive(Debug)]
pub struct CopyContext {
    /// Options of the run.
    pub options: CopyOptions,
    /// Keys in scope and where they land.
    pub scope: Scope,
    /// The source has PEXPIRETIME (else PTTL).
    pub source_absolute_ttl: bool,
    /// The target's RDB version; payloads it cannot load go struct.
    pub target_rdb: u16,
    /// The source's RDB version (what its DUMP payloads carry).
    pub source_rdb: u16,
    /// The target takes stream counters (XSETID ENTRIESADDED, XGROUP ENTRIESREAD).
    pub target_stream_counters: bool,
    /// Every key goes struct (the method says so, or auto found the versions incompatible).
    pub all_struct: bool,
    /// Run counters.
    pub stats: Stats,
    /// Load cap on the source.
    pub limiter: Option<Arc<RateLimiter>>,
    /// What the struct path does with hash-field TTLs.
    pub field_ttls: FieldTtls,
    /// Module key types the target has (a per-type copy of JSON and filters needs them).
    pub target_types: Vec<&'static str>,
    /// Set when the target refused RESTORE itself (an ACL without `+restore`, an Active-Active
    /// database): from then on every key goes per type.
    restore_refused: AtomicBool,
    /// Set when `MEMORY USAGE` is refused, so the struct path stops probing sizes.
    memory_usage_refused: AtomicBool,
}

impl CopyContext {
    /// Builds the shared context from the servers' capabilities.
    pub fn new(
        options: CopyOptions,
        scope: Scope,
        source: &crate::inventory::ServerInfo,
        target: &crate::inventory::ServerInfo,
    ) -> CopyContext {
        let all_struct = match options.method {
            Method::Struct => true,
            Method::Dump => false,
            Method::Auto => !restore_accepts(target.rdb_version, source.rdb_version),
        };
        let field_ttls = FieldTtls::for_pair(source, target, options.drop_field_ttls);
        CopyContext {
            limiter: (options.max_source_ops > 0)
                .then(|| Arc::new(RateLimiter::new(options.max_source_ops))),
            options,
            scope,
            source_absolute_ttl: source.has_pexpiretime(),
            target_rdb: target.rdb_version,
            source_rdb: source.rdb_version,
            target_stream_counters: target.has_stream_counters(),
            all_struct,
            field_ttls,
            target_types: crate::keys::module_types::types_of(target),
            stats: Stats::default(),
            restore_refused: AtomicBool::new(false),
            memory_usage_refused: AtomicBool::new(false),
        }
    }

    /// Waits until `ops` more source commands fit under the load cap.
    pub async fn throttle(&self, ops: u64) {
        if let Some(l) = &self.limiter {
            l.acquire(ops).await;
        }
    }

    /// Copies every key per type from now on: the target refuses RESTORE (found by inventory's
    /// probe, or by a refused RESTORE during the copy).
    pub fn refuse_restore(&self) {
        self.restore_refused.store(true, Ordering::Relaxed);
    }

    /// Whether keys go per type rather than by DUMP/RESTORE.
    fn per_type(&self) -> bool {
        self.all_struct || self.restore_refused.load(Ordering::Relaxed)
    }
}

/// Whether a RESTORE error says the target refuses the command itself (not the payload).
fn refuses_restore(message: &str) -> bool {
    message.starts_with("NOPERM")
        || message.contains("unknown command")
        || message.contains("not supported")
}

/// A source and a target connection that copy batches of keys.
/// What a live sync of some keys did on the target.
#[derive(Debug, Default, Clone, Copy)]
pub struct Synced {
    /// Keys the source holds, copied.
    pub copied: u64,
    /// Keys the source no longer holds that were removed from the target (absent there too:
    /// not counted).
    pub deleted: u64,
}

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

    /// DUMP + TTL on the source, RESTORE on the target. Each payload is encoded into a RESTORE
    /// as soon as it is read and the target pipeline is flushed every few megabytes, so ferry
    /// never holds a round's payloads. The restored keys are added to `unacknowledged`: their
    /// replies are read by the caller. Returns the keys to copy per type instead: those whose
    /// payload the target cannot load (auto), and those over the big-key limit (read off the
    /// socket and dropped).
    async fn dump_copy(
        &mut self,
        db: u32,
        keys: &[Bytes],
        unacknowledged: &mut Vec<Bytes>,
    ) -> Result<(Vec<Bytes>, Vec<Bytes>)> {
        let absolute = self.ctx.source_absolute_ttl;
        let limit = self.big_limit();
        self.ctx.throttle(2 * keys.len() as u64).await;
        for k in keys {
            self.source.queue(&[&b"DUMP"[..], k]);
            Ttl::queue_read(&mut self.source, k, absolute);
        }
        self.source.send().await?;
        let (mut refused, mut big) = (Vec::new(), Vec::new());
        let mut restored = Vec::with_capacity(keys.len());
        let mut bytes = 0usize;
        for k in keys {
            let payload = self.source.recv_limited(limit).await?;
            let ttl = Ttl::from_reply(&self.source.recv().await?, absolute);
            match (payload, ttl) {
                (Reply::Skipped(_), _) => big.push(k.clone()),
                (Reply::Bulk(payload), ttl) if ttl != Ttl::Gone => {
                    let fits = payload_rdb_version(&payload)
                        .is_none_or(|v| restore_accepts(self.ctx.target_rdb, v));
                    if !fits && self.ctx.options.method == Method::Auto {
                        refused.push(k.clone());
                        continue;
                    }
                    self.queue_restore(db, k, &payload, ttl);
                    bytes += payload.len();
                    restored.push(k.clone());
                    if self.target.unsent() >= FLUSH_BYTES {
                        self.target.send().await?;
                    }
                }
                (Reply::Error(e), _) => {
                    return Err(self
                        .source
                        .server_error(b"DUMP", &String::from_utf8_lossy(&e)));
                }
                _ => self.note_gone(k),
            }
        }
        self.note_round(restored.len(), bytes);
        self.target.send().await?;
        unacknowledged.extend(restored);
        bump(&self.ctx.stats.bytes, bytes as u64);
        Ok((refused, big))
    }

    /// Encodes `RESTORE key ttl payload REPLACE [ABSTTL]` into the target pipeline.
    fn queue_restore(&mut self, db: u32, key: &Bytes, payload: &[u8], ttl: Ttl) {
        let mapped;
        let key: &[u8] = if self.ctx.scope.db_map.is_empty() {
            key
        } else {
            mapped = self.ctx.scope.target_key(db, key);
            &mapped
        };
        let out = self.target.wbuf_for(key);
        let (ttl, abs) = match ttl {
            Ttl::At(ms) => (ms, true),
            Ttl::In(ms) => (ms.max(1), false),
            _ => (0, false),
        };
        resp::encode_array_header(out, if abs { 6 } else { 5 });
        resp::encode_bulk(out, b"RESTORE");
        resp::encode_bulk(out, key);
        resp::encode_bulk_int(out, ttl);
        resp::encode_bulk(out, payload);
        resp::encode_bulk(out, b"REPLACE");
        if abs {
            resp::encode_bulk(out, b"ABSTTL");
        }
    }

    /// Reads the RESTORE replies for `keys`; returns those refused for their payload version
    /// (auto), or the first error.
    async fn restore_replies(&mut self, keys: &[Bytes]) -> Result<Vec<Bytes>> {
        let mut refused = Vec::new();
        let mut first_error = None;
        for k in keys {
            match self.target.recv().await? {
                Reply::Error(e) => {
                    let msg = String::from_utf8_lossy(&e).into_owned();
                    if refuses_restore(&msg) && self.ctx.options.method == Method::Auto {
                        if !self.ctx.restore_refused.swap(true, Ordering::Relaxed) {
                            tracing::warn!(error = %crate::error::server_text(&msg), "the target refuses RESTORE: copying per type from now on");
                        }
                        refused.push(k.clone());
                        continue;
                    }
                    // Redis words a bad version and a bad checksum alike; a payload whose
                    // version the target accepts can only have failed its checksum.
                    let version_fits = restore_accepts(self.ctx.target_rdb, self.ctx.source_rdb);
                    if msg.contains("checksum") && version_fits {
                        first_error.get_or_insert_with(|| Error::Server {
                            addr: self.target.addr().to_string(),
                            command: "RESTORE".into(),
                            message: format!(
                                "the DUMP payload of '{}' failed the target's checksum check: it was corrupted between the source and the target (or by the source); nothing else was written for it",
                                crate::model::scope::display_key(&k[..k.len().min(200)])
                            ),
                        });
                        continue;
                    }
                    let version_error =
                        msg.contains("payload version") || msg.contains("Bad data format");
                    if version_error && self.ctx.options.method == Method::Auto {
                        refused.push(k.clone());
                    } else if first_error.is_none() {
                        first_error = Some(if version_error {
                            Error::Incompatible(format!(
                                "target {} cannot RESTORE this source's payloads ({msg}); use --type auto or struct",
                                self.target.addr()
                            ))
                        } else {
                            self.target.server_error(b"RESTORE", &msg)
                        });
                    }
                }
                _ => bump(&self.ctx.stats.copied, 1),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(refused),
        }
    }

    /// Copies keys with native commands: small keys batched, streams one by one. Returns the
    /// keys over the big-key limit, for the chunked path.
    ///
    /// Three pipelined rounds on the source: TYPE and expiry; then a string's value (read with
    /// the big-key limit, like a DUMP payload) or a collection's `MEMORY USAGE` (so a huge one
    /// is never read whole); then the small collections whole. A string is written with one
    /// `SET … PXAT`, which replaces any old value and its expiry atomically; a collection in a
    /// MULTI of DEL, writes and expiry, so a duplicate copy can never interleave with it.
    async fn struct_copy(&mut self, db: u32, keys: &[Bytes]) -> Result<Vec<Bytes>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let absolute = self.ctx.source_absolute_ttl;
        self.ctx.throttle(2 * keys.len() as u64).await;
        for k in keys {
            self.source.queue(&[&b"TYPE"[..], k]);
            Ttl::queue_read(&mut self.source, k, absolute);
        }
        self.source.send().await?;
        let mut found = Vec::with_capacity(keys.len());
        let (mut one_by_one, mut module_keys) = (Vec::new(), Vec::new());
        for k in keys {
            let type_reply = self.source.recv().await?;
            let kind = Kind::from_type_reply(&type_reply);
            let ttl = Ttl::from_reply(&self.source.recv().await?, absolute);
            if let (Err(_), Some(name)) = (&kind, self.module_copyable(&type_reply)) {
                module_keys.push((k.clone(), name, ttl));
                continue;
            }
            let Some(kind) = self.supported(k, kind)? else {
                continue;
            };
            match kind {
                Some(Kind::Stream) => one_by_one.push(k.clone()),
                Some(kind) if ttl != Ttl::Gone => found.push((k.clone(), kind, ttl)),
                _ => self.note_gone(k),
            }
        }
        let (strings, big, batch) = self.read_strings_and_sizes(found).await?;
        self.ctx.throttle(batch.len() as u64).await;
        for (k, kind, _) in &batch {
            value::queue_read_whole(&mut self.source, *kind, k);
        }
        self.source.send().await?;
        let mut chunks = Vec::with_capacity(batch.len());
        for (_, kind, _) in &batch {
            chunks.push(value::chunk_from_reply(*kind, self.source.recv().await?));
        }
        let keys_read: Vec<(&Bytes, Kind)> = batch.iter().map(|(k, kind, _)| (k, *kind)).collect();
        let chunk_refs: Vec<Option<&value::Chunk>> = chunks.iter().map(Option::as_ref).collect();
        let mut field_expiries = self
            .read_field_ttls(&keys_read, &chunk_refs)
            .await?
            .into_iter();
        let mut writes = 0;
        let mut written = 0;
        let mut bytes = 0;
        for (k, value, ttl) in &strings {
            bytes += value.len();
            let target_key = self.ctx.scope.target_key(db, k);
            queue_set(&mut self.target, &target_key, value, *ttl);
            writes += 1;
            written += 1;
        }
        for ((k, kind, ttl), chunk) in batch.iter().zip(chunks) {
            let expiries = field_expiries.next().unwrap_or_default();
            let target_key = self.ctx.scope.target_key(db, k);
            self.target.route_to(&target_key);
            self.target.queue(&[&b"MULTI"[..]]);
            self.target.queue(&[&b"DEL"[..], &target_key]);
            writes += 3;
            if let Some(chunk) = chunk {
                let before = self.target.unsent();
                value::queue_write_chunk(&mut self.target, *kind, &target_key, &chunk);
                bytes += self.target.unsent().saturating_sub(before);
                writes += value::write_chunk_replies(&chunk);
                writes += self.apply_field_ttls(k, &target_key, &chunk, &expiries)?;
                if matches!(ttl, Ttl::At(_) | Ttl::In(_)) {
                    ttl.queue_apply(&mut self.target, &target_key);
                    writes += 1;
                }
                written += 1;
            } else {
                bump(&self.ctx.stats.gone, 1);
            }
            self.target.queue(&[&b"EXEC"[..]]);
        }
        self.target.send().await?;
        self.unacked_writes += writes;
        self.note_round(strings.len() + batch.len(), bytes);
        // Keys copied one by one read their replies as they go; so does a batch with RESTOREs
        // pending on the same connection.
        if !module_keys.is_empty() || !one_by_one.is_empty() || !self.ctx.per_type() {
            self.ack_writes().await?;
        }
        bump(&self.ctx.stats.copied, written);
        bump(&self.ctx.stats.struct_copied, written);
        for (k, type_name, ttl) in module_keys {
            self.module_copy(db, &k, &type_name, ttl).await?;
        }
        for k in one_by_one {
            self.chunked_copy(db, &k).await?;
        }
        Ok(big)
    }

    /// The second struct round: the values of the strings among `found` (over the big-key
    /// limit: left to the chunked path) and the sizes of the collections. Returns the strings
    /// read, the big keys, and the collections small enough to read whole.
    #[allow(clippy::type_complexity)]
    async fn read_strings_and_sizes(
        &mut self,
        found: Vec<(Bytes, Kind, Ttl)>,
    ) -> Result<(
        Vec<(Bytes, Bytes, Ttl)>,
        Vec<Bytes>,
        Vec<(Bytes, Kind, Ttl)>,
    )> {
        let probe = self.ctx.options.big_key_bytes > 0
            && !self.ctx.memory_usage_refused.load(Ordering::Relaxed);
        let asked = found
            .iter()
            .filter(|(_, kind, _)| probe || *kind == Kind::String)
            .count();
        self.ctx.throttle(asked as u64).await;
        for (k, kind, _) in &found {
            match kind {
                Kind::String => self.source.queue(&[&b"GET"[..], k]),
                _ if probe => {
                    self.source
                        .queue(&[&b"MEMORY"[..], b"USAGE", k, b"SAMPLES", b"5"]);
                }
                _ => {}
            }
        }
        self.source.send().await?;
        let limit = self.big_limit();
        let (mut strings, mut big, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for (k, kind, ttl) in found {
            match kind {
                Kind::String => match self.source.recv_limited(limit).await? {
                    Reply::Bulk(v) => strings.push((k, v, ttl)),
                    Reply::Skipped(_) => big.push(k),
                    _ => self.note_gone(&k),
                },
                _ if probe => {
                    let reply = self.source.recv().await?;
                    match self.memory_usage(reply) > self.ctx.options.big_key_bytes {
                        true => big.push(k),
                        false => rest.push((k, kind, ttl)),
                    }
                }
                _ => rest.push((k, kind, ttl)),
            }
        }
        Ok((strings, big, rest))
    }

    /// The field expiries of the hash chunks among `chunks` (of `keys`, with their kinds), read
    /// in one round; an empty list for every other chunk, and for all when the source cannot
    /// have any.
    async fn read_field_ttls(
        &mut self,
        keys: &[(&Bytes, Kind)],
        chunks: &[Option<&value::Chunk>],
    ) -> Result<Vec<Vec<i64>>> {
        let hashes: Vec<(usize, Vec<&Bytes>)> = match self.ctx.field_ttls.read() {
            false => Vec::new(),
            true => chunks
                .iter()
                .zip(keys)
                .enumerate()
                .filter_map(|(i, (c, (_, kind)))| match c {
                    Some(value::Chunk::Pairs(p)) if *kind == Kind::Hash && !p.is_empty() => {
                        Some((i, p.iter().map(|(f, _)| f).collect()))
                    }
                    _ => None,
                })
                .collect(),
        };
        let mut out = vec![Vec::new(); chunks.len()];
        if hashes.is_empty() {
            return Ok(out);
        }
        self.ctx.throttle(hashes.len() as u64).await;
        for (i, fields) in &hashes {
            field_ttl::queue_read(&mut self.source, keys[*i].0, fields);
        }
        self.source.send().await?;
        for (i, _) in &hashes {
            out[*i] = field_ttl::expiries(self.source.recv().await?)?;
        }
        Ok(out)
    }

    /// Queues the field TTLs of one hash chunk on `target_key` (or counts them dropped, or
    /// refuses, by the run's rule); returns how many replies were queued.
    fn apply_field_ttls(
        &mut self,
        key: &[u8],
        target_key: &[u8],
        chunk: &value::Chunk,
        expiries: &[i64],
    ) -> Result<usize> {
        let value::Chunk::Pairs(pairs) = chunk else {
            return Ok(0);
        };
        let fields: Vec<&Bytes> = pairs.iter().map(|(f, _)| f).collect();
        let groups = field_ttl::by_expiry(&fields, expiries);
        let with_ttl: usize = groups.values().map(Vec::len).sum();
        if with_ttl == 0 {
            return Ok(0);
        }
        if field_ttl::decide(self.ctx.field_ttls, key, with_ttl)? {
            Ok(field_ttl::queue_apply(
                &mut self.target,
                target_key,
                &groups,
            ))
        } else {
            bump(&self.ctx.stats.field_ttls_dropped, with_ttl as u64);
            Ok(0)
        }
    }

    /// The key's type as struct copies it (`Some(None)`: the key is gone); `None` to skip a key
    /// of a type struct cannot copy (`--skip-unsupported`, counted); or the error that stops
    /// the run, naming the key (inventory refused the types it found: this key came later).
    fn supported(&self, key: &[u8], kind: Result<Option<Kind>>) -> Result<Option<Option<Kind>>> {
        match kind {
            Ok(kind) => Ok(Some(kind)),
            Err(_) if self.ctx.options.skip_unsupported => {
                bump(&self.ctx.stats.skipped, 1);
                Ok(None)
            }
            Err(e) => Err(Error::Unsupported(format!(
                "key '{}': {e}; it was written after inventory checked the source. Run again with --skip-unsupported to copy the rest",
                crate::model::scope::display_key(&key[..key.len().min(200)])
            ))),
        }
    }

    /// A `MEMORY USAGE` reply in bytes; a refusal turns the probe off for the run.
    fn memory_usage(&self, reply: Reply) -> u64 {
        match reply {
            Reply::Int(n) => n.max(0) as u64,
            Reply::Error(e) => {
                tracing::warn!(error = %String::from_utf8_lossy(&e), "MEMORY USAGE refused; big keys are copied whole in struct mode");
                self.ctx.memory_usage_refused.store(true, Ordering::Relaxed);
                0
            }
            _ => 0,
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

    /// Copies one key in bounded chunks (big keys and streams); its expiry is read once the last
    /// chunk is written, so a key that expired meanwhile ends absent.
    pub async fn chunked_copy(&mut self, db: u32, key: &Bytes) -> Result<()> {
        let absolute = self.ctx.source_absolute_ttl;
        self.ctx.throttle(2).await;
        let Some(kind) = Kind::from_type_reply(&self.source.call(&[&b"TYPE"[..], key]).await?)?
        else {
            self.note_gone(key);
            return Ok(());
        };
        // Built under a temporary name in the same hash slot, then renamed over the key in one
        // atomic step: readers never see half a key, and a duplicate copy cannot interleave.
        let target_key = self.ctx.scope.target_key(db, key);
        let temp = temp_key(&target_key);
        let mut reader = ChunkReader::new(kind, key.clone());
        // A stream's pending ids are read before its entries, so placeholders for deleted ones
        // go in id order among them; the metadata is read again after the last chunk for the
        // ids and counters as they are then.
        let mut placeholders = Placeholders::default();
        if kind == Kind::Stream {
            if let Some(meta) = StreamMeta::read(&mut self.source, key).await? {
                placeholders = Placeholders::for_pending(&meta);
            }
        }
        let mut has_entries = false;
        let mut started = false;
        loop {
            self.ctx.throttle(1).await;
            let mut chunk = match reader.next(&mut self.source).await? {
                Some(chunk) => chunk,
                None => match placeholders.rest() {
                    Some(last) => last,
                    None => break,
                },
            };
            placeholders.merge_into(&mut chunk);
            has_entries |= matches!(&chunk, value::Chunk::Entries(e) if !e.is_empty());
            let expiries = self
                .read_field_ttls(&[(key, kind)], &[Some(&chunk)])
                .await?
                .pop()
                .unwrap_or_default();
            value::queue_write_chunk(&mut self.target, kind, &temp, &chunk);
            let mut n = value::write_chunk_replies(&chunk);
            n += self.apply_field_ttls(key, &temp, &chunk, &expiries)?;
            if !started && n > 0 {
                // A copy cut off half way leaves no litter: the temporary key expires.
                self.target
                    .queue(&[&b"PEXPIRE"[..], &temp, TEMP_KEY_TTL_MS]);
                n += 1;
                started = true;
            }
            self.target.send().await?;
            self.expect_ok(n).await?;
        }
        if kind == Kind::Stream {
            if let Some(meta) = StreamMeta::read(&mut self.source, key).await? {
                let counters = self.ctx.target_stream_counters;
                let mut n = meta.queue_groups(&mut self.target, &temp, counters, has_entries);
                n += placeholders.queue_delete(&mut self.target, &temp);
                n += meta.queue_ids(&mut self.target, &temp, counters);
                self.target.send().await?;
                self.expect_ok(n).await?;
                started = true;
            }
        }
        // The key's expiry as it is now, after the last chunk: a key that expired or vanished
        // while it was copied must end absent on the target, never truncated or without a TTL.
        self.ctx.throttle(1).await;
        let ttl = Ttl::from_reply(
            &self
                .source
                .call(&[
                    if absolute {
                        &b"PEXPIRETIME"[..]
                    } else {
                        b"PTTL"
                    },
                    key,
                ])
                .await?,
            absolute,
        );
        let lapsed = match ttl {
            Ttl::Gone => true,
            Ttl::At(ms) => ms <= crate::util::now_ms(),
            _ => false,
        };
        if !started || lapsed {
            return self.gone_meanwhile(&temp, &target_key).await;
        }
        self.put_in_place(&temp, &target_key, ttl, 0).await
    }

    /// Gives the temporary key built for `target_key` the key's expiry and renames it over the
    /// key, reading `queued` replies sent before with them; a key whose expiry passed between
    /// the check and the rename (the temporary key is gone) ends absent.
    async fn put_in_place(
        &mut self,
        temp: &[u8],
        target_key: &[u8],
        ttl: Ttl,
        queued: usize,
    ) -> Result<()> {
        match ttl {
            Ttl::At(_) | Ttl::In(_) => ttl.queue_apply(&mut self.target, temp),
            _ => self.target.queue(&[&b"PERSIST"[..], temp]),
        }
        self.target.queue(&[&b"RENAME"[..], temp, target_key]);
        self.target.send().await?;
        match self.expect_ok(queued + 2).await {
            Err(Error::Server { message, .. }) if message.contains("no such key") => {
                return self.gone_meanwhile(temp, target_key).await;
            }
            other => {
                other?;
            }
        }
        bump(&self.ctx.stats.copied, 1);
        bump(&self.ctx.stats.struct_copied, 1);
        Ok(())
    }
}

impl Copier {
    /// The type name of a module key this run copies per type (JSON, Bloom, Cuckoo, with the
    /// module on the target), if `type_reply` names one.
    fn module_copyable(&self, type_reply: &Reply) -> Option<Bytes> {
        let name = type_reply.as_bytes()?;
        let on_target = self
            .ctx
            .target_types
            .iter()
            .any(|t| t.as_bytes() == &name[..]);
        (on_target && module_values::copyable(name)).then(|| name.clone())
    }

    /// Copies one module key by its own commands: built under a temporary name in its hash slot,
    /// given its expiry, and renamed over the key (as chunked keys are).
    async fn module_copy(
        &mut self,
        db: u32,
        key: &Bytes,
        type_name: &[u8],
        ttl: Ttl,
    ) -> Result<()> {
        self.ctx.throttle(1).await;
        let target_key = self.ctx.scope.target_key(db, key);
        let temp = temp_key(&target_key);
        let value = module_values::read(&mut self.source, type_name, key).await?;
        let lapsed = matches!(ttl, Ttl::At(ms) if ms <= crate::util::now_ms());
        let Some(value) = value.filter(|_| !lapsed && ttl != Ttl::Gone) else {
            return self.gone_meanwhile(&temp, &target_key).await;
        };
        let n = module_values::queue_write(&mut self.target, &temp, &value);
        self.put_in_place(&temp, &target_key, ttl, n).await
    }

    /// A key that vanished or expired while it was copied in chunks: its temporary key and
    /// any older copy on the target go, and it counts as gone.
    async fn gone_meanwhile(&mut self, temp: &[u8], target_key: &[u8]) -> Result<()> {
        self.target.queue(&[&b"DEL"[..], temp]);
        self.target.queue(&[&b"DEL"[..], target_key]);
        self.target.send().await?;
        self.expect_ok(2).await?;
        bump(&self.ctx.stats.gone, 1);
        Ok(())
    }
}

/// How long a half-built temporary key survives a copy that was cut off.
const TEMP_KEY_TTL_MS: &[u8] = b"3600000";

/// Queues `SET key value` with the key's expiry in the same command (PXAT, or PX from a PTTL),
/// replacing any old value and expiry at once.
fn queue_set(conn: &mut Conn, key: &[u8], value: &[u8], ttl: Ttl) {
    let mut n = itoa::Buffer::new();
    match ttl {
        Ttl::At(ms) => conn.queue(&[b"SET", key, value, b"PXAT", n.format(ms.max(1)).as_bytes()]),
        Ttl::In(ms) => conn.queue(&[b"SET", key, value, b"PX", n.format(ms.max(1)).as_bytes()]),
        Ttl::Persist | Ttl::Gone => conn.queue(&[b"SET", key, value]),
    }
}

/// A fresh temporary key name in the same cluster hash slot as `key`: the key's own hash tag
/// is kept when it has one, otherwise a tag of the key's slot goes in front.
pub fn temp_key(key: &[u8]) -> Vec<u8> {
    let suffix = format!(":ferry-tmp:{:016x}", rand::random::<u64>());
    match crate::net::slot::hash_tag(key) {
        // The key's tag stays its first one.
        Some(_) => [key, suffix.as_bytes()].concat(),
        // A tag of the key's own slot in front: wrapping the key in braces would not do for a
        // name that holds a `}` (`a}b` would hash as `a`).
        None => {
            let tag = crate::net::slot::tag_for(crate::net::slot::key_slot(key));
            [b"{", tag.as_bytes(), b"}", key, suffix.as_bytes()].concat()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::temp_key;

    #[test]
    fn temp_keys_keep_the_hash_tag() {
        let t = temp_key(b"user:{42}:profile");
        assert!(t.starts_with(b"user:{42}:profile:ferry-tmp:"));
        let t = temp_key(b"plain");
        let tag = crate::net::slot::tag_for(crate::net::slot::key_slot(b"plain"));
        assert!(t.starts_with(format!("{{{tag}}}plain:ferry-tmp:").as_bytes()));
        assert_ne!(temp_key(b"k"), temp_key(b"k"));
    }

    /// The temporary key is renamed over the real one: on a cluster both must hash to the
    /// same slot, whatever braces the name holds.
    #[test]
    fn temp_keys_hash_to_their_keys_slot() {
        use crate::net::slot::key_slot;
        for key in [
            &b"plain"[..],
            b"user:{42}:profile",
            b"a}b",
            b"empty{}tag",
            b"{}x",
            b"}{",
            b"x{y",
            b"{a}{b}",
            b"",
        ] {
            let t = temp_key(key);
            assert_eq!(
                key_slot(&t),
                key_slot(key),
                "{} -> {}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(&t)
            );
        }
    }
}
