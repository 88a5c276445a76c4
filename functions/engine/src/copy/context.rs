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
        if inv.copy_method == "struct" {
            ctx.refuse_restore();
        }
        Arc::new(ctx)
    }
}
