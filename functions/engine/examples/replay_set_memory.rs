//! Measures what the live tail's replay set costs: marks N distinct keys dirty inside a
//! remember window (as a snapshot under heavy writes would), copies them, and reports the
//! process's resident memory per remembered key. Used by `bench/live.sh`.

use bytes::Bytes;
use ferry_engine::live::dirty::DirtySet;

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .unwrap_or(0)
        * 1024
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dirty = DirtySet::new();
    let before = rss_bytes();
    dirty.open_window();
    for i in 0..n {
        dirty.mark((0, Bytes::from(format!("user:session:{i:012}"))));
        if i % 10_000 == 9_999 {
            let taken = dirty.take(10_000);
            dirty.complete(&taken);
        }
    }
    let taken = dirty.take(usize::MAX);
    dirty.complete(&taken);
    let after = rss_bytes();
    let (remembered, peak, estimate) = dirty.remembered();
    println!(
        "{{\"keys\": {remembered}, \"peak\": {peak}, \"rss_bytes\": {}, \"rss_bytes_per_key\": {:.1}, \"estimate_bytes\": {estimate}, \"key_len\": 24}}",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / n as f64
    );
}
