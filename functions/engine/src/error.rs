//! One error type for the engine, with stable names that the CLI maps to exit codes and the
//! Lambdas report as error types the state machine's Retry/Catch match.
//!
//! Messages name servers by `host:port` only: a password never reaches an error.

/// Everything that can stop an engine operation, classified by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input (URL, option, execution input) is wrong; nothing was attempted.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The server could not be reached at all (refused, timed out, name not resolved).
    #[error("cannot reach {role} {addr}: {reason}")]
    Unreachable {
        role: crate::role::Role,
        addr: String,
        reason: String,
    },
    /// The server refused the credentials or the ACL user lacks a permission ferry needs.
    #[error("authentication failed at {addr}: {reason}")]
    AuthFailed { addr: String, reason: String },
    /// The TLS handshake failed (unknown CA, name mismatch, plain server on a TLS URL).
    #[error("TLS failure with {addr}: {reason}")]
    Tls { addr: String, reason: String },
    /// An established connection broke; retrying from the last checkpoint is safe.
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost { addr: String, reason: String },
    /// The server answered with an error ferry did not expect.
    #[error("{addr} replied with an error to {command}: {message}")]
    Server {
        addr: String,
        command: String,
        message: String,
    },
    /// The server sent bytes that are not RESP.
    #[error("protocol error from {addr}: {message}")]
    Protocol { addr: String, message: String },
    /// The target refused a write because it reached `maxmemory`.
    #[error("target {addr} is out of memory ({message}); raise its maxmemory or free space, then run again")]
    TargetOutOfMemory { addr: String, message: String },
    /// Another ferry run holds the target's lease: two runs must not write into one target.
    #[error("target in use: {0}")]
    TargetInUse(String),
    /// The target already holds keys and the user did not allow writing over them.
    #[error("target is not empty: {0}")]
    TargetNotEmpty(String),
    /// Source and target cannot be paired as asked (versions, databases, same server).
    #[error("incompatible source and target: {0}")]
    Incompatible(String),
    /// Live mode cannot hear the source's changes: keyspace notifications are off, or client
    /// tracking is refused (the message says which).
    #[error("live mode cannot hear the source's changes: {0}")]
    NotificationsDisabled(String),
    /// A key of a type ferry cannot copy with the chosen method (e.g. a module type in struct mode).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The operation was cancelled (signal, deadline, or another worker's fatal error).
    #[error("cancelled: {0}")]
    Cancelled(String),
}

/// Shorthand used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable name of this error's kind, used as the Lambda error type and in JSON reports.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "InvalidInput",
            Error::Unreachable {
                role: crate::role::Role::Source,
                ..
            } => "SourceUnreachable",
            Error::Unreachable { .. } => "TargetUnreachable",
            Error::AuthFailed { .. } => "AuthFailed",
            Error::Tls { .. } => "TlsFailed",
            Error::ConnectionLost { .. } => "Retryable",
            Error::Server { .. } => "ServerError",
            Error::Protocol { .. } => "ProtocolError",
            Error::TargetOutOfMemory { .. } => "TargetOutOfMemory",
            Error::TargetNotEmpty(_) => "TargetNotEmpty",
            Error::TargetInUse(_) => "TargetInUse",
            Error::Incompatible(_) => "IncompatibleVersion",
            Error::NotificationsDisabled(_) => "NotificationsDisabled",
            Error::Unsupported(_) => "UnsupportedType",
            Error::Cancelled(_) => "Cancelled",
        }
    }

    /// Whether running the same step again (from its checkpoint) may succeed.
    /// This is the one place that decides it; the state machine's Retry lists follow it.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::ConnectionLost { .. } => true,
            Error::Server { message, .. } => is_transient_server_error(message),
            _ => false,
        }
    }

    /// Whether a running migration should ride this out by reconnecting and retrying: the
    /// retryable kinds, plus a server that went away for a while (restarting, failing over).
    /// At startup an unreachable server is bad input instead.
    pub fn is_transient(&self) -> bool {
        self.is_retryable() || matches!(self, Error::Unreachable { .. } | Error::Protocol { .. })
    }

    /// Whether the error is about what the user gave (exit code 2) rather than a runtime failure.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidInput(_)
                | Error::Unreachable { .. }
                | Error::AuthFailed { .. }
                | Error::Tls { .. }
                | Error::TargetNotEmpty(_)
                | Error::TargetInUse(_)
                | Error::Incompatible(_)
                | Error::NotificationsDisabled(_)
        )
    }
}

/// Server replies that mean "try again later": loading, busy scripts, failover in progress,
/// cluster redirections that outlived their retries.
pub(crate) fn is_transient_server_error(message: &str) -> bool {
    const TRANSIENT: [&str; 7] = [
        "LOADING",
        "BUSY",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MASTERDOWN",
        "READONLY",
        "FAILOVER",
    ];
    TRANSIENT.iter().any(|p| message.starts_with(p))
}

/// The most characters of a server's error text ferry repeats.
const SERVER_TEXT_CHARS: usize = 300;

/// A server's error text made safe to print: control characters (terminal escape sequences)
/// shown as `\u{..}` escapes, and at most [`SERVER_TEXT_CHARS`] characters kept.
pub(crate) fn server_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(SERVER_TEXT_CHARS + 32));
    for (shown, c) in raw.chars().enumerate() {
        if shown == SERVER_TEXT_CHARS {
            out.push_str(&format!("… ({} bytes in all)", raw.len()));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_is_decided_by_kind_and_server_prefix() {
        let lost = Error::ConnectionLost {
            addr: "a:1".into(),
            reason: "reset".into(),
        };
        assert!(lost.is_retryable());
        let loading = Error::Server {
            addr: "a:1".into(),
            command: "DUMP".into(),
            message: "LOADING Redis is loading the dataset in memory".into(),
        };
        assert!(loading.is_retryable());
        let wrongtype = Error::Server {
            addr: "a:1".into(),
            command: "GET".into(),
            message: "WRONGTYPE Operation against a key".into(),
        };
        assert!(!wrongtype.is_retryable());
        assert!(!Error::TargetNotEmpty("db0".into()).is_retryable());
        let shown = server_text(&format!("ERR \x1b[2J{}", "x".repeat(1 << 20)));
        assert!(
            shown.starts_with("ERR \\u{1b}[2J") && shown.len() < 400,
            "{shown}"
        );
        assert_eq!(
            Error::TargetOutOfMemory {
                addr: "a:1".into(),
                message: "OOM".into()
            }
            .kind_name(),
            "TargetOutOfMemory"
        );
    }
}
