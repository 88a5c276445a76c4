//! The reverse check: a batch of the target's keys looked up on the source, so a key the
//! migration owns that the source lacks is found.

use super::*;
use forward::expiring;

/// The reverse pass: batches of target keys checked for existence on the source.
pub struct ReverseWorker {
    /// Source connection.
    pub source: Conn,
    /// Target connection (the TTL of a would-be extra).
    pub target: Conn,
    /// Shared settings and report.
    pub ctx: Arc<VerifyContext>,
}

impl BatchWorker for ReverseWorker {
    fn due_for_renewal(&self) -> bool {
        self.source.due_for_renewal() || self.target.due_for_renewal()
    }

    /// A target key is extra only when it is the migration's (it has an owner: a source db in
    /// scope maps there, with its prefix, and its name is in the pattern) and no owner holds it
    /// on the source. Keys that are not the migration's are never counted, so never deleted.
    async fn process(&mut self, target_db: u32, keys: Vec<Bytes>) -> Result<()> {
        let mut local = VerifyReport::default();
        // Per target key, how many of its owners were asked and how many hold it.
        let mut asked: Vec<(Bytes, usize)> = Vec::new();
        let mut by_db: BTreeMap<u32, Vec<(usize, Bytes)>> = BTreeMap::new();
        for k in keys {
            let owners = self
                .ctx
                .scope
                .owners_of(target_db, &k, &self.ctx.source_dbs);
            if owners.is_empty() {
                continue;
            }
            for (db, source_key) in owners {
                by_db.entry(db).or_default().push((asked.len(), source_key));
            }
            asked.push((k, 0));
        }
        for (db, pairs) in by_db {
            self.ctx.throttle(pairs.len()).await;
            self.source.select(db).await?;
            for (_, sk) in &pairs {
                self.source.queue(&[&b"EXISTS"[..], sk]);
            }
            self.source.send().await?;
            for (i, _) in &pairs {
                if self.source.recv().await?.as_int().unwrap_or(1) > 0 {
                    asked[*i].1 += 1;
                }
            }
        }
        let unheld: Vec<Bytes> = asked
            .into_iter()
            .filter(|(_, held)| *held == 0)
            .map(|(k, _)| k)
            .collect();
        if !unheld.is_empty() {
            // A key that expired on the source a moment before the target reclaimed its copy
            // is not an extra: it is gone, or about to be, on the target too.
            self.target.select(target_db).await?;
            for k in &unheld {
                self.target.queue(&[&b"PTTL"[..], k]);
            }
            self.target.send().await?;
            for k in &unheld {
                let ttl = Ttl::from_reply(&self.target.recv().await?, false);
                let ending = match ttl {
                    Ttl::Gone => true,
                    ttl => expiring(ttl, self.ctx.options.ttl_tolerance_ms),
                };
                if !ending {
                    local.record(target_db, k, Status::Extra, &self.ctx.options);
                }
            }
        }
        self.ctx.merge(local);
        Ok(())
    }
}
