//! Redis 8's built-in vector sets, as verify reads them. Their DUMP payloads are not
//! byte-stable (two equal sets serialize differently), so equality is decided by the type's own
//! reads: the dimension, and every element with its raw (quantized) embedding and attributes.

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3;

use crate::error::Result;
use crate::net::conn::Conn;
use crate::net::resp::Reply;

/// The `TYPE` name of a vector set.
pub const TYPE_NAME: &[u8] = b"vectorset";

/// An order-independent digest of the vector set at `key`, or `None` if it is gone. Reads every
/// element in one reply (VRANDMEMBER with the set's size returns each element once).
pub async fn digest(conn: &mut Conn, key: &Bytes) -> Result<Option<u128>> {
    conn.queue(&[&b"VCARD"[..], key]);
    conn.queue(&[&b"VDIM"[..], key]);
    conn.send().await?;
    let card = conn.recv().await?.as_int().unwrap_or(0);
    let dim = conn.recv().await?.as_int().unwrap_or(0);
    if card <= 0 {
        return Ok(None);
    }
    let elements: Vec<Bytes> = match conn
        .call(&[&b"VRANDMEMBER"[..], key, card.to_string().as_bytes()])
        .await?
    {
        Reply::Array(items) => items
            .into_iter()
            .filter_map(|r| r.as_bytes().cloned())
            .collect(),
        _ => Vec::new(),
    };
    for e in &elements {
        conn.queue(&[&b"VEMB"[..], key, e, b"RAW"]);
        conn.queue(&[&b"VGETATTR"[..], key, e]);
    }
    conn.send().await?;
    let mut each = Vec::with_capacity(elements.len());
    for e in &elements {
        let mut h = Xxh3::new();
        h.update(&(e.len() as u64).to_le_bytes());
        h.update(e);
        for reply in [conn.recv().await?, conn.recv().await?] {
            feed(&mut h, &reply);
        }
        each.push(h.digest128());
    }
    each.sort_unstable();
    let mut h = Xxh3::new();
    h.update(&dim.to_le_bytes());
    for d in each {
        h.update(&d.to_le_bytes());
    }
    Ok(Some(h.digest128()))
}

/// Feeds a reply into a digest, with its shape, so that different replies never collide.
fn feed(h: &mut Xxh3, reply: &Reply) {
    match reply {
        Reply::Array(items) => {
            h.update(b"*");
            h.update(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|i| feed(h, i));
        }
        Reply::Int(i) => {
            h.update(b":");
            h.update(&i.to_le_bytes());
        }
        other => {
            let bytes = other.as_bytes().map(|b| &b[..]).unwrap_or_default();
            h.update(b"$");
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
    }
}
