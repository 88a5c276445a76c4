//! Keys as native values: reading a key's type, TTL and contents with ordinary commands, and
//! writing them back with ordinary commands. This is the `struct` copy method of design §3 (used
//! across RDB versions and for keys too big to DUMP in one piece). Streams' metadata is
//! `keys::stream_meta`'s, the type-aware digest verify falls back to `keys::digest`'s (both
//! build on this module).
//!
//! Big keys are read and written in chunks, so memory stays bounded whatever the key's size.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::net::conn::Conn;
use crate::net::resp::{self, Reply};

/// Elements per chunk for collections, and bytes per chunk for strings.
pub const CHUNK_ITEMS: usize = 1000;
const CHUNK_BYTES: i64 = 4 * 1024 * 1024;

/// The types ferry copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    String,
    Hash,
    List,
    Set,
    ZSet,
    Stream,
}

impl Kind {
    /// Parses a `TYPE` reply: `Ok(None)` for `none`, an error for module types.
    pub fn from_type_reply(reply: &Reply) -> Result<Option<Kind>> {
        let name = reply.as_bytes().map(|b| &b[..]).unwrap_or(b"none");
        Ok(Some(match name {
            b"string" => Kind::String,
            b"hash" => Kind::Hash,
            b"list" => Kind::List,
            b"set" => Kind::Set,
            b"zset" => Kind::ZSet,
            b"stream" => Kind::Stream,
            b"none" => return Ok(None),
            other => {
                return Err(Error::Unsupported(format!(
                    "type '{}' (a module type?) cannot be copied with struct; use --type dump with the module loaded on the target",
                    String::from_utf8_lossy(other)
                )))
            }
        }))
    }

    /// The name `TYPE` uses.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::Stream => "stream",
        }
    }
}

/// A key's expiry as read from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No expiry.
    Persist,
    /// Expires at this Unix time in ms (PEXPIRETIME).
    At(i64),
    /// Expires in this many ms (PTTL, on servers before 7.0).
    In(i64),
    /// The key does not exist.
    Gone,
}

impl Ttl {
    /// Interprets a PEXPIRETIME (`absolute`) or PTTL reply.
    pub fn from_reply(reply: &Reply, absolute: bool) -> Ttl {
        match reply.as_int() {
            Some(-2) | None => Ttl::Gone,
            Some(-1) => Ttl::Persist,
            Some(ms) if absolute => Ttl::At(ms),
            Some(ms) => Ttl::In(ms),
        }
    }

    /// Queues the command that reads a key's TTL.
    pub fn queue_read(conn: &mut Conn, key: &[u8], absolute: bool) {
        let cmd: &[u8] = if absolute { b"PEXPIRETIME" } else { b"PTTL" };
        conn.queue(&[cmd, key]);
    }

    /// Queues the command that gives a key this TTL after a struct write (nothing for Persist).
    pub fn queue_apply(self, conn: &mut Conn, key: &[u8]) {
        let mut n = itoa::Buffer::new();
        match self {
            Ttl::At(ms) => conn.queue(&[b"PEXPIREAT", key, n.format(ms).as_bytes()]),
            Ttl::In(ms) => conn.queue(&[b"PEXPIRE", key, n.format(ms.max(1)).as_bytes()]),
            Ttl::Persist | Ttl::Gone => {}
        }
    }
}

/// A piece of a key's contents: the whole of a small key, or one chunk of a big one.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// Part (or all) of a string.
    Bytes(Bytes),
    /// List elements in order, or set members.
    Items(Vec<Bytes>),
    /// Hash field/value pairs, or sorted-set member/score pairs.
    Pairs(Vec<(Bytes, Bytes)>),
    /// Stream entries: id and flat field/value list.
    Entries(Vec<(Bytes, Vec<Bytes>)>),
}

/// Queues the command that reads a small key whole; its reply goes to [`chunk_from_reply`].
pub fn queue_read_whole(conn: &mut Conn, kind: Kind, key: &[u8]) {
    match kind {
        Kind::String => conn.queue(&[&b"GET"[..], key]),
        Kind::Hash => conn.queue(&[&b"HGETALL"[..], key]),
        Kind::List => conn.queue(&[&b"LRANGE"[..], key, b"0", b"-1"]),
        Kind::Set => conn.queue(&[&b"SMEMBERS"[..], key]),
        Kind::ZSet => conn.queue(&[&b"ZRANGE"[..], key, b"0", b"-1", b"WITHSCORES"]),
        Kind::Stream => conn.queue(&[&b"XRANGE"[..], key, b"-", b"+"]),
    }
}

