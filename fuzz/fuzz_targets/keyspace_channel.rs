//! Keyspace notification channels: never panic, and a parsed key is the channel's tail.
#![no_main]

use ferry_engine::live::channel::parse_keyspace_channel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|channel: &[u8]| {
    if let Some((_db, key)) = parse_keyspace_channel(channel) {
        assert!(channel.starts_with(b"__keyspace@"));
        assert!(channel.ends_with(key));
    }
});
