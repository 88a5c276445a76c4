//! The live channels (design §8): how the tail hears which keys changed on one source node.
//!
//! - **keyspace**: `PSUBSCRIBE __keyspace@*__:*`. Needs `notify-keyspace-events` (K plus
//!   `g$lshzxet`) on the source; names the db of every key.
//! - **tracking**: client tracking in broadcast mode (`CLIENT TRACKING on REDIRECT <id> BCAST`,
//!   Redis 6+), its invalidations redirected to a connection subscribed to
//!   `__redis__:invalidate`. Needs no configuration at all. An invalidation names keys without
//!   their db, and a flush is a null invalidation.
//!
//! Both are pub/sub on the wire (RESP2), so both are bounded by the server's
//! `client-output-buffer-limit pubsub`: a subscriber that falls that far behind is disconnected,
//! which the tail sees as a dropped subscription, a gap it heals.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::net::conn::Conn;
use crate::net::resp::Reply;

/// Which live channel a tail follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveChannel {
    /// Keyspace notifications when the source has them on, client tracking otherwise.
    #[default]
    Auto,
    /// Keyspace notifications (`notify-keyspace-events`).
    Keyspace,
    /// Client tracking in broadcast mode: no configuration change on the source.
    Tracking,
}

impl LiveChannel {
    /// The names `--live-channel` and the step options take.
    pub const NAMES: [&'static str; 3] = ["auto", "keyspace", "tracking"];

    pub fn as_str(self) -> &'static str {
        match self {
            LiveChannel::Auto => "auto",
            LiveChannel::Keyspace => "keyspace",
            LiveChannel::Tracking => "tracking",
        }
    }
}

impl fmt::Display for LiveChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LiveChannel {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(LiveChannel::Auto),
            "keyspace" => Ok(LiveChannel::Keyspace),
            "tracking" => Ok(LiveChannel::Tracking),
            other => Err(format!(
                "unknown live channel '{other}' (auto, keyspace or tracking)"
            )),
        }
    }
}

/// The db and key of a keyspace channel `__keyspace@<db>__:<key>`; key names are binary-safe
/// and may contain `:`.
pub fn parse_keyspace_channel(channel: &[u8]) -> Option<(u32, &[u8])> {
    let rest = channel.strip_prefix(b"__keyspace@")?;
    let end = rest.iter().position(|&b| b == b'_')?;
    let db = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let key = rest[end..].strip_prefix(b"__:")?;
    Some((db, key))
}

/// What a channel heard.
#[derive(Debug, PartialEq)]
pub enum Heard {
    /// A key of a known db changed (keyspace); `by_writer` is false for expirations and
    /// evictions.
    Key {
        db: u32,
        key: Bytes,
        by_writer: bool,
    },
    /// Keys changed in some db (tracking names no db; expirations and evictions included).
    Keys(Vec<Bytes>),
    /// Any key may have changed: a flush (tracking's null invalidation).
    Everything,
    /// Nothing about keys (a confirmation, a message on another channel).
    Nothing,
}

/// How often the tracking connection is pinged: it holds the tracking state, and if it is lost
/// nothing more arrives on the subscriber, so its loss must be noticed.
const TRACKING_PING: Duration = Duration::from_secs(1);

/// One node's subscription to its changes on one channel.
pub struct Feed {
    subscriber: Conn,
    /// The subscriber's client id on the server (its `CLIENT LIST` entry shows how much the
    /// server holds for it: `omem`).
    client_id: i64,
    /// Tracking: the keep-alive task that owns the connection with `CLIENT TRACKING` on, and
    /// where it reports that connection's loss.
    tracking: Option<(tokio::task::JoinHandle<()>, oneshot::Receiver<Error>)>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Some((keepalive, _)) = &self.tracking {
            keepalive.abort();
        }
    }
}

