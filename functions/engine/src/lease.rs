//! The target lease: one run at a time writes into a target. A run that writes (copy, live,
//! repair) first takes the lease key `ferry:lease` in the target's db 0 with `SET NX PX`, keeps
//! renewing it while it runs, and deletes it at the end; a second run finds it held and is
//! refused before it writes anything. The key expires by itself after [`LEASE_TTL`] when its run
//! dies without a word, so a crashed run blocks the target for seconds, not forever.
//!
//! The lease key is ferry's own: never copied, never verified, never counted as a target key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::model::scope::LEASE_KEY;
use crate::net::conn::Conn;
use crate::net::resp::Reply;

/// How long a lease outlives its last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often a held lease is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Runs `ARGV[2..]` on the lease key only while this run (`ARGV[1]`) still holds it.
const IF_HELD: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call(ARGV[2], KEYS[1], unpack(ARGV, 3)) else return 0 end";

/// Runs `command` (with `args`) on the lease key if `holder` still holds it; returns whether it
/// did. Atomic by script; where scripts are not allowed, a GET then the command.
async fn if_held(conn: &mut Conn, holder: &str, command: &str, args: &[&str]) -> Result<bool> {
    let mut eval = vec!["EVAL", IF_HELD, "1", LEASE_KEY, holder, command];
    eval.extend_from_slice(args);
    match conn.call(&eval).await {
        Ok(reply) => Ok(reply.as_int() == Some(1)),
        Err(Error::Server { .. } | Error::AuthFailed { .. }) => {
            let now = conn.call(&["GET", LEASE_KEY]).await?;
            if now.as_bytes().map(|b| &b[..]) != Some(holder.as_bytes()) {
                return Ok(false);
            }
            let mut cmd = vec![command, LEASE_KEY];
            cmd.extend_from_slice(args);
            Ok(conn.call(&cmd).await?.as_int() == Some(1))
        }
        Err(e) => Err(e),
    }
}

/// A held lease; [`Lease::release`] gives it back (dropping it stops the renewals only).
pub struct Lease {
    target: Endpoint,
    holder: String,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Takes the target's lease for this run (`what` says what the run does, for the message
    /// another run gets), or fails with [`Error::TargetInUse`] naming the holder.
    pub async fn acquire(target: &Endpoint, what: &str) -> Result<Lease> {
        let mut ep = target.clone();
        ep.db = 0;
        let holder = format!(
            "{what} by ferry pid {} on {} since {}",
            std::process::id(),
            hostname(),
            crate::util::now_ms()
        );
        let mut conn = Conn::keyspace(&ep).await?;
        let ttl = LEASE_TTL.as_millis().to_string();
        let taken = conn
            .call(&["SET", LEASE_KEY, &holder, "NX", "PX", &ttl])
            .await
            .map_err(|e| lease_error(&ep, e))?;
        if taken == Reply::Nil {
            let other = conn
                .call(&["GET", LEASE_KEY])
                .await?
                .as_text()
                .unwrap_or_default();
            let left = conn.call(&["PTTL", LEASE_KEY]).await?.as_int().unwrap_or(0);
            return Err(Error::TargetInUse(format!(
                "another ferry run holds the target {} ({}; its lease key {LEASE_KEY} expires in {:.0}s unless renewed): wait for it to finish, or stop it",
                ep.addr(),
                crate::error::server_text(&other),
                left.max(0) as f64 / 1000.0
            )));
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew(ep.clone(), holder.clone(), lost.clone()));
        Ok(Lease {
            target: ep,
            holder,
            lost,
            renewer,
        })
    }

    /// Whether the lease was found taken by someone else (or expired) while this run held it:
    /// another run may then have written to the target.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops renewing and deletes the lease key if this run still holds it.
    pub async fn release(self) -> Result<()> {
        self.renewer.abort();
        let mut conn = Conn::keyspace(&self.target).await?;
        if_held(&mut conn, &self.holder, "DEL", &[]).await?;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews the lease until aborted; a renewal that finds another holder marks the lease lost.
async fn renew(ep: Endpoint, holder: String, lost: Arc<AtomicBool>) {
    let ttl = LEASE_TTL.as_millis().to_string();
    let mut conn: Option<Conn> = None;
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        if conn.as_ref().is_some_and(Conn::due_for_renewal) {
            conn = None;
        }
        if conn.is_none() {
            conn = Conn::keyspace(&ep).await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        match if_held(c, &holder, "PEXPIRE", &[&ttl]).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!("the target lease {LEASE_KEY} was taken over or expired: another run may be writing to the target");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the target lease; retrying");
                conn = None;
            }
        }
    }
}

/// A lease the target refused to store: say what the user can do.
fn lease_error(ep: &Endpoint, e: Error) -> Error {
    match e {
        Error::Server { message, .. } if message.starts_with("READONLY") => {
            Error::Incompatible(format!(
                "the target {} is a read-only replica: point ferry at its primary",
                ep.addr()
            ))
        }
        Error::AuthFailed { reason, .. } => Error::AuthFailed {
            addr: ep.addr(),
            reason: format!(
                "{reason} (ferry needs to write its lease key {LEASE_KEY} in the target's db 0: allow ~{LEASE_KEY} for SET, EVAL and DEL)"
            ),
        },
        other => other,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}
