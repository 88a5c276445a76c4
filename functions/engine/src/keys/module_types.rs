//! Key types beyond the six core ones (vector sets, JSON, Bloom filters and other module types):
//! which the source may hold (the modules its INFO lists), whether the target can take them, and the
//! preflight that finds one before anything is written. Such keys copy only by DUMP/RESTORE
//! into a target that has the same module and loads the source's payloads; per-type copies know
//! only the core types.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::error::Result;
use crate::inventory::{restore_accepts, ServerInfo};
use crate::net::conn::Conn;

/// The key types each module (as `MODULE LIST` names it) adds.
const TYPES_OF_MODULE: [(&str, &[&str]); 5] = [
    ("vectorset", &["vectorset"]),
    ("rejson", &["ReJSON-RL"]),
    ("json", &["ReJSON-RL"]),
    (
        "bf",
        &[
            "MBbloom--",
            "MBbloomCF",
            "CMSk-TYPE",
            "TopK-TYPE",
            "TDIS-TYPE",
            "bloomfltr",
        ],
    ),
    ("timeseries", &["TSDB-TYPE"]),
];

/// Write commands that raise no keyspace event (checked on Redis 8.2 with RedisBloom: only
/// `JSON.*` of the module commands notifies), with the type of key they write. Live mode watches
/// their calls in `INFO commandstats` and re-syncs every key of the type when they move.
const SILENT_WRITES: [(&str, &str); 25] = [
    ("vadd", "vectorset"),
    ("vrem", "vectorset"),
    ("vsetattr", "vectorset"),
    ("bf.add", "MBbloom--"),
    ("bf.madd", "MBbloom--"),
    ("bf.insert", "MBbloom--"),
    ("bf.reserve", "MBbloom--"),
    ("bf.loadchunk", "MBbloom--"),
    ("cf.add", "MBbloomCF"),
    ("cf.addnx", "MBbloomCF"),
    ("cf.insert", "MBbloomCF"),
    ("cf.insertnx", "MBbloomCF"),
    ("cf.del", "MBbloomCF"),
    ("cf.reserve", "MBbloomCF"),
    ("cf.loadchunk", "MBbloomCF"),
    ("cms.initbydim", "CMSk-TYPE"),
    ("cms.initbyprob", "CMSk-TYPE"),
    ("cms.incrby", "CMSk-TYPE"),
    ("cms.merge", "CMSk-TYPE"),
    ("topk.reserve", "TopK-TYPE"),
    ("topk.add", "TopK-TYPE"),
    ("topk.incrby", "TopK-TYPE"),
    ("tdigest.create", "TDIS-TYPE"),
    ("tdigest.add", "TDIS-TYPE"),
    ("tdigest.merge", "TDIS-TYPE"),
];

/// Calls of silent write commands per key type, from `INFO commandstats` text.
pub fn silent_write_calls(commandstats: &str) -> BTreeMap<&'static str, u64> {
    let mut per_type = BTreeMap::new();
    for (name, calls) in crate::net::info::command_calls(commandstats) {
        let name = name.to_lowercase();
        if let Some((_, t)) = SILENT_WRITES.iter().find(|(c, _)| *c == name) {
            *per_type.entry(*t).or_insert(0) += calls;
        }
    }
    per_type
}

/// Modules that add no key type ferry must carry (scripting, search indexes are not keys).
const KEYLESS_MODULES: [&str; 3] = ["lua", "search", "ft"];

/// The non-core key types `server` may hold, by its modules.
pub fn types_of(server: &ServerInfo) -> Vec<&'static str> {
    let mut types: Vec<&'static str> = server
        .modules
        .iter()
        .filter_map(|m| TYPES_OF_MODULE.iter().find(|(name, _)| name == m))
        .flat_map(|(_, types)| types.iter().copied())
        .collect();
    types.sort_unstable();
    types.dedup();
    types
}

/// Modules of `server` whose key types ferry does not know.
pub fn unknown_modules(server: &ServerInfo) -> Vec<String> {
    server
        .modules
        .iter()
        .filter(|m| !KEYLESS_MODULES.contains(&m.as_str()))
        .filter(|m| !TYPES_OF_MODULE.iter().any(|(name, _)| name == m))
        .cloned()
        .collect()
}

/// Whether the target can take keys of `type_name` from the source: it needs the type (the
/// module), and either a per-type copy of it (JSON, Bloom, Cuckoo) or DUMP/RESTORE with payloads
/// it loads and a method that uses it.
pub fn target_takes(type_name: &str, source: &ServerInfo, target: &ServerInfo, dump: bool) -> bool {
    types_of(target).contains(&type_name)
        && (crate::keys::module_values::copyable(type_name.as_bytes())
            || (dump && restore_accepts(target.rdb_version, source.rdb_version)))
}

/// Keys of `type_name` in the connection's current db (at most `limit`), found by a server-side
/// filtered SCAN: cheap, the server skips the other keys.
pub async fn scan_type(conn: &mut Conn, type_name: &str, limit: usize) -> Result<Vec<Bytes>> {
    let mut found = Vec::new();
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let reply = conn
            .call(&[
                &b"SCAN"[..],
                &cursor,
                b"COUNT",
                b"10000",
                b"TYPE",
                type_name.as_bytes(),
            ])
            .await?;
        let Some((next, keys)) = crate::scan::parse_scan_reply(reply) else {
            return Ok(found);
        };
        found.extend(keys);
        if next == 0 || found.len() >= limit {
            found.truncate(limit);
            return Ok(found);
        }
        cursor = Bytes::from(next.to_string());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn silent_writes_are_counted_per_type() {
        let stats = "cmdstat_VADD:calls=3,usec=1\r\ncmdstat_VREM:calls=1,usec=1\r\ncmdstat_BF.EXISTS:calls=9,usec=1\r\ncmdstat_bf.add:calls=2,usec=1\r\ncmdstat_set:calls=7,usec=1\r\n";
        let calls = super::silent_write_calls(stats);
        assert_eq!(calls.get("vectorset"), Some(&4));
        assert_eq!(
            calls.get("MBbloom--"),
            Some(&2),
            "BF.EXISTS reads, it does not write"
        );
        assert_eq!(calls.len(), 2);
    }
}
