//! RESP2, the Redis wire protocol: encoding commands into a buffer and parsing replies out of one.
//!
//! ferry speaks RESP itself rather than through a general client so that the copy path can keep
//! pipelines full with almost no CPU of its own: a reply's bulk strings are zero-copy slices of
//! the read buffer ([`Bytes`]), and commands are encoded straight into the write buffer.

use bytes::{Buf, Bytes, BytesMut};

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

/// What the front of a buffer says about the next reply's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Not enough bytes to tell.
    Incomplete,
    /// A bulk string of `len` bytes whose header takes `header` bytes.
    Bulk { len: usize, header: usize },
    /// Any other reply.
    Other,
}

/// Looks at the next reply's header without consuming anything.
pub fn peek_head(buf: &[u8]) -> Result<Head, ProtocolError> {
    match buf.first() {
        None => Ok(Head::Incomplete),
        Some(b'$') => match line_end(buf, 1) {
            None => Ok(Head::Incomplete),
            Some(eol) => {
                let n = parse_int(&buf[1..eol])?;
                Ok(if n < 0 {
                    Head::Other
                } else {
                    Head::Bulk {
                        len: n as usize,
                        header: eol + 2,
                    }
                })
            }
        },
        Some(_) => Ok(Head::Other),
    }
}

/// Bytes that are not a RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Takes one complete reply off the front of `buf`, or returns `Ok(None)` when more bytes are needed.
pub fn take_reply(buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
    // Fast paths for the replies a copy reads by the million: integers, +OK and bulk strings.
    match buf.first() {
        Some(b':') | Some(b'+') => {
            let Some(eol) = line_end(buf, 1) else {
                return Ok(None);
            };
            let reply = if buf[0] == b':' {
                Reply::Int(parse_int(&buf[1..eol])?)
            } else if &buf[1..eol] == b"OK" {
                Reply::Status(Bytes::from_static(b"OK"))
            } else {
                Reply::Status(Bytes::copy_from_slice(&buf[1..eol]))
            };
            buf.advance(eol + 2);
            return Ok(Some(reply));
        }
        Some(b'$') => {
            let Some(eol) = line_end(buf, 1) else {
                return Ok(None);
            };
            let n = parse_int(&buf[1..eol])?;
            if n < 0 {
                buf.advance(eol + 2);
                return Ok(Some(Reply::Nil));
            }
            let end = eol + 2 + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            buf.advance(eol + 2);
            let body = buf.split_to(n as usize).freeze();
            buf.advance(2);
            return Ok(Some(Reply::Bulk(body)));
        }
        _ => {}
    }
    let Some(len) = frame_len(buf, 0)? else {
        return Ok(None);
    };
    let frame = buf.split_to(len).freeze();
    let (reply, end) = parse(&frame, 0)?;
    debug_assert_eq!(end, len);
    Ok(Some(reply))
}

