//! Proving a copy (design §5): for every source key, that it exists on the target with the same
//! type, a TTL within tolerance and (full mode) the same value; and, in a reverse pass, that the
//! target holds no key the source lacks. Values are compared by DUMP payload first and, where
//! payloads differ (other RDB version or encoding), by a type-aware digest.

mod pass;
pub use pass::*;
mod repair;
pub use repair::*;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::keys::field_ttl;
use crate::keys::module_values;
use crate::keys::value::{self, Digested, Kind, Ttl, WholeRead};
use crate::keys::vectorset;
use crate::model::scope::{display_key, Scope};
use crate::net::conn::Conn;
use crate::net::resp::Reply;
use crate::scan::BatchWorker;
use crate::util::ratelimit::RateLimiter;

/// How deep verify looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Existence, type and TTL.
    Quick,
    /// Also the value (stream groups included).
    #[default]
    Full,
}

/// What verify found for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Missing,
    Extra,
    Type,
    Ttl,
    Value,
    /// A key of a type verify cannot compare (a module type whose payloads differ in version):
    /// never counted as ok, and a run with any does not claim success.
    Unverified,
    /// A key of a type the run left out by request (`--skip-unsupported`): neither ok nor
    /// different.
    Skipped,
}

/// Counts per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub ok: u64,
    pub missing: u64,
    pub extra: u64,
    #[serde(rename = "type")]
    pub type_: u64,
    pub ttl: u64,
    pub value: u64,
    #[serde(default)]
    pub unverified: u64,
    #[serde(default)]
    pub skipped: u64,
}

impl StatusCounts {
    fn bump(&mut self, status: Status) {
        *match status {
            Status::Ok => &mut self.ok,
            Status::Missing => &mut self.missing,
            Status::Extra => &mut self.extra,
            Status::Type => &mut self.type_,
            Status::Ttl => &mut self.ttl,
            Status::Value => &mut self.value,
            Status::Unverified => &mut self.unverified,
            Status::Skipped => &mut self.skipped,
        } += 1;
    }

    /// Keys that are not ok (unverified ones included: what was not proven is not ok).
    pub fn differences(&self) -> u64 {
        self.missing + self.extra + self.type_ + self.ttl + self.value + self.unverified
    }

    /// Adds another count (a shard's, an invocation's).
    pub fn add(&mut self, o: &StatusCounts) {
        self.ok += o.ok;
        self.missing += o.missing;
        self.extra += o.extra;
        self.type_ += o.type_;
        self.ttl += o.ttl;
        self.value += o.value;
        self.unverified += o.unverified;
        self.skipped += o.skipped;
    }
}

/// One differing key: for `extra`, the target db and key; otherwise the source db and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub db: u32,
    pub key: Bytes,
    pub status: Status,
}

/// A differing key as shown in reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffSample {
    pub db: u32,
    pub key: String,
    pub status: Status,
}

/// The outcome of a verify run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Counts per source db (extras per target db).
    pub per_db: BTreeMap<u32, StatusCounts>,
    /// Counts over all dbs.
    pub total: StatusCounts,
    /// A bounded sample of differing keys.
    pub sample: Vec<DiffSample>,
    /// The differing keys, for `--repair` (bounded; see `diffs_truncated`).
    #[serde(skip)]
    pub diffs: Vec<Diff>,
    /// Whether more keys differed than were kept for repair.
    pub diffs_truncated: bool,
}

impl VerifyReport {
    fn record(&mut self, db: u32, key: &Bytes, status: Status, options: &VerifyOptions) {
        self.per_db.entry(db).or_default().bump(status);
        self.total.bump(status);
        if matches!(status, Status::Ok | Status::Skipped) {
            return;
        }
        if self.sample.len() < options.sample_limit {
            self.sample.push(DiffSample {
                db,
                key: display_key(key),
                status,
            });
        }
        if self.diffs.len() < options.keep_diffs {
            self.diffs.push(Diff {
                db,
                key: key.clone(),
                status,
            });
        } else {
            self.diffs_truncated = true;
        }
    }

