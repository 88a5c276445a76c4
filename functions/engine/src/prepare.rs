//! Before anything is written: inventory of both servers and the preflight that refuses a
//! pairing that would lose or overwrite data (design §6), the source dbs in scope, and the
//! shard plan (design §2). The Inventory step and every front end's first call.

use bytes::Bytes;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::inventory::{self, Inventory, ReplicationRole, ServerInfo, ServerMode};
use crate::keys::functions;
use crate::keys::module_types;
use crate::model::migration::{Method, Migration};
use crate::model::plan::{self, Shard};
use crate::model::scope::Scope;
use crate::net::conn::Conn;
use crate::net::resp::Reply;

/// Whether the target must be empty: a copy needs it, a compare does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Keys will be written.
    Copy,
    /// Only compared.
    Compare,
}

/// Looks at both servers and refuses, before anything is written, a pairing that would lose or
/// overwrite data: the same server twice, a target db that does not exist, a non-empty target,
/// a DUMP copy the target cannot load.
pub async fn inventory(m: &Migration, purpose: Purpose) -> Result<Inventory> {
    let (source, target) = tokio::join!(connect_info(&m.source), connect_info(&m.target));
    let ((mut source_conn, source), (_, target)) = (source?, target?);
    inventory::check_pairing(&source, &target)?;
    if purpose == Purpose::Copy && target.role == ReplicationRole::Replica {
        return Err(Error::Incompatible(format!(
            "the target {} is a read-only replica: point ferry at its primary",
            target.addr
        )));
    }
    check_connections(m, &source)?;
    let dbs = source_dbs(&m.scope, &source);
    m.scope.check_collisions(&dbs)?;
    for &db in &dbs {
        let t = m.scope.target_of(db);
        let single_db = target.mode == ServerMode::Cluster;
        if !target.has_db(t.db) || (single_db && t.db != 0) {
            return Err(Error::Incompatible(format!(
                "source db {db} holds keys but the target has no db {}; map it with --db-map {db}=0:db{db}: (into db 0 with a key prefix)",
                t.db
            )));
        }
        let lease = u64::from(m.holds_lease && t.db == 0);
        let held = target
            .dbs
            .get(&t.db)
            .map_or(0, |d| d.keys)
            .saturating_sub(lease);
        if purpose == Purpose::Copy && held > 0 && !m.allow_nonempty_target {
            return Err(Error::TargetNotEmpty(format!(
                "target db {} already holds {held} keys; use an empty target, or --allow-nonempty-target to write over matching keys",
                t.db
            )));
        }
    }
    let mut notes = inventory::capacity_and_notification_notes(&source, &target);
    let timed = source.field_ttl_keys();
    if purpose == Purpose::Copy && timed > 0 && !target.has_field_ttls() {
        if !m.copy.drop_field_ttls {
            return Err(Error::Incompatible(format!(
                "the source holds {timed} hashes with field TTLs (HEXPIRE) and the target ({} {}) cannot hold field TTLs: use a target that can (Redis ≥ 7.4, Valkey ≥ 9), or pass --drop-field-ttls to copy those fields without their TTL (the report counts them)",
                target.product, target.version
            )));
        }
        notes.push(format!(
            "{timed} hashes hold fields with TTLs the target cannot keep: copied without them (--drop-field-ttls)"
        ));
    }
    let refusal = match m.copy.method {
        Method::Struct => None,
        _ if purpose == Purpose::Copy => restore_refusal(&m.target).await?,
        _ => None,
    };
    let copy_method = match m.copy.method {
        Method::Struct => Method::Struct,
        Method::Dump if refusal.is_some() => {
            return Err(Error::Incompatible(format!(
                "--type dump: the target refuses RESTORE ({}); use --type auto (it copies per type)",
                refusal.unwrap_or_default()
            )))
        }
        Method::Auto if refusal.is_some() => {
            notes.push(format!(
                "the target refuses RESTORE ({}): keys are copied per type (struct)",
                refusal.unwrap_or_default()
            ));
            Method::Struct
        }
        _ if inventory::restore_accepts(target.rdb_version, source.rdb_version) => Method::Dump,
        Method::Auto => {
            notes.push(format!(
                "target RDB version {} cannot load source RDB version {} payloads: keys are copied per type (struct)",
                target.rdb_version, source.rdb_version
            ));
            Method::Struct
        }
        Method::Dump => {
            return Err(Error::Incompatible(format!(
                "--type dump: the target ({} {}, RDB {}) cannot RESTORE payloads of the source ({} {}, RDB {}); use --type auto",
                target.product, target.version, target.rdb_version, source.product, source.version, source.rdb_version
            )))
        }
    };
    for t in unsupported_types(m, &source, &target) {
        let Some((db, key)) = find_on_source(m, &source, &dbs, t).await? else {
            continue;
        };
        if !m.copy.skip_unsupported {
            return Err(Error::Incompatible(format!(
                "the source holds keys of type '{t}' (e.g. '{}' in db {db}) that the target ({} {}) cannot take: it needs the same module and payloads it loads (RDB {} into {}); pass --skip-unsupported to copy the rest and list what was left out",
                crate::model::scope::display_key(&key[..key.len().min(200)]),
                target.product,
                target.version,
                source.rdb_version,
                target.rdb_version
            )));
        }
        notes.push(format!(
            "keys of type '{t}' are left out (--skip-unsupported): the target cannot take them"
        ));
    }
    if let Some(libs) = functions::libraries(&mut source_conn).await? {
        if purpose == Purpose::Copy && !libs.is_empty() {
            functions::preflight(&libs, &m.target).await?;
            notes.push(format!(
                "{} function libraries are copied to every target primary",
                libs.len()
            ));
        }
    }
    for module in module_types::unknown_modules(&source) {
        notes.push(format!(
            "the source has module '{module}', whose key types ferry does not know: they copy only by DUMP into a target with the same module"
        ));
    }
    let mut type_sample = std::collections::BTreeMap::new();
    for &db in &dbs {
        for (t, n) in inventory::sample_types(&mut source_conn, db, 100).await? {
            *type_sample.entry(t).or_insert(0) += n;
        }
    }
    Ok(Inventory {
        source,
        target,
        type_sample,
        copy_method,
        notes,
    })
}

