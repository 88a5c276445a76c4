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
    /// Only this source db (the source URL named it); `None` for every db.
    #[serde(default)]
    pub only_db: Option<u32>,
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

    /// Applies the databases the URLs name: a source URL's db limits the migration to that db,
    /// and a target URL's db is where it lands. A target db without a source db is refused:
    /// every source db would have to land in it.
    pub fn apply_url_dbs(&mut self, source: Option<u32>, target: Option<u32>) -> Result<()> {
        match (source, target) {
            (None, None) => Ok(()),
            (None, Some(t)) => Err(Error::InvalidInput(format!(
                "the target URL names db {t} but the source URL names none, so every source db would be copied to its own number; name the source db too (redis://…/N copies db N into db {t}), or drop the db from the target URL and use --db-map"
            ))),
            (Some(s), t) => {
                self.only_db = Some(s);
                let Some(t) = t else { return Ok(()) };
                match self.db_map.get(&s) {
                    Some(mapped) if mapped.db != t => Err(Error::InvalidInput(format!(
                        "the URLs put source db {s} into target db {t}, but --db-map puts it into db {}",
                        mapped.db
                    ))),
                    Some(_) => Ok(()),
                    None => {
                        self.db_map.insert(
                            s,
                            DbTarget {
                                db: t,
                                prefix: String::new(),
                            },
                        );
                        Ok(())
                    }
                }
            }
        }
    }

    /// Whether source db `db` is in the migration at all.
    pub fn covers_db(&self, db: u32) -> bool {
        self.only_db.is_none_or(|only| only == db)
    }

    /// Whether a source key is in scope by db and name (the type filter needs the server).
    pub fn covers(&self, db: u32, key: &[u8]) -> bool {
        self.covers_db(db)
            && self
                .pattern
                .as_deref()
                .is_none_or(|p| glob_match(p.as_bytes(), key))
    }

    /// Every source db and key that the migration could have written as `key` in `target_db`,
    /// longest prefix first: the source dbs in `source_dbs` that map there with a prefix the
    /// key has, whose name without the prefix is in scope. Empty when the key is not the
    /// migration's; only a key with an owner may ever be deleted on the target, and only when
    /// none of its owners holds it.
    pub fn owners_of(&self, target_db: u32, key: &Bytes, source_dbs: &[u32]) -> Vec<(u32, Bytes)> {
        let mut owners: Vec<(usize, u32, Bytes)> = source_dbs
            .iter()
            .map(|&db| (db, self.target_of(db)))
            .filter(|(_, t)| t.db == target_db && key.starts_with(t.prefix.as_bytes()))
            .map(|(db, t)| (t.prefix.len(), db, key.slice(t.prefix.len()..)))
            .filter(|(_, db, source_key)| self.covers(*db, source_key))
            .collect();
        owners.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        owners.dedup_by(|a, b| a.1 == b.1);
        owners.into_iter().map(|(_, db, k)| (db, k)).collect()
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

/// Redis's glob (`SCAN MATCH`, `KEYS`): `*`, `?`, `[abc]`, `[^a-z]`, and `\\` to escape.
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, and the next string position.
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, i));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => class_match(pattern, p + 1, s[i]),
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == s[i]).then_some(p + 2),
            Some(&c) => (c == s[i]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                i += 1;
            }
            (None, Some((after, from))) => {
                p = after;
                i = from + 1;
                star = Some((after, from + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting after `[` at `p`; returns the pattern position after
/// the class when it matches.
fn class_match(pattern: &[u8], mut p: usize, c: u8) -> Option<usize> {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut hit = false;
    loop {
        match pattern.get(p) {
            // An unterminated class ends with the pattern, as in Redis.
            None => break,
            Some(b']') => {
                p += 1;
                break;
            }
            Some(b'\\') if p + 1 < pattern.len() => {
                hit |= pattern[p + 1] == c;
                p += 2;
            }
            Some(&a) if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() => {
                let b = pattern[p + 2];
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                hit |= lo <= c && c <= hi;
                p += 3;
            }
            Some(&a) => {
                hit |= a == c;
                p += 1;
            }
        }
    }
    (hit != negate).then_some(p)
}

/// Prefix of the one key ferry writes on the source: the canary that proves notifications flow.
pub const CANARY_PREFIX: &[u8] = b"ferry:canary:";
/// The key of the target lease (see `lease`), in the target's db 0.
pub const LEASE_KEY: &str = "ferry:lease";

/// Prefix of the scratch keys inventory writes on the target to learn whether it takes RESTORE.
pub const PROBE_PREFIX: &str = "ferry:probe:";

/// Whether a key is ferry's own (the canary, the lease, a probe): never copied, verified or
/// deleted.
pub fn is_ferry_key(key: &[u8]) -> bool {
    key.starts_with(CANARY_PREFIX)
        || key == LEASE_KEY.as_bytes()
        || key.starts_with(PROBE_PREFIX.as_bytes())
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
            scope.owners_of(0, &Bytes::from_static(b"db1:user:1"), &[0, 1]),
            vec![(1, k.clone()), (0, Bytes::from_static(b"db1:user:1"))]
        );
        assert_eq!(scope.owners_of(0, &k, &[0, 1]), vec![(0, k.clone())]);
        assert!(Scope::parse_db_map(&["x".into()]).is_err());
        assert!(scope.check_collisions(&[0, 2]).is_err());
        assert!(scope.check_collisions(&[0, 1]).is_ok());
    }

    use proptest::prelude::*;

    fn scope_strategy() -> impl Strategy<Value = (Scope, Vec<u32>)> {
        let map = proptest::collection::btree_map(
            0u32..4,
            (
                0u32..3,
                proptest::sample::select(vec!["", "a:", "ab:", "b", "db1:"]),
            ),
            0..4,
        );
        let pattern = proptest::option::of(proptest::sample::select(vec![
            "a*", "*x", "k?", "[ab]*", "*", "\\*b", "[^a]*",
        ]));
        let only = proptest::option::of(0u32..4);
        let dbs = proptest::collection::vec(0u32..4, 1..4);
        (map, pattern, only, dbs).prop_map(|(map, pattern, only_db, dbs)| {
            let db_map = map
                .into_iter()
                .map(|(s, (d, p))| {
                    (
                        s,
                        DbTarget {
                            db: d,
                            prefix: p.to_string(),
                        },
                    )
                })
                .collect();
            let scope = Scope {
                pattern: pattern.map(String::from),
                key_type: None,
                db_map,
                only_db,
            };
            (scope, dbs)
        })
    }

    proptest! {
        /// Whatever the db map, prefixes and pattern: a target key has an owner only if the
        /// migration writes exactly that key into exactly that db from an owned source key in
        /// scope; and every key the migration writes has that owner. Repair deletes only keys
        /// with owners, so it deletes nothing it does not own.
        #[test]
        fn a_target_key_is_owned_only_if_the_migration_writes_it(
            (scope, dbs) in scope_strategy(),
            target_db in 0u32..4,
            key in "[abkx:*1]{0,6}",
        ) {
            let key = Bytes::from(key.into_bytes());
            for (db, source_key) in scope.owners_of(target_db, &key, &dbs) {
                prop_assert!(dbs.contains(&db));
                prop_assert!(scope.covers(db, &source_key));
                prop_assert_eq!(scope.target_of(db).db, target_db);
                prop_assert_eq!(scope.target_key(db, &source_key), key.clone());
            }
            for &db in &dbs {
                if scope.covers(db, &key) {
                    let written = scope.target_key(db, &key);
                    let owners = scope.owners_of(scope.target_of(db).db, &written, &dbs);
                    prop_assert!(owners.contains(&(db, key.clone())), "{owners:?}");
                }
            }
        }
    }

    #[test]
    fn globs_match_as_redis_does() {
        for (pattern, yes, no) in [
            ("user:*", "user:1", "usr:1"),
            ("h?llo", "hallo", "hllo"),
            ("h[ae]llo", "hello", "hillo"),
            ("h[^e]llo", "hallo", "hello"),
            ("h[a-b]llo", "hbllo", "hcllo"),
            ("a\\*b", "a*b", "axb"),
            ("*x*y", "1x2y", "1y2x"),
            ("", "", "a"),
        ] {
            assert!(
                glob_match(pattern.as_bytes(), yes.as_bytes()),
                "{pattern} {yes}"
            );
            assert!(
                !glob_match(pattern.as_bytes(), no.as_bytes()),
                "{pattern} {no}"
            );
        }
    }

    #[test]
    fn url_dbs_limit_and_map() {
        let mut scope = Scope::default();
        scope.apply_url_dbs(Some(3), Some(4)).unwrap();
        assert!(scope.covers_db(3) && !scope.covers_db(0));
        assert_eq!(scope.target_of(3).db, 4);
        assert!(Scope::default().apply_url_dbs(None, Some(4)).is_err());
    }

    #[test]
    fn escapes() {
        assert_eq!(glob_escape("a*b[1]"), "a\\*b\\[1\\]");
        assert_eq!(display_key(b"k\x00\xff"), "k\\x00\\xff");
    }
}
