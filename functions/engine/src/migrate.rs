//! One migration, step by step: inventory and preflight, the shard plan, the copy, verify and
//! repair. The CLI runs these in sequence; each Lambda runs one of them.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::conn::Conn;
use crate::copy::{Copier, CopyContext, CopyOptions, Method};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::functions;
use crate::inventory::{self, Inventory, ServerInfo};
use crate::module_types;
use crate::plan::{self, Shard};
use crate::ratelimit::RateLimiter;
use crate::resp::Reply;
use crate::scan::{self, BatchWorker, ScanConfig};
use crate::scope::Scope;
use crate::verify::{
    ReverseWorker, Status, VerifyContext, VerifyOptions, VerifyReport, VerifyWorker,
};

/// Everything a migration run needs to know, from the user.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Where keys come from.
    pub source: Endpoint,
    /// Where keys go.
    pub target: Endpoint,
    /// Which keys, and where they land.
    pub scope: Scope,
    /// How keys are copied.
    pub copy: CopyOptions,
    /// Shards per source database (a power of two is used, no more than the table has buckets).
    pub shards_per_db: u32,
    /// Shards scanned at once.
    pub parallel: usize,
    /// Pipelined workers (each a source and a target connection).
    pub workers: usize,
    /// Write into a target that already holds keys.
    pub allow_nonempty_target: bool,
    /// Snapshot reads (SCAN, DUMP) from a replica of each cluster primary, sparing the primaries.
    pub read_from_replicas: bool,
    /// Copy workers of the live tail (0 without a tail): their connections count too.
    pub tail_workers: usize,
    /// This run holds the target lease, whose key is one of target db 0's keys.
    pub holds_lease: bool,
}

impl Migration {
    /// A migration with default settings between two endpoints.
    pub fn new(source: Endpoint, target: Endpoint) -> Migration {
        Migration {
            source,
            target,
            scope: Scope::default(),
            copy: CopyOptions::default(),
            shards_per_db: 8,
            parallel: 4,
            workers: 8,
            allow_nonempty_target: false,
            read_from_replicas: false,
            tail_workers: 0,
            holds_lease: false,
        }
    }
}

