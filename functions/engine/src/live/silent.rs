//! Writes that raise no keyspace event (vector sets' `VADD`/`VREM`/`VSETATTR`, RedisBloom's
//! writes): the live tail cannot learn which keys they touched, so when their calls move in a
//! source node's `INFO commandstats`, every key of the type they write is re-synced, on both
//! sides: the source's keys of that type are marked dirty, and so are the target's keys of that
//! type that the migration owns (a key the source lost, e.g. by `VREM` of its last element, is
//! then deleted on the target).

use bytes::Bytes;

use crate::endpoint::Endpoint;
use crate::error::Result;
use crate::inventory::ServerInfo;
use crate::keys::module_types::scan_type;
use crate::model::migration::Migration;
use crate::net::conn::Conn;

/// Every key of `type_name` to re-sync after silent writes on source node `node`: `(source db,
/// source key)` pairs from the node's dbs in `dbs`, and from the target's mapped dbs.
pub async fn keys_to_resync(
    m: &Migration,
    node: &Endpoint,
    dbs: &[u32],
    type_name: &str,
) -> Result<Vec<(u32, Bytes)>> {
    let mut keys = Vec::new();
    let mut source = Conn::connect(node).await?;
    for &db in dbs {
        source.select(db).await?;
        for k in scan_type(&mut source, type_name, usize::MAX).await? {
            if m.scope.covers(db, &k) {
                keys.push((db, k));
            }
        }
    }
    let target = ServerInfo::read_keyspace(&m.target).await?.1;
    let mut target_dbs: Vec<u32> = dbs.iter().map(|db| m.scope.target_of(*db).db).collect();
    target_dbs.sort_unstable();
    target_dbs.dedup();
    for node in &target.nodes {
        let mut conn = Conn::connect(&m.target.at(&node.primary.node)).await?;
        for &db in &target_dbs {
            conn.select(db).await?;
            for k in scan_type(&mut conn, type_name, usize::MAX).await? {
                if let Some(owner) = m.scope.owners_of(db, &k, dbs).into_iter().next() {
                    keys.push(owner);
                }
            }
        }
    }
    Ok(keys)
}