/// Connections a run opens to one source node at most: a source connection per worker, one per
/// scanner, the tail's, and a few for inventory and the gap watcher.
pub fn source_connections(m: &Migration) -> u64 {
    let tail = if m.tail_workers > 0 {
        m.tail_workers + 3
    } else {
        0
    };
    (m.workers + m.parallel + tail + 2) as u64
}

/// Refuses a run that would take the connections the application needs: ferry may use what
/// the source has free under `maxclients`, less a tenth of it (at least 10) kept for the
/// application's reconnects.
fn check_connections(m: &Migration, source: &ServerInfo) -> Result<()> {
    let Some(max) = source.maxclients else {
        return Ok(());
    };
    let free = max.saturating_sub(source.connected_clients);
    let spare = (max / 10).max(10);
    let needed = source_connections(m);
    if needed + spare > free {
        return Err(Error::InvalidInput(format!(
            "this run would open up to {needed} connections to the source {}, which has {free} free (maxclients {max}, {} connected) and ferry leaves {spare} for the application: lower --workers, --parallel or --tail-workers",
            source.addr, source.connected_clients
        )));
    }
    Ok(())
}

/// Why the target refuses RESTORE itself (an ACL without `+restore`, an Active-Active
/// database), found with a scratch key: `ferry:probe:{id}` is written, dumped and restored as
/// `ferry:probe:{id}:r` (one hash slot), then both are deleted; `None` when it takes it.
async fn restore_refusal(target: &Endpoint) -> Result<Option<String>> {
    let mut ep = target.clone();
    ep.db = ep.db_in_url.unwrap_or(0);
    let mut conn = Conn::keyspace(&ep).await?;
    let key = format!(
        "{}{{{:016x}}}",
        crate::model::scope::PROBE_PREFIX,
        rand::random::<u64>()
    );
    let copy = format!("{key}:r");
    conn.call(&["SET", &key, "1", "PX", "10000"]).await?;
    let refusal = match conn.call(&["DUMP", &key]).await {
        Ok(Reply::Bulk(payload)) => {
            let restored = conn
                .call(&[
                    &b"RESTORE"[..],
                    copy.as_bytes(),
                    b"10000",
                    &payload,
                    b"REPLACE",
                ])
                .await;
            match restored {
                Err(
                    Error::Server { message, .. }
                    | Error::AuthFailed {
                        reason: message, ..
                    },
                ) => Some(message),
                Err(e) => return Err(e),
                Ok(_) => None,
            }
        }
        // A target that may not even DUMP gives no answer here; the copy finds out.
        _ => None,
    };
    conn.call(&["DEL", &key, &copy]).await?;
    Ok(refusal)
}

