//! Big keys and streams, copied in bounded chunks into a temporary key in the same hash slot,
//! then renamed into place, so ferry's memory stays bounded and the target never shows half a key.

use super::*;

impl Copier {
    /// Copies one key in bounded chunks (big keys and streams); its expiry is read once the last
    /// chunk is written, so a key that expired meanwhile ends absent.
    pub async fn chunked_copy(&mut self, db: u32, key: &Bytes) -> Result<()> {
        let absolute = self.ctx.source_absolute_ttl;
        self.ctx.throttle(2).await;
        let Some(kind) = Kind::from_type_reply(&self.source.call(&[&b"TYPE"[..], key]).await?)?
        else {
            self.note_gone(key);
            return Ok(());
        };
        // Built under a temporary name in the same hash slot, then renamed over the key in one
        // atomic step: readers never see half a key, and a duplicate copy cannot interleave.
        let target_key = self.ctx.scope.target_key(db, key);
        let temp = temp_key(&target_key);
        let mut reader = ChunkReader::new(kind, key.clone());
        // A stream's pending ids are read before its entries, so placeholders for deleted ones
        // go in id order among them; the metadata is read again after the last chunk for the
        // ids and counters as they are then.
        let mut placeholders = Placeholders::default();
        if kind == Kind::Stream {
            if let Some(meta) = StreamMeta::read(&mut self.source, key).await? {
                placeholders = Placeholders::for_pending(&meta);
            }
        }
        let mut has_entries = false;
        let mut started = false;
        loop {
            self.ctx.throttle(1).await;
            let mut chunk = match reader.next(&mut self.source).await? {
                Some(chunk) => chunk,
                None => match placeholders.rest() {
                    Some(last) => last,
                    None => break,
                },
            };
            placeholders.merge_into(&mut chunk);
            has_entries |= matches!(&chunk, value::Chunk::Entries(e) if !e.is_empty());
            let expiries = self
                .read_field_ttls(&[(key, kind)], &[Some(&chunk)])
                .await?
                .pop()
                .unwrap_or_default();
            value::queue_write_chunk(&mut self.target, kind, &temp, &chunk);
            let mut n = value::write_chunk_replies(&chunk);
            n += self.apply_field_ttls(key, &temp, &chunk, &expiries)?;
            if !started && n > 0 {
                // A copy cut off half way leaves no litter: the temporary key expires.
                self.target
                    .queue(&[&b"PEXPIRE"[..], &temp, TEMP_KEY_TTL_MS]);
                n += 1;
                started = true;
            }
            self.target.send().await?;
            self.expect_ok(n).await?;
        }
        if kind == Kind::Stream {
            if let Some(meta) = StreamMeta::read(&mut self.source, key).await? {
                let counters = self.ctx.target_stream_counters;
                let mut n = meta.queue_groups(&mut self.target, &temp, counters, has_entries);
                n += placeholders.queue_delete(&mut self.target, &temp);
                n += meta.queue_ids(&mut self.target, &temp, counters);
                self.target.send().await?;
                self.expect_ok(n).await?;
                started = true;
            }
        }
        // The key's expiry as it is now, after the last chunk: a key that expired or vanished
        // while it was copied must end absent on the target, never truncated or without a TTL.
        self.ctx.throttle(1).await;
        let ttl = Ttl::from_reply(
            &self
                .source
                .call(&[
                    if absolute {
                        &b"PEXPIRETIME"[..]
                    } else {
                        b"PTTL"
                    },
                    key,
                ])
                .await?,
            absolute,
        );
        let lapsed = match ttl {
            Ttl::Gone => true,
            Ttl::At(ms) => ms <= crate::util::now_ms(),
            _ => false,
        };
        if !started || lapsed {
            return self.gone_meanwhile(&temp, &target_key).await;
        }
        self.put_in_place(&temp, &target_key, ttl, 0).await
    }

