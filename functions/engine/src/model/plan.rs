//! Splitting a keyspace into shards by SCAN cursor ranges (design §2).
//!
//! SCAN walks buckets in reverse-binary order, so `reverse_bits(cursor)` only grows during a scan
//! and a contiguous range of it is a fixed set of buckets whatever the table size, even across a
//! rehash. A shard is such a range; its progress is a cursor, which is also its checkpoint.

use serde::{Deserialize, Serialize};

use crate::endpoint::NodeAddr;
use crate::net::slot::SLOTS;

/// Which cursor layout the server's SCAN uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// One dict per db (Redis ≤ 7.2, any standalone server, Valkey 7): ranges of reversed cursor bits.
    Classic,
    /// One dict per slot (cluster mode on Redis ≥ 7.4 and Valkey ≥ 8): the low 14 bits are the slot.
    PerSlot,
}

/// The part of the keyspace a shard covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Range {
    /// Shard `index` of `2^bits` equal ranges of `reverse_bits(cursor)`.
    Classic { bits: u8, index: u64 },
    /// Slots `[start, end)` of a per-slot keyspace.
    Slots { start: u16, end: u16 },
}

/// The bits of a per-slot cursor that hold the slot.
const SLOT_MASK: u64 = (SLOTS as u64) - 1;

impl Range {
    /// The cursor a scan of this range starts from.
    pub fn start_cursor(&self) -> u64 {
        match *self {
            Range::Classic { bits: 0, .. } => 0,
            Range::Classic { bits, index } => (index << (64 - bits)).reverse_bits(),
            Range::Slots { start, .. } => start as u64,
        }
    }

    /// Whether a cursor returned by SCAN means this range is finished.
    pub fn is_done(&self, cursor: u64) -> bool {
        if cursor == 0 {
            return true;
        }
        match *self {
            Range::Classic { bits: 0, .. } => false,
            Range::Classic { bits, index } => {
                let end = (index as u128 + 1) << (64 - bits);
                cursor.reverse_bits() as u128 >= end
            }
            Range::Slots { end, .. } => (cursor & SLOT_MASK) >= end as u64,
        }
    }

    /// How far through its range a cursor is, from 0.0 to 1.0 (for progress display only).
    pub fn fraction_done(&self, cursor: u64) -> f64 {
        if cursor == 0 {
            return 0.0;
        }
        match *self {
            Range::Classic { bits, index } => {
                let width = 2f64.powi(64 - bits as i32);
                let start = index as f64 * width;
                ((cursor.reverse_bits() as f64 - start) / width).clamp(0.0, 1.0)
            }
            Range::Slots { start, end } => {
                let slot = (cursor & SLOT_MASK) as f64;
                ((slot - start as f64) / (end as f64 - start as f64).max(1.0)).clamp(0.0, 1.0)
            }
        }
    }
}

/// One unit of copy work: a cursor range of one database on one node, and how far it has got.
/// This is what the state machine maps over and what a Lambda returns as its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// A stable name, `node/db/range`, for progress and reports.
    pub id: String,
    /// The source node to scan.
    pub node: NodeAddr,
    /// Source database.
    pub db: u32,
    /// The range of the keyspace.
    pub range: Range,
    /// Where the scan resumes. A string because cursors exceed JSON's safe integers.
    #[serde(with = "cursor_string")]
    pub cursor: u64,
    /// Set once SCAN has reached the end of the range.
    #[serde(default)]
    pub done: bool,
    /// Keys expected in the range (from INFO at plan time), to size SCAN COUNT so a call does
    /// not run on into the next shard's buckets.
    #[serde(default)]
    pub keys_hint: u64,
}

impl Shard {
    /// A fresh shard at the start of its range.
    pub fn new(node: &NodeAddr, db: u32, range: Range) -> Shard {
        let id = match range {
            Range::Classic { bits, index } => format!("{node}/db{db}/{index}of{}", 1u64 << bits),
            Range::Slots { start, end } => format!("{node}/db{db}/slots{start}-{end}"),
        };
        Shard {
            id,
            node: node.clone(),
            db,
            range,
            cursor: range.start_cursor(),
            done: false,
            keys_hint: 0,
        }
    }

