//! DUMP payload trailers: never panic; the version is read from the two bytes before the CRC.
#![no_main]

use ferry_engine::inventory::payload_rdb_version;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    match payload_rdb_version(payload) {
        Some(v) => {
            let n = payload.len();
            assert_eq!(v.to_le_bytes(), [payload[n - 10], payload[n - 9]]);
        }
        None => assert!(payload.len() < 10),
    }
});
