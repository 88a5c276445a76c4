//! The cutover fence: for a bounded time no write reaches the source, so the tail can drain and
//! the target can be checked while nothing changes. `CLIENT PAUSE <ms> WRITE` (Redis ≥ 6.2,
//! Valkey) on every source primary holds clients' writes (they wait; reads go on) until
//! `CLIENT UNPAUSE` or the timeout, which the server enforces even if ferry dies. Where the
//! server refuses it, the caller falls back to a fence the operator confirms (writers stopped).
//!
//! After the release, clients still connected to the source are listed (`CLIENT LIST`) so the
//! operator sees who has not switched.

use std::time::Instant;

use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::net::cluster;
use crate::net::conn::Conn;

/// Writes held on every source primary since `since`.
pub struct Fence {
    nodes: Vec<Conn>,
    /// When the pause took effect on the first primary.
    pub since: Instant,
}

/// Why the fence could not be put up.
#[derive(Debug)]
pub enum Refused {
    /// The server does not allow `CLIENT PAUSE … WRITE` (older server, ACL, managed service):
    /// its message.
    NotAllowed(String),
    /// Any other error (the source is unreachable, …).
    Failed(Error),
}

impl Fence {
    /// Pauses writes on every primary behind `source` for at most `ms`. A primary that refuses
    /// undoes the pause on the ones already paused.
    pub async fn raise(source: &Endpoint, ms: u64) -> std::result::Result<Fence, Refused> {
        let nodes = cluster::primary_endpoints(source)
            .await
            .map_err(Refused::Failed)?;
        let mut fence = Fence {
            nodes: Vec::new(),
            since: Instant::now(),
        };
        let ms = ms.to_string();
        for node in nodes {
            let mut conn = Conn::connect(&node).await.map_err(Refused::Failed)?;
            match conn.call(&["CLIENT", "PAUSE", &ms, "WRITE"]).await {
                Ok(_) => fence.nodes.push(conn),
                Err(e) => {
                    let _ = fence.lift().await;
                    return Err(match e {
                        Error::Server { message, .. }
                        | Error::AuthFailed {
                            reason: message, ..
                        } => Refused::NotAllowed(crate::error::server_text(&message)),
                        other => Refused::Failed(other),
                    });
                }
            }
            if fence.nodes.len() == 1 {
                fence.since = Instant::now();
            }
        }
        Ok(fence)
    }

    /// Lifts the pause everywhere; returns how long writes were held, in ms.
    pub async fn lift(mut self) -> Result<u64> {
        let mut first_error = None;
        for conn in &mut self.nodes {
            if let Err(e) = conn.call(&["CLIENT", "UNPAUSE"]).await {
                first_error.get_or_insert(e);
            }
        }
        let held = self.since.elapsed().as_millis() as u64;
        first_error.map_or(Ok(held), Err)
    }
}

/// A client connected to the source, as `CLIENT LIST` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SourceClient {
    /// The source primary it is connected to.
    pub node: String,
    /// Its address (`ip:port`).
    pub addr: String,
    /// The name it gave (`CLIENT SETNAME`), if any.
    pub name: String,
    /// The last command it ran.
    pub last_command: String,
}

/// Commands ferry's own source connections run: reads, subscriptions and its own checks.
const FERRY_COMMANDS: &[&str] = &[
    "client|list",
    "client|pause",
    "client|unpause",
    "info",
    "ping",
    "select",
    "auth",
    "hello",
    "scan",
    "type",
    "dump",
    "pttl",
    "pexpiretime",
    "get",
    "getrange",
    "strlen",
    "hgetall",
    "hscan",
    "lrange",
    "llen",
    "smembers",
    "sscan",
    "zrange",
    "zscan",
    "xrange",
    "xinfo",
    "xpending",
    "memory|usage",
    "exists",
    "hpexpiretime",
    "function|list",
    "config|get",
    "cluster|shards",
    "cluster|nodes",
    "readonly",
    "subscribe",
    "psubscribe",
    "json.get",
    "bf.scandump",
    "cf.scandump",
    "vemb",
    "vgetattr",
    "vdim",
    "vcard",
    "vlinks",
    "vinfo",
    "module|list",
    "object|encoding",
    "dbsize",
    "command",
    "NULL",
];

/// How many of the clients still connected to the source a report names.
pub const CLIENTS_LISTED: usize = 100;

/// The clients connected to every source primary that are not ferry's own (not subscribed, and
/// last seen running something other than the reads and checks ferry runs): the first
/// [`CLIENTS_LISTED`], and how many there are.
pub async fn source_clients(source: &Endpoint) -> Result<(Vec<SourceClient>, u64)> {
    let mut out = Vec::new();
    let mut total = 0u64;
    for node in cluster::primary_endpoints(source).await? {
        let mut conn = Conn::connect(&node).await?;
        let me = conn.call(&["CLIENT", "ID"]).await?.as_int().unwrap_or(-1);
        let list = conn.call(&["CLIENT", "LIST"]).await?;
        let text = list.as_text().unwrap_or_default();
        for line in text.lines() {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                    .unwrap_or_default()
                    .to_string()
            };
            let (id, flags, cmd) = (field("id"), field("flags"), field("cmd"));
            let subscribed = flags.contains('P') || field("sub") != "0" || field("psub") != "0";
            if id == me.to_string() || subscribed || FERRY_COMMANDS.contains(&cmd.as_str()) {
                continue;
            }
            total += 1;
            if out.len() >= CLIENTS_LISTED {
                continue;
            }
            out.push(SourceClient {
                node: node.addr(),
                addr: field("addr"),
                name: field("name"),
                last_command: cmd,
            });
        }
    }
    Ok((out, total))
}