/// Turns a read reply into a chunk; `None` when the key vanished or changed type meanwhile.
pub fn chunk_from_reply(kind: Kind, reply: Reply) -> Option<Chunk> {
    match (kind, reply) {
        (Kind::String, Reply::Bulk(b)) => Some(Chunk::Bytes(b)),
        (Kind::List | Kind::Set, Reply::Array(items)) if !items.is_empty() => {
            Some(Chunk::Items(items.into_iter().filter_map(bulk).collect()))
        }
        (Kind::Hash | Kind::ZSet, Reply::Array(items)) if !items.is_empty() => {
            Some(Chunk::Pairs(pairs(items)))
        }
        (Kind::Stream, Reply::Array(items)) => Some(Chunk::Entries(entries(items))),
        _ => None,
    }
}

pub(crate) fn bulk(r: Reply) -> Option<Bytes> {
    match r {
        Reply::Bulk(b) | Reply::Status(b) => Some(b),
        Reply::Int(i) => Some(Bytes::from(i.to_string())),
        _ => None,
    }
}

pub(crate) fn pairs(items: Vec<Reply>) -> Vec<(Bytes, Bytes)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter().filter_map(bulk);
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    out
}

pub(crate) fn entries(items: Vec<Reply>) -> Vec<(Bytes, Vec<Bytes>)> {
    items
        .into_iter()
        .filter_map(|e| {
            let mut parts = e.into_array()?.into_iter();
            let id = bulk(parts.next()?)?;
            let fields = parts
                .next()?
                .into_array()?
                .into_iter()
                .filter_map(bulk)
                .collect();
            Some((id, fields))
        })
        .collect()
}

/// Queues the write of one chunk to `key` (which must already be cleared for the first chunk).
/// A zset chunk holds member/score pairs as read; ZADD wants score first.
pub fn queue_write_chunk(conn: &mut Conn, kind: Kind, key: &[u8], chunk: &Chunk) {
    let out = conn.wbuf_for(key);
    match chunk {
        Chunk::Bytes(b) => {
            resp::encode_array_header(out, 3);
            resp::encode_bulk(out, b"APPEND");
            resp::encode_bulk(out, key);
            resp::encode_bulk(out, b);
        }
        Chunk::Items(items) if !items.is_empty() => {
            let cmd: &[u8] = if kind == Kind::List {
                b"RPUSH"
            } else {
                b"SADD"
            };
            resp::encode_array_header(out, 2 + items.len());
            resp::encode_bulk(out, cmd);
            resp::encode_bulk(out, key);
            for item in items {
                resp::encode_bulk(out, item);
            }
        }
        Chunk::Pairs(pairs) if !pairs.is_empty() => {
            let cmd: &[u8] = if kind == Kind::ZSet { b"ZADD" } else { b"HSET" };
            resp::encode_array_header(out, 2 + 2 * pairs.len());
            resp::encode_bulk(out, cmd);
            resp::encode_bulk(out, key);
            for (a, b) in pairs {
                if kind == Kind::ZSet {
                    resp::encode_bulk(out, b);
                    resp::encode_bulk(out, a);
                } else {
                    resp::encode_bulk(out, a);
                    resp::encode_bulk(out, b);
                }
            }
        }
        Chunk::Entries(entries) => {
            for (id, fields) in entries {
                resp::encode_array_header(out, 3 + fields.len());
                resp::encode_bulk(out, b"XADD");
                resp::encode_bulk(out, key);
                resp::encode_bulk(out, id);
                for f in fields {
                    resp::encode_bulk(out, f);
                }
            }
        }
        Chunk::Items(_) | Chunk::Pairs(_) => {}
    }
}

/// How many replies [`queue_write_chunk`] queued for a chunk.
pub fn write_chunk_replies(chunk: &Chunk) -> usize {
    match chunk {
        Chunk::Entries(e) => e.len(),
        Chunk::Items(i) if i.is_empty() => 0,
        Chunk::Pairs(p) if p.is_empty() => 0,
        _ => 1,
    }
}

