//! Counters of a copy: live atomics every worker bumps, and the plain snapshot reports carry.

use super::*;

/// Counters of one run, shared by every worker and read by progress displays.
#[derive(Debug, Default)]
pub struct Stats {
    /// Keys returned by SCAN (may count a key twice, as SCAN may).
    pub scanned: AtomicU64,
    /// Keys written to the target.
    pub copied: AtomicU64,
    /// Of those, keys copied with native commands rather than RESTORE.
    pub struct_copied: AtomicU64,
    /// Keys copied in chunks because they were big.
    pub big_keys: AtomicU64,
    /// Keys that vanished between SCAN and the copy (expired or deleted).
    pub gone: AtomicU64,
    /// DUMP payload bytes moved.
    pub bytes: AtomicU64,
    /// Hash fields whose TTL was not copied (`--drop-field-ttls`).
    pub field_ttls_dropped: AtomicU64,
    /// Keys of a type the target cannot take, left out (`--skip-unsupported`).
    pub skipped: AtomicU64,
}

/// A plain snapshot of [`Stats`], for reports and JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub scanned: u64,
    pub copied: u64,
    pub struct_copied: u64,
    pub big_keys: u64,
    pub gone: u64,
    pub bytes: u64,
    #[serde(default)]
    pub field_ttls_dropped: u64,
    #[serde(default)]
    pub skipped: u64,
}

impl Stats {
    /// The current values.
    pub fn counts(&self) -> Counts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            scanned: g(&self.scanned),
            copied: g(&self.copied),
            struct_copied: g(&self.struct_copied),
            big_keys: g(&self.big_keys),
            gone: g(&self.gone),
            bytes: g(&self.bytes),
            field_ttls_dropped: g(&self.field_ttls_dropped),
            skipped: g(&self.skipped),
        }
    }
}

impl Counts {
    /// Adds another run's counts (shards summed into a report).
    pub fn add(&mut self, other: &Counts) {
        self.scanned += other.scanned;
        self.copied += other.copied;
        self.struct_copied += other.struct_copied;
        self.big_keys += other.big_keys;
        self.gone += other.gone;
        self.bytes += other.bytes;
        self.field_ttls_dropped += other.field_ttls_dropped;
        self.skipped += other.skipped;
    }
}

pub(super) fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}
