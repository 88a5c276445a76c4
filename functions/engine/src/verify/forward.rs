//! The forward check: a batch of source keys compared with the target by type, TTL, and
//! payload or digest.

use super::*;

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
                digest::digest_small_keys(&mut self.source, &source_keys, counters, limit),
                digest::digest_small_keys(&mut self.target, &target_keys_, counters, limit)
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
            let a = digest::digest_key(&mut self.source, &keys[i], ctx.stream_counters).await?;
            let b =
                digest::digest_key(&mut self.target, &target_keys[i], ctx.stream_counters).await?;
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
pub(super) fn expiring(ttl: Ttl, tolerance: i64) -> bool {
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
