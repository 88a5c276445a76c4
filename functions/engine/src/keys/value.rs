//! Keys as native values: reading a key's type, TTL and contents with ordinary commands, and
//! writing them back with ordinary commands. This is the `struct` copy method of design §3 (used
//! across RDB versions and for keys too big to DUMP in one piece) and the type-aware digest that
//! verify falls back to when DUMP payloads differ.
//!
//! Big keys are read and written in chunks, so memory stays bounded whatever the key's size.

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

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

fn bulk(r: Reply) -> Option<Bytes> {
    match r {
        Reply::Bulk(b) | Reply::Status(b) => Some(b),
        Reply::Int(i) => Some(Bytes::from(i.to_string())),
        _ => None,
    }
}

fn pairs(items: Vec<Reply>) -> Vec<(Bytes, Bytes)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter().filter_map(bulk);
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    out
}

fn entries(items: Vec<Reply>) -> Vec<(Bytes, Vec<Bytes>)> {
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
                    addr: conn.addr().to_string(),
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

/// A stream's metadata beyond its entries: ids, counters and consumer groups with their
/// pending entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamMeta {
    /// `last-generated-id`.
    pub last_id: Bytes,
    /// `entries-added` (7.0+).
    pub entries_added: Option<i64>,
    /// `max-deleted-entry-id` (7.0+).
    pub max_deleted_id: Option<Bytes>,
    /// Consumer groups.
    pub groups: Vec<Group>,
}

/// One consumer group of a stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    /// Group name.
    pub name: Bytes,
    /// `last-delivered-id`.
    pub last_delivered: Bytes,
    /// `entries-read` (7.0+; `None` where unknown).
    pub entries_read: Option<i64>,
    /// Consumer names (all of them, including those with nothing pending).
    pub consumers: Vec<Bytes>,
    /// Pending entries: id, consumer, delivery count.
    pub pending: Vec<(Bytes, Bytes, i64)>,
}

/// Reads a reply shaped as a flat field/value map (XINFO) into (name, value) pairs.
fn info_map(reply: Reply) -> Vec<(String, Reply)> {
    let mut out = Vec::new();
    let mut it = reply.into_array().unwrap_or_default().into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k.as_text().unwrap_or_default(), v));
    }
    out
}