    /// Records the cursor SCAN returned; marks the shard done at the end of its range.
    pub fn advance(&mut self, next_cursor: u64) {
        self.done = self.range.is_done(next_cursor);
        self.cursor = if self.done { 0 } else { next_cursor };
    }
}

/// Fewer keys than this per shard are not worth a shard of their own.
pub const MIN_KEYS_PER_SHARD: u64 = 1024;

/// How many shards of the classic scheme a db of `keys` keys should be split into, given the
/// shard count wanted: a power of two no larger than the wanted count, nor the table size
/// (the next power of two ≥ the key count: finer shards re-scan the same buckets), nor what
/// gives each shard at least [`MIN_KEYS_PER_SHARD`] keys.
pub fn classic_bits(keys: u64, wanted_shards: u32) -> u8 {
    let wanted_bits = 31 - wanted_shards.max(1).leading_zeros();
    let table_bits = keys.max(1).next_power_of_two().trailing_zeros();
    let worth_bits = 63 - (keys / MIN_KEYS_PER_SHARD).max(1).leading_zeros();
    wanted_bits.min(table_bits).min(worth_bits).min(32) as u8
}

/// Shards for one db of one node with the classic scheme.
pub fn classic_shards(node: &NodeAddr, db: u32, keys: u64, wanted_shards: u32) -> Vec<Shard> {
    let bits = classic_bits(keys, wanted_shards);
    (0..1u64 << bits)
        .map(|index| Shard {
            keys_hint: keys.div_ceil(1 << bits),
            ..Shard::new(node, db, Range::Classic { bits, index })
        })
        .collect()
}

/// Shards for a per-slot keyspace: the slot ranges a node owns, each cut into about
/// `wanted_shards` pieces overall.
pub fn slot_shards(
    node: &NodeAddr,
    db: u32,
    owned: &[(u16, u16)],
    wanted_shards: u32,
) -> Vec<Shard> {
    let total: u32 = owned.iter().map(|(a, b)| (*b - *a) as u32).sum();
    let per = total.div_ceil(wanted_shards.max(1)).max(1);
    let mut shards = Vec::new();
    for &(start, end) in owned {
        let mut a = start as u32;
        while a < end as u32 {
            let b = (a + per).min(end as u32);
            let range = Range::Slots {
                start: a as u16,
                end: b as u16,
            };
            shards.push(Shard::new(node, db, range));
            a = b;
        }
    }
    shards
}

mod cursor_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(u64),
        }
        match Either::deserialize(d)? {
            Either::Text(t) => t.parse().map_err(serde::de::Error::custom),
            Either::Number(n) => Ok(n),
        }
    }
}