    /// Merges another report (another shard or worker) into this one.
    pub fn merge(&mut self, other: VerifyReport, options: &VerifyOptions) {
        for (db, c) in &other.per_db {
            self.per_db.entry(*db).or_default().add(c);
        }
        self.total.add(&other.total);
        let room = options.sample_limit.saturating_sub(self.sample.len());
        self.sample.extend(other.sample.into_iter().take(room));
        let room = options.keep_diffs.saturating_sub(self.diffs.len());
        self.diffs_truncated |= other.diffs_truncated || other.diffs.len() > room;
        self.diffs.extend(other.diffs.into_iter().take(room));
    }
}

/// Verify settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyOptions {
    /// Quick or full.
    pub level: Level,
    /// Largest TTL difference that still counts as equal, in ms.
    pub ttl_tolerance_ms: i64,
    /// Differing keys listed in the report.
    pub sample_limit: usize,
    /// Differing keys remembered for repair.
    pub keep_diffs: usize,
    /// Keys whose DUMP payload is above this are compared by chunked digest.
    pub big_key_bytes: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            level: Level::Full,
            ttl_tolerance_ms: 2000,
            sample_limit: 20,
            keep_diffs: 1_000_000,
            big_key_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What every verify worker shares.
pub struct VerifyContext {
    /// Settings.
    pub options: VerifyOptions,
    /// Keys in scope and their target names.
    pub scope: Scope,
    /// Both servers have PEXPIRETIME; otherwise both are asked PTTL.
    pub absolute_ttl: bool,
    /// Both servers have hash-field TTLs: hashes' field expiries are compared too.
    pub field_ttls: bool,
    /// Both servers keep streams' 7.0 counters: they are compared too.
    pub stream_counters: bool,
    /// Both servers write the same RDB version, so equal DUMP payloads prove equal values;
    /// otherwise full verify skips DUMP and compares every key by its contents.
    pub same_payloads: bool,
    /// Types the run left out (`--skip-unsupported`): their keys count as skipped.
    pub skipped_types: Vec<Bytes>,
    /// Source dbs in scope (for mapping target keys back in the reverse pass).
    pub source_dbs: Vec<u32>,
    /// The run's load cap on the source: verify's reads count against it too.
    pub limiter: Option<Arc<RateLimiter>>,
    /// The accumulated report.
    pub report: Mutex<VerifyReport>,
}

impl VerifyContext {
    /// Adds a worker's findings to the run's report.
    fn merge(&self, local: VerifyReport) {
        self.report
            .lock()
            .expect("report")
            .merge(local, &self.options);
    }

    /// Waits until `ops` more source commands fit under the load cap.
    pub async fn throttle(&self, ops: usize) {
        if let Some(l) = &self.limiter {
            l.acquire(ops as u64).await;
        }
    }

    /// Takes the finished report.
    pub fn take_report(&self) -> VerifyReport {
        std::mem::take(&mut *self.report.lock().expect("report"))
    }
}

/// Compares batches of source keys with the target.
pub struct VerifyWorker {
    /// Source connection.
    pub source: Conn,
    /// Target connection.
    pub target: Conn,
    /// Shared settings and report.
    pub ctx: Arc<VerifyContext>,
}

/// Type, TTL, and (full) payload of a key on one side.
struct Seen {
    /// The TYPE name (`None` when the key does not exist), core or module type.
    type_name: Option<Bytes>,
    /// The same as a core type ferry reads natively, if it is one.
    kind: Option<Kind>,
    ttl: Ttl,
    payload: Option<Bytes>,
    /// The payload was over the big-key limit and dropped unread.
    big: bool,
}