/// Reads one key in bounded chunks with SCAN-family and range commands.
pub struct ChunkReader {
    kind: Kind,
    key: Bytes,
    /// Offset (strings, lists), cursor (hash, set, zset) or exclusive start id (streams).
    position: Position,
    done: bool,
}

enum Position {
    Offset(i64),
    Cursor(Bytes),
    After(Option<Bytes>),
}

impl ChunkReader {
    /// Starts reading `key` of `kind` from the beginning.
    pub fn new(kind: Kind, key: Bytes) -> ChunkReader {
        let position = match kind {
            Kind::String | Kind::List => Position::Offset(0),
            Kind::Hash | Kind::Set | Kind::ZSet => Position::Cursor(Bytes::from_static(b"0")),
            Kind::Stream => Position::After(None),
        };
        ChunkReader {
            kind,
            key,
            position,
            done: false,
        }
    }

    /// The next chunk, or `None` at the end. Collections read with SCAN may repeat elements
    /// (harmless for writes; digests de-duplicate).
    pub async fn next(&mut self, conn: &mut Conn) -> Result<Option<Chunk>> {
        if self.done {
            return Ok(None);
        }
        let count = itoa::Buffer::new().format(CHUNK_ITEMS).to_string();
        let key = self.key.clone();
        let mut n = itoa::Buffer::new();
        let mut m = itoa::Buffer::new();
        let reply = match (&self.position, self.kind) {
            (Position::Offset(at), Kind::String) => {
                let end = at + CHUNK_BYTES - 1;
                conn.call(&[
                    b"GETRANGE",
                    &key[..],
                    n.format(*at).as_bytes(),
                    m.format(end).as_bytes(),
                ])
                .await?
            }
            (Position::Offset(at), _) => {
                let end = at + CHUNK_ITEMS as i64 - 1;
                conn.call(&[
                    b"LRANGE",
                    &key[..],
                    n.format(*at).as_bytes(),
                    m.format(end).as_bytes(),
                ])
                .await?
            }
            (Position::Cursor(cursor), kind) => {
                let cmd: &[u8] = match kind {
                    Kind::Hash => b"HSCAN",
                    Kind::Set => b"SSCAN",
                    _ => b"ZSCAN",
                };
                conn.call(&[cmd, &key[..], &cursor[..], b"COUNT", count.as_bytes()])
                    .await?
            }
            (Position::After(after), _) => {
                let start = match after {
                    None => Bytes::from_static(b"-"),
                    Some(id) => Bytes::from([&b"("[..], &id[..]].concat()),
                };
                conn.call(&[
                    b"XRANGE",
                    &key[..],
                    &start[..],
                    b"+",
                    b"COUNT",
                    count.as_bytes(),
                ])
                .await?
            }
        };
        let chunk = match (&mut self.position, reply) {
            (Position::Offset(at), Reply::Bulk(b)) => {
                self.done = (b.len() as i64) < CHUNK_BYTES;
                *at += b.len() as i64;
                Chunk::Bytes(b)
            }
            (Position::Offset(at), Reply::Array(items)) => {
                self.done = items.len() < CHUNK_ITEMS;
                *at += items.len() as i64;
                Chunk::Items(items.into_iter().filter_map(bulk).collect())
            }
            (Position::Cursor(cursor), Reply::Array(mut parts)) if parts.len() == 2 => {
                let items = parts.pop().and_then(Reply::into_array).unwrap_or_default();
                let next = parts
                    .pop()
                    .and_then(bulk)
                    .unwrap_or_else(|| Bytes::from_static(b"0"));
                self.done = &next[..] == b"0";
                *cursor = next;
                if self.kind == Kind::Set {
                    Chunk::Items(items.into_iter().filter_map(bulk).collect())
                } else {
                    Chunk::Pairs(pairs(items))
                }
            }
            (Position::After(after), Reply::Array(items)) => {
                self.done = items.len() < CHUNK_ITEMS;
                let e = entries(items);
                if let Some((id, _)) = e.last() {
                    *after = Some(id.clone());
                }
                Chunk::Entries(e)
            }
            (_, Reply::Nil) => {
                self.done = true;
                return Ok(None);
            }
            (_, other) => {
                return Err(Error::Protocol {
                    addr: conn.addr(),
                    message: format!(
                        "unexpected reply while reading a {}: {other:?}",
                        self.kind.name()
                    ),
                })
            }
        };
        Ok(Some(chunk))
    }
}
