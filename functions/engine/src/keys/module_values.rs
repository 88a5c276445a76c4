//! Module types copied and compared by their own commands, for a target that has the module but
//! cannot load the source's DUMP payloads (another RDB version): JSON documents (`JSON.GET key $`
//! → `JSON.SET key $`, compared as parsed JSON) and Bloom and Cuckoo filters (`BF.SCANDUMP` →
//! `BF.LOADCHUNK`, `CF.*` the same, compared chunk by chunk). A filter is built under a temporary
//! name in the key's hash slot and renamed over the key, as big keys are.

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};
use crate::net::conn::Conn;

/// The module types copied per type, by their `TYPE` names.
pub const COPYABLE: [&str; 3] = ["ReJSON-RL", "MBbloom--", "MBbloomCF"];

/// Whether keys of `type_name` can be copied per type.
pub fn copyable(type_name: &[u8]) -> bool {
    COPYABLE.iter().any(|t| t.as_bytes() == type_name)
}

/// A module key's value as read from the source.
pub enum ModuleValue {
    /// A JSON document's text.
    Json(Bytes),
    /// A filter's dump chunks: `(iterator, data)` in order.
    Filter {
        /// `BF` or `CF`.
        family: &'static str,
        chunks: Vec<(i64, Bytes)>,
    },
}

/// Reads the key's value; `None` when it is gone (or changed type).
pub async fn read(conn: &mut Conn, type_name: &[u8], key: &[u8]) -> Result<Option<ModuleValue>> {
    match type_name {
        b"ReJSON-RL" => {
            let reply = conn.call(&[&b"JSON.GET"[..], key, b"$"]).await?;
            // `$` answers an array of the one root document: its text without the brackets.
            Ok(reply
                .as_bytes()
                .and_then(|text| {
                    let inner = text.strip_prefix(b"[")?.strip_suffix(b"]")?;
                    (!inner.is_empty()).then(|| text.slice(1..text.len() - 1))
                })
                .map(ModuleValue::Json))
        }
        b"MBbloom--" | b"MBbloomCF" => {
            let family = if type_name == b"MBbloom--" {
                "BF"
            } else {
                "CF"
            };
            let command = format!("{family}.SCANDUMP");
            let mut chunks = Vec::new();
            let mut iterator = 0i64;
            loop {
                let reply = match conn
                    .call(&[command.as_bytes(), key, iterator.to_string().as_bytes()])
                    .await
                {
                    Ok(reply) => reply,
                    Err(Error::Server { message, .. }) if message.contains("not found") => {
                        return Ok(None)
                    }
                    Err(e) => return Err(e),
                };
                let mut parts = reply.into_array().unwrap_or_default().into_iter();
                let next = parts.next().and_then(|r| r.as_int()).unwrap_or(0);
                let data = parts
                    .next()
                    .and_then(|r| r.as_bytes().cloned())
                    .unwrap_or_default();
                if next == 0 {
                    break;
                }
                chunks.push((next, data));
                iterator = next;
            }
            Ok((!chunks.is_empty()).then_some(ModuleValue::Filter { family, chunks }))
        }
        other => Err(Error::Unsupported(format!(
            "type '{}' has no per-type copy",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// Queues the writes that rebuild `value` at `key` (already absent); returns how many replies
/// they give.
pub fn queue_write(conn: &mut Conn, key: &[u8], value: &ModuleValue) -> usize {
    match value {
        ModuleValue::Json(doc) => {
            conn.queue(&[&b"JSON.SET"[..], key, b"$", doc]);
            1
        }
        ModuleValue::Filter { family, chunks } => {
            let command = format!("{family}.LOADCHUNK");
            for (iterator, data) in chunks {
                conn.queue(&[
                    command.as_bytes(),
                    key,
                    iterator.to_string().as_bytes(),
                    data,
                ]);
            }
            chunks.len()
        }
    }
}

/// A digest of the key's value for verify: JSON by its parsed document (whatever the spacing
/// or key order a server writes), filters by their dump chunks; `None` when it is gone.
pub async fn digest(conn: &mut Conn, type_name: &[u8], key: &[u8]) -> Result<Option<u128>> {
    let Some(value) = read(conn, type_name, key).await? else {
        return Ok(None);
    };
    let mut h = Xxh3::new();
    match value {
        ModuleValue::Json(doc) => {
            let parsed: serde_json::Value = serde_json::from_slice(&doc).unwrap_or_default();
            h.update(canonical(&parsed).as_bytes());
        }
        ModuleValue::Filter { chunks, .. } => {
            for (iterator, data) in chunks {
                h.update(&iterator.to_le_bytes());
                h.update(&(data.len() as u64).to_le_bytes());
                h.update(&data);
            }
        }
    }
    Ok(Some(h.digest128()))
}

/// JSON text with object keys sorted, so equal documents read alike.
fn canonical(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::Value::String(k.clone()),
                        canonical(&map[k])
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(canonical).collect::<Vec<_>>().join(",")
            )
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn canonical_json_ignores_key_order_and_spacing() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":[1,{"y":2,"x":null}]}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "a" : [1, {"x":null, "y":2}], "b":1 }"#).unwrap();
        assert_eq!(super::canonical(&a), super::canonical(&b));
        assert!(super::copyable(b"ReJSON-RL") && !super::copyable(b"vectorset"));
    }
}
