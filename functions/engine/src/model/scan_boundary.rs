//! Keys two neighbouring shards would both hand out. A SCAN call collects about COUNT keys from
//! consecutive buckets, so the call that ends a shard (design §2, classic ranges) usually runs on
//! into the first buckets of the next shard: those keys come back again when the next shard
//! starts. Copying a key twice is harmless, but verify must count each key once.
//!
//! The two shards meet here, whichever gets there first. The later shard records the keys of
//! its first call (and of later calls while it has not passed the earlier shard's last cursor);
//! the earlier shard's crossing keys are filtered against them, or, when the later shard has not
//! started yet, parked until it has. Keys still parked when the scanners end (the later shard
//! is in another invocation, or was stopped) are handed out then, so nothing is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use crate::endpoint::NodeAddr;
use crate::model::plan::{Range, Shard};

/// A boundary between two classic shards: node, db, and the later shard's range.
type BoundaryId = (NodeAddr, u32, u8, u64);

enum Meeting {
    /// The later shard has scanned up to `reached` (a reversed cursor) and returned these keys.
    Seen { hashes: HashSet<u64> },
    /// The earlier shard's crossing keys, waiting for the later shard to pass `reached`.
    Parked { keys: Vec<Bytes>, reached: u64 },
    /// Settled: nothing more to do at this boundary.
    Settled,
}

/// How far a returned cursor got, comparable across calls (cursor 0: the end of the scan).
fn reach(cursor: u64) -> u64 {
    match cursor {
        0 => u64::MAX,
        c => c.reverse_bits(),
    }
}

/// The shared meeting points of one run's shards.
#[derive(Default)]
pub struct Boundaries {
    meetings: Mutex<HashMap<BoundaryId, Meeting>>,
}

impl Boundaries {
    /// The keys of `shard`'s final call (the one whose returned cursor `next` ended it) to hand
    /// out now; the rest wait for the next shard, or are dropped as its keys.
    pub fn crossing(&self, shard: &Shard, keys: Vec<Bytes>, next: u64) -> Vec<Bytes> {
        let Range::Classic { bits, index } = shard.range else {
            return keys;
        };
        if bits == 0 || index + 1 >= 1u64 << bits || keys.is_empty() {
            return keys;
        }
        let id = (shard.node.clone(), shard.db, bits, index + 1);
        let mut meetings = self.meetings.lock().expect("boundaries");
        match meetings.remove(&id) {
            Some(Meeting::Seen { hashes }) => {
                meetings.insert(id, Meeting::Settled);
                keys.into_iter()
                    .filter(|k| !hashes.contains(&xxh3_64(k)))
                    .collect()
            }
            None => {
                let reached = reach(next);
                meetings.insert(id, Meeting::Parked { keys, reached });
                Vec::new()
            }
            Some(other) => {
                meetings.insert(id, other);
                keys
            }
        }
    }

    /// Called by `shard` with the keys of each call from its start while it returns true:
    /// records them for the earlier shard, or drops the parked keys they repeat. Returns the
    /// parked keys to hand out now (the shard has passed where the earlier one stopped), and
    /// whether to call again for the next call.
    pub fn later(&self, shard: &Shard, keys: &[Bytes], next: u64) -> (Vec<Bytes>, bool) {
        let Range::Classic { bits, index } = shard.range else {
            return (Vec::new(), false);
        };
        if bits == 0 || index == 0 {
            return (Vec::new(), false);
        }
        let id = (shard.node.clone(), shard.db, bits, index);
        let mut meetings = self.meetings.lock().expect("boundaries");
        match meetings.remove(&id) {
            None => {
                let hashes = keys.iter().map(|k| xxh3_64(k)).collect();
                meetings.insert(id, Meeting::Seen { hashes });
                (Vec::new(), false)
            }
            Some(Meeting::Parked {
                keys: mut parked,
                reached,
            }) => {
                let mine: HashSet<u64> = keys.iter().map(|k| xxh3_64(k)).collect();
                parked.retain(|k| !mine.contains(&xxh3_64(k)));
                if reach(next) >= reached || shard.range.is_done(next) {
                    meetings.insert(id, Meeting::Settled);
                    (parked, false)
                } else {
                    meetings.insert(
                        id,
                        Meeting::Parked {
                            keys: parked,
                            reached,
                        },
                    );
                    (Vec::new(), true)
                }
            }
            Some(other) => {
                meetings.insert(id, other);
                (Vec::new(), false)
            }
        }
    }

    /// Every key still parked, by db: handed out when the scanners are done.
    pub fn unsettled(&self) -> Vec<(u32, Vec<Bytes>)> {
        let mut meetings = self.meetings.lock().expect("boundaries");
        meetings
            .drain()
            .filter_map(|((_, db, _, _), m)| match m {
                Meeting::Parked { keys, .. } => Some((db, keys)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn shard(index: u64) -> Shard {
        Shard::new(&NodeAddr::new("n", 1), 0, Range::Classic { bits: 2, index })
    }

    #[test]
    fn the_later_shard_first_or_second_each_key_is_handed_out_once() {
        // The later shard started first: the crossing keys it returned are dropped.
        let meet = Boundaries::default();
        let (free, again) = meet.later(&shard(1), &[b("x"), b("y")], 5);
        assert!(free.is_empty() && !again);
        assert_eq!(meet.crossing(&shard(0), vec![b("a"), b("x")], 7), [b("a")]);
        assert!(meet.unsettled().is_empty());

        // The earlier shard crossed first: its keys wait, and those the later shard does not
        // return are handed out once it has passed the crossing call's cursor.
        let meet = Boundaries::default();
        let end_of_crossing = (5u64 << 60).reverse_bits();
        assert!(meet
            .crossing(&shard(0), vec![b("a"), b("x")], end_of_crossing)
            .is_empty());
        let not_yet = (9u64 << 59).reverse_bits();
        let (free, again) = meet.later(&shard(1), &[b("x")], not_yet);
        assert!(free.is_empty() && again);
        let (free, again) = meet.later(&shard(1), &[b("z")], (6u64 << 60).reverse_bits());
        assert_eq!((free, again), (vec![b("a")], false));

        // The later shard never came (another invocation): parked keys are handed out at the end.
        let meet = Boundaries::default();
        assert!(meet.crossing(&shard(2), vec![b("q")], 0).is_empty());
        assert_eq!(meet.unsettled(), [(0, vec![b("q")])]);
        // The last shard has no later one.
        assert_eq!(meet.crossing(&shard(3), vec![b("r")], 0), [b("r")]);
    }
}
