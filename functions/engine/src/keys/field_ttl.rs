//! Hash-field TTLs (Redis ≥ 7.4, Valkey ≥ 9.0: `HEXPIRE` and friends). A DUMP payload carries
//! them between servers of one engine; the struct path reads each field's absolute expiry with
//! `HPEXPIRETIME` and writes it with `HPEXPIREAT` in the same transaction as the key, and verify
//! compares them. A target that cannot hold them is refused before anything is written, unless
//! the user chose to drop them (`--drop-field-ttls`), and then the dropped fields are counted.

use std::collections::BTreeMap;

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};
use crate::inventory::ServerInfo;
use crate::net::conn::Conn;
use crate::net::resp::{self, Reply};

/// What the struct path does with field TTLs, decided once per run from both servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldTtls {
    /// The source cannot have any: nothing to read.
    Ignore,
    /// Read them and write them.
    Copy,
    /// The target cannot hold them and the user chose to lose them: read and count them.
    Drop,
    /// The target cannot hold them: a key found with one stops the run (inventory refused the
    /// run if any existed; this catches one set since).
    Refuse,
}

impl FieldTtls {
    /// The rule for copying from `source` to `target`.
    pub fn for_pair(source: &ServerInfo, target: &ServerInfo, drop: bool) -> FieldTtls {
        match (source.has_field_ttls(), target.has_field_ttls(), drop) {
            (false, _, _) => FieldTtls::Ignore,
            (true, true, _) => FieldTtls::Copy,
            (true, false, true) => FieldTtls::Drop,
            (true, false, false) => FieldTtls::Refuse,
        }
    }

    /// Whether the struct path must read them.
    pub fn read(self) -> bool {
        self != FieldTtls::Ignore
    }
}

/// Queues `HPEXPIRETIME key FIELDS n field…`; its reply goes to [`expiries`].
pub fn queue_read(conn: &mut Conn, key: &[u8], fields: &[&Bytes]) {
    let out = conn.wbuf_for(key);
    resp::encode_array_header(out, 4 + fields.len());
    resp::encode_bulk(out, b"HPEXPIRETIME");
    resp::encode_bulk(out, key);
    resp::encode_bulk(out, b"FIELDS");
    resp::encode_bulk_int(out, fields.len() as i64);
    for f in fields {
        resp::encode_bulk(out, f);
    }
}

/// Each field's absolute expiry in ms, or -1 for none (-2, a field gone, counts as none).
pub fn expiries(reply: Reply) -> Result<Vec<i64>> {
    match reply {
        Reply::Array(items) => Ok(items.iter().map(|r| r.as_int().unwrap_or(-1)).collect()),
        Reply::Error(e) => Err(Error::Server {
            addr: String::new(),
            command: "HPEXPIRETIME".into(),
            message: crate::error::server_text(&String::from_utf8_lossy(&e)),
        }),
        _ => Ok(Vec::new()),
    }
}

/// The fields that have an expiry, grouped by it.
pub fn by_expiry<'a>(fields: &[&'a Bytes], expiries: &[i64]) -> BTreeMap<i64, Vec<&'a Bytes>> {
    let mut groups: BTreeMap<i64, Vec<&Bytes>> = BTreeMap::new();
    for (f, &at) in fields.iter().zip(expiries) {
        if at >= 0 {
            groups.entry(at).or_default().push(f);
        }
    }
    groups
}

/// Queues one `HPEXPIREAT key ms FIELDS n field…` per expiry; returns how many were queued.
pub fn queue_apply(conn: &mut Conn, key: &[u8], groups: &BTreeMap<i64, Vec<&Bytes>>) -> usize {
    for (at, fields) in groups {
        let out = conn.wbuf_for(key);
        resp::encode_array_header(out, 5 + fields.len());
        resp::encode_bulk(out, b"HPEXPIREAT");
        resp::encode_bulk(out, key);
        resp::encode_bulk_int(out, *at);
        resp::encode_bulk(out, b"FIELDS");
        resp::encode_bulk_int(out, fields.len() as i64);
        for f in fields {
            resp::encode_bulk(out, f);
        }
    }
    groups.len()
}

/// What a run does when the struct path finds fields with TTLs in a key: `Ok(true)` to write
/// them, `Ok(false)` to drop them, or the error that stops the run.
pub fn decide(rule: FieldTtls, key: &[u8], with_ttl: usize) -> Result<bool> {
    match rule {
        FieldTtls::Copy => Ok(true),
        FieldTtls::Refuse if with_ttl > 0 => Err(Error::Unsupported(format!(
            "hash '{}' has {with_ttl} fields with a TTL (set after inventory) and the target cannot hold field TTLs; run again with --drop-field-ttls to copy without them, or use a target that has them (Redis ≥ 7.4, Valkey ≥ 9)",
            crate::model::scope::display_key(&key[..key.len().min(200)])
        ))),
        _ => Ok(false),
    }
}

/// A digest of a hash's field expiries for verify: the fields with a TTL and their expiry
/// instants, in any order; fields expiring within `tolerance_ms` of now are left out, as they
/// may already be gone on one side and not yet on the other.
pub async fn digests(conn: &mut Conn, keys: &[&Bytes], tolerance_ms: i64) -> Result<Vec<u128>> {
    for k in keys {
        conn.queue(&[&b"HKEYS"[..], k]);
    }
    conn.send().await?;
    let mut fields: Vec<Vec<Bytes>> = Vec::with_capacity(keys.len());
    for _ in keys {
        fields.push(match conn.recv().await? {
            Reply::Array(items) => items
                .into_iter()
                .filter_map(|r| r.as_bytes().cloned())
                .collect(),
            _ => Vec::new(),
        });
    }
    for (k, f) in keys.iter().zip(&fields) {
        if !f.is_empty() {
            queue_read(conn, k, &f.iter().collect::<Vec<_>>());
        }
    }
    conn.send().await?;
    let soon = crate::util::now_ms() + tolerance_ms;
    let mut out = Vec::with_capacity(keys.len());
    for f in &fields {
        let mut timed: Vec<u128> = Vec::new();
        if !f.is_empty() {
            let at = expiries(conn.recv().await?)?;
            for (field, &ms) in f.iter().zip(&at) {
                if ms > soon {
                    let mut h = Xxh3::new();
                    h.update(&(field.len() as u64).to_le_bytes());
                    h.update(field);
                    h.update(&ms.to_le_bytes());
                    timed.push(h.digest128());
                }
            }
        }
        timed.sort_unstable();
        let mut h = Xxh3::new();
        for t in &timed {
            h.update(&t.to_le_bytes());
        }
        out.push(h.digest128());
    }
    Ok(out)
}
