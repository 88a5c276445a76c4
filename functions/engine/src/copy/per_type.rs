//! The struct method: each key read with its type's own commands and written back in one
//! `MULTI`/`EXEC` with its expiry and hash-field TTLs; module types by their module's commands.

use super::*;

impl Copier {
    /// Copies keys with native commands: small keys batched, streams one by one. Returns the
    /// keys over the big-key limit, for the chunked path.
    ///
    /// Three pipelined rounds on the source: TYPE and expiry; then a string's value (read with
    /// the big-key limit, like a DUMP payload) or a collection's `MEMORY USAGE` (so a huge one
    /// is never read whole); then the small collections whole. A string is written with one
    /// `SET … PXAT`, which replaces any old value and its expiry atomically; a collection in a
    /// MULTI of DEL, writes and expiry, so a duplicate copy can never interleave with it.
    pub(super) async fn struct_copy(&mut self, db: u32, keys: &[Bytes]) -> Result<Vec<Bytes>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let absolute = self.ctx.source_absolute_ttl;
        self.ctx.throttle(2 * keys.len() as u64).await;
        for k in keys {
            self.source.queue(&[&b"TYPE"[..], k]);
            Ttl::queue_read(&mut self.source, k, absolute);
        }
        self.source.send().await?;
        let mut found = Vec::with_capacity(keys.len());
        let (mut one_by_one, mut module_keys) = (Vec::new(), Vec::new());
        for k in keys {
            let type_reply = self.source.recv().await?;
            let kind = Kind::from_type_reply(&type_reply);
            let ttl = Ttl::from_reply(&self.source.recv().await?, absolute);
            if let (Err(_), Some(name)) = (&kind, self.module_copyable(&type_reply)) {
                module_keys.push((k.clone(), name, ttl));
                continue;
            }
            let Some(kind) = self.supported(k, kind)? else {
                continue;
            };
            match kind {
                Some(Kind::Stream) => one_by_one.push(k.clone()),
                Some(kind) if ttl != Ttl::Gone => found.push((k.clone(), kind, ttl)),
                _ => self.note_gone(k),
            }
        }
        let (strings, big, batch) = self.read_strings_and_sizes(found).await?;
        self.ctx.throttle(batch.len() as u64).await;
        for (k, kind, _) in &batch {
            value::queue_read_whole(&mut self.source, *kind, k);
        }
        self.source.send().await?;
        let mut chunks = Vec::with_capacity(batch.len());
        for (_, kind, _) in &batch {
            chunks.push(value::chunk_from_reply(*kind, self.source.recv().await?));
        }
        let keys_read: Vec<(&Bytes, Kind)> = batch.iter().map(|(k, kind, _)| (k, *kind)).collect();
        let chunk_refs: Vec<Option<&value::Chunk>> = chunks.iter().map(Option::as_ref).collect();
        let mut field_expiries = self
            .read_field_ttls(&keys_read, &chunk_refs)
            .await?
            .into_iter();
        let mut writes = 0;
        let mut written = 0;
        let mut bytes = 0;
        for (k, value, ttl) in &strings {
            bytes += value.len();
            let target_key = self.ctx.scope.target_key(db, k);
            queue_set(&mut self.target, &target_key, value, *ttl);
            writes += 1;
            written += 1;
        }
        for ((k, kind, ttl), chunk) in batch.iter().zip(chunks) {
            let expiries = field_expiries.next().unwrap_or_default();
            let target_key = self.ctx.scope.target_key(db, k);
            self.target.route_to(&target_key);
            self.target.queue(&[&b"MULTI"[..]]);
            self.target.queue(&[&b"DEL"[..], &target_key]);
            writes += 3;
            if let Some(chunk) = chunk {
                let before = self.target.unsent();
                value::queue_write_chunk(&mut self.target, *kind, &target_key, &chunk);
                bytes += self.target.unsent().saturating_sub(before);
                writes += value::write_chunk_replies(&chunk);
                writes += self.apply_field_ttls(k, &target_key, &chunk, &expiries)?;
                if matches!(ttl, Ttl::At(_) | Ttl::In(_)) {
                    ttl.queue_apply(&mut self.target, &target_key);
                    writes += 1;
                }
                written += 1;
            } else {
                bump(&self.ctx.stats.gone, 1);
            }
            self.target.queue(&[&b"EXEC"[..]]);
        }
        self.target.send().await?;
        self.unacked_writes += writes;
        self.note_round(strings.len() + batch.len(), bytes);
        // Keys copied one by one read their replies as they go; so does a batch with RESTOREs
        // pending on the same connection.
        if !module_keys.is_empty() || !one_by_one.is_empty() || !self.ctx.per_type() {
            self.ack_writes().await?;
        }
        bump(&self.ctx.stats.copied, written);
        bump(&self.ctx.stats.struct_copied, written);
        for (k, type_name, ttl) in module_keys {
            self.module_copy(db, &k, &type_name, ttl).await?;
        }
        for k in one_by_one {
            self.chunked_copy(db, &k).await?;
        }
        Ok(big)
    }

    /// The second struct round: the values of the strings among `found` (over the big-key
    /// limit: left to the chunked path) and the sizes of the collections. Returns the strings
    /// read, the big keys, and the collections small enough to read whole.
    #[allow(clippy::type_complexity)]
    pub(super) async fn read_strings_and_sizes(
        &mut self,
        found: Vec<(Bytes, Kind, Ttl)>,
    ) -> Result<(
        Vec<(Bytes, Bytes, Ttl)>,
        Vec<Bytes>,
        Vec<(Bytes, Kind, Ttl)>,
    )> {
        let probe = self.ctx.options.big_key_bytes > 0
            && !self.ctx.memory_usage_refused.load(Ordering::Relaxed);
        let asked = found
            .iter()
            .filter(|(_, kind, _)| probe || *kind == Kind::String)
            .count();
        self.ctx.throttle(asked as u64).await;
        for (k, kind, _) in &found {
            match kind {
                Kind::String => self.source.queue(&[&b"GET"[..], k]),
                _ if probe => {
                    self.source
                        .queue(&[&b"MEMORY"[..], b"USAGE", k, b"SAMPLES", b"5"]);
                }
                _ => {}
            }
        }
        self.source.send().await?;
        let limit = self.big_limit();
        let (mut strings, mut big, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for (k, kind, ttl) in found {
            match kind {
                Kind::String => match self.source.recv_limited(limit).await? {
                    Reply::Bulk(v) => strings.push((k, v, ttl)),
                    Reply::Skipped(_) => big.push(k),
                    _ => self.note_gone(&k),
                },
                _ if probe => {
                    let reply = self.source.recv().await?;
                    match self.memory_usage(reply) > self.ctx.options.big_key_bytes {
                        true => big.push(k),
                        false => rest.push((k, kind, ttl)),
                    }
                }
                _ => rest.push((k, kind, ttl)),
            }
        }
        Ok((strings, big, rest))
    }

    /// The field expiries of the hash chunks among `chunks` (of `keys`, with their kinds), read
    /// in one round; an empty list for every other chunk, and for all when the source cannot
    /// have any.
    pub(super) async fn read_field_ttls(
        &mut self,
        keys: &[(&Bytes, Kind)],
        chunks: &[Option<&value::Chunk>],
    ) -> Result<Vec<Vec<i64>>> {
        let hashes: Vec<(usize, Vec<&Bytes>)> = match self.ctx.field_ttls.read() {
            false => Vec::new(),
            true => chunks
                .iter()
                .zip(keys)
                .enumerate()
                .filter_map(|(i, (c, (_, kind)))| match c {
                    Some(value::Chunk::Pairs(p)) if *kind == Kind::Hash && !p.is_empty() => {
                        Some((i, p.iter().map(|(f, _)| f).collect()))
                    }
                    _ => None,
                })
                .collect(),
        };
        let mut out = vec![Vec::new(); chunks.len()];
        if hashes.is_empty() {
            return Ok(out);
        }
        self.ctx.throttle(hashes.len() as u64).await;
        for (i, fields) in &hashes {
            field_ttl::queue_read(&mut self.source, keys[*i].0, fields);
        }
        self.source.send().await?;
        for (i, _) in &hashes {
            out[*i] = field_ttl::expiries(self.source.recv().await?)?;
        }
        Ok(out)
    }

    /// Queues the field TTLs of one hash chunk on `target_key` (or counts them dropped, or
    /// refuses, by the run's rule); returns how many replies were queued.
    pub(super) fn apply_field_ttls(
        &mut self,
        key: &[u8],
        target_key: &[u8],
        chunk: &value::Chunk,
        expiries: &[i64],
    ) -> Result<usize> {
        let value::Chunk::Pairs(pairs) = chunk else {
            return Ok(0);
        };
        let fields: Vec<&Bytes> = pairs.iter().map(|(f, _)| f).collect();
        let groups = field_ttl::by_expiry(&fields, expiries);
        let with_ttl: usize = groups.values().map(Vec::len).sum();
        if with_ttl == 0 {
            return Ok(0);
        }
        if field_ttl::decide(self.ctx.field_ttls, key, with_ttl)? {
            Ok(field_ttl::queue_apply(
                &mut self.target,
                target_key,
                &groups,
            ))
        } else {
            bump(&self.ctx.stats.field_ttls_dropped, with_ttl as u64);
            Ok(0)
        }
    }

    /// The key's type as struct copies it (`Some(None)`: the key is gone); `None` to skip a key
    /// of a type struct cannot copy (`--skip-unsupported`, counted); or the error that stops
    /// the run, naming the key (inventory refused the types it found: this key came later).
    pub(super) fn supported(
        &self,
        key: &[u8],
        kind: Result<Option<Kind>>,
    ) -> Result<Option<Option<Kind>>> {
        match kind {
            Ok(kind) => Ok(Some(kind)),
            Err(_) if self.ctx.options.skip_unsupported => {
                bump(&self.ctx.stats.skipped, 1);
                Ok(None)
            }
            Err(e) => Err(Error::Unsupported(format!(
                "key '{}': {e}; it was written after inventory checked the source. Run again with --skip-unsupported to copy the rest",
                crate::model::scope::display_key(&key[..key.len().min(200)])
            ))),
        }
    }

    /// A `MEMORY USAGE` reply in bytes; a refusal turns the probe off for the run.
    pub(super) fn memory_usage(&self, reply: Reply) -> u64 {
        match reply {
            Reply::Int(n) => n.max(0) as u64,
            Reply::Error(e) => {
                tracing::warn!(error = %String::from_utf8_lossy(&e), "MEMORY USAGE refused; big keys are copied whole in struct mode");
                self.ctx.memory_usage_refused.store(true, Ordering::Relaxed);
                0
            }
            _ => 0,
        }
    }

    /// The type name of a module key this run copies per type (JSON, Bloom, Cuckoo, with the
    /// module on the target), if `type_reply` names one.
    pub(super) fn module_copyable(&self, type_reply: &Reply) -> Option<Bytes> {
        let name = type_reply.as_bytes()?;
        let on_target = self
            .ctx
            .target_types
            .iter()
            .any(|t| t.as_bytes() == &name[..]);
        (on_target && module_values::copyable(name)).then(|| name.clone())
    }

    /// Copies one module key by its own commands: built under a temporary name in its hash slot,
    /// given its expiry, and renamed over the key (as chunked keys are).
    pub(super) async fn module_copy(
        &mut self,
        db: u32,
        key: &Bytes,
        type_name: &[u8],
        ttl: Ttl,
    ) -> Result<()> {
        self.ctx.throttle(1).await;
        let target_key = self.ctx.scope.target_key(db, key);
        let temp = temp_key(&target_key);
        let value = module_values::read(&mut self.source, type_name, key).await?;
        let lapsed = matches!(ttl, Ttl::At(ms) if ms <= crate::util::now_ms());
        let Some(value) = value.filter(|_| !lapsed && ttl != Ttl::Gone) else {
            return self.gone_meanwhile(&temp, &target_key).await;
        };
        let n = module_values::queue_write(&mut self.target, &temp, &value);
        self.put_in_place(&temp, &target_key, ttl, n).await
    }
}
