//! What every copier of a run shares: options, scope, the servers' capabilities, counters and
//! the source's rate limit.

use super::*;
use crate::inventory::Inventory;
use crate::model::migration::Migration;

impl Migration {
    /// The context every copier of this run shares, from what inventory found.
    pub fn copy_context(&self, inv: &Inventory) -> Arc<CopyContext> {
        let ctx = CopyContext::new(
            self.copy.clone(),
            self.scope.clone(),
            &inv.source,
            &inv.target,
        );
        if inv.copy_method == Method::Struct {
            ctx.refuse_restore();
        }
        Arc::new(ctx)
    }
}

/// What every copier of a run shares: options, what the servers support, counters, limits.
#[derive(Debug)]
pub struct CopyContext {
    /// Options of the run.
    pub options: CopyOptions,
    /// Keys in scope and where they land.
    pub scope: Scope,
    /// The source has PEXPIRETIME (else PTTL).
    pub source_absolute_ttl: bool,
    /// The target's RDB version; payloads it cannot load go struct.
    pub target_rdb: u16,
    /// The source's RDB version (what its DUMP payloads carry).
    pub source_rdb: u16,
    /// The target takes stream counters (XSETID ENTRIESADDED, XGROUP ENTRIESREAD).
    pub target_stream_counters: bool,
    /// Every key goes struct (the method says so, or auto found the versions incompatible).
    pub all_struct: bool,
    /// Run counters.
    pub stats: Stats,
    /// Load cap on the source.
    pub limiter: Option<Arc<RateLimiter>>,
    /// What the struct path does with hash-field TTLs.
    pub field_ttls: FieldTtls,
    /// Module key types the target has (a per-type copy of JSON and filters needs them).
    pub target_types: Vec<&'static str>,
    /// Set when the target refused RESTORE itself (an ACL without `+restore`, an Active-Active
    /// database): from then on every key goes per type.
    pub(super) restore_refused: AtomicBool,
    /// Set when `MEMORY USAGE` is refused, so the struct path stops probing sizes.
    pub(super) memory_usage_refused: AtomicBool,
}

impl CopyContext {
    /// Builds the shared context from the servers' capabilities.
    pub fn new(
        options: CopyOptions,
        scope: Scope,
        source: &crate::inventory::ServerInfo,
        target: &crate::inventory::ServerInfo,
    ) -> CopyContext {
        let all_struct = match options.method {
            Method::Struct => true,
            Method::Dump => false,
            Method::Auto => !restore_accepts(target.rdb_version, source.rdb_version),
        };
        let field_ttls = FieldTtls::for_pair(source, target, options.drop_field_ttls);
        CopyContext {
            limiter: (options.max_source_ops > 0)
                .then(|| Arc::new(RateLimiter::new(options.max_source_ops))),
            options,
            scope,
            source_absolute_ttl: source.has_pexpiretime(),
            target_rdb: target.rdb_version,
            source_rdb: source.rdb_version,
            target_stream_counters: target.has_stream_counters(),
            all_struct,
            field_ttls,
            target_types: crate::keys::module_types::types_of(target),
            stats: Stats::default(),
            restore_refused: AtomicBool::new(false),
            memory_usage_refused: AtomicBool::new(false),
        }
    }

    /// Waits until `ops` more source commands fit under the load cap.
    pub async fn throttle(&self, ops: u64) {
        if let Some(l) = &self.limiter {
            l.acquire(ops).await;
        }
    }

    /// Copies every key per type from now on: the target refuses RESTORE (found by inventory's
    /// probe, or by a refused RESTORE during the copy).
    pub fn refuse_restore(&self) {
        self.restore_refused.store(true, Ordering::Relaxed);
    }

    /// Whether keys go per type rather than by DUMP/RESTORE.
    pub(super) fn per_type(&self) -> bool {
        self.all_struct || self.restore_refused.load(Ordering::Relaxed)
    }
}

/// Whether a RESTORE error says the target refuses the command itself (not the payload).
pub(super) fn refuses_restore(message: &str) -> bool {
    message.starts_with("NOPERM")
        || message.contains("unknown command")
        || message.contains("not supported")
}