    /// Gives the temporary key built for `target_key` the key's expiry and renames it over the
    /// key, reading `queued` replies sent before with them; a key whose expiry passed between
    /// the check and the rename (the temporary key is gone) ends absent.
    pub(super) async fn put_in_place(
        &mut self,
        temp: &[u8],
        target_key: &[u8],
        ttl: Ttl,
        queued: usize,
    ) -> Result<()> {
        match ttl {
            Ttl::At(_) | Ttl::In(_) => ttl.queue_apply(&mut self.target, temp),
            _ => self.target.queue(&[&b"PERSIST"[..], temp]),
        }
        self.target.queue(&[&b"RENAME"[..], temp, target_key]);
        self.target.send().await?;
        match self.expect_ok(queued + 2).await {
            Err(Error::Server { message, .. }) if message.contains("no such key") => {
                return self.gone_meanwhile(temp, target_key).await;
            }
            other => {
                other?;
            }
        }
        bump(&self.ctx.stats.copied, 1);
        bump(&self.ctx.stats.struct_copied, 1);
        Ok(())
    }

    /// A key that vanished or expired while it was copied in chunks: its temporary key and
    /// any older copy on the target go, and it counts as gone.
    pub(super) async fn gone_meanwhile(&mut self, temp: &[u8], target_key: &[u8]) -> Result<()> {
        self.target.queue(&[&b"DEL"[..], temp]);
        self.target.queue(&[&b"DEL"[..], target_key]);
        self.target.send().await?;
        self.expect_ok(2).await?;
        bump(&self.ctx.stats.gone, 1);
        Ok(())
    }
}

/// How long a half-built temporary key survives a copy that was cut off.
const TEMP_KEY_TTL_MS: &[u8] = b"3600000";

/// Queues `SET key value` with the key's expiry in the same command (PXAT, or PX from a PTTL),
/// replacing any old value and expiry at once.
pub(super) fn queue_set(conn: &mut Conn, key: &[u8], value: &[u8], ttl: Ttl) {
    let mut n = itoa::Buffer::new();
    match ttl {
        Ttl::At(ms) => conn.queue(&[b"SET", key, value, b"PXAT", n.format(ms.max(1)).as_bytes()]),
        Ttl::In(ms) => conn.queue(&[b"SET", key, value, b"PX", n.format(ms.max(1)).as_bytes()]),
        Ttl::Persist | Ttl::Gone => conn.queue(&[b"SET", key, value]),
    }
}

/// A fresh temporary key name in the same cluster hash slot as `key`: the key's own hash tag
/// is kept when it has one, otherwise a tag of the key's slot goes in front.
pub fn temp_key(key: &[u8]) -> Vec<u8> {
    let suffix = format!(":ferry-tmp:{:016x}", rand::random::<u64>());
    match crate::net::slot::hash_tag(key) {
        // The key's tag stays its first one.
        Some(_) => [key, suffix.as_bytes()].concat(),
        // A tag of the key's own slot in front: wrapping the key in braces would not do for a
        // name that holds a `}` (`a}b` would hash as `a`).
        None => {
            let tag = crate::net::slot::tag_for(crate::net::slot::key_slot(key));
            [b"{", tag.as_bytes(), b"}", key, suffix.as_bytes()].concat()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::temp_key;

    #[test]
    fn temp_keys_keep_the_hash_tag() {
        let t = temp_key(b"user:{42}:profile");
        assert!(t.starts_with(b"user:{42}:profile:ferry-tmp:"));
        let t = temp_key(b"plain");
        let tag = crate::net::slot::tag_for(crate::net::slot::key_slot(b"plain"));
        assert!(t.starts_with(format!("{{{tag}}}plain:ferry-tmp:").as_bytes()));
        assert_ne!(temp_key(b"k"), temp_key(b"k"));
    }

    /// The temporary key is renamed over the real one: on a cluster both must hash to the
    /// same slot, whatever braces the name holds.
    #[test]
    fn temp_keys_hash_to_their_keys_slot() {
        use crate::net::slot::key_slot;
        for key in [
            &b"plain"[..],
            b"user:{42}:profile",
            b"a}b",
            b"empty{}tag",
            b"{}x",
            b"}{",
            b"x{y",
            b"{a}{b}",
            b"",
        ] {
            let t = temp_key(key);
            assert_eq!(
                key_slot(&t),
                key_slot(key),
                "{} -> {}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(&t)
            );
        }
    }
}
