//! Connections: to one Redis server or to a whole cluster (routed by slot), over TCP or TLS,
//! logged in, with a database selected, able to pipeline any number of commands (queue, send
//! once, read the replies in order).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;

use crate::endpoint::{Endpoint, NodeAddr};
use crate::error::{Error, Result};
use crate::net::resp::Reply;
use crate::net::slot;
use crate::net::topology::Primary;
use crate::net::wire::Wire;

/// A logged-in connection to a keyspace, able to pipeline any number of commands: queue them,
/// send once, read the replies in order. Made by [`Conn::connect`] it talks to one server; by
/// [`Conn::keyspace`] to a whole cluster too, each command sent to the primary that owns its
/// key's slot, and a `MOVED` or `ASK` reply followed transparently.
pub struct Conn {
    /// The one server, or one socket per cluster primary.
    wires: Vec<Wire>,
    /// Slot routing, for a cluster.
    routes: Option<Box<Routes>>,
    /// When a connection logged in with a changing password (IAM) should be replaced.
    renew_at: Option<std::time::Instant>,
}

/// How a cluster connection finds the node of each command, and the commands awaiting replies.
struct Routes {
    /// Credentials and TLS for nodes found later (redirects).
    base: Endpoint,
    /// The wire of each slot.
    slot_wire: Vec<u16>,
    /// Per command sent, in order: its wire and its bytes' stream offsets there.
    pending: VecDeque<Sent>,
    /// The wire a keyless command (MULTI, EXEC) goes to: the last keyed command's.
    sticky: usize,
    /// A command being encoded directly into a wire's buffer: its wire and start offset.
    open: Option<(usize, u64)>,
    /// Connections for re-sending redirected commands, by `host:port`.
    side: Vec<(String, Wire)>,
}

struct Sent {
    wire: usize,
    start: u64,
    end: u64,
}

/// How many redirects one command may follow before the topology is declared unstable. From
/// the second hop on ferry pauses (10 ms, doubling, at most 200 ms: under 1 s in all): while a
/// slot changes owner, nodes may send a command back and forth until their configs converge.
const MAX_REDIRECTS: usize = 8;

impl Conn {
    /// Connects to the one server `ep` names, logs in and selects its database.
    pub async fn connect(ep: &Endpoint) -> Result<Conn> {
        Ok(Conn {
            wires: vec![Wire::connect(ep).await?],
            routes: None,
            renew_at: renew_at(ep),
        })
    }

    /// A connection routed by slot over a cluster's primaries, each read at its `reader`
    /// (itself, or a replica in READONLY mode), discovered from `base` ([`Conn::keyspace`] in
    /// `cluster`).
    pub(crate) async fn routed(base: &Endpoint, nodes: Vec<(Primary, NodeAddr)>) -> Result<Conn> {
        let mut wires = Vec::with_capacity(nodes.len());
        let mut slot_wire = vec![0u16; usize::from(slot::SLOTS)];
        for (i, (primary, reader)) in nodes.iter().enumerate() {
            let mut wire = Wire::connect(&base.at(reader)).await?;
            if *reader != primary.node {
                wire.call(&["READONLY"]).await?;
            }
            wire.retain = true;
            wires.push(wire);
            for &(a, b) in &primary.slots {
                slot_wire[a as usize..=b as usize].fill(i as u16);
            }
        }
        if wires.is_empty() {
            return Err(Error::Protocol {
                addr: base.addr(),
                message: "the cluster has no primary serving slots".into(),
            });
        }
        Ok(Conn {
            wires,
            renew_at: renew_at(base),
            routes: Some(Box::new(Routes {
                base: base.clone(),
                slot_wire,
                pending: VecDeque::new(),
                sticky: 0,
                open: None,
                side: Vec::new(),
            })),
        })
    }

    /// When this connection must be renewed (see [`Conn::due_for_renewal`]).
    pub fn renew_at(&self) -> Option<std::time::Instant> {
        self.renew_at
    }

    /// Whether this connection has lived as long as its endpoint's changing password allows
    /// (IAM auth): a long-lived user replaces it with a new one at a quiet moment.
    pub fn due_for_renewal(&self) -> bool {
        self.renew_at
            .is_some_and(|at| std::time::Instant::now() >= at)
    }

    /// Whether commands are routed over a cluster's primaries.
    pub fn is_cluster(&self) -> bool {
        self.routes.is_some()
    }

    /// The server (a cluster's first primary).
    pub fn node(&self) -> &NodeAddr {
        &self.wires[0].node
    }

    /// `host:port` of the server (a cluster's first primary), for messages.
    pub fn addr(&self) -> String {
        self.node().to_string()
    }

    /// The database currently selected.
    pub fn db(&self) -> u32 {
        self.wires[0].db
    }

