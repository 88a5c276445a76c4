//! The dump method: `DUMP` + expiry on the source, `RESTORE … REPLACE ABSTTL` on the target, a
//! payload over the big-key limit dropped as it streams in (the key then goes [`super::big`]).

use super::*;

impl Copier {
    /// DUMP + TTL on the source, RESTORE on the target. Each payload is encoded into a RESTORE
    /// as soon as it is read and the target pipeline is flushed every few megabytes, so ferry
    /// never holds a round's payloads. The restored keys are added to `unacknowledged`: their
    /// replies are read by the caller. Returns the keys to copy per type instead: those whose
    /// payload the target cannot load (auto), and those over the big-key limit (read off the
    /// socket and dropped).
    pub(super) async fn dump_copy(
        &mut self,
        db: u32,
        keys: &[Bytes],
        unacknowledged: &mut Vec<Bytes>,
    ) -> Result<(Vec<Bytes>, Vec<Bytes>)> {
        let absolute = self.ctx.source_absolute_ttl;
        let limit = self.big_limit();
        self.ctx.throttle(2 * keys.len() as u64).await;
        for k in keys {
            self.source.queue(&[&b"DUMP"[..], k]);
            Ttl::queue_read(&mut self.source, k, absolute);
        }
        self.source.send().await?;
        let (mut refused, mut big) = (Vec::new(), Vec::new());
        let mut restored = Vec::with_capacity(keys.len());
        let mut bytes = 0usize;
        for k in keys {
            let payload = self.source.recv_limited(limit).await?;
            let ttl = Ttl::from_reply(&self.source.recv().await?, absolute);
            match (payload, ttl) {
                (Reply::Skipped(_), _) => big.push(k.clone()),
                (Reply::Bulk(payload), ttl) if ttl != Ttl::Gone => {
                    let fits = payload_rdb_version(&payload)
                        .is_none_or(|v| restore_accepts(self.ctx.target_rdb, v));
                    if !fits && self.ctx.options.method == Method::Auto {
                        refused.push(k.clone());
                        continue;
                    }
                    self.queue_restore(db, k, &payload, ttl);
                    bytes += payload.len();
                    restored.push(k.clone());
                    if self.target.unsent() >= FLUSH_BYTES {
                        self.target.send().await?;
                    }
                }
                (Reply::Error(e), _) => {
                    return Err(self
                        .source
                        .server_error(b"DUMP", &String::from_utf8_lossy(&e)));
                }
                _ => self.note_gone(k),
            }
        }
        self.note_round(restored.len(), bytes);
        self.target.send().await?;
        unacknowledged.extend(restored);
        bump(&self.ctx.stats.bytes, bytes as u64);
        Ok((refused, big))
    }

    /// Encodes `RESTORE key ttl payload REPLACE [ABSTTL]` into the target pipeline.
    pub(super) fn queue_restore(&mut self, db: u32, key: &Bytes, payload: &[u8], ttl: Ttl) {
        let mapped;
        let key: &[u8] = if self.ctx.scope.db_map.is_empty() {
            key
        } else {
            mapped = self.ctx.scope.target_key(db, key);
            &mapped
        };
        let out = self.target.wbuf_for(key);
        let (ttl, abs) = match ttl {
            Ttl::At(ms) => (ms, true),
            Ttl::In(ms) => (ms.max(1), false),
            _ => (0, false),
        };
        resp::encode_array_header(out, if abs { 6 } else { 5 });
        resp::encode_bulk(out, b"RESTORE");
        resp::encode_bulk(out, key);
        resp::encode_bulk_int(out, ttl);
        resp::encode_bulk(out, payload);
        resp::encode_bulk(out, b"REPLACE");
        if abs {
            resp::encode_bulk(out, b"ABSTTL");
        }
    }

    /// Reads the RESTORE replies for `keys`; returns those refused for their payload version
    /// (auto), or the first error.
    pub(super) async fn restore_replies(&mut self, keys: &[Bytes]) -> Result<Vec<Bytes>> {
        let mut refused = Vec::new();
        let mut first_error = None;
        for k in keys {
            match self.target.recv().await? {
                Reply::Error(e) => {
                    let msg = String::from_utf8_lossy(&e).into_owned();
                    if refuses_restore(&msg) && self.ctx.options.method == Method::Auto {
                        if !self.ctx.restore_refused.swap(true, Ordering::Relaxed) {
                            tracing::warn!(error = %crate::error::server_text(&msg), "the target refuses RESTORE: copying per type from now on");
                        }
                        refused.push(k.clone());
                        continue;
                    }
                    // Redis words a bad version and a bad checksum alike; a payload whose
                    // version the target accepts can only have failed its checksum.
                    let version_fits = restore_accepts(self.ctx.target_rdb, self.ctx.source_rdb);
                    if msg.contains("checksum") && version_fits {
                        first_error.get_or_insert_with(|| Error::Server {
                            addr: self.target.addr(),
                            command: "RESTORE".into(),
                            message: format!(
                                "the DUMP payload of '{}' failed the target's checksum check: it was corrupted between the source and the target (or by the source); nothing else was written for it",
                                crate::model::scope::display_key(&k[..k.len().min(200)])
                            ),
                        });
                        continue;
                    }
                    let version_error =
                        msg.contains("payload version") || msg.contains("Bad data format");
                    if version_error && self.ctx.options.method == Method::Auto {
                        refused.push(k.clone());
                    } else if first_error.is_none() {
                        first_error = Some(if version_error {
                            Error::Incompatible(format!(
                                "target {} cannot RESTORE this source's payloads ({msg}); use --type auto or struct",
                                self.target.addr()
                            ))
                        } else {
                            self.target.server_error(b"RESTORE", &msg)
                        });
                    }
                }
                _ => bump(&self.ctx.stats.copied, 1),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(refused),
        }
    }
}
