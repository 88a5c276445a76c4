//! After verify: re-checking exactly the keys that differed (the cutover's fenced check) and
//! `--repair`, which re-copies them and deletes the target's extras.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::copy::{Copier, CopyContext};
use crate::error::Result;
use crate::model::migration::Migration;
use crate::net::conn::Conn;
use crate::verify::{Diff, Status, VerifyContext, VerifyReport, VerifyWorker};

/// The outcome of `--repair`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepairReport {
    /// Keys re-copied from the source.
    pub recopied: u64,
    /// Extra keys deleted from the target.
    pub deleted: u64,
    /// Keys that still differ after the repair.
    pub still_different: u64,
}

/// Checks exactly `keys` (by source db) both ways: the fenced check of a cutover.
pub async fn check_keys(
    m: &Migration,
    verify: Arc<VerifyContext>,
    keys: &std::collections::BTreeMap<u32, Vec<Bytes>>,
) -> Result<VerifyReport> {
    let (s, t) = tokio::join!(Conn::keyspace(&m.source), Conn::keyspace(&m.target));
    let mut checker = VerifyWorker {
        source: s?,
        target: t?,
        ctx: verify,
    };
    let mut report = VerifyReport::default();
    for (db, keys) in keys {
        for chunk in keys.chunks(m.copy.batch_keys.max(1)) {
            checker.check(*db, chunk, &mut report).await?;
        }
    }
    Ok(report)
}

/// Adds the keys a verify found different to `keys` (by source db), for a later check: an
/// extra by every source key that could own it.
pub fn add_differing(
    m: &Migration,
    diffs: &[Diff],
    source_dbs: &[u32],
    keys: &mut std::collections::BTreeMap<u32, Vec<Bytes>>,
) {
    for d in diffs {
        let owners = match d.status {
            Status::Extra => m.scope.owners_of(d.db, &d.key, source_dbs),
            _ => vec![(d.db, d.key.clone())],
        };
        for (db, key) in owners {
            keys.entry(db).or_default().push(key);
        }
    }
    for list in keys.values_mut() {
        list.sort_unstable();
        list.dedup();
    }
}

/// Re-copies exactly the differing keys (deleting extras from the target), then checks them again.
pub async fn repair(
    m: &Migration,
    copy: Arc<CopyContext>,
    verify: Arc<VerifyContext>,
    diffs: &[Diff],
) -> Result<RepairReport> {
    let mut copier = Copier::new(
        Conn::keyspace(&m.source).await?,
        Conn::keyspace(&m.target).await?,
        copy,
    );
    let mut report = RepairReport::default();
    let mut by_db: std::collections::BTreeMap<(bool, u32), Vec<Bytes>> = Default::default();
    for d in diffs {
        by_db
            .entry((d.status == Status::Extra, d.db))
            .or_default()
            .push(d.key.clone());
    }
    for ((extra, db), keys) in &by_db {
        for chunk in keys.chunks(m.copy.batch_keys.max(1)) {
            if *extra {
                copier.target.select(*db).await?;
                for k in chunk {
                    copier.target.queue(&[&b"UNLINK"[..], k]);
                }
                copier.target.send().await?;
                for _ in chunk {
                    copier.target.recv().await?;
                }
                report.deleted += chunk.len() as u64;
            } else {
                copier.copy_keys(*db, chunk).await?;
                report.recopied += chunk.len() as u64;
            }
        }
    }
    let mut checker = VerifyWorker {
        source: copier.source,
        target: copier.target,
        ctx: verify,
    };
    for ((extra, db), keys) in &by_db {
        for chunk in keys.chunks(m.copy.batch_keys.max(1)) {
            if *extra {
                checker.target.select(*db).await?;
                for k in chunk {
                    checker.target.queue(&[&b"EXISTS"[..], k]);
                }
                checker.target.send().await?;
                for _ in chunk {
                    report.still_different +=
                        checker.target.recv().await?.as_int().unwrap_or(0).min(1) as u64;
                }
            } else {
                let statuses = checker.compare(*db, chunk).await?;
                report.still_different += statuses
                    .iter()
                    .filter(|s| matches!(s, Some(s) if *s != Status::Ok))
                    .count() as u64;
            }
        }
    }
    Ok(report)
}
