//! RESP2, the Redis wire protocol: encoding commands into a buffer and parsing replies out of one.
//!
//! ferry speaks RESP itself rather than through a general client so that the copy path can keep
//! pipelines full with almost no CPU of its own: a reply's bulk strings are zero-copy slices of
//! the read buffer ([`Bytes`]), and commands are encoded straight into the write buffer.

mod decode;

pub use decode::{peek_head, take_reply, take_reply_within, Head, ProtocolError};

use bytes::{Bytes, BytesMut};

/// One reply from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and other simple strings.
    Status(Bytes),
    /// `-ERR …`: kept as a value so one failed command in a pipeline does not hide the others.
    Error(Bytes),
    /// `:123`
    Int(i64),
    /// `$n` bulk string.
    Bulk(Bytes),
    /// `$-1` or `*-1`.
    Nil,
    /// `*n` array.
    Array(Vec<Reply>),
    /// A bulk string longer than the reader's limit, read off the socket and dropped
    /// (see `Conn::recv_limited`); holds its length.
    Skipped(u64),
}

impl Reply {
    /// The bytes of a bulk or status reply.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Reply::Bulk(b) | Reply::Status(b) => Some(b),
            _ => None,
        }
    }

    /// An integer reply, or a bulk string holding a decimal integer (as CONFIG and XINFO return).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            Reply::Bulk(b) | Reply::Status(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// Text of a bulk or status reply (lossy), for INFO, TYPE and similar.
    pub fn as_text(&self) -> Option<String> {
        self.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The elements of an array reply.
    pub fn into_array(self) -> Option<Vec<Reply>> {
        match self {
            Reply::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The message of an error reply.
    pub fn error_text(&self) -> Option<String> {
        match self {
            Reply::Error(e) => Some(String::from_utf8_lossy(e).into_owned()),
            _ => None,
        }
    }
}

/// Appends one command (an array of bulk strings) to `out`.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    push_header(out, b'*', args.len());
    for arg in args {
        encode_bulk(out, arg.as_ref());
    }
}

/// Appends an array header; the caller then appends exactly `len` bulk strings with [`encode_bulk`].
/// Lets hot paths write a command from parts without building an argument list.
pub fn encode_array_header(out: &mut BytesMut, len: usize) {
    push_header(out, b'*', len);
}

/// Appends one bulk string.
pub fn encode_bulk(out: &mut BytesMut, arg: &[u8]) {
    out.reserve(arg.len() + 26);
    push_header(out, b'$', arg.len());
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// Appends an integer as a bulk string (RESP commands take numbers as text).
pub fn encode_bulk_int(out: &mut BytesMut, value: i64) {
    let mut buf = itoa::Buffer::new();
    encode_bulk(out, buf.format(value).as_bytes());
}

/// `<kind><len>\r\n`, assembled on the stack and appended in one copy (it runs for every
/// argument of every command).
fn push_header(out: &mut BytesMut, kind: u8, len: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(len).as_bytes();
    let mut head = [0u8; 24];
    head[0] = kind;
    head[1..1 + digits.len()].copy_from_slice(digits);
    head[1 + digits.len()..3 + digits.len()].copy_from_slice(b"\r\n");
    out.extend_from_slice(&head[..3 + digits.len()]);
}

/// Bounds on one reply. Real servers stay far below them; a server past them is broken or
/// hostile, and its reply is refused as a protocol error instead of growing ferry's memory or
/// stack without limit. DUMP payloads have their own, lower limit (`Conn::recv_limited`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Arrays nested deeper than this are refused (real replies nest a few levels).
    pub max_depth: usize,
    /// Largest bulk string, in bytes (Redis's own `proto-max-bulk-len` tops out at 512 MiB).
    pub max_bulk: usize,
    /// Most elements in one array.
    pub max_array: usize,
    /// Longest `+status` or `-error` line, in bytes.
    pub max_line: usize,
}

impl ReplyLimits {
    /// The limits ferry uses unless told otherwise ([`set_limits`]).
    pub const DEFAULT: ReplyLimits = ReplyLimits {
        max_depth: 64,
        max_bulk: 512 << 20,
        max_array: 1 << 24,
        max_line: 1 << 20,
    };

    /// The most bytes one incomplete reply may hold in a read buffer: one maximal bulk string
    /// plus room for the array around it.
    pub fn max_reply_bytes(&self) -> usize {
        self.max_bulk.saturating_add(64 << 20)
    }
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits::DEFAULT
    }
}

static LIMITS: std::sync::OnceLock<ReplyLimits> = std::sync::OnceLock::new();

/// Sets the process's reply limits once, before the first connection; later calls are ignored.
pub fn set_limits(limits: ReplyLimits) {
    let _ = LIMITS.set(limits);
}

/// The process's reply limits.
pub fn limits() -> &'static ReplyLimits {
    LIMITS.get_or_init(ReplyLimits::default)
}