impl Feed {
    /// Subscribes on the server `ep` names and returns once the server has confirmed:
    /// every change from then on is heard. `channel` is keyspace or tracking.
    pub async fn open(ep: &Endpoint, channel: LiveChannel) -> Result<Feed> {
        let mut subscriber = Conn::connect(ep).await?;
        // CLIENT may be refused by an ACL: the keyspace channel then works without the id.
        let client_id = match subscriber.call(&["CLIENT", "ID"]).await {
            Ok(Reply::Int(id)) => Ok(id),
            Ok(other) => return Err(protocol(&subscriber, format!("CLIENT ID: {other:?}"))),
            Err(e) => Err(e),
        };
        if channel != LiveChannel::Tracking {
            let reply = subscriber.call(&["PSUBSCRIBE", "__keyspace@*__:*"]).await?;
            confirmed(&subscriber, reply, b"psubscribe")?;
            return Ok(Feed {
                subscriber,
                client_id: client_id.unwrap_or(-1),
                tracking: None,
            });
        }
        let id = client_id.map_err(|e| no_tracking(ep, &e.to_string()))?;
        let reply = subscriber
            .call(&["SUBSCRIBE", "__redis__:invalidate"])
            .await?;
        confirmed(&subscriber, reply, b"subscribe")?;
        let mut tracker = Conn::connect(ep).await?;
        let redirect = id.to_string();
        if let Err(e) = tracker
            .call(&["CLIENT", "TRACKING", "on", "REDIRECT", &redirect, "BCAST"])
            .await
        {
            return Err(no_tracking(ep, &e.to_string()));
        }
        let (lost_tx, lost) = oneshot::channel();
        let keepalive = tokio::spawn(async move {
            let error = loop {
                tokio::time::sleep(TRACKING_PING).await;
                match tokio::time::timeout(Duration::from_secs(5), tracker.call(&["PING"])).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break e,
                    Err(_) => break protocol(&tracker, "no answer to PING in 5 s".into()),
                }
            };
            let _ = lost_tx.send(error);
        });
        Ok(Feed {
            subscriber,
            client_id: id,
            tracking: Some((keepalive, lost)),
        })
    }

    /// The subscriber's client id on the server, if CLIENT was allowed.
    pub fn client_id(&self) -> Option<i64> {
        (self.client_id >= 0).then_some(self.client_id)
    }

    /// When this feed must be renewed: its login expires (IAM), `None` when it never does.
    pub fn renew_at(&self) -> Option<std::time::Instant> {
        self.subscriber.renew_at()
    }

    /// The next thing heard. An error means the feed is broken (its subscriber or, on the
    /// tracking channel, its tracking connection was lost): changes may have been missed.
    pub async fn next(&mut self) -> Result<Heard> {
        let reply = match &mut self.tracking {
            None => self.subscriber.recv().await?,
            Some((_, lost)) => tokio::select! {
                reply = self.subscriber.recv() => reply?,
                error = lost => {
                    return Err(error.unwrap_or_else(|_| {
                        Error::Cancelled("the tracking keep-alive stopped".into())
                    }))
                }
            },
        };
        Ok(heard(reply))
    }
}

/// What a message on either channel says.
fn heard(reply: Reply) -> Heard {
    let Reply::Array(mut items) = reply else {
        return Heard::Nothing;
    };
    let kind = items.first().and_then(Reply::as_bytes).cloned();
    match (kind.as_deref(), items.len()) {
        // pmessage, pattern, channel, event
        (Some(b"pmessage"), 4) => {
            let event = items.pop().and_then(|e| e.as_bytes().cloned());
            let Some(Reply::Bulk(channel)) = items.pop() else {
                return Heard::Nothing;
            };
            let Some((db, key)) = parse_keyspace_channel(&channel) else {
                return Heard::Nothing;
            };
            let at = channel.len() - key.len();
            Heard::Key {
                db,
                key: channel.slice(at..),
                by_writer: !matches!(event.as_deref(), Some(b"expired" | b"evicted")),
            }
        }
        // message, __redis__:invalidate, [keys] or nil
        (Some(b"message"), 3) => match items.pop() {
            Some(Reply::Array(keys)) => Heard::Keys(
                keys.into_iter()
                    .filter_map(|k| match k {
                        Reply::Bulk(k) => Some(k),
                        _ => None,
                    })
                    .collect(),
            ),
            Some(Reply::Nil) => Heard::Everything,
            _ => Heard::Nothing,
        },
        _ => Heard::Nothing,
    }
}