fn field(map: &[(String, Reply)], name: &str) -> Option<Reply> {
    map.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

impl StreamMeta {
    /// Reads a stream's metadata and every group's pending list (in chunks).
    pub async fn read(conn: &mut Conn, key: &[u8]) -> Result<Option<StreamMeta>> {
        conn.queue(&[&b"XINFO"[..], b"STREAM", key]);
        conn.send().await?;
        let info = match conn.recv().await? {
            Reply::Error(_) => return Ok(None),
            r => info_map(r),
        };
        let mut meta = StreamMeta {
            last_id: field(&info, "last-generated-id")
                .and_then(bulk)
                .unwrap_or_default(),
            entries_added: field(&info, "entries-added").and_then(|r| r.as_int()),
            max_deleted_id: field(&info, "max-deleted-entry-id").and_then(bulk),
            groups: Vec::new(),
        };
        let groups = conn.call(&[&b"XINFO"[..], b"GROUPS", key]).await?;
        for g in groups.into_array().unwrap_or_default() {
            let g = info_map(g);
            let name = field(&g, "name").and_then(bulk).unwrap_or_default();
            let mut group = Group {
                last_delivered: field(&g, "last-delivered-id")
                    .and_then(bulk)
                    .unwrap_or_default(),
                entries_read: field(&g, "entries-read").and_then(|r| r.as_int()),
                ..Group::default()
            };
            let consumers = conn
                .call(&[&b"XINFO"[..], b"CONSUMERS", key, &name[..]])
                .await?;
            for c in consumers.into_array().unwrap_or_default() {
                if let Some(n) = field(&info_map(c), "name").and_then(bulk) {
                    group.consumers.push(n);
                }
            }
            let mut start = Bytes::from_static(b"-");
            loop {
                let count = CHUNK_ITEMS.to_string();
                let page = conn
                    .call(&[
                        &b"XPENDING"[..],
                        key,
                        &name[..],
                        &start[..],
                        b"+",
                        count.as_bytes(),
                    ])
                    .await?
                    .into_array()
                    .unwrap_or_default();
                let n = page.len();
                for p in page {
                    let mut f = p.into_array().unwrap_or_default().into_iter();
                    if let (Some(id), Some(consumer), Some(_idle), Some(count)) = (
                        f.next().and_then(bulk),
                        f.next().and_then(bulk),
                        f.next(),
                        f.next(),
                    ) {
                        start = Bytes::from([&b"("[..], &id[..]].concat());
                        group
                            .pending
                            .push((id, consumer, count.as_int().unwrap_or(1)));
                    }
                }
                if n < CHUNK_ITEMS {
                    break;
                }
            }
            group.name = name;
            meta.groups.push(group);
        }
        Ok(Some(meta))
    }

    /// Queues the commands that give an already-written stream its consumer groups, their
    /// consumers and pending entries; returns how many replies to read. `counters` says
    /// whether the target takes the 7.0 arguments. [`StreamMeta::queue_ids`] comes after.
    pub fn queue_groups(
        &self,
        conn: &mut Conn,
        key: &[u8],
        counters: bool,
        has_entries: bool,
    ) -> usize {
        let mut replies = 0;
        if !has_entries {
            // An empty stream: create it by adding an entry and trimming it away at once.
            conn.queue(&[
                &b"XADD"[..],
                key,
                b"MAXLEN",
                b"0",
                &self.last_id[..],
                b"f",
                b"v",
            ]);
            replies += 1;
        }
        for g in &self.groups {
            let mut create: Vec<&[u8]> =
                vec![b"XGROUP", b"CREATE", key, &g.name, &g.last_delivered];
            let read = g.entries_read.map(|n| n.to_string());
            if let (true, Some(read)) = (counters, &read) {
                create.push(b"ENTRIESREAD");
                create.push(read.as_bytes());
            }
            conn.queue(&create);
            replies += 1;
            for c in &g.consumers {
                conn.queue(&[&b"XGROUP"[..], b"CREATECONSUMER", key, &g.name, c]);
                replies += 1;
            }
            for (id, consumer, count) in &g.pending {
                let count = count.to_string();
                conn.queue(&[
                    &b"XCLAIM"[..],
                    key,
                    &g.name,
                    consumer,
                    b"0",
                    id,
                    b"RETRYCOUNT",
                    count.as_bytes(),
                    b"FORCE",
                    b"JUSTID",
                ]);
                replies += 1;
            }
        }
        replies
    }

    /// Queues the XSETID that gives the stream its last id and (`counters`) its 7.0 counters,
    /// once nothing else will add or delete an entry; returns how many replies to read.
    pub fn queue_ids(&self, conn: &mut Conn, key: &[u8], counters: bool) -> usize {
        let mut args: Vec<Vec<u8>> = vec![b"XSETID".to_vec(), key.to_vec(), self.last_id.to_vec()];
        if counters {
            if let Some(added) = self.entries_added {
                args.push(b"ENTRIESADDED".to_vec());
                args.push(added.to_string().into_bytes());
            }
            if let Some(max_deleted) = &self.max_deleted_id {
                args.push(b"MAXDELETEDID".to_vec());
                args.push(max_deleted.to_vec());
            }
        }
        conn.queue(&args);
        1
    }

    /// Feeds what verify compares into a digest: ids, groups, consumers with entries
    /// pending and delivery counts (idle times differ by nature), and, when both servers keep
    /// them (`counters`, 7.0+), the entries-added and max-deleted-id counters. Groups'
    /// entries-read are compared apart ([`Digested`]): a replica may not know them.
    fn digest_into(&self, h: &mut Xxh3, counters: bool) {
        let mut part = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        part(&self.last_id);
        if counters {
            part(format!("{:?}", self.entries_added).as_bytes());
            part(self.max_deleted_id.as_deref().unwrap_or(b"-"));
        }
        for g in &self.groups {
            part(&g.name);
            part(&g.last_delivered);
            for (id, consumer, deliveries) in &g.pending {
                part(id);
                part(consumer);
                part(&deliveries.to_le_bytes());
            }
        }
    }
}

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
