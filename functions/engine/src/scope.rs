//! Which keys a migration covers and where they land: a key pattern, a type filter, and the
//! mapping of source databases to target databases (with an optional key prefix, for targets
//! that only have db 0).

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where the keys of one source database go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbTarget {
    /// Target database.
    pub db: u32,
    /// Prepended to every key name on the target (empty for none).
    #[serde(default)]
    pub prefix: String,
}

/// The keys in scope and their destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// SCAN MATCH glob; `None` for every key.
    #[serde(default)]
    pub pattern: Option<String>,
    /// SCAN TYPE filter (`string`, `hash`, …); `None` for every type.
    #[serde(default)]
    pub key_type: Option<String>,
    /// Explicit source db → target mapping; unmapped dbs go to the same db number.
    #[serde(default)]
    pub db_map: BTreeMap<u32, DbTarget>,
}

impl Scope {
    /// Where a source db's keys go.
    pub fn target_of(&self, db: u32) -> DbTarget {
        self.db_map.get(&db).cloned().unwrap_or(DbTarget {
            db,
            prefix: String::new(),
        })
    }

    /// The target key name for a source key of `db`.
    pub fn target_key(&self, db: u32, key: &Bytes) -> Bytes {
        match self.db_map.get(&db) {
            Some(t) if !t.prefix.is_empty() => {
                let mut k = BytesMut::with_capacity(t.prefix.len() + key.len());
                k.put_slice(t.prefix.as_bytes());
                k.put_slice(key);
                k.freeze()
            }
            _ => key.clone(),
        }
    }

    /// The source db and key a target key came from, or `None` if no source db maps to it.
    /// The longest matching prefix wins, so `db3:x` belongs to the db mapped with `db3:`
    /// rather than to a db mapped without a prefix.
    pub fn source_of(
        &self,
        target_db: u32,
        key: &Bytes,
        source_dbs: &[u32],
    ) -> Option<(u32, Bytes)> {
        source_dbs
            .iter()
            .map(|&db| (db, self.target_of(db)))
            .filter(|(_, t)| t.db == target_db && key.starts_with(t.prefix.as_bytes()))
            .max_by_key(|(_, t)| t.prefix.len())
            .map(|(db, t)| (db, key.slice(t.prefix.len()..)))
    }

    /// Parses `--db-map SRC=DST[:PREFIX]` entries, e.g. `1=0:db1:` puts db 1's keys into db 0
    /// with the prefix `db1:`.
    pub fn parse_db_map(entries: &[String]) -> Result<BTreeMap<u32, DbTarget>> {
        let mut map = BTreeMap::new();
        for entry in entries {
            let bad = || {
                Error::InvalidInput(format!(
                    "--db-map '{entry}' is not SRC=DST[:PREFIX] (e.g. 1=0:db1:)"
                ))
            };
            let (src, rest) = entry.split_once('=').ok_or_else(bad)?;
            let (dst, prefix) = rest.split_once(':').unwrap_or((rest, ""));
            let src: u32 = src.trim().parse().map_err(|_| bad())?;
            let dst: u32 = dst.trim().parse().map_err(|_| bad())?;
            map.insert(
                src,
                DbTarget {
                    db: dst,
                    prefix: prefix.to_string(),
                },
            );
        }
        Ok(map)
    }

    /// Refuses mappings that would merge two source dbs into the same target keys.
    pub fn check_collisions(&self, source_dbs: &[u32]) -> Result<()> {
        let mut seen: BTreeMap<(u32, String), u32> = BTreeMap::new();
        for &db in source_dbs {
            let t = self.target_of(db);
            if let Some(other) = seen.insert((t.db, t.prefix.clone()), db) {
                return Err(Error::InvalidInput(format!(
                    "source dbs {other} and {db} would both land in target db {} with prefix '{}'; give them different prefixes with --db-map",
                    t.db, t.prefix
                )));
            }
        }
        Ok(())
    }
}

/// Escapes glob characters so a literal prefix can head a SCAN MATCH pattern.
pub fn glob_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Shows a key name for reports: text as is, other bytes as `\xNN`.
pub fn display_key(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_map_parses_and_maps_keys_both_ways() {
        let map = Scope::parse_db_map(&["1=0:db1:".into(), "2=0".into()]).unwrap();
        let scope = Scope {
            db_map: map,
            ..Scope::default()
        };
        let k = Bytes::from_static(b"user:1");
        assert_eq!(&scope.target_key(1, &k)[..], b"db1:user:1");
        assert_eq!(&scope.target_key(0, &k)[..], b"user:1");
        assert_eq!(
            scope.source_of(0, &Bytes::from_static(b"db1:user:1"), &[0, 1]),
            Some((1, k.clone()))
        );
        assert_eq!(scope.source_of(0, &k, &[0, 1]), Some((0, k.clone())));
        assert!(Scope::parse_db_map(&["x".into()]).is_err());
        assert!(scope.check_collisions(&[0, 2]).is_err());
        assert!(scope.check_collisions(&[0, 1]).is_ok());
    }

    #[test]
    fn escapes() {
        assert_eq!(glob_escape("a*b[1]"), "a\\*b\\[1\\]");
        assert_eq!(display_key(b"k\x00\xff"), "k\\x00\\xff");
    }
}