/// The non-core key types the source may hold that the target cannot take by the run's
/// method (DUMP of the same module and a payload version it loads; struct takes none).
pub fn unsupported_types(
    m: &Migration,
    source: &ServerInfo,
    target: &ServerInfo,
) -> Vec<&'static str> {
    let dump = m.copy.method != Method::Struct;
    module_types::types_of(source)
        .into_iter()
        .filter(|t| !module_types::target_takes(t, source, target, dump))
        .collect()
}

/// A key of `type_name` in the source dbs in scope, on any of its nodes: `(db, key)`.
async fn find_on_source(
    m: &Migration,
    source: &ServerInfo,
    dbs: &[u32],
    type_name: &str,
) -> Result<Option<(u32, Bytes)>> {
    for node in &source.nodes {
        let mut conn = Conn::connect(&m.source.at(&node.primary.node)).await?;
        for &db in dbs.iter().filter(|db| node.dbs.contains_key(db)) {
            conn.select(db).await?;
            if let Some(key) = module_types::scan_type(&mut conn, type_name, 1)
                .await?
                .pop()
            {
                return Ok(Some((db, key)));
            }
        }
    }
    Ok(None)
}

async fn connect_info(ep: &Endpoint) -> Result<(Conn, ServerInfo)> {
    ServerInfo::read_keyspace(ep).await
}

/// Reads a server's INFO afresh (e.g. the target's key counts after a copy).
pub async fn server_info(ep: &Endpoint) -> Result<ServerInfo> {
    Ok(connect_info(ep).await?.1)
}

/// The source dbs in scope that hold keys.
pub fn source_dbs(scope: &Scope, source: &ServerInfo) -> Vec<u32> {
    source
        .dbs
        .iter()
        .filter(|(db, s)| s.keys > 0 && scope.covers_db(**db))
        .map(|(db, _)| *db)
        .collect()
}

/// The shard plan for the source: per node and db in scope with keys, cursor ranges sized to
/// the db (design §2).
pub fn plan_shards(m: &Migration, source: &ServerInfo) -> Vec<Shard> {
    plan_server(source, m.shards_per_db, Some(&source_dbs(&m.scope, source)))
}

/// The copy's plan: [`plan_shards`], scanned on replicas when the migration reads from them.
pub fn plan_copy_shards(m: &Migration, source: &ServerInfo) -> Vec<Shard> {
    let mut shards = plan_shards(m, source);
    if m.read_from_replicas {
        for shard in &mut shards {
            let node = source.nodes.iter().find(|n| n.primary.node == shard.node);
            if let Some(replica) = node.and_then(|n| n.replica.clone()) {
                shard.node = replica;
            }
        }
    }
    shards
}

/// Shards over every node and db of `server` that has keys (only `only_dbs` when given): the
/// per-slot scheme on a cluster whose SCAN cursor carries the slot (Redis ≥ 7.4, Valkey ≥ 8),
/// reversed-bit cursor ranges otherwise.
pub(crate) fn plan_server(
    server: &ServerInfo,
    shards_per_db: u32,
    only_dbs: Option<&[u32]>,
) -> Vec<Shard> {
    let per_slot = server.scans_by_slot();
    let mut shards = Vec::new();
    for node in &server.nodes {
        for (db, s) in &node.dbs {
            if s.keys == 0 || only_dbs.is_some_and(|only| !only.contains(db)) {
                continue;
            }
            if per_slot {
                let owned: Vec<(u16, u16)> = node
                    .primary
                    .slots
                    .iter()
                    .map(|&(a, b)| (a, b + 1))
                    .collect();
                shards.extend(plan::slot_shards(
                    &node.primary.node,
                    *db,
                    &owned,
                    shards_per_db,
                ));
            } else {
                shards.extend(plan::classic_shards(
                    &node.primary.node,
                    *db,
                    s.keys,
                    shards_per_db,
                ));
            }
        }
    }
    shards
}