/// Checks a (P)SUBSCRIBE confirmation.
fn confirmed(conn: &Conn, reply: Reply, kind: &[u8]) -> Result<()> {
    match &reply {
        Reply::Array(items)
            if items
                .first()
                .and_then(Reply::as_bytes)
                .is_some_and(|k| &k[..] == kind) =>
        {
            Ok(())
        }
        other => Err(protocol(
            conn,
            format!(
                "{} was not confirmed: {other:?}",
                String::from_utf8_lossy(kind).to_uppercase()
            ),
        )),
    }
}

fn protocol(conn: &Conn, message: String) -> Error {
    Error::Protocol {
        addr: conn.addr(),
        message,
    }
}

/// The source cannot give the tracking channel (Redis before 6, or CLIENT refused by ACL).
fn no_tracking(ep: &Endpoint, why: &str) -> Error {
    Error::NotificationsDisabled(format!(
        "{} refused client tracking ({why}): the tracking live channel needs Redis 6 or later and the CLIENT command; use --live-channel keyspace with notify-keyspace-events on",
        ep.addr()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &[u8]) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(b))
    }

    #[test]
    fn parses_binary_safe_channels() {
        assert_eq!(
            parse_keyspace_channel(b"__keyspace@0__:user:1"),
            Some((0, &b"user:1"[..]))
        );
        assert_eq!(
            parse_keyspace_channel(b"__keyspace@15__:a__:b"),
            Some((15, &b"a__:b"[..]))
        );
        assert_eq!(
            parse_keyspace_channel(b"__keyspace@3__:\x00\xff"),
            Some((3, &b"\x00\xff"[..]))
        );
        assert_eq!(
            parse_keyspace_channel(b"__keyspace@3__:"),
            Some((3, &b""[..]))
        );
        assert_eq!(parse_keyspace_channel(b"__keyevent@0__:set"), None);
    }

    #[test]
    fn hears_both_channels() {
        let keyspace = |event: &[u8]| {
            Reply::Array(vec![
                bulk(b"pmessage"),
                bulk(b"__keyspace@*__:*"),
                bulk(b"__keyspace@2__:a:b"),
                bulk(event),
            ])
        };
        assert_eq!(
            heard(keyspace(b"set")),
            Heard::Key {
                db: 2,
                key: Bytes::from_static(b"a:b"),
                by_writer: true
            }
        );
        assert!(matches!(
            heard(keyspace(b"evicted")),
            Heard::Key {
                by_writer: false,
                ..
            }
        ));
        let invalidation = |payload: Reply| {
            Reply::Array(vec![
                bulk(b"message"),
                bulk(b"__redis__:invalidate"),
                payload,
            ])
        };
        assert_eq!(
            heard(invalidation(Reply::Array(vec![bulk(b"k1"), bulk(b"k2")]))),
            Heard::Keys(vec![Bytes::from_static(b"k1"), Bytes::from_static(b"k2")])
        );
        assert_eq!(heard(invalidation(Reply::Nil)), Heard::Everything);
        assert_eq!(
            heard(Reply::Array(vec![
                bulk(b"subscribe"),
                bulk(b"__redis__:invalidate"),
                Reply::Int(1)
            ])),
            Heard::Nothing
        );
    }

    #[test]
    fn channel_names_round_trip() {
        for name in LiveChannel::NAMES {
            assert_eq!(name.parse::<LiveChannel>().unwrap().as_str(), name);
        }
        assert!("bcast".parse::<LiveChannel>().is_err());
    }
}
