//! The live tail's bookkeeping (design §4): which keys are dirty, which are being copied, and
//! which must be copied once more after a snapshot or heal pass.
//!
//! - An event only marks its key dirty; a key marked many times is copied once per round.
//! - A key is copied by at most one worker at a time; an event that arrives while its key is in
//!   flight marks it dirty again, to be copied after the first copy finishes.
//! - While a *remember window* is open (between subscription and the end of a snapshot or heal
//!   pass), every marked key is also remembered; closing the window marks them all dirty again
//!   (the barrier replay), so no stale snapshot write survives.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

/// A key in a database.
pub type DbKey = (u32, Bytes);

#[derive(Default)]
struct State {
    /// Dirty keys in arrival order, with when each was first marked (for lag).
    queue: VecDeque<DbKey>,
    marked_at: HashMap<DbKey, Instant>,
    /// Keys a worker is copying now.
    in_flight: HashSet<DbKey>,
    /// Keys marked again while in flight: queued when their copy completes.
    again: HashMap<DbKey, Instant>,
    /// Open remember windows and the keys remembered while any is open.
    windows: usize,
    remembered: HashSet<DbKey>,
    /// Largest remembered set, for the report.
    remembered_peak: usize,
}

/// Dirty keys shared by the subscription readers, the copy workers and the barrier.
#[derive(Default)]
pub struct DirtySet {
    state: Mutex<State>,
    /// Woken when keys are queued or a copy completes.
    pub changed: Notify,
    /// Latency from first mark to written, per key copy.
    pub lag: Histogram,
    last_event: Mutex<Option<Instant>>,
}

impl DirtySet {
    /// An empty set.
    pub fn new() -> DirtySet {
        DirtySet::default()
    }

    /// Marks a key dirty (an event arrived, or a heal pass found it different).
    pub fn mark(&self, key: DbKey) {
        self.mark_as(key, true);
    }

    /// Marks a key dirty; `activity` says whether it counts as writer activity for
    /// [`DirtySet::quiet_for`] (expirations and evictions do not: Redis reclaims expired keys
    /// slowly, long after writers have stopped).
    pub fn mark_as(&self, key: DbKey, activity: bool) {
        let now = Instant::now();
        {
            let mut s = self.state.lock().expect("dirty set");
            if s.windows > 0 && !s.remembered.contains(&key) {
                s.remembered.insert(key.clone());
                s.remembered_peak = s.remembered_peak.max(s.remembered.len());
            }
            if s.in_flight.contains(&key) {
                s.again.entry(key).or_insert(now);
            } else if !s.marked_at.contains_key(&key) {
                s.marked_at.insert(key.clone(), now);
                s.queue.push_back(key);
            }
        }
        if activity {
            *self.last_event.lock().expect("last event") = Some(now);
        }
        self.changed.notify_waiters();
    }

    /// Takes up to `n` dirty keys that no worker is copying, marking them in flight.
    pub fn take(&self, n: usize) -> Vec<(DbKey, Instant)> {
        let mut s = self.state.lock().expect("dirty set");
        let mut out = Vec::with_capacity(n.min(s.queue.len()));
        while out.len() < n {
            let Some(key) = s.queue.pop_front() else {
                break;
            };
            let at = s.marked_at.remove(&key).unwrap_or_else(Instant::now);
            s.in_flight.insert(key.clone());
            out.push((key, at));
        }
        out
    }

