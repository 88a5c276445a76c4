//! Parsing replies out of a read buffer: the size of the next reply from its first bytes (so a
//! big bulk can be streamed), and whole replies as zero-copy slices, within the size limits.

use bytes::{Buf, Bytes, BytesMut};

use super::{limits, Reply, ReplyLimits};

/// The longest header line (`$`, `*`, `:`): a sign, 19 digits.
const MAX_HEADER_LINE: usize = 20;

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

/// Looks at the next reply's header without consuming anything. The bulk length is not bounded
/// here: the caller reads an oversized bulk off the socket without keeping it.
pub fn peek_head(buf: &[u8]) -> Result<Head, ProtocolError> {
    match buf.first() {
        None => Ok(Head::Incomplete),
        Some(b'$') => match line(buf, 1, MAX_HEADER_LINE)? {
            None => Ok(Head::Incomplete),
            Some(eol) => match length(&buf[1..eol], usize::MAX)? {
                None => Ok(Head::Other),
                Some(len) => Ok(Head::Bulk {
                    len,
                    header: eol + 2,
                }),
            },
        },
        Some(&kind) => check_kind(kind).map(|_| Head::Other),
    }
}

/// Bytes that are not a RESP reply, or a reply past [`ReplyLimits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Takes one complete reply off the front of `buf`, or returns `Ok(None)` when more bytes are
/// needed, within the process's [`limits`].
pub fn take_reply(buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
    take_reply_within(buf, limits())
}

/// [`take_reply`] with explicit limits.
pub fn take_reply_within(
    buf: &mut BytesMut,
    limits: &ReplyLimits,
) -> Result<Option<Reply>, ProtocolError> {
    // Fast paths for the replies a copy reads by the million: integers, +OK and bulk strings.
    match buf.first() {
        Some(b':') => {
            let Some(eol) = line(buf, 1, MAX_HEADER_LINE)? else {
                return Ok(None);
            };
            let reply = Reply::Int(parse_int(&buf[1..eol])?);
            buf.advance(eol + 2);
            return Ok(Some(reply));
        }
        Some(b'+') => {
            let Some(eol) = line(buf, 1, limits.max_line)? else {
                return Ok(None);
            };
            let reply = if &buf[1..eol] == b"OK" {
                Reply::Status(Bytes::from_static(b"OK"))
            } else {
                Reply::Status(Bytes::copy_from_slice(&buf[1..eol]))
            };
            buf.advance(eol + 2);
            return Ok(Some(reply));
        }
        Some(b'$') => {
            let Some(eol) = line(buf, 1, MAX_HEADER_LINE)? else {
                return Ok(None);
            };
            let Some(n) = length(&buf[1..eol], limits.max_bulk)? else {
                buf.advance(eol + 2);
                return Ok(Some(Reply::Nil));
            };
            if buf.len() < eol + 2 + n + 2 {
                return Ok(None);
            }
            check_crlf(buf, eol + 2 + n)?;
            buf.advance(eol + 2);
            let body = buf.split_to(n).freeze();
            buf.advance(2);
            return Ok(Some(Reply::Bulk(body)));
        }
        _ => {}
    }
    let Some(len) = frame_len(buf, 0, 0, limits)? else {
        return Ok(None);
    };
    let frame = buf.split_to(len).freeze();
    let (reply, end) = parse(&frame, 0)?;
    debug_assert_eq!(end, len);
    Ok(Some(reply))
}

/// Finds the end of the line starting at `pos` (the index of its `\r`), refusing a line longer
/// than `max` bytes as soon as that many have arrived without one.
fn line(buf: &[u8], pos: usize, max: usize) -> Result<Option<usize>, ProtocolError> {
    let window = &buf[pos.min(buf.len())..buf.len().min(pos.saturating_add(max).saturating_add(2))];
    let mut i = 0;
    while let Some(off) = window[i..].iter().position(|&b| b == b'\r') {
        let at = i + off;
        match window.get(at + 1) {
            Some(b'\n') => return Ok(Some(pos + at)),
            Some(_) => i = at + 1,
            None => break,
        }
    }
    if window.len() >= max.saturating_add(2) {
        return Err(ProtocolError(format!(
            "a reply line longer than {max} bytes without CRLF"
        )));
    }
    Ok(None)
}

/// Refuses a byte that starts no RESP2 reply, at once: garbage must not wait for a CRLF.
fn check_kind(kind: u8) -> Result<(), ProtocolError> {
    match kind {
        b'+' | b'-' | b':' | b'$' | b'*' => Ok(()),
        other => Err(ProtocolError(format!(
            "unexpected reply type byte {other:#04x}"
        ))),
    }
}

/// A bulk string ends with CRLF; anything else means the length lied.
fn check_crlf(buf: &[u8], at: usize) -> Result<(), ProtocolError> {
    if &buf[at..at + 2] == b"\r\n" {
        Ok(())
    } else {
        Err(ProtocolError("a bulk string does not end with CRLF".into()))
    }
}

/// A bulk or array length: `None` for `-1` (nil); other negative numbers and lengths above
/// `max` are refused.
fn length(line: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    match parse_int(line)? {
        -1 => Ok(None),
        n if n < 0 => Err(ProtocolError(format!("negative length {n}"))),
        n if n as u64 > max as u64 => Err(ProtocolError(format!(
            "a length of {n} is over the limit of {max}"
        ))),
        n => Ok(Some(n as usize)),
    }
}

