//! The copy pass: the shards of a plan scanned in parallel, each batch of keys handed to a
//! [`Copier`]; stopped early (a deadline, a signal) it hands back checkpoints.

use crate::util::cancel::StopWhen;

use std::sync::Arc;

use bytes::Bytes;

use crate::copy::{Copier, CopyContext};
use crate::error::Result;
use crate::model::migration::Migration;
use crate::model::plan::Shard;
use crate::net::conn::Conn;
use crate::scan::{self, BatchWorker, ScanConfig};

impl BatchWorker for Copier {
    async fn process(&mut self, db: u32, keys: Vec<Bytes>) -> Result<()> {
        self.copy_keys(db, &keys).await
    }

    fn due_for_renewal(&self) -> bool {
        self.source.due_for_renewal() || self.target.due_for_renewal()
    }
}

/// Copies the shards; returns them with their checkpoints (all `done` unless stopped early).
pub async fn copy_shards(
    m: &Migration,
    ctx: Arc<CopyContext>,
    shards: Vec<Shard>,
    stop: StopWhen,
) -> Result<Vec<Shard>> {
    let counter = ctx.clone();
    let mut config = ScanConfig::for_run(
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
    config.stop = stop;
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
