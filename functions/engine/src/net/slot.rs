//! Redis Cluster slots: which slot a key hashes to (its `{hash tag}` when it has one), and which
//! argument of a command is its key. Pure: the routed connection and topology use it.

/// Slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag when it has one.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) % SLOTS
}

/// The key's hash tag: what lies between its first `{` and the first `}` after it, when that
/// is not empty.
pub fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let len = key[open + 1..].iter().position(|&b| b == b'}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

/// The smallest number whose decimal text hashes to `slot`: a hash tag that puts any key in
/// that slot.
pub fn tag_for(slot: u16) -> String {
    (0u32..)
        .map(|n| n.to_string())
        .find(|t| key_slot(t.as_bytes()) == slot)
        .expect("every slot has a number")
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The key of a command, for the commands ferry sends; `None` for commands without a key
/// (a routed connection sends them to the node of the previous keyed command).
pub fn command_key<A: AsRef<[u8]>>(args: &[A]) -> Option<&[u8]> {
    let name = args.first()?.as_ref();
    let with_subcommand = [&b"MEMORY"[..], b"XINFO", b"XGROUP", b"OBJECT"];
    let keyless = [
        &b"MULTI"[..],
        b"EXEC",
        b"DISCARD",
        b"PING",
        b"SELECT",
        b"INFO",
        b"SCAN",
        b"CONFIG",
        b"CLIENT",
        b"CLUSTER",
        b"DBSIZE",
        b"ASKING",
        b"READONLY",
    ];
    let index = if with_subcommand.iter().any(|c| name.eq_ignore_ascii_case(c)) {
        2
    } else if keyless.iter().any(|c| name.eq_ignore_ascii_case(c)) {
        return None;
    } else {
        1
    };
    args.get(index).map(|a| a.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn finds_keys_of_commands() {
        assert_eq!(command_key(&["RESTORE", "k", "0", "p"]), Some(&b"k"[..]));
        assert_eq!(command_key(&["xinfo", "GROUPS", "s"]), Some(&b"s"[..]));
        assert_eq!(command_key(&["MULTI"]), None);
        assert_eq!(command_key(&["GET"]), None);
    }
}