impl VerifyWorker {
    /// Reads TYPE, TTL and (full mode) DUMP for `keys` on one connection, in one round trip.
    /// A payload over the big-key limit is dropped as it is read; such keys are compared by
    /// chunked digest.
    async fn look(
        conn: &mut Conn,
        keys: &[Bytes],
        absolute: bool,
        full: bool,
        big: u64,
    ) -> Result<Vec<Seen>> {
        for k in keys {
            conn.queue(&[&b"TYPE"[..], k]);
            Ttl::queue_read(conn, k, absolute);
            if full {
                conn.queue(&[&b"DUMP"[..], k]);
            }
        }
        conn.send().await?;
        let limit = if big == 0 { usize::MAX } else { big as usize };
        let mut seen = Vec::with_capacity(keys.len());
        for _ in keys {
            let type_name = match conn.recv().await? {
                Reply::Status(t) | Reply::Bulk(t) if &t[..] != b"none" => Some(t),
                _ => None,
            };
            let kind = type_name.as_ref().and_then(|t| {
                Kind::from_type_reply(&Reply::Status(t.clone()))
                    .ok()
                    .flatten()
            });
            let ttl = Ttl::from_reply(&conn.recv().await?, absolute);
            let (payload, big) = match full {
                true => match conn.recv_limited(limit).await? {
                    Reply::Bulk(p) => (Some(p), false),
                    Reply::Skipped(_) => (None, true),
                    _ => (None, false),
                },
                false => (None, false),
            };
            seen.push(Seen {
                type_name,
                kind,
                ttl,
                payload,
                big,
            });
        }
        Ok(seen)
    }

    /// Compares source keys of `db` with their target keys and returns each key's status
    /// (`None` for keys that vanished from the source meanwhile).
    pub async fn compare(&mut self, db: u32, keys: &[Bytes]) -> Result<Vec<Option<Status>>> {
        let ctx = self.ctx.clone();
        let o = &ctx.options;
        let full = o.level == Level::Full;
        self.source.select(db).await?;
        self.target.select(ctx.scope.target_of(db).db).await?;
        let target_keys: Vec<Bytes> = keys.iter().map(|k| ctx.scope.target_key(db, k)).collect();
        ctx.throttle(keys.len() * if full && ctx.same_payloads { 3 } else { 2 })
            .await;
        let dump = full && ctx.same_payloads;
        let (src, dst) = tokio::join!(
            Self::look(
                &mut self.source,
                keys,
                ctx.absolute_ttl,
                dump,
                o.big_key_bytes
            ),
            Self::look(
                &mut self.target,
                &target_keys,
                ctx.absolute_ttl,
                dump,
                o.big_key_bytes
            )
        );
        let (src, dst) = (src?, dst?);
        let mut out = Vec::with_capacity(keys.len());
        let (mut small, mut big, mut by_reads) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (s, t)) in src.iter().zip(&dst).enumerate() {
            let skipped = s
                .type_name
                .as_ref()
                .is_some_and(|n| ctx.skipped_types.contains(n));
            let look = match skipped {
                true => Look::Decided(Some(Status::Skipped)),
                false => first_look(s, t, full, o.ttl_tolerance_ms),
            };
            let status = match look {
                Look::Decided(status) => status,
                Look::ByContents if s.big || t.big => {
                    big.push(i);
                    None
                }
                Look::ByContents => {
                    small.push(i);
                    None
                }
                Look::ByVectorSetReads | Look::ByModuleReads => {
                    by_reads.push(i);
                    None
                }
            };
            out.push(status);
        }
        if !small.is_empty() {
            ctx.throttle(small.len()).await;
            let limit = match o.big_key_bytes {
                0 => usize::MAX,
                n => n as usize,
            };
            let kind = |i: usize| src[i].kind.expect("read by contents");
            let source_keys: Vec<(&Bytes, Kind)> =
                small.iter().map(|&i| (&keys[i], kind(i))).collect();
            let target_keys_: Vec<(&Bytes, Kind)> =
                small.iter().map(|&i| (&target_keys[i], kind(i))).collect();
            let counters = ctx.stream_counters;
            let (a, b) = tokio::join!(
                value::digest_small_keys(&mut self.source, &source_keys, counters, limit),
                value::digest_small_keys(&mut self.target, &target_keys_, counters, limit)
            );
            for ((&i, a), b) in small.iter().zip(a?).zip(b?) {
                match (a, b) {
                    (WholeRead::Digest(a), WholeRead::Digest(b)) => out[i] = digest_status(a, b),
                    _ => big.push(i),
                }
            }
        }
        for i in big {
            ctx.throttle(1).await;
            let a = value::digest_key(&mut self.source, &keys[i], ctx.stream_counters).await?;
            let b =
                value::digest_key(&mut self.target, &target_keys[i], ctx.stream_counters).await?;
            out[i] = digest_status(a, b);
        }
        for i in by_reads {
            ctx.throttle(1).await;
            let name = src[i].type_name.clone().unwrap_or_default();
            let (a, b) = if &name[..] == vectorset::TYPE_NAME {
                (
                    vectorset::digest(&mut self.source, &keys[i]).await?,
                    vectorset::digest(&mut self.target, &target_keys[i]).await?,
                )
            } else {
                (
                    module_values::digest(&mut self.source, &name, &keys[i]).await?,
                    module_values::digest(&mut self.target, &name, &target_keys[i]).await?,
                )
            };
            out[i] = match (a, b) {
                (None, _) => None,
                (Some(a), Some(b)) if a == b => Some(Status::Ok),
                (Some(_), None) => Some(Status::Missing),
                _ => Some(Status::Value),
            };
        }
        if ctx.field_ttls {
            // Equal payloads carry equal field TTLs; every other hash found equal so far has
            // its field expiries compared.
            let hashes: Vec<usize> = (0..keys.len())
                .filter(|&i| out[i] == Some(Status::Ok) && src[i].kind == Some(Kind::Hash))
                .filter(|&i| {
                    !(full && src[i].payload.is_some() && src[i].payload == dst[i].payload)
                })
                .collect();
            self.compare_field_ttls(&hashes, keys, &target_keys, &mut out)
                .await?;
        }
        Ok(out)
    }

    /// Marks `ttl` the hashes among `which` whose fields' expiries differ between the sides.
    async fn compare_field_ttls(
        &mut self,
        which: &[usize],
        keys: &[Bytes],
        target_keys: &[Bytes],
        out: &mut [Option<Status>],
    ) -> Result<()> {
        if which.is_empty() {
            return Ok(());
        }
        let tolerance = self.ctx.options.ttl_tolerance_ms;
        self.ctx.throttle(2 * which.len()).await;
        let source_keys: Vec<&Bytes> = which.iter().map(|&i| &keys[i]).collect();
        let target_keys: Vec<&Bytes> = which.iter().map(|&i| &target_keys[i]).collect();
        let (a, b) = tokio::join!(
            field_ttl::digests(&mut self.source, &source_keys, tolerance),
            field_ttl::digests(&mut self.target, &target_keys, tolerance)
        );
        for ((&i, a), b) in which.iter().zip(a?).zip(b?) {
            if a != b {
                out[i] = Some(Status::Ttl);
            }
        }
        Ok(())
    }
}

