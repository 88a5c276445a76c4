//! What a server says about itself: `INFO` text (`field:value` lines under `# Section`
//! headers) and `CONFIG GET`. The one place either is parsed; inventory, the cluster
//! follower, the gap watcher and the functions check all read servers through it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::net::conn::Conn;
use crate::net::resp::Reply;

/// `INFO <section>` as text (`ALL`, `server`, `replication`, `keyspace`, …).
pub async fn read(conn: &mut Conn, section: &str) -> Result<String> {
    Ok(conn
        .call(&["INFO", section])
        .await?
        .as_text()
        .unwrap_or_default())
}

/// Every `field:value` line of an INFO text, trimmed; section headers left out. A field that
/// repeats (`module:`) keeps its last value: read those with their own function.
pub fn fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The value of the first `name:` line, trimmed.
pub fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// A numeric field (`master_repl_offset`, `number_of_libraries`, …).
pub fn number(text: &str, name: &str) -> Option<u64> {
    field(text, name)?.parse().ok()
}

/// Key counts of one database, from `INFO keyspace`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DbStats {
    /// Keys in the db.
    pub keys: u64,
    /// Keys with a TTL.
    pub expires: u64,
    /// Keys with hash fields that have a TTL (`subexpiry` on Redis, `keys_with_volatile_items`
    /// on Valkey).
    pub field_ttl_keys: u64,
}

/// The databases a keyspace section lists (`db3:keys=1,expires=0,…`), with their counts.
pub fn keyspace(text: &str) -> BTreeMap<u32, DbStats> {
    let mut dbs = BTreeMap::new();
    for (k, v) in fields(text) {
        let Some(db) = k.strip_prefix("db").and_then(|d| d.parse::<u32>().ok()) else {
            continue;
        };
        let mut stats = DbStats::default();
        for part in v.split(',') {
            if let Some((k, n)) = part.split_once('=') {
                let n = n.parse().unwrap_or(0);
                match k {
                    "keys" => stats.keys = n,
                    "expires" => stats.expires = n,
                    "subexpiry" | "keys_with_volatile_items" => stats.field_ttl_keys = n,
                    _ => {}
                }
            }
        }
        dbs.insert(db, stats);
    }
    dbs
}

/// Calls per command from `INFO commandstats` text (`cmdstat_get:calls=5,…` → `("get", 5)`).
pub fn command_calls(commandstats: &str) -> BTreeMap<String, u64> {
    commandstats
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// The loaded modules an `INFO` text lists (`module:name=…` lines of its Modules section),
/// lowercase. INFO rather than `MODULE LIST`: an admin command a read-only source user may not run.
pub fn module_names(info: &str) -> Vec<String> {
    info.lines()
        .filter_map(|l| l.trim().strip_prefix("module:name="))
        .filter_map(|rest| rest.split(',').next())
        .map(str::to_lowercase)
        .collect()
}

/// `CONFIG GET name`, or `None` when the server forbids CONFIG (ElastiCache, restricted ACL).
pub async fn config_get(conn: &mut Conn, name: &str) -> Result<Option<String>> {
    conn.queue(&["CONFIG", "GET", name]);
    conn.send().await?;
    match conn.recv().await? {
        Reply::Array(items) if items.len() >= 2 => Ok(items[1].as_text()),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_come_from_info() {
        let info =
            "# Modules\r\nmodule:name=vectorset,ver=1,api=1\r\nmodule:name=ReJSON,ver=20803\r\n";
        assert_eq!(module_names(info), vec!["vectorset", "rejson"]);
    }

    #[test]
    fn parses_commandstats() {
        let calls = command_calls("# Commandstats\r\ncmdstat_get:calls=5,usec=1\r\ncmdstat_memory|usage:calls=2,usec=9\r\n");
        assert_eq!(calls.get("get"), Some(&5));
        assert_eq!(calls.get("memory|usage"), Some(&2));
    }

    #[test]
    fn parses_fields_and_numbers() {
        let text =
            "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave_repl_offset:42\r\n";
        assert_eq!(field(text, "role"), Some("slave"));
        assert_eq!(number(text, "slave_repl_offset"), Some(42));
        assert_eq!(number(text, "master_repl_offset"), None);
        assert_eq!(fields(text)["master_link_status"], "up");
    }

    #[test]
    fn parses_keyspace_lines() {
        let dbs =
            keyspace("# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=0\r\ndb3:keys=1,expires=0\r\n");
        assert_eq!(
            dbs[&0],
            DbStats {
                keys: 10,
                expires: 2,
                field_ttl_keys: 0
            }
        );
        assert_eq!(dbs[&3].keys, 1);
        // Redis 7.4+ and Valkey 9 name the keys holding field TTLs differently.
        assert_eq!(
            keyspace("db1:keys=3,expires=0,subexpiry=2")[&1].field_ttl_keys,
            2
        );
        let valkey = "db2:keys=3,expires=0,avg_ttl=0,keys_with_volatile_items=1";
        assert_eq!(keyspace(valkey)[&2].field_ttl_keys, 1);
    }
}
