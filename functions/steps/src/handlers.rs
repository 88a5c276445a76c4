//! The Redis steps: Inventory, Plan, CopyShard, PlanVerify, VerifyShard. Each turns its JSON
//! input into engine calls (design §1) and its result into JSON; every one is safe to run again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_engine::copy::CopyContext;
use ferry_engine::model::migration::{CopyOptions, Method, Migration};
use ferry_engine::model::plan::Shard;
use ferry_engine::prepare::Purpose;
use ferry_engine::util::cancel::StopWhen;
use ferry_engine::verify::{DiffSample, Level, StatusCounts, VerifyOptions};
use serde::{Deserialize, Serialize};

use crate::aws::{endpoints, Ctx};
use crate::contracts::{
    CopyShardOutput, InventoryOutput, MigrationInput, Mode, StoredPlan, VerifyChoice,
    VerifyShardOutput,
};
use crate::error::StepError;
use crate::{metrics, plans};
use ferry_engine::copy;
use ferry_engine::keys::functions;
use ferry_engine::prepare;
use ferry_engine::run;
use ferry_engine::verify;

/// The engine's migration for an execution input, credentials from Secrets Manager.
pub async fn migration(ctx: &Ctx, input: &MigrationInput) -> Result<Migration, StepError> {
    input.check()?;
    let (source, target) = endpoints(&ctx.aws, input).await?;
    let o = &input.options;
    let mut m = Migration::scoped(source, target, &o.db_map)?;
    m.scope.pattern = o.key_pattern.clone();
    m.scope.key_type = o.key_type.clone();
    m.copy = CopyOptions {
        method: o.copy_type,
        max_source_ops: o.max_ops_per_sec,
        drop_field_ttls: o.drop_field_ttls,
        skip_unsupported: o.skip_unsupported,
        ..CopyOptions::default()
    };
    m.shards_per_db = o.shards_per_db.max(1);
    m.workers = o.workers.max(1);
    m.parallel = 1;
    m.allow_nonempty_target = o.allow_nonempty_target;
    m.read_from_replicas = o.read_from_replicas;
    Ok(m)
}

fn purpose(input: &MigrationInput) -> Purpose {
    match input.mode {
        Mode::Compare => Purpose::Compare,
        _ => Purpose::Copy,
    }
}

fn describe(s: &ferry_engine::inventory::ServerInfo) -> String {
    format!(
        "{} {} ({}, {} node(s), RDB {})",
        s.product,
        s.version,
        s.mode,
        s.nodes.len(),
        s.rdb_version
    )
}

/// Inventory: both servers looked at and the pairing checked before anything is written
/// (a failed preflight is a specific error type: TargetNotEmpty, IncompatibleVersion, …).
pub async fn inventory(ctx: Ctx, input: MigrationInput) -> Result<InventoryOutput, StepError> {
    let m = migration(&ctx, &input).await?;
    if input.mode == Mode::Compare && input.options.verify == VerifyChoice::Skip {
        return Err(StepError::invalid(
            "mode compare with options.verify none would do nothing",
        ));
    }
    let inv = prepare::inventory(&m, purpose(&input)).await?;
    Ok(InventoryOutput {
        source: describe(&inv.source),
        target: describe(&inv.target),
        source_keys: inv.source.total_keys(),
        copy_method: inv.copy_method,
        notes: inv.notes,
        max_concurrency: input.options.max_concurrency,
        verify: input.options.verify,
        live_channel: input.live_channel(),
    })
}

/// Plan: the copy's shards, each at the start of its cursor range.
pub async fn plan(ctx: Ctx, input: MigrationInput) -> Result<StoredPlan, StepError> {
    let bucket = plans::bucket()?;
    let shards = copy_plan(&ctx, &input).await?;
    plans::store(&ctx.aws, &bucket, &input.migration_id, "copy", &shards).await
}