/// A RESP integer (`-?[0-9]+`), parsed straight from the bytes: it runs for every reply header.
fn parse_int(line: &[u8]) -> Result<i64, ProtocolError> {
    let bad = || {
        let shown: String = String::from_utf8_lossy(&line[..line.len().min(24)])
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        ProtocolError(format!("bad integer {shown:?}"))
    };
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

/// The length of the complete frame starting at `pos`, relative to the buffer start, if
/// complete; `depth` is how many arrays enclose it. Every header is checked against `limits`
/// before its contents are awaited.
fn frame_len(
    buf: &[u8],
    pos: usize,
    depth: usize,
    limits: &ReplyLimits,
) -> Result<Option<usize>, ProtocolError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    check_kind(kind)?;
    let max_line = match kind {
        b'+' | b'-' => limits.max_line,
        _ => MAX_HEADER_LINE,
    };
    let Some(eol) = line(buf, pos + 1, max_line)? else {
        return Ok(None);
    };
    let after = eol + 2;
    match kind {
        b':' => parse_int(&buf[pos + 1..eol]).map(|_| Some(after)),
        b'$' => match length(&buf[pos + 1..eol], limits.max_bulk)? {
            None => Ok(Some(after)),
            Some(n) => {
                let end = after + n + 2;
                if buf.len() < end {
                    return Ok(None);
                }
                check_crlf(buf, after + n)?;
                Ok(Some(end))
            }
        },
        b'*' => {
            let Some(n) = length(&buf[pos + 1..eol], limits.max_array)? else {
                return Ok(Some(after));
            };
            if n > 0 && depth >= limits.max_depth {
                return Err(ProtocolError(format!(
                    "arrays nested deeper than {}",
                    limits.max_depth
                )));
            }
            let mut at = after;
            for _ in 0..n {
                match frame_len(buf, at, depth + 1, limits)? {
                    Some(next) => at = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        _ => Ok(Some(after)),
    }
}

/// Parses a frame [`frame_len`] has checked whole, slicing bulk strings out of `frame` without
/// copying.
fn parse(frame: &Bytes, pos: usize) -> Result<(Reply, usize), ProtocolError> {
    let eol =
        line(frame, pos + 1, usize::MAX)?.ok_or_else(|| ProtocolError("truncated frame".into()))?;
    let line = frame.slice(pos + 1..eol);
    let after = eol + 2;
    Ok(match frame[pos] {
        b'+' => (Reply::Status(line), after),
        b'-' => (Reply::Error(line), after),
        b':' => (Reply::Int(parse_int(&line)?), after),
        b'$' => match length(&line, usize::MAX)? {
            None => (Reply::Nil, after),
            Some(n) => (Reply::Bulk(frame.slice(after..after + n)), after + n + 2),
        },
        b'*' => match length(&line, usize::MAX)? {
            None => (Reply::Nil, after),
            Some(n) => {
                // Capacity grows with what is really there, not with what the header claims.
                let mut items = Vec::with_capacity(n.min(1024));
                let mut at = after;
                for _ in 0..n {
                    let (item, next) = parse(frame, at)?;
                    items.push(item);
                    at = next;
                }
                (Reply::Array(items), at)
            }
        },
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
    use crate::net::resp::encode_command;

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

    /// What a hostile or broken server sends: each is refused at once, from the bytes that show
    /// it, without waiting for more and without growing memory or the stack.
    #[test]
    fn refuses_hostile_replies_from_their_first_bytes() {
        let deep = "*1\r\n".repeat(100_000);
        let long_status = format!("+{}", "x".repeat((1 << 20) + 10));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("deep nesting", deep.into_bytes()),
            ("a 2^40 bulk", b"$1099511627776\r\nab".to_vec()),
            ("a 2^31 array", b"*2147483648\r\n$1\r\na\r\n".to_vec()),
            ("$-5", b"$-5\r\n".to_vec()),
            ("*-7", b"*-7\r\n".to_vec()),
            ("nested $-2", b"*1\r\n$-2\r\n".to_vec()),
            ("garbage, no CRLF", b"GARBAGE WITHOUT AN END".to_vec()),
            (
                "a header that never ends",
                b"$1234567890123456789012345".to_vec(),
            ),
            ("an endless status", long_status.into_bytes()),
            ("a bulk without CRLF", b"$2\r\nabcd".to_vec()),
        ];
        for (what, wire) in cases {
            let mut buf = BytesMut::from(&wire[..]);
            assert!(take_reply(&mut buf).is_err(), "{what} was not refused");
        }
        // Nil stays nil, and the limits are what decides.
        let mut buf = BytesMut::from(&b"$-1\r\n*-1\r\n"[..]);
        assert_eq!(take_reply(&mut buf).unwrap(), Some(Reply::Nil));
        assert_eq!(take_reply(&mut buf).unwrap(), Some(Reply::Nil));
        let tight = ReplyLimits {
            max_depth: 2,
            max_array: 3,
            max_bulk: 4,
            max_line: 8,
        };
        for (wire, ok) in [
            (&b"*1\r\n*1\r\n:1\r\n"[..], true),
            (b"*1\r\n*1\r\n*1\r\n:1\r\n", false),
            (b"*4\r\n", false),
            (b"$5\r\n", false),
            (b"+0123456789", false),
        ] {
            let result = take_reply_within(&mut BytesMut::from(wire), &tight);
            assert_eq!(
                result.is_ok(),
                ok,
                "{:?}: {result:?}",
                String::from_utf8_lossy(wire)
            );
        }
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
