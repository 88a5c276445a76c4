//! Pending entries whose messages are gone (XDEL, XTRIM, MAXLEN) in a per-type stream copy.
//! `XCLAIM … FORCE` ignores an id that is not in the stream, so such a pending entry cannot be
//! recreated after the fact. Instead the copy writes a placeholder entry at each pending id,
//! in id order among the real entries (XADD only appends), claims it like any other pending
//! entry, then deletes the placeholder: the pending list keeps the id, as on the source.
//! The stream's counters are set last (XSETID), so the placeholders leave no trace there.

use bytes::Bytes;

use crate::keys::stream_meta::StreamMeta;
use crate::keys::value::Chunk;
use crate::net::conn::Conn;

/// The placeholder's only field (a message must have one); deleted before the key is renamed
/// into place, so no reader sees it.
const FIELD: &[u8] = b"ferry-placeholder";

/// A stream id as numbers, for ordering (`ms-seq`).
fn parse_id(id: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(id).ok()?;
    let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The pending ids of a stream not yet matched to an entry, and the placeholders written.
#[derive(Debug, Default)]
pub struct Placeholders {
    /// Pending ids in ascending order, not yet passed by the entries written.
    waiting: Vec<((u64, u64), Bytes)>,
    /// Ids written as placeholders (to delete once claimed).
    written: Vec<Bytes>,
}

impl Placeholders {
    /// Every id pending in any group of `meta`, once.
    pub fn for_pending(meta: &StreamMeta) -> Placeholders {
        let mut waiting: Vec<((u64, u64), Bytes)> = meta
            .groups
            .iter()
            .flat_map(|g| g.pending.iter())
            .filter_map(|(id, _, _)| Some((parse_id(id)?, id.clone())))
            .collect();
        waiting.sort();
        waiting.dedup_by(|a, b| a.0 == b.0);
        waiting.reverse(); // popped from the end, lowest first
        Placeholders {
            waiting,
            written: Vec::new(),
        }
    }

    /// Puts a placeholder into `chunk` (entries in id order) at every pending id below or
    /// between its entries that no entry holds; an id an entry holds needs none.
    pub fn merge_into(&mut self, chunk: &mut Chunk) {
        let Chunk::Entries(entries) = chunk else {
            return;
        };
        if self.waiting.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(entries.len());
        for (id, fields) in std::mem::take(entries) {
            let at = parse_id(&id);
            while let Some((pending, _)) = self.waiting.last() {
                match at {
                    Some(at) if *pending < at => self.place(&mut merged),
                    Some(at) if *pending == at => {
                        self.waiting.pop();
                    }
                    _ => break,
                }
            }
            merged.push((id, fields));
        }
        *entries = merged;
    }

    /// Placeholders for the pending ids above every entry written (after the last chunk);
    /// `None` when there are none left.
    pub fn rest(&mut self) -> Option<Chunk> {
        let mut out = Vec::new();
        while !self.waiting.is_empty() {
            self.place(&mut out);
        }
        (!out.is_empty()).then_some(Chunk::Entries(out))
    }

    fn place(&mut self, out: &mut Vec<(Bytes, Vec<Bytes>)>) {
        if let Some((_, id)) = self.waiting.pop() {
            self.written.push(id.clone());
            out.push((id, vec![Bytes::from_static(FIELD), Bytes::new()]));
        }
    }

    /// Queues the deletion of the placeholders (once their pending entries are claimed);
    /// returns how many replies to read.
    pub fn queue_delete(&self, conn: &mut Conn, key: &[u8]) -> usize {
        for ids in self.written.chunks(1000) {
            let mut args: Vec<&[u8]> = vec![b"XDEL", key];
            args.extend(ids.iter().map(|id| &id[..]));
            conn.queue(&args);
        }
        self.written.len().div_ceil(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::stream_meta::Group;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn ids(chunk: &Chunk) -> Vec<String> {
        match chunk {
            Chunk::Entries(e) => e
                .iter()
                .map(|(id, f)| {
                    let mark = if f[0] == FIELD { "*" } else { "" };
                    format!("{}{mark}", String::from_utf8_lossy(id))
                })
                .collect(),
            _ => vec![],
        }
    }

    #[test]
    fn placeholders_go_in_id_order_where_no_entry_holds_the_id() {
        let group = |pending: &[&str]| Group {
            pending: pending.iter().map(|id| (b(id), b("c"), 1)).collect(),
            ..Group::default()
        };
        let meta = StreamMeta {
            groups: vec![
                group(&["1-1", "10-1", "3-0"]),
                group(&["3-0", "12-0", "2-5"]),
            ],
            ..StreamMeta::default()
        };
        let mut p = Placeholders::for_pending(&meta);
        let entry = |id: &str| (b(id), vec![b("f"), b("v")]);
        let mut first = Chunk::Entries(vec![entry("2-5"), entry("4-0")]);
        p.merge_into(&mut first);
        assert_eq!(ids(&first), ["1-1*", "2-5", "3-0*", "4-0"]);
        let mut second = Chunk::Entries(vec![entry("9-9"), entry("11-0")]);
        p.merge_into(&mut second);
        assert_eq!(ids(&second), ["9-9", "10-1*", "11-0"]);
        assert_eq!(ids(&p.rest().unwrap()), ["12-0*"]);
        assert_eq!(p.rest(), None);
        assert_eq!(p.written, [b("1-1"), b("3-0"), b("10-1"), b("12-0")]);
    }
}
