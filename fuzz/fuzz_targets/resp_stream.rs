//! A hostile server's byte stream, arriving in pieces of any size: the reader never panics,
//! never takes more than one reply's bytes, refuses every header past its limits as soon as the
//! header is whole, and reads the same replies whatever the pieces (the first byte picks them).
#![no_main]

use bytes::BytesMut;
use ferry_engine::net::resp::{take_reply_within, Reply, ReplyLimits};
use libfuzzer_sys::fuzz_target;

/// Small limits, so the fuzzer reaches them with small inputs.
const LIMITS: ReplyLimits = ReplyLimits {
    max_depth: 8,
    max_bulk: 64,
    max_array: 16,
    max_line: 32,
};

/// Every reply the stream holds, and whether it ended in an error.
fn read_all(pieces: impl Iterator<Item = Vec<u8>>) -> (Vec<Reply>, bool) {
    let mut buf = BytesMut::new();
    let mut replies = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(&piece);
        loop {
            match take_reply_within(&mut buf, &LIMITS) {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => break,
                Err(_) => return (replies, true),
            }
        }
    }
    (replies, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let size = usize::from(split % 7) + 1;
    let whole = read_all(std::iter::once(stream.to_vec()));
    let pieces = read_all(stream.chunks(size).map(<[u8]>::to_vec));
    assert_eq!(whole, pieces, "pieces of {size} read differently");
});