    /// Records that the copies of `keys` are written; keys marked meanwhile are queued again.
    pub fn complete(&self, keys: &[(DbKey, Instant)]) {
        let now = Instant::now();
        {
            let mut s = self.state.lock().expect("dirty set");
            for (key, at) in keys {
                s.in_flight.remove(key);
                self.lag.record(now.duration_since(*at));
                if let Some(again_at) = s.again.remove(key) {
                    s.marked_at.insert(key.clone(), again_at);
                    s.queue.push_back(key.clone());
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Puts keys back after a failed copy, so they are tried again.
    pub fn requeue(&self, keys: &[(DbKey, Instant)]) {
        {
            let mut s = self.state.lock().expect("dirty set");
            for (key, at) in keys {
                s.in_flight.remove(key);
                s.again.remove(key);
                if !s.marked_at.contains_key(key) {
                    s.marked_at.insert(key.clone(), *at);
                    s.queue.push_back(key.clone());
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Keys waiting or in flight.
    pub fn depth(&self) -> usize {
        let s = self.state.lock().expect("dirty set");
        s.queue.len() + s.in_flight.len() + s.again.len()
    }

    /// Up to `n` keys still waiting or in flight, for a report of what a stop left behind.
    pub fn sample(&self, n: usize) -> Vec<DbKey> {
        let s = self.state.lock().expect("dirty set");
        s.queue
            .iter()
            .chain(s.in_flight.iter())
            .chain(s.again.keys())
            .take(n)
            .cloned()
            .collect()
    }

    /// Opens a remember window (at subscription, or before a heal pass).
    pub fn open_window(&self) {
        self.state.lock().expect("dirty set").windows += 1;
    }

    /// Closes a window: every remembered key is marked dirty again (the barrier replay).
    /// Returns how many keys were replayed.
    pub fn close_window(&self) -> usize {
        let replay: Vec<DbKey> = {
            let mut s = self.state.lock().expect("dirty set");
            s.windows = s.windows.saturating_sub(1);
            if s.windows == 0 {
                s.remembered.drain().collect()
            } else {
                s.remembered.iter().cloned().collect()
            }
        };
        let n = replay.len();
        for key in replay {
            self.mark(key);
        }
        n
    }

    /// Keys remembered now, the largest that set has been, and its approximate memory.
    pub fn remembered(&self) -> (usize, usize, usize) {
        let s = self.state.lock().expect("dirty set");
        let bytes: usize = s
            .remembered
            .iter()
            .map(|(_, k)| k.len() + REMEMBERED_OVERHEAD)
            .sum();
        (s.remembered.len(), s.remembered_peak, bytes)
    }

    /// Counts as writer activity without a key: a gap (writes may be going on unseen), so
    /// no one takes the silence of a broken subscription for quiet.
    pub fn note_activity(&self) {
        *self.last_event.lock().expect("last event") = Some(Instant::now());
    }

    /// Time since the last writer activity marked a key (None before any).
    pub fn quiet_for(&self) -> Option<Duration> {
        self.last_event
            .lock()
            .expect("last event")
            .map(|t| t.elapsed())
    }

    /// Waits until nothing is dirty or in flight. Every change of the depth notifies
    /// `changed`, and the future is made before the check, so no change is missed.
    pub async fn drained(&self) {
        loop {
            let notified = self.changed.notified();
            if self.depth() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Bytes a remembered key costs beyond its name: the hash set slot (with its spare capacity),
/// the `Bytes` handle and the allocation. Measured by `examples/replay_set_memory.rs`
/// (171 bytes of RSS per 24-byte key).
pub const REMEMBERED_OVERHEAD: usize = 147;

/// A latency histogram with buckets of about 10% width from 10 µs to 10 min: small, lock-free
/// enough for the copy path, precise enough for p50/p99.
pub struct Histogram {
    buckets: Vec<std::sync::atomic::AtomicU64>,
}

const HIST_BUCKETS: usize = 200;
const HIST_BASE_US: f64 = 10.0;
const HIST_GROWTH: f64 = 1.1;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..HIST_BUCKETS).map(|_| Default::default()).collect(),
        }
    }
}

impl Histogram {
    /// Records one latency.
    pub fn record(&self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        let i = if us <= HIST_BASE_US {
            0
        } else {
            ((us / HIST_BASE_US).ln() / HIST_GROWTH.ln()).ceil() as usize
        };
        self.buckets[i.min(HIST_BUCKETS - 1)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The latency below which a fraction `q` of the samples fall (upper bucket bound), and the
    /// sample count.
    pub fn quantile(&self, q: f64) -> (Duration, u64) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return (Duration::ZERO, 0);
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let us = HIST_BASE_US * HIST_GROWTH.powi(i as i32);
                return (Duration::from_secs_f64(us / 1e6), total);
            }
        }
        (Duration::from_secs(600), total)
    }
}

/// The keys the tail copied or deleted since a point (a cutover's full verify): what the
/// fenced check must look at again. Bounded: past `limit` keys it only says it overflowed.
#[derive(Debug, Default)]
pub struct Touched {
    keys: std::collections::HashSet<(u32, Bytes)>,
    limit: usize,
    /// More keys were touched than `limit`.
    pub overflowed: bool,
    /// The tail's gap count when recording began: a gap since means keys changed unseen.
    pub gaps_at_start: u64,
}

impl Touched {
    /// Records up to `limit` keys.
    pub fn new(limit: usize) -> Touched {
        Touched {
            limit,
            ..Touched::default()
        }
    }

    /// Records one key.
    pub fn add(&mut self, db: u32, key: &Bytes) {
        if self.keys.len() < self.limit {
            self.keys.insert((db, key.clone()));
        } else if !self.keys.contains(&(db, key.clone())) {
            self.overflowed = true;
        }
    }

    /// The keys recorded, by db.
    pub fn by_db(&self) -> std::collections::BTreeMap<u32, Vec<Bytes>> {
        let mut out: std::collections::BTreeMap<u32, Vec<Bytes>> = Default::default();
        for (db, k) in &self.keys {
            out.entry(*db).or_default().push(k.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> DbKey {
        (0, Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn marks_are_deduplicated_and_a_key_is_in_flight_once() {
        let d = DirtySet::new();
        d.mark(k("a"));
        d.mark(k("a"));
        d.mark(k("b"));
        let first = d.take(10);
        assert_eq!(first.len(), 2);
        d.mark(k("a")); // while in flight
        assert!(
            d.take(10).is_empty(),
            "a is in flight: not handed out twice"
        );
        d.complete(&first);
        let again = d.take(10);
        assert_eq!(
            again.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            vec![k("a")]
        );
        d.complete(&again);
        assert_eq!(d.depth(), 0);
    }

    #[test]
    fn closing_a_window_replays_every_remembered_key() {
        let d = DirtySet::new();
        d.mark(k("before"));
        d.open_window();
        d.mark(k("x"));
        d.mark(k("y"));
        let taken = d.take(10);
        d.complete(&taken);
        assert_eq!(d.remembered().0, 2);
        assert_eq!(d.close_window(), 2);
        let replay: HashSet<DbKey> = d.take(10).into_iter().map(|(k, _)| k).collect();
        assert_eq!(replay, [k("x"), k("y")].into_iter().collect());
        assert_eq!(d.remembered().0, 0);
    }

    #[test]
    fn histogram_quantiles() {
        let h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let (p50, n) = h.quantile(0.5);
        let (p99, _) = h.quantile(0.99);
        assert_eq!(n, 100);
        assert!((45..=56).contains(&p50.as_millis()), "{p50:?}");
        assert!((95..=110).contains(&p99.as_millis()), "{p99:?}");
    }
}
