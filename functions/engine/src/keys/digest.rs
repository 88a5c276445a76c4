//! The type-aware digest verify falls back to when DUMP payloads differ (another RDB version
//! or encoding): equal for equal contents, read in bounded commands or chunks.

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

use crate::error::Result;
use crate::net::conn::Conn;
use crate::net::resp::Reply;

use crate::keys::stream_meta::StreamMeta;
use crate::keys::value::{bulk, chunk_from_reply, Chunk, ChunkReader, Kind, CHUNK_ITEMS};

/// An order-independent digest of a key's value: equal for equal contents whatever the
/// server's encoding, RDB version or SCAN order. Sets of elements are hashed per element,
/// sorted and de-duplicated (SCAN may repeat), so memory is 16 bytes per element.
#[derive(Default)]
pub struct Digest {
    ordered: Xxh3,
    unordered: Vec<u128>,
}

impl Digest {
    /// Adds one chunk of a key of `kind`.
    pub fn add(&mut self, kind: Kind, chunk: &Chunk) {
        match chunk {
            Chunk::Bytes(b) => self.ordered.update(b),
            Chunk::Items(items) if kind == Kind::List => {
                for i in items {
                    self.ordered.update(&(i.len() as u64).to_le_bytes());
                    self.ordered.update(i);
                }
            }
            Chunk::Items(items) => self
                .unordered
                .extend(items.iter().map(|i| xxhash_rust::xxh3::xxh3_128(i))),
            Chunk::Pairs(pairs) => self.unordered.extend(pairs.iter().map(|(a, b)| {
                let mut h = Xxh3::new();
                h.update(&(a.len() as u64).to_le_bytes());
                h.update(a);
                match (
                    kind,
                    std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse::<f64>().ok()),
                ) {
                    (Kind::ZSet, Some(score)) => h.update(&score.to_bits().to_le_bytes()),
                    _ => h.update(b),
                }
                h.digest128()
            })),
            Chunk::Entries(entries) => {
                for (id, fields) in entries {
                    self.ordered.update(id);
                    for f in fields {
                        self.ordered.update(&(f.len() as u64).to_le_bytes());
                        self.ordered.update(f);
                    }
                }
            }
        }
    }

    /// The final digest, with the stream metadata if any (`counters`: see
    /// [`StreamMeta::digest_into`]).
    pub fn finish(mut self, kind: Kind, meta: Option<&StreamMeta>, counters: bool) -> u128 {
        self.unordered.sort_unstable();
        self.unordered.dedup();
        let mut h = Xxh3::new();
        h.update(kind.name().as_bytes());
        h.update(&self.ordered.digest128().to_le_bytes());
        for e in &self.unordered {
            h.update(&e.to_le_bytes());
        }
        if let Some(m) = meta {
            m.digest_into(&mut h, counters);
        }
        h.digest128()
    }
}

/// What verify compares of a key read by its type: the type, a digest of the contents, and
/// each stream group's entries-read, which count as equal where either side does not know
/// them (a Redis 7.0 replica keeps none; copied from one, the target has none either).
#[derive(Debug, Clone, PartialEq)]
pub struct Digested {
    pub kind: Kind,
    pub digest: u128,
    pub entries_read: Vec<Option<i64>>,
}

impl Digested {
    /// Whether both sides hold the same, counters unknown on one side aside.
    pub fn matches(&self, other: &Digested) -> bool {
        self.kind == other.kind
            && self.digest == other.digest
            && self.entries_read.len() == other.entries_read.len()
            && self
                .entries_read
                .iter()
                .zip(&other.entries_read)
                .all(|(a, b)| a.is_none() || b.is_none() || a == b)
    }
}

/// The digest of one key read in chunks from `conn`; `None` if the key is gone. `counters`:
/// both servers keep stream counters (7.0+), so they are compared.
pub async fn digest_key(conn: &mut Conn, key: &Bytes, counters: bool) -> Result<Option<Digested>> {
    let Some(kind) = Kind::from_type_reply(&conn.call(&[&b"TYPE"[..], key]).await?)? else {
        return Ok(None);
    };
    let mut digest = Digest::default();
    let mut reader = ChunkReader::new(kind, key.clone());
    while let Some(chunk) = reader.next(conn).await? {
        digest.add(kind, &chunk);
    }
    let meta = match kind {
        Kind::Stream => StreamMeta::read(conn, key).await?,
        _ => None,
    };
    let entries_read = match (&meta, counters) {
        (Some(m), true) => m.groups.iter().map(|g| g.entries_read).collect(),
        _ => Vec::new(),
    };
    Ok(Some(Digested {
        kind,
        digest: digest.finish(kind, meta.as_ref(), counters),
        entries_read,
    }))
}

/// A digest read in one bounded command: the key's digest (`None`: gone), or too big to read
/// whole (more than [`CHUNK_ITEMS`] elements, or a string over the limit), for
/// [`digest_key`] to read in chunks.
#[derive(Debug)]
pub enum WholeRead {
    Digest(Option<Digested>),
    TooBig,
}