/// Finds the end of the line starting at `pos`: the index of its `\r`.
fn line_end(buf: &[u8], pos: usize) -> Option<usize> {
    let mut i = pos;
    while i + 1 < buf.len() {
        match memchr_cr(&buf[i..buf.len() - 1]) {
            Some(off) => {
                let at = i + off;
                if buf[at + 1] == b'\n' {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

fn memchr_cr(hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == b'\r')
}

/// A RESP integer (`-?[0-9]+`), parsed straight from the bytes: it runs for every reply header.
fn parse_int(line: &[u8]) -> Result<i64, ProtocolError> {
    let bad = || ProtocolError(format!("bad integer {:?}", String::from_utf8_lossy(line)));
    let (negative, digits) = match line {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let value = |ds: &[u8]| ds.iter().fold(0i64, |n, &d| n * 10 + (d - b'0') as i64);
    // Up to 18 digits cannot overflow; only a 19-digit number needs the checked path.
    let n = if digits.len() <= 18 {
        value(digits)
    } else {
        value(&digits[..18])
            .checked_mul(10)
            .and_then(|n| n.checked_add((digits[18] - b'0') as i64))
            .ok_or_else(bad)?
    };
    Ok(if negative { -n } else { n })
}

/// The length of the complete frame starting at `pos`, relative to the buffer start, if complete.
fn frame_len(buf: &[u8], pos: usize) -> Result<Option<usize>, ProtocolError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(eol) = line_end(buf, pos + 1) else {
        return Ok(None);
    };
    let after = eol + 2;
    match kind {
        b'+' | b'-' | b':' => Ok(Some(after)),
        b'$' => {
            let n = parse_int(&buf[pos + 1..eol])?;
            if n < 0 {
                return Ok(Some(after));
            }
            let end = after + n as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        b'*' => {
            let n = parse_int(&buf[pos + 1..eol])?;
            let mut at = after;
            for _ in 0..n.max(0) {
                match frame_len(buf, at)? {
                    Some(next) => at = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(ProtocolError(format!(
            "unexpected reply type byte {other:#04x}"
        ))),
    }
}

/// Parses a frame known to be complete, slicing bulk strings out of `frame` without copying.
fn parse(frame: &Bytes, pos: usize) -> Result<(Reply, usize), ProtocolError> {
    let eol = line_end(frame, pos + 1).ok_or_else(|| ProtocolError("truncated frame".into()))?;
    let line = frame.slice(pos + 1..eol);
    let after = eol + 2;
    Ok(match frame[pos] {
        b'+' => (Reply::Status(line), after),
        b'-' => (Reply::Error(line), after),
        b':' => (Reply::Int(parse_int(&line)?), after),
        b'$' => {
            let n = parse_int(&line)?;
            if n < 0 {
                (Reply::Nil, after)
            } else {
                let end = after + n as usize;
                (Reply::Bulk(frame.slice(after..end)), end + 2)
            }
        }
        b'*' => {
            let n = parse_int(&line)?;
            if n < 0 {
                (Reply::Nil, after)
            } else {
                let mut items = Vec::with_capacity(n as usize);
                let mut at = after;
                for _ in 0..n {
                    let (item, next) = parse(frame, at)?;
                    items.push(item);
                    at = next;
                }
                (Reply::Array(items), at)
            }
        }
        other => {
            return Err(ProtocolError(format!(
                "unexpected reply type byte {other:#04x}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_binary_safe_commands() {
        let mut out = BytesMut::new();
        encode_command(&mut out, &[&b"SET"[..], b"k\r\n", b""]);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$0\r\n\r\n");
    }

    #[test]
    fn parses_nested_replies_and_waits_for_more_bytes() {
        let wire: &[u8] = b"*4\r\n+OK\r\n:-7\r\n$5\r\nab\r\nc\r\n*2\r\n$-1\r\n-ERR x\r\n";
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(take_reply(&mut buf).unwrap(), None, "cut at {cut}");
        }
        let mut buf = BytesMut::from(wire);
        buf.extend_from_slice(b":1\r\n");
        let reply = take_reply(&mut buf).unwrap().unwrap();
        assert_eq!(
            reply,
            Reply::Array(vec![
                Reply::Status(Bytes::from_static(b"OK")),
                Reply::Int(-7),
                Reply::Bulk(Bytes::from_static(b"ab\r\nc")),
                Reply::Array(vec![Reply::Nil, Reply::Error(Bytes::from_static(b"ERR x"))]),
            ])
        );
        assert_eq!(take_reply(&mut buf).unwrap(), Some(Reply::Int(1)));
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_garbage() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 400\r\n"[..]);
        assert!(take_reply(&mut buf).is_err());
    }
}

#[cfg(test)]
mod int_tests {
    #[test]
    fn parses_resp_integers_and_refuses_the_rest() {
        for (text, n) in [
            ("0", 0),
            ("-1", -1),
            ("1234567", 1234567),
            ("9223372036854775807", i64::MAX),
        ] {
            assert_eq!(super::parse_int(text.as_bytes()).unwrap(), n);
        }
        for bad in ["", "-", "12a", "+1", "99999999999999999999", " 1"] {
            assert!(super::parse_int(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