/// What the first look at a key on both sides decides.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    /// The status (`None`: gone from the source).
    Decided(Option<Status>),
    /// A core type whose payloads differ (another RDB version or encoding, or too big to
    /// hold): its native contents decide.
    ByContents,
    /// A vector set whose payloads differ (they are not byte-stable): its own reads decide.
    ByVectorSetReads,
    /// A JSON document or filter whose payloads differ: its own reads decide.
    ByModuleReads,
}

/// Existence, type and TTL for every type; in full mode the DUMP payloads, which also decide a
/// module type's value (by bytes, when both payloads carry the same RDB version; otherwise
/// the key is unverified, never ok).
fn first_look(s: &Seen, t: &Seen, full: bool, tolerance: i64) -> Look {
    let status = match (&s.type_name, &t.type_name) {
        (None, _) => None,
        (Some(_), None) if expiring(s.ttl, tolerance) => None,
        (Some(_), None) => Some(Status::Missing),
        (Some(a), Some(b)) if a != b => Some(Status::Type),
        _ if !ttl_matches(s.ttl, t.ttl, tolerance) => Some(Status::Ttl),
        _ if !full => Some(Status::Ok),
        _ if s.payload.is_some() && s.payload == t.payload => Some(Status::Ok),
        _ if s.kind.is_some() => return Look::ByContents,
        _ if s.type_name.as_deref() == Some(vectorset::TYPE_NAME) => return Look::ByVectorSetReads,
        _ if s.type_name.as_deref().is_some_and(module_values::copyable) => {
            return Look::ByModuleReads
        }
        _ => {
            let version =
                |p: &Option<Bytes>| p.as_deref().and_then(crate::inventory::payload_rdb_version);
            match (version(&s.payload), version(&t.payload)) {
                (Some(a), Some(b)) if a == b => Some(Status::Value),
                _ => Some(Status::Unverified),
            }
        }
    };
    Look::Decided(status)
}