/// Redis's SCAN cursor step for a table of `2^table_bits` buckets: what `dictScan` returns after
/// visiting bucket `v`. Used by tests to check the arithmetic against the server's own rule.
pub fn next_scan_cursor(v: u64, table_bits: u32) -> u64 {
    let mask = if table_bits >= 64 {
        u64::MAX
    } else {
        (1u64 << table_bits) - 1
    };
    let v = v | !mask;
    (v.reverse_bits().wrapping_add(1)).reverse_bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Simulates SCAN over a table of `2^table_bits` buckets from `start`, stopping as the
    /// range says; returns the buckets visited.
    fn scan_buckets(range: Range, table_bits: u32) -> Vec<u64> {
        let mask = (1u64 << table_bits) - 1;
        let mut cursor = range.start_cursor();
        let mut visited = Vec::new();
        loop {
            visited.push(cursor & mask);
            cursor = next_scan_cursor(cursor, table_bits);
            if range.is_done(cursor) {
                return visited;
            }
        }
    }

    #[test]
    fn shard_zero_starts_at_zero_and_single_shard_covers_all() {
        assert_eq!(Range::Classic { bits: 3, index: 0 }.start_cursor(), 0);
        let all = scan_buckets(Range::Classic { bits: 0, index: 0 }, 4);
        assert_eq!(all.len(), 16);
    }

    #[test]
    fn classic_bits_respects_table_size() {
        assert_eq!(classic_bits(0, 16), 0);
        assert_eq!(classic_bits(3, 16), 0);
        assert_eq!(classic_bits(5000, 16), 2);
        assert_eq!(classic_bits(1_000_000, 16), 4);
        assert_eq!(classic_bits(1_000_000, 12), 3);
    }

    proptest! {
        /// Every bucket is visited by some shard, for tables smaller and larger than the shard count.
        #[test]
        fn shards_cover_every_bucket(bits in 0u8..6, table_bits in 0u32..10) {
            let mut seen = std::collections::HashSet::new();
            for index in 0..1u64 << bits {
                for b in scan_buckets(Range::Classic { bits, index }, table_bits) {
                    seen.insert(b);
                }
            }
            prop_assert_eq!(seen.len(), 1usize << table_bits);
        }

        /// When the table has at least as many buckets as shards, shards do not overlap.
        #[test]
        fn shards_are_disjoint_when_table_is_large_enough(bits in 0u8..6, extra in 0u32..5) {
            let table_bits = bits as u32 + extra;
            let mut total = 0;
            for index in 0..1u64 << bits {
                total += scan_buckets(Range::Classic { bits, index }, table_bits).len();
            }
            prop_assert_eq!(total, 1usize << table_bits);
        }

        /// Resuming from any checkpoint visits exactly what was left.
        #[test]
        fn resuming_from_a_checkpoint_continues_the_scan(bits in 1u8..5, index_seed in 0u64..1000, table_bits in 5u32..9, steps in 0usize..20) {
            let range = Range::Classic { bits, index: index_seed % (1 << bits) };
            let full = scan_buckets(range, table_bits);
            let mask = (1u64 << table_bits) - 1;
            let mut cursor = range.start_cursor();
            for _ in 0..steps.min(full.len() - 1) {
                cursor = next_scan_cursor(cursor, table_bits);
            }
            let mut rest = Vec::new();
            loop {
                rest.push(cursor & mask);
                cursor = next_scan_cursor(cursor, table_bits);
                if range.is_done(cursor) { break; }
            }
            prop_assert_eq!(&full[full.len() - rest.len()..], &rest[..]);
        }

        /// Per-slot cursors: a shard is done once the slot bits reach its end.
        #[test]
        fn slot_ranges_end_at_their_slot(start in 0u16..16000, len in 1u16..300, bucket in 1u64..1000) {
            let end = (start + len).min(SLOTS);
            let range = Range::Slots { start, end };
            prop_assert_eq!(range.start_cursor(), start as u64);
            prop_assert!(!range.is_done((bucket << 14) | start as u64));
            prop_assert!(range.is_done((bucket << 14) | end as u64) || end == SLOTS);
        }
    }

    #[test]
    fn slot_shards_cover_owned_ranges() {
        let shards = slot_shards(&NodeAddr::new("n", 1), 0, &[(0, 5461), (10923, 16384)], 4);
        let covered: u32 = shards
            .iter()
            .map(|s| match s.range {
                Range::Slots { start, end } => (end - start) as u32,
                _ => 0,
            })
            .sum();
        assert_eq!(covered, 5461 + 5461);
        assert!(shards.len() >= 4);
    }

    #[test]
    fn shard_json_keeps_cursors_exact() {
        let mut s = Shard::new(
            &NodeAddr::new("h", 1),
            2,
            Range::Classic { bits: 4, index: 5 },
        );
        let inside = ((5u64 << 60) | 1).reverse_bits();
        s.advance(inside);
        assert!(!s.done);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(&format!("\"{inside}\"")), "{json}");
        let back: Shard = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