/// The copy's shards, once the source is ready to be copied.
pub async fn copy_plan(ctx: &Ctx, input: &MigrationInput) -> Result<Vec<Shard>, StepError> {
    let m = migration(ctx, input).await?;
    let source = prepare::server_info(&m.source).await?;
    // Function libraries are server-level state: loaded once, here, before any shard is
    // copied (LOAD REPLACE: a rerun of this step is harmless).
    if input.mode != Mode::Compare {
        functions::copy_functions(&m).await?;
    }
    if input.mode != Mode::Compare {
        // A copy that reads replicas waits until each holds what its primary had now (live
        // mode: the tail subscribed before this step).
        run::settle_replicas(&m).await?;
    }
    Ok(prepare::plan_copy_shards(&m, &source))
}

/// CopyShard's and VerifyShard's input: the migration and one shard, with the counts of the
/// invocations before (the state machine passes each output back in).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardStep<C> {
    /// The execution input.
    pub migration: MigrationInput,
    /// The shard and its checkpoint.
    pub shard: Shard,
    /// Counts so far; absent on the first invocation.
    #[serde(default)]
    pub counts: Option<C>,
    /// VerifyShard only: `forward` (source shard, the default) or `reverse` (target shard).
    #[serde(default)]
    pub pass: Option<VerifyPass>,
}

/// How keys are copied between the two servers as they are now (versions decide DUMP or
/// struct), and the source's description.
pub async fn copy_context(
    m: &Migration,
) -> Result<(Arc<CopyContext>, ferry_engine::inventory::ServerInfo), StepError> {
    let (source, target) = tokio::try_join!(
        prepare::server_info(&m.source),
        prepare::server_info(&m.target)
    )?;
    let copy = CopyContext::new(m.copy.clone(), m.scope.clone(), &source, &target);
    Ok((Arc::new(copy), source))
}

/// When an invocation must stop scanning: the safety margin before the Lambda's deadline.
fn stop_at(ctx: &Ctx, input: &MigrationInput) -> StopWhen {
    let margin = Duration::from_millis(input.options.safety_margin_ms);
    StopWhen {
        deadline: ctx
            .deadline
            .map(|d| d.checked_sub(margin).unwrap_or_else(Instant::now)),
        stop: None,
    }
}

/// CopyShard: copies one shard from its cursor until its range is done or the time budget
/// runs out, and returns the checkpoint. Running it again from any checkpoint is harmless:
/// every write is an idempotent RESTORE REPLACE (design §2, §6).
pub async fn copy_shard(
    ctx: Ctx,
    input: ShardStep<copy::Counts>,
) -> Result<CopyShardOutput, StepError> {
    let m = migration(&ctx, &input.migration).await?;
    let (copy, _) = copy_context(&m).await?;
    let stop = stop_at(&ctx, &input.migration);
    let mut shards = copy::copy_shards(&m, copy.clone(), vec![input.shard], stop).await?;
    let shard = shards.pop().expect("one shard in, one out");
    let now = copy.stats.counts();
    let mut counts = input.counts.unwrap_or_default();
    counts.add(&now);
    metrics::emit(
        &input.migration.migration_id,
        &[
            ("KeysCopied", now.copied as f64, "Count"),
            ("ShardsDone", if shard.done { 1.0 } else { 0.0 }, "Count"),
        ],
    );
    tracing::info!(shard = %shard.id, done = shard.done, copied = now.copied, "copy shard invocation");
    Ok(CopyShardOutput {
        done: shard.done,
        shard,
        counts,
    })
}

/// One VerifyShard work item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyItem {
    /// The shard.
    pub shard: Shard,
    /// Which pass the shard belongs to.
    pub pass: VerifyPass,
}

/// The two verify passes (design §5): over the source's shards, or over the target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyPass {
    /// Every source key on the target, equal.
    #[default]
    Forward,
    /// No target key the migration owns missing on the source.
    Reverse,
}

fn verify_options(input: &MigrationInput) -> VerifyOptions {
    VerifyOptions {
        // A compare run with `none` is refused before this; a verify state runs full then.
        level: input.options.verify.level().unwrap_or(Level::Full),
        keep_diffs: 0,
        ..VerifyOptions::default()
    }
}

/// The verify context of a run, from fresh INFO of both sides.
async fn verify_setup(
    m: &Migration,
    input: &MigrationInput,
) -> Result<
    (
        Arc<verify::VerifyContext>,
        ferry_engine::inventory::ServerInfo,
    ),
    StepError,