    /// Selects `db` if it is not already selected (queued and awaited). On a cluster, on every
    /// node (Valkey 9+ keeps numbered databases in cluster mode; other clusters refuse any but
    /// db 0), and on nodes connected later too.
    pub async fn select(&mut self, db: u32) -> Result<()> {
        let Some(routes) = self.routes.as_deref_mut() else {
            return self.wires[0].select(db).await;
        };
        let wires = self
            .wires
            .iter_mut()
            .chain(routes.side.iter_mut().map(|(_, w)| w));
        for wire in wires {
            wire.select(db).await.map_err(|e| match e {
                Error::Incompatible(m) => Error::Incompatible(format!(
                    "{m} (a cluster has only db 0 unless it is Valkey 9+ with cluster-databases \
                     set; map other dbs with --db-map)"
                )),
                other => other,
            })?;
        }
        routes.base.db = db;
        Ok(())
    }

    /// Appends a command to the pipeline; nothing is sent until [`Conn::send`].
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        let Some(routes) = self.routes.as_deref_mut() else {
            return self.wires[0].queue(args);
        };
        let wire = routes.wire_of(slot::command_key(args));
        routes.close_open(&self.wires);
        let start = self.wires[wire].end_offset();
        self.wires[wire].queue(args);
        let end = self.wires[wire].end_offset();
        routes.pending.push_back(Sent { wire, start, end });
    }

    /// The write buffer for one command about `key`, for hot paths that encode a command from
    /// parts (see [`resp::encode_bulk`]); encode exactly one command before the next call.
    pub fn wbuf_for(&mut self, key: &[u8]) -> &mut BytesMut {
        let Some(routes) = self.routes.as_deref_mut() else {
            return &mut self.wires[0].wbuf;
        };
        let wire = routes.wire_of(Some(key));
        routes.close_open(&self.wires);
        routes.open = Some((wire, self.wires[wire].end_offset()));
        &mut self.wires[wire].wbuf
    }

    /// Sends keyless commands that follow (MULTI, EXEC) to `key`'s node.
    pub fn route_to(&mut self, key: &[u8]) {
        if let Some(routes) = self.routes.as_deref_mut() {
            routes.sticky = routes.wire_of(Some(key));
        }
    }

    /// Bytes queued and not sent yet.
    pub fn unsent(&self) -> usize {
        self.wires.iter().map(Wire::unsent).sum()
    }

    /// Sends everything queued.
    pub async fn send(&mut self) -> Result<()> {
        if let Some(routes) = self.routes.as_deref_mut() {
            routes.close_open(&self.wires);
        }
        for wire in &mut self.wires {
            wire.send().await?;
        }
        Ok(())
    }

    /// Reads the next reply. Error replies are returned as [`Reply::Error`], not as `Err`,
    /// so a pipeline can look at each command's outcome.
    pub async fn recv(&mut self) -> Result<Reply> {
        match self.routes {
            None => self.wires[0].recv().await,
            Some(_) => self.recv_routed(None).await,
        }
    }

    /// Like [`Conn::recv`], but a bulk string longer than `limit` bytes is read off the socket
    /// and dropped as it arrives, returning [`Reply::Skipped`]: memory stays bounded whatever
    /// the size of a DUMP payload, and the caller copies that key another way.
    pub async fn recv_limited(&mut self, limit: usize) -> Result<Reply> {
        match self.routes {
            None => self.wires[0].recv_limited(limit).await,
            Some(_) => self.recv_routed(Some(limit)).await,
        }
    }

    /// The next reply on a cluster: from the wire its command went to, following redirects.
    async fn recv_routed(&mut self, limit: Option<usize>) -> Result<Reply> {
        let routes = self.routes.as_deref_mut().expect("a cluster");
        routes.close_open(&self.wires);
        let Some(sent) = routes.pending.pop_front() else {
            return Err(Error::Protocol {
                addr: routes.base.addr(),
                message: "a reply was awaited with no command sent".into(),
            });
        };
        let wire = &mut self.wires[sent.wire];
        let reply = match limit {
            None => wire.recv().await?,
            Some(limit) => wire.recv_limited(limit).await?,
        };
        let redirect = match &reply {
            Reply::Error(e) if e.starts_with(b"MOVED ") || e.starts_with(b"ASK ") => {
                Some((e.clone(), wire.sent_command(sent.start, sent.end).to_vec()))
            }
            _ => None,
        };
        wire.release(sent.end);
        match redirect {
            None => Ok(reply),
            Some((error, command)) => self.follow_redirects(error, command).await,
        }
    }

    /// Sends a command again where a `MOVED` or `ASK` reply points, on a side connection (the
    /// pipelined ones have replies outstanding); a `MOVED` also updates the slot's route.
    async fn follow_redirects(
        &mut self,
        mut error: bytes::Bytes,
        command: Vec<u8>,
    ) -> Result<Reply> {
        let mut chain: Vec<String> = Vec::new();
        for hop in 0..MAX_REDIRECTS {
            chain.push(crate::error::server_text(&String::from_utf8_lossy(&error)));
            if hop > 0 {
                let pause = Duration::from_millis(10 << hop.min(5)).min(Duration::from_millis(200));
                tokio::time::sleep(pause).await;
            }
            let text = String::from_utf8_lossy(&error).into_owned();
            let mut parts = text.split_whitespace();
            let (kind, slot, addr) = (parts.next(), parts.next(), parts.next());
            let (Some(kind), Some(slot), Some(addr)) =
                (kind, slot.and_then(|s| s.parse::<u16>().ok()), addr)
            else {
                return Ok(Reply::Error(error));
            };
            let ask = kind == "ASK";
            if !ask {
                self.reroute(slot, addr).await?;
            }
            let routes = self
                .routes
                .as_deref_mut()
                .expect("redirects only on a cluster");
            let side = routes.side_wire(addr).await?;
            if ask {
                side.queue(&[&b"ASKING"[..]]);
            }
            side.wbuf.extend_from_slice(&command);
            side.send().await?;
            if ask {
                side.recv().await?;
            }
            match side.recv().await? {
                Reply::Error(e) if e.starts_with(b"MOVED ") || e.starts_with(b"ASK ") => error = e,
                reply => return Ok(reply),
            }
        }
        Err(Error::ConnectionLost {
            addr: self.addr(),
            reason: format!(
                "still redirected after {MAX_REDIRECTS} hops ({}): the cluster's slots are moving",
                chain.join(" -> ")
            ),
        })
    }

    /// Routes `slot` to the primary at `addr` from now on, connecting to it if it is new.
    async fn reroute(&mut self, slot: u16, addr: &str) -> Result<()> {
        let routes = self.routes.as_deref_mut().expect("a cluster");
        let endpoint = routes.node(addr)?;
        let wire = match self.wires.iter().position(|w| w.node == endpoint.node) {
            Some(i) => i,
            None => {
                let mut wire = Wire::connect(&endpoint).await?;
                wire.retain = true;
                self.wires.push(wire);
                self.wires.len() - 1
            }
        };
        routes.slot_wire[slot as usize] = wire as u16;
        Ok(())
    }

    /// Sends one command and returns its reply; an error reply becomes [`Error::Server`]
    /// (or a more specific kind such as out-of-memory).
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply> {
        self.queue(args);
        self.send().await?;
        let reply = self.recv().await?;
        self.check(reply, args[0].as_ref())
    }

    /// Turns an error reply into the matching [`Error`], naming the command.
    pub fn check(&self, reply: Reply, command: &[u8]) -> Result<Reply> {
        match reply {
            Reply::Error(e) => Err(self.server_error(command, &String::from_utf8_lossy(&e))),
            other => Ok(other),
        }
    }

    /// The [`Error`] for an error reply `message` to `command` on this connection.
    pub fn server_error(&self, command: &[u8], message: &str) -> Error {
        self.wires[0].server_error(command, message)
    }
}