impl Migration {
    /// The context every copier of this run shares, from what inventory found.
    pub fn copy_context(&self, inv: &Inventory) -> Arc<CopyContext> {
        let ctx = CopyContext::new(
            self.copy.clone(),
            self.scope.clone(),
            &inv.source,
            &inv.target,
        );
        if inv.copy_method == "struct" {
            ctx.refuse_restore();
        }
        Arc::new(ctx)
    }
}

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
    if purpose == Purpose::Copy && target.role != "master" {
        return Err(Error::Incompatible(format!(
            "the target {} is a read-only replica (role {}): point ferry at its primary",
            target.addr, target.role
        )));
    }
    check_connections(m, &source)?;
    let dbs = source_dbs(&m.scope, &source);
    m.scope.check_collisions(&dbs)?;
    for &db in &dbs {
        let t = m.scope.target_of(db);
        let single_db = target.mode == "cluster";
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
        Method::Struct => "struct",
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
            "struct"
        }
        _ if inventory::restore_accepts(target.rdb_version, source.rdb_version) => "dump",
        Method::Auto => {
            notes.push(format!(
                "target RDB version {} cannot load source RDB version {} payloads: keys are copied per type (struct)",
                target.rdb_version, source.rdb_version
            ));
            "struct"
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
                crate::scope::display_key(&key[..key.len().min(200)]),
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
        copy_method: copy_method.to_string(),
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
        crate::scope::PROBE_PREFIX,
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
        let mut conn = Conn::connect(&scan::node_endpoint(&m.source, &node.addr)?).await?;
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
            let node = source.nodes.iter().find(|n| n.addr == shard.node);
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
fn plan_server(server: &ServerInfo, shards_per_db: u32, only_dbs: Option<&[u32]>) -> Vec<Shard> {
    let per_slot =
        server.mode == "cluster" && plan::scans_by_slot(&server.product, server.major_minor());
    let mut shards = Vec::new();
    for node in &server.nodes {
        for (db, s) in &node.dbs {
            if s.keys == 0 || only_dbs.is_some_and(|only| !only.contains(db)) {
                continue;
            }
            if per_slot {
                let owned: Vec<(u16, u16)> = node.slots.iter().map(|&(a, b)| (a, b + 1)).collect();
                shards.extend(plan::slot_shards(&node.addr, *db, &owned, shards_per_db));
            } else {
                shards.extend(plan::classic_shards(&node.addr, *db, s.keys, shards_per_db));
            }
        }
    }
    shards
}

fn scan_config(
    m: &Migration,
    endpoint: &Endpoint,
    ctx_limiter: Option<Arc<crate::ratelimit::RateLimiter>>,
    on_scanned: Arc<dyn Fn(u64) + Send + Sync>,
) -> ScanConfig {
    ScanConfig {
        endpoint: endpoint.clone(),
        pattern: m.scope.pattern.clone(),
        key_type: m.scope.key_type.clone(),
        count: m.copy.scan_count,
        batch_keys: m.copy.batch_keys,
        parallel: m.parallel,
        workers: m.workers,
        deadline: None,
        stop: Arc::new(AtomicBool::new(false)),
        limiter: ctx_limiter,
        on_scanned,
        distinct: false,
    }
}

impl BatchWorker for Copier {
    async fn process(&mut self, db: u32, keys: Vec<Bytes>) -> Result<()> {
        self.copy_keys(db, &keys).await
    }

    fn due_for_renewal(&self) -> bool {
        self.source.due_for_renewal() || self.target.due_for_renewal()
    }
}

/// When a copy run should stop early and hand back checkpoints.
#[derive(Debug, Clone, Default)]
pub struct StopWhen {
    /// Stop scanning at this instant (a Lambda's time budget).
    pub deadline: Option<Instant>,
    /// Stop scanning when set (a signal).
    pub flag: Option<Arc<AtomicBool>>,
}

/// Copies the shards; returns them with their checkpoints (all `done` unless stopped early).
pub async fn copy_shards(
    m: &Migration,
    ctx: Arc<CopyContext>,
    shards: Vec<Shard>,
    stop: StopWhen,
) -> Result<Vec<Shard>> {
    let counter = ctx.clone();
    let mut config = scan_config(
        m,
        &m.source,
        ctx.limiter.clone(),
        Arc::new(move |n| {
            counter
                .stats
                .scanned
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }),
    );
    config.deadline = stop.deadline;
    if let Some(flag) = stop.flag {
        config.stop = flag;
    }
    let (source, target) = (m.source.clone(), m.target.clone());
    let from_replicas = m.read_from_replicas;
    scan::run_shards(shards, config, move || {
        let (source, target, ctx) = (source.clone(), target.clone(), ctx.clone());
        async move {
            let (s, t) = tokio::join!(
                Conn::keyspace_reading(&source, from_replicas),
                Conn::keyspace(&target)
            );
            Ok(Copier::new(s?, t?, ctx))
        }
    })
    .await
}

/// Builds the verify context for a run. `known_dbs` are source dbs the migration has copied
/// before (held keys at its start), so a db the source emptied meanwhile is still checked for
/// leftovers on the target; `limiter` is the run's load cap on the source.
pub fn verify_context(
    m: &Migration,
    inv: &Inventory,
    known_dbs: &[u32],
    limiter: Option<Arc<RateLimiter>>,
    options: VerifyOptions,
) -> Arc<VerifyContext> {
    Arc::new(VerifyContext {
        options,
        scope: m.scope.clone(),
        absolute_ttl: inv.source.has_pexpiretime() && inv.target.has_pexpiretime(),
        field_ttls: inv.source.has_field_ttls() && inv.target.has_field_ttls(),
        stream_counters: inv.source.has_stream_counters() && inv.target.has_stream_counters(),
        same_payloads: inv.source.rdb_version == inv.target.rdb_version,
        skipped_types: match m.copy.skip_unsupported {
            true => unsupported_types(m, &inv.source, &inv.target)
                .into_iter()
                .map(|t| Bytes::from_static(t.as_bytes()))
                .collect(),
            false => Vec::new(),
        },
        source_dbs: owned_dbs(m, &inv.source, known_dbs),
        limiter,
        report: Mutex::new(VerifyReport::default()),
    })
}

/// A verify context on the servers as they are now (a live run: keys and dbs come and go),
/// for `known_dbs` and whatever dbs hold keys now; with the inventory it was built from.
pub async fn current_verify_context(
    m: &Migration,
    known_dbs: &[u32],
    limiter: Option<Arc<RateLimiter>>,
    options: VerifyOptions,
) -> Result<(Inventory, Arc<VerifyContext>)> {
    let (source, target) = tokio::try_join!(server_info(&m.source), server_info(&m.target))?;
    let inv = Inventory {
        source,
        target,
        type_sample: Default::default(),
        copy_method: String::new(),
        notes: Vec::new(),
    };
    let ctx = verify_context(m, &inv, known_dbs, limiter, options);
    Ok((inv, ctx))
}

/// The source dbs whose keys the migration owns on the target: those in scope holding keys
/// now, those it copied before, and those `--db-map` names. Target dbs are never added on their
/// own account: a target db no source db maps to is not the migration's.
pub fn owned_dbs(m: &Migration, source: &ServerInfo, known_dbs: &[u32]) -> Vec<u32> {
    let mut dbs = source_dbs(&m.scope, source);
    dbs.extend(known_dbs.iter().copied());
    dbs.extend(m.scope.db_map.keys().copied());
    dbs.retain(|db| m.scope.covers_db(*db));
    dbs.sort_unstable();
    dbs.dedup();
    dbs
}

/// Verifies `shards` of the source against the target (forward pass only); returns the shards
/// with their checkpoints (all `done` unless stopped early).
pub async fn verify_shards(
    m: &Migration,
    ctx: Arc<VerifyContext>,
    shards: Vec<Shard>,
    on_scanned: Arc<dyn Fn(u64) + Send + Sync>,
    stop: StopWhen,
) -> Result<Vec<Shard>> {
    let mut config = scan_config(m, &m.source, ctx.limiter.clone(), on_scanned);
    config.distinct = true;
    config.deadline = stop.deadline;
    if let Some(flag) = stop.flag {
        config.stop = flag;
    }
    let (source, target) = (m.source.clone(), m.target.clone());
    scan::run_shards(shards, config, move || {
        let (source, target, ctx) = (source.clone(), target.clone(), ctx.clone());
        async move {
            let (s, t) = tokio::join!(Conn::keyspace(&source), Conn::keyspace(&target));
            Ok(VerifyWorker {
                source: s?,
                target: t?,
                ctx,
            })
        }
    })
    .await
}

/// The reverse pass's shards: the target's keyspace in the dbs the scope maps to. Which of
/// their keys are the migration's is decided per key ([`Scope::owners_of`]).
pub fn plan_reverse(m: &Migration, ctx: &VerifyContext, target: &ServerInfo) -> Vec<Shard> {
    let target_dbs: std::collections::BTreeSet<u32> = ctx
        .source_dbs
        .iter()
        .map(|db| m.scope.target_of(*db).db)
        .collect();
    let target_dbs: Vec<u32> = target_dbs.into_iter().collect();
    plan_server(target, m.shards_per_db, Some(&target_dbs))
}

fn reverse_prefixed(m: &Migration, ctx: &VerifyContext) -> bool {
    ctx.source_dbs
        .iter()
        .any(|db| !m.scope.target_of(*db).prefix.is_empty())
}

/// Runs reverse-pass `shards` (planned by [`plan_reverse`]); returns their checkpoints.
pub async fn verify_reverse_shards(
    m: &Migration,
    ctx: Arc<VerifyContext>,
    shards: Vec<Shard>,
    stop: StopWhen,
) -> Result<Vec<Shard>> {
    let mut config = scan_config(m, &m.target, None, Arc::new(|_| {}));
    config.distinct = true;
    config.pattern = None;
    if let (Some(p), false) = (&m.scope.pattern, reverse_prefixed(m, &ctx)) {
        config.pattern = Some(p.clone());
    }
    config.deadline = stop.deadline;
    if let Some(flag) = stop.flag {
        config.stop = flag;
    }
    config.limiter = None; // the reverse scan reads the target; its EXISTS are throttled
    let (source, target) = (m.source.clone(), m.target.clone());
    scan::run_shards(shards, config, move || {
        let (source, target, ctx) = (source.clone(), target.clone(), ctx.clone());
        async move {
            let (s, t) = tokio::join!(Conn::keyspace(&source), Conn::keyspace(&target));
            Ok(ReverseWorker {
                source: s?,
                target: t?,
                ctx,
            })
        }
    })
    .await
}

/// Forward and reverse passes over the whole scope (every target key the migration owns must
/// exist on the source). Stopped early by `stop`, it returns what it found so far and
/// `complete: false`.
pub async fn verify_all(
    m: &Migration,
    inv: &Inventory,
    ctx: Arc<VerifyContext>,
    on_scanned: Arc<dyn Fn(u64) + Send + Sync>,
    stop: StopWhen,
) -> Result<(VerifyReport, bool)> {
    let shards = plan_shards(m, &inv.source);
    let forward = verify_shards(m, ctx.clone(), shards, on_scanned, stop.clone()).await?;
    let mut complete = forward.iter().all(|s| s.done);
    if complete {
        let target_now = server_info(&m.target).await?;
        let shards = plan_reverse(m, &ctx, &target_now);
        let reverse = verify_reverse_shards(m, ctx.clone(), shards, stop).await?;
        complete = reverse.iter().all(|s| s.done);
    }
    Ok((ctx.take_report(), complete))
}

/// Loads the source's function libraries on the target (every primary); returns how many.
pub async fn copy_functions(m: &Migration) -> Result<usize> {
    match functions::source_libraries(&m.source).await? {
        Some(libs) if !libs.is_empty() => functions::sync(&libs, &[], &m.target).await,
        _ => Ok(0),
    }
}

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
) -> Result<crate::verify::VerifyReport> {
    let (s, t) = tokio::join!(Conn::keyspace(&m.source), Conn::keyspace(&m.target));
    let mut checker = VerifyWorker {
        source: s?,
        target: t?,
        ctx: verify,
    };
    let mut report = crate::verify::VerifyReport::default();
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
    diffs: &[crate::verify::Diff],
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
    diffs: &[crate::verify::Diff],
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