> {
    let (source, target) = tokio::try_join!(
        prepare::server_info(&m.source),
        prepare::server_info(&m.target)
    )?;
    let inv = ferry_engine::inventory::Inventory {
        source,
        target: target.clone(),
        type_sample: Default::default(),
        copy_method: Method::Auto,
        notes: Vec::new(),
    };
    let limiter = (m.copy.max_source_ops > 0).then(|| {
        Arc::new(ferry_engine::util::ratelimit::RateLimiter::new(
            m.copy.max_source_ops,
        ))
    });
    Ok((
        verify::verify_context(m, &inv, &[], limiter, verify_options(input)),
        target,
    ))
}

/// PlanVerify: the shards VerifyShard maps over, both directions (design §5).
pub async fn plan_verify(ctx: Ctx, input: MigrationInput) -> Result<StoredPlan, StepError> {
    let bucket = plans::bucket()?;
    let items = verify_plan(&ctx, &input).await?;
    plans::store(&ctx.aws, &bucket, &input.migration_id, "verify", &items).await
}

/// The verify's items: forward shards over the source and reverse shards over the target,
/// once the function libraries compare equal.
pub async fn verify_plan(ctx: &Ctx, input: &MigrationInput) -> Result<Vec<VerifyItem>, StepError> {
    let m = migration(ctx, input).await?;
    let source = prepare::server_info(&m.source).await?;
    let functions = functions::verify(&m.source, &m.target).await?;
    if functions.differences() > 0 {
        return Err(StepError::Named {
            kind: "VerifyFailed",
            message: format!(
                "function libraries: ok {}, missing {}, different {} (per target primary)",
                functions.ok, functions.missing, functions.different
            ),
        });
    }
    let (vctx, target) = verify_setup(&m, input).await?;
    let mut items: Vec<VerifyItem> = prepare::plan_shards(&m, &source)
        .into_iter()
        .map(|shard| VerifyItem {
            shard,
            pass: VerifyPass::Forward,
        })
        .collect();
    items.extend(
        verify::plan_reverse(&m, &vctx, &target)
            .into_iter()
            .map(|shard| VerifyItem {
                shard,
                pass: VerifyPass::Reverse,
            }),
    );
    Ok(items)
}

/// VerifyShard: compares one shard from its cursor until done or the time budget runs out;
/// counts add up over invocations. Fails with `VerifyFailed` when the shard is done and any
/// key differs.
pub async fn verify_shard(
    ctx: Ctx,
    input: ShardStep<StatusCounts>,
) -> Result<VerifyShardOutput, StepError> {
    let m = migration(&ctx, &input.migration).await?;
    let (vctx, _) = verify_setup(&m, &input.migration).await?;
    let stop = stop_at(&ctx, &input.migration);
    let id = input.shard.id.clone();
    let mut shards = match input.pass.unwrap_or_default() {
        VerifyPass::Forward => {
            verify::verify_shards(&m, vctx.clone(), vec![input.shard], Arc::new(|_| {}), stop)
                .await?
        }
        VerifyPass::Reverse => {
            verify::verify_reverse_shards(&m, vctx.clone(), vec![input.shard], stop).await?
        }
    };
    let shard = shards.pop().expect("one shard in, one out");
    let report = vctx.take_report();
    let mut counts = input.counts.unwrap_or_default();
    counts.add(&report.total);
    let sample: Vec<DiffSample> = report.sample;
    let ok = counts.differences() == 0;
    if shard.done && !ok {
        // The counts add up over rounds; the sample is this round's.
        let keys: Vec<&String> = sample.iter().map(|d| &d.key).collect();
        let example = match keys.is_empty() {
            true => "the differing keys were found by an earlier round of this shard (that round's output names them)".to_string(),
            false => format!("e.g. {keys:?}"),
        };
        return Err(StepError::Named {
            kind: "VerifyFailed",
            message: format!(
                "shard {id}: ok {}, missing {}, extra {}, type {}, ttl {}, value {}, unverified {}; {example}",
                counts.ok,
                counts.missing,
                counts.extra,
                counts.type_,
                counts.ttl,
                counts.value,
                counts.unverified,
            ),
        });
    }
    Ok(VerifyShardOutput {
        shard_id: id,
        done: shard.done,
        shard,
        counts,
        sample,
        ok,
    })
}