/// The status of a key compared by digest on both sides (`None`: gone from the source).
fn digest_status(source: Option<Digested>, target: Option<Digested>) -> Option<Status> {
    match (source, target) {
        (None, _) => None,
        (Some(a), Some(b)) if a.matches(&b) => Some(Status::Ok),
        (Some(_), None) => Some(Status::Missing),
        _ => Some(Status::Value),
    }
}

/// A key about to expire may be gone on one side and not yet on the other.
fn expiring(ttl: Ttl, tolerance: i64) -> bool {
    match ttl {
        Ttl::In(ms) => ms <= tolerance,
        Ttl::At(at) => at - crate::util::now_ms() <= tolerance,
        _ => false,
    }
}

fn ttl_matches(a: Ttl, b: Ttl, tolerance: i64) -> bool {
    match (a, b) {
        (Ttl::Persist, Ttl::Persist) => true,
        (Ttl::At(x), Ttl::At(y)) | (Ttl::In(x), Ttl::In(y)) => (x - y).abs() <= tolerance,
        _ => false,
    }
}

impl VerifyWorker {
    /// Compares `keys` of source `db` both ways (a cutover's fenced check of the keys the tail
    /// touched): a key the source has is compared as in a verify pass; one it no longer has
    /// must be gone from the target too.
    pub async fn check(
        &mut self,
        db: u32,
        keys: &[Bytes],
        report: &mut VerifyReport,
    ) -> Result<()> {
        let statuses = self.compare(db, keys).await?;
        let options = self.ctx.options.clone();
        let mut gone = Vec::new();
        for (k, status) in keys.iter().zip(statuses) {
            match status {
                Some(status) => report.record(db, k, status, &options),
                None => gone.push(k),
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        let target = self.ctx.scope.target_of(db).db;
        self.target.select(target).await?;
        for k in &gone {
            self.target
                .queue(&[&b"EXISTS"[..], &self.ctx.scope.target_key(db, k)]);
        }
        self.target.send().await?;
        for k in gone {
            let status = match self.target.recv().await?.as_int() {
                Some(0) => Status::Ok,
                _ => Status::Extra,
            };
            report.record(db, k, status, &options);
        }
        Ok(())
    }
}

impl BatchWorker for VerifyWorker {
    fn due_for_renewal(&self) -> bool {
        self.source.due_for_renewal() || self.target.due_for_renewal()
    }

    async fn process(&mut self, db: u32, keys: Vec<Bytes>) -> Result<()> {
        let statuses = self.compare(db, &keys).await?;
        let mut local = VerifyReport::default();
        for (k, s) in keys.iter().zip(statuses) {
            if let Some(s) = s {
                local.record(db, k, s, &self.ctx.options);
            }
        }
        self.ctx.merge(local);
        Ok(())
    }
}

/// The reverse pass: batches of target keys checked for existence on the source.
pub struct ReverseWorker {
    /// Source connection.
    pub source: Conn,
    /// Target connection (the TTL of a would-be extra).
    pub target: Conn,
    /// Shared settings and report.
    pub ctx: Arc<VerifyContext>,
}

impl BatchWorker for ReverseWorker {
    fn due_for_renewal(&self) -> bool {
        self.source.due_for_renewal() || self.target.due_for_renewal()
    }

    /// A target key is extra only when it is the migration's (it has an owner: a source db in
    /// scope maps there, with its prefix, and its name is in the pattern) and no owner holds it
    /// on the source. Keys that are not the migration's are never counted, so never deleted.
    async fn process(&mut self, target_db: u32, keys: Vec<Bytes>) -> Result<()> {
        let mut local = VerifyReport::default();
        // Per target key, how many of its owners were asked and how many hold it.
        let mut asked: Vec<(Bytes, usize)> = Vec::new();
        let mut by_db: BTreeMap<u32, Vec<(usize, Bytes)>> = BTreeMap::new();
        for k in keys {
            let owners = self
                .ctx
                .scope
                .owners_of(target_db, &k, &self.ctx.source_dbs);
            if owners.is_empty() {
                continue;
            }
            for (db, source_key) in owners {
                by_db.entry(db).or_default().push((asked.len(), source_key));
            }
            asked.push((k, 0));
        }
        for (db, pairs) in by_db {
            self.ctx.throttle(pairs.len()).await;
            self.source.select(db).await?;
            for (_, sk) in &pairs {
                self.source.queue(&[&b"EXISTS"[..], sk]);
            }
            self.source.send().await?;
            for (i, _) in &pairs {
                if self.source.recv().await?.as_int().unwrap_or(1) > 0 {
                    asked[*i].1 += 1;
                }
            }
        }
        let unheld: Vec<Bytes> = asked
            .into_iter()
            .filter(|(_, held)| *held == 0)
            .map(|(k, _)| k)
            .collect();
        if !unheld.is_empty() {
            // A key that expired on the source a moment before the target reclaimed its copy
            // is not an extra: it is gone, or about to be, on the target too.
            self.target.select(target_db).await?;
            for k in &unheld {
                self.target.queue(&[&b"PTTL"[..], k]);
            }
            self.target.send().await?;
            for k in &unheld {
                let ttl = Ttl::from_reply(&self.target.recv().await?, false);
                let ending = match ttl {
                    Ttl::Gone => true,
                    ttl => expiring(ttl, self.ctx.options.ttl_tolerance_ms),
                };
                if !ending {
                    local.record(target_db, k, Status::Extra, &self.ctx.options);
                }
            }
        }
        self.ctx.merge(local);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(type_name: &str, payload: Option<&[u8]>) -> Seen {
        let type_name = Some(Bytes::copy_from_slice(type_name.as_bytes()));
        let kind = Kind::from_type_reply(&Reply::Status(type_name.clone().unwrap()))
            .ok()
            .flatten();
        Seen {
            type_name,
            kind,
            ttl: Ttl::Persist,
            payload: payload.map(Bytes::copy_from_slice),
            big: false,
        }
    }

    /// A payload ending in RDB version `v` and an 8-byte checksum.
    fn payload(body: u8, v: u16) -> Vec<u8> {
        let mut p = vec![body; 4];
        p.extend_from_slice(&v.to_le_bytes());
        p.extend_from_slice(&[0; 8]);
        p
    }

    #[test]
    fn module_types_are_compared_by_payload_or_counted_unverified() {
        let gone = Seen {
            type_name: None,
            kind: None,
            ttl: Ttl::Gone,
            payload: None,
            big: false,
        };
        let (a12, b12, a80) = (payload(1, 12), payload(2, 12), payload(1, 80));
        let look = |s: &Seen, t: &Seen, full| first_look(s, t, full, 2000);
        let decided = |st| Look::Decided(Some(st));
        let vs = |p: &[u8]| seen("vectorset", Some(p));
        let json = |p: &[u8]| seen("ReJSON-RL", Some(p));
        assert_eq!(look(&vs(&a12), &gone, true), decided(Status::Missing));
        assert_eq!(look(&vs(&a12), &vs(&a12), true), decided(Status::Ok));
        assert_eq!(look(&vs(&a12), &vs(&b12), true), Look::ByVectorSetReads);
        assert_eq!(look(&vs(&a12), &vs(&a80), false), decided(Status::Ok));
        let other = |p: &[u8]| seen("TSDB-TYPE", Some(p));
        assert_eq!(look(&json(&a12), &json(&b12), true), Look::ByModuleReads);
        assert_eq!(look(&json(&a12), &json(&a80), true), Look::ByModuleReads);
        assert_eq!(
            look(&other(&a12), &other(&b12), true),
            decided(Status::Value)
        );
        assert_eq!(
            look(&other(&a12), &other(&a80), true),
            decided(Status::Unverified)
        );
        assert_eq!(look(&vs(&a12), &json(&a12), true), decided(Status::Type));
        let hash = |p: &[u8]| seen("hash", Some(p));
        assert_eq!(look(&hash(&a12), &hash(&b12), true), Look::ByContents);
        assert_eq!(look(&gone, &vs(&a12), true), Look::Decided(None));
    }
}
