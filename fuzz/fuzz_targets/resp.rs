//! RESP replies as a server (or anything on the wire) sends them: never panic, never loop;
//! a reply taken consumes bytes, and "need more" leaves the buffer as it was.
#![no_main]

use bytes::BytesMut;
use ferry_engine::net::resp::take_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match take_reply(&mut buf) {
            Ok(Some(_)) => assert!(buf.len() < before, "a reply took no bytes"),
            Ok(None) => {
                assert_eq!(buf.len(), before);
                break;
            }
            Err(_) => break,
        }
    }
});