/// Queues a read of a key of `kind` that returns it whole when it holds at most
/// [`CHUNK_ITEMS`] elements, and shows that it holds more otherwise (one element past the
/// bound, or a SCAN cursor that is not 0): never a huge reply, whatever the key.
fn queue_read_bounded(conn: &mut Conn, kind: Kind, key: &[u8]) {
    let mut n = itoa::Buffer::new();
    let bound = n.format(CHUNK_ITEMS).as_bytes();
    match kind {
        Kind::String => conn.queue(&[&b"GET"[..], key]),
        Kind::List => conn.queue(&[&b"LRANGE"[..], key, b"0", bound]),
        Kind::ZSet => conn.queue(&[&b"ZRANGE"[..], key, b"0", bound, b"WITHSCORES"]),
        Kind::Hash => conn.queue(&[&b"HSCAN"[..], key, b"0", b"COUNT", bound]),
        Kind::Set => conn.queue(&[&b"SSCAN"[..], key, b"0", b"COUNT", bound]),
        Kind::Stream => {}
    }
}

/// The chunk a [`queue_read_bounded`] reply holds, `Ok(None)` when the key is gone, or
/// `Err(())` when the key is bigger than one read.
fn bounded_chunk(kind: Kind, reply: Reply) -> std::result::Result<Option<Chunk>, ()> {
    let over = |n: usize| n > CHUNK_ITEMS;
    match (kind, reply) {
        (_, Reply::Skipped(_)) => Err(()),
        (Kind::List, Reply::Array(items)) if over(items.len()) => Err(()),
        (Kind::ZSet, Reply::Array(items)) if over(items.len() / 2) => Err(()),
        (Kind::Hash | Kind::Set, Reply::Array(parts)) => {
            let mut parts = parts.into_iter();
            let cursor = parts.next().and_then(bulk);
            if cursor.as_deref() != Some(b"0") {
                return Err(());
            }
            Ok(parts.next().and_then(|items| chunk_from_reply(kind, items)))
        }
        (kind, reply) => Ok(chunk_from_reply(kind, reply)),
    }
}

/// Digests of small keys of known kinds, each read in one bounded command, all in one
/// pipelined round (`limit`: the largest string read whole). Streams, whose metadata takes
/// more reads, come back [`WholeRead::TooBig`] like keys over the bound.
pub async fn digest_small_keys(
    conn: &mut Conn,
    keys: &[(&Bytes, Kind)],
    counters: bool,
    limit: usize,
) -> Result<Vec<WholeRead>> {
    for (k, kind) in keys {
        if *kind != Kind::Stream {
            queue_read_bounded(conn, *kind, k);
        }
    }
    conn.send().await?;
    let mut out = Vec::with_capacity(keys.len());
    for (_, kind) in keys {
        if *kind == Kind::Stream {
            out.push(WholeRead::TooBig);
            continue;
        }
        let reply = match kind {
            Kind::String => conn.recv_limited(limit).await?,
            _ => conn.recv().await?,
        };
        out.push(match bounded_chunk(*kind, reply) {
            Err(()) => WholeRead::TooBig,
            Ok(chunk) => {
                let mut digest = Digest::default();
                let exists = chunk.is_some();
                if let Some(chunk) = &chunk {
                    digest.add(*kind, chunk);
                }
                WholeRead::Digest(exists.then(|| Digested {
                    kind: *kind,
                    digest: digest.finish(*kind, None, counters),
                    entries_read: Vec::new(),
                }))
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn digest_ignores_order_and_repeats_of_sets_but_not_lists() {
        let d = |kind, chunks: Vec<Chunk>| {
            let mut d = Digest::default();
            for c in &chunks {
                d.add(kind, c);
            }
            d.finish(kind, None, true)
        };
        let set1 = d(Kind::Set, vec![Chunk::Items(vec![b("a"), b("b")])]);
        let set2 = d(
            Kind::Set,
            vec![
                Chunk::Items(vec![b("b")]),
                Chunk::Items(vec![b("a"), b("b")]),
            ],
        );
        assert_eq!(set1, set2);
        let list1 = d(Kind::List, vec![Chunk::Items(vec![b("a"), b("b")])]);
        let list2 = d(Kind::List, vec![Chunk::Items(vec![b("b"), b("a")])]);
        assert_ne!(list1, list2);
        let z1 = d(Kind::ZSet, vec![Chunk::Pairs(vec![(b("m"), b("1.5"))])]);
        let z2 = d(Kind::ZSet, vec![Chunk::Pairs(vec![(b("m"), b("1.50"))])]);
        assert_eq!(z1, z2);
        assert_ne!(
            set1,
            d(Kind::List, vec![Chunk::Items(vec![b("a"), b("b")])])
        );
    }
}
