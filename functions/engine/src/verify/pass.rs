//! The verify passes (design §5): forward over the source's shards, reverse over the
//! target's keyspace in the dbs the migration owns, and both together ([`verify_all`]).

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::error::Result;
use crate::inventory::{Inventory, ServerInfo};
use crate::model::migration::{Method, Migration};
use crate::model::plan::Shard;
use crate::net::conn::Conn;
use crate::prepare::{plan_server, plan_shards, server_info, source_dbs, unsupported_types};
use crate::scan::{self, BatchWorker, ScanConfig};
use crate::util::cancel::StopWhen;
use crate::util::ratelimit::RateLimiter;
use crate::verify::{ReverseWorker, VerifyContext, VerifyOptions, VerifyReport, VerifyWorker};

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
        copy_method: Method::Auto,
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
    let mut config = ScanConfig::for_run(m, &m.source, ctx.limiter.clone(), on_scanned);
    config.distinct = true;
    config.stop = stop;
    run_on_both(m, ctx, shards, config, |source, target, ctx| VerifyWorker {
        source,
        target,
        ctx,
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
    let mut config = ScanConfig::for_run(m, &m.target, None, Arc::new(|_| {}));
    config.distinct = true;
    config.pattern = None;
    if let (Some(p), false) = (&m.scope.pattern, reverse_prefixed(m, &ctx)) {
        config.pattern = Some(p.clone());
    }
    config.stop = stop;
    config.limiter = None; // the reverse scan reads the target; its EXISTS are throttled
    run_on_both(m, ctx, shards, config, |source, target, ctx| {
        ReverseWorker {
            source,
            target,
            ctx,
        }
    })
    .await
}

/// Runs `shards` under `config` with workers that each hold a connection to both keyspaces
/// (a verify worker reads both sides of every key, whichever side it scans).
async fn run_on_both<W: BatchWorker>(
    m: &Migration,
    ctx: Arc<VerifyContext>,
    shards: Vec<Shard>,
    config: ScanConfig,
    worker: fn(Conn, Conn, Arc<VerifyContext>) -> W,
) -> Result<Vec<Shard>> {
    let (source, target) = (m.source.clone(), m.target.clone());
    scan::run_shards(shards, config, move || {
        let (source, target, ctx) = (source.clone(), target.clone(), ctx.clone());
        async move {
            let (s, t) = tokio::join!(Conn::keyspace(&source), Conn::keyspace(&target));
            Ok(worker(s?, t?, ctx))
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
