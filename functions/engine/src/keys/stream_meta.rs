//! A stream's state beyond its entries (last id, entries added, max deleted id, consumer
//! groups with their consumers and pending entries): read with `XINFO STREAM … FULL`, written
//! back with `XSETID` and `XGROUP`/`XCLAIM`, and folded into a stream's digest.

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

use crate::error::Result;
use crate::net::conn::Conn;
use crate::net::resp::Reply;

use crate::keys::value::{bulk, CHUNK_ITEMS};

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
    pub(crate) fn digest_into(&self, h: &mut Xxh3, counters: bool) {
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