/// When a connection to `ep` made now must be renewed.
fn renew_at(ep: &Endpoint) -> Option<std::time::Instant> {
    ep.renew_after().map(|d| std::time::Instant::now() + d)
}

impl Routes {
    /// The wire for a command about `key`; keyless commands stay on the previous one.
    fn wire_of(&mut self, key: Option<&[u8]>) -> usize {
        if let Some(key) = key {
            self.sticky = self.slot_wire[slot::key_slot(key) as usize] as usize;
        }
        self.sticky
    }

    /// Records the command encoded through [`Conn::wbuf_for`], now that it is complete.
    fn close_open(&mut self, wires: &[Wire]) {
        if let Some((wire, start)) = self.open.take() {
            let end = wires[wire].end_offset();
            if end > start {
                self.pending.push_back(Sent { wire, start, end });
            }
        }
    }

    /// The endpoint of the node at `addr` (`host:port` from a redirect).
    fn node(&self, addr: &str) -> Result<Endpoint> {
        let node = NodeAddr::parse(addr).ok_or_else(|| Error::Protocol {
            addr: self.base.addr(),
            message: format!("a redirect to an unreadable address {addr:?}"),
        })?;
        Ok(self.base.at(&node))
    }

    async fn side_wire(&mut self, addr: &str) -> Result<&mut Wire> {
        let at = match self.side.iter().position(|(a, _)| a == addr) {
            Some(i) => i,
            None => {
                let wire = Wire::connect(&self.node(addr)?).await?;
                self.side.push((addr.to_string(), wire));
                self.side.len() - 1
            }
        };
        Ok(&mut self.side[at].1)
    }
}
