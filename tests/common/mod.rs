//! Helpers shared by the end-to-end tests: an independent view of a server's keyspace through
//! redis-rs (not ferry's own client), to check what ferry wrote; and running the `ferry` binary.
#![allow(dead_code)]

pub mod aws;
pub mod live;
pub mod process;

use std::collections::BTreeMap;
use std::process::Output;

use redis::AsyncCommands;

/// A key as an independent client sees it: type, normalized value, and expiry as a Unix time
/// in ms computed from PTTL when read (-1: none), so keyspaces read seconds apart compare.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub kind: String,
    pub value: Vec<Vec<u8>>,
    pub expire_at: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Connects redis-rs to a URL.
pub async fn client(url: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(60)));
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect with redis-rs")
}

/// Every key of one db with its state. Sets, hashes and zsets are sorted so encodings and
/// orders do not matter; streams include entries and group summaries.
pub async fn keyspace(url: &str) -> BTreeMap<Vec<u8>, KeyState> {
    let mut c = client(url).await;
    let keys: Vec<Vec<u8>> = {
        let mut iter: redis::AsyncIter<Vec<u8>> = c.scan().await.expect("scan");
        let mut keys = Vec::new();
        while let Some(k) = iter.next_item().await {
            let k = k.expect("key");
            // ferry's documented canary key lives only on the source, by design.
            if !k.starts_with(b"ferry:canary:") {
                keys.push(k);
            }
        }
        keys
    };
    let mut out = BTreeMap::new();
    for batch in keys.chunks(500) {
        let mut p = redis::pipe();
        for k in batch {
            p.cmd("TYPE").arg(k).cmd("PTTL").arg(k);
        }
        let meta: Vec<redis::Value> = p.query_async(&mut c).await.expect("type and pttl");
        let read_at = now_ms();
        let mut p = redis::pipe();
        let mut kinds = Vec::with_capacity(batch.len());
        for (i, k) in batch.iter().enumerate() {
            let kind = match &meta[2 * i] {
                redis::Value::SimpleString(s) => s.clone(),
                other => format!("{other:?}"),
            };
            match kind.as_str() {
                "string" => p.cmd("GET").arg(k),
                "list" => p.cmd("LRANGE").arg(k).arg(0).arg(-1),
                "set" => p.cmd("SMEMBERS").arg(k),
                "hash" => p.cmd("HGETALL").arg(k),
                "zset" => p.cmd("ZRANGE").arg(k).arg(0).arg(-1).arg("WITHSCORES"),
                "stream" => p
                    .cmd("XRANGE")
                    .arg(k)
                    .arg("-")
                    .arg("+")
                    .cmd("XINFO")
                    .arg("GROUPS")
                    .arg(k)
                    .cmd("XINFO")
                    .arg("STREAM")
                    .arg(k),
                _ => p.cmd("EXISTS").arg(k),
            };
            kinds.push(kind);
        }
        let values: Vec<redis::Value> = p.query_async(&mut c).await.expect("values");
        let mut values = values.into_iter();
        for (i, (k, kind)) in batch.iter().zip(kinds).enumerate() {
            let pttl = match meta[2 * i + 1] {
                redis::Value::Int(n) => n,
                _ => -2,
            };
            if kind == "none" {
                values.next();
                continue; // expired or deleted between SCAN and now
            }
            let expire_at = if pttl >= 0 { read_at + pttl } else { -1 };
            let mut value = match kind.as_str() {
                "stream" => {
                    let (entries, groups, info) = (
                        values.next().unwrap(),
                        values.next().unwrap(),
                        values.next().unwrap(),
                    );
                    let last_id = flat(&info)
                        .windows(2)
                        .find(|w| w[0] == b"last-generated-id")
                        .map(|w| w[1].clone())
                        .unwrap_or_default();
                    let groups = flat(&groups)
                        .chunks(2)
                        .filter(|p| {
                            p.len() == 2
                                && [&b"name"[..], b"pending", b"last-delivered-id", b"consumers"]
                                    .contains(&&p[0][..])
                        })
                        .map(|p| [p[0].clone(), b"=".to_vec(), p[1].clone()].concat())
                        .collect::<Vec<_>>();
                    let mut all = flat(&entries);
                    all.push(last_id);
                    all.extend(groups);
                    all
                }
                "hash" => flat(&values.next().unwrap())
                    .chunks(2)
                    .map(|p| p.join(&b"="[..]))
                    .collect(),
                "zset" => flat(&values.next().unwrap())
                    .chunks(2)
                    .map(|p| {
                        let score: f64 = String::from_utf8_lossy(&p[1]).parse().unwrap_or(f64::NAN);
                        [p[0].clone(), format!("={score}").into_bytes()].concat()
                    })
                    .collect(),
                "string" | "list" | "set" => flat(&values.next().unwrap()),
                other => panic!("unexpected type {other}"),
            };
            if matches!(kind.as_str(), "set" | "hash" | "zset") {
                value.sort();
            }
            out.insert(
                k.clone(),
                KeyState {
                    kind,
                    value,
                    expire_at,
                },
            );
        }
    }
    out
}

fn flat(v: &redis::Value) -> Vec<Vec<u8>> {
    match v {
        redis::Value::BulkString(b) => vec![b.clone()],
        redis::Value::SimpleString(s) => vec![s.clone().into_bytes()],
        redis::Value::Int(i) => vec![i.to_string().into_bytes()],
        redis::Value::Array(items) => items.iter().flat_map(flat).collect(),
        redis::Value::Nil => vec![b"(nil)".to_vec()],
        other => vec![format!("{other:?}").into_bytes()],
    }
}

/// Asserts two keyspaces hold the same keys, types and values, with TTLs within `ttl_ms`.
pub fn assert_same(
    source: &BTreeMap<Vec<u8>, KeyState>,
    target: &BTreeMap<Vec<u8>, KeyState>,
    ttl_ms: i64,
) {
    let missing: Vec<_> = source
        .keys()
        .filter(|k| !target.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = target
        .keys()
        .filter(|k| !source.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {} keys, e.g. {:?}; extra {} keys, e.g. {:?}",
        source.keys().filter(|k| !target.contains_key(*k)).count(),
        missing
            .iter()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>(),
        target.keys().filter(|k| !source.contains_key(*k)).count(),
        extra
            .iter()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>()
    );
    for (k, s) in source {
        let t = &target[k];
        assert_eq!(
            (&s.kind, &s.value),
            (&t.kind, &t.value),
            "key {:?}",
            String::from_utf8_lossy(k)
        );
        let name = String::from_utf8_lossy(k);
        assert_eq!(
            s.expire_at < 0,
            t.expire_at < 0,
            "ttl presence of {name:?}: {} vs {}",
            s.expire_at,
            t.expire_at
        );
        assert!(
            (s.expire_at - t.expire_at).abs() <= ttl_ms,
            "expiry of {name:?}: {} vs {}",
            s.expire_at,
            t.expire_at
        );
    }
}

/// Runs the `ferry` binary with the given arguments and environment.
pub fn ferry(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(rig::ferry_bin());
    cmd.args(args)
        .env_remove("FERRY_SOURCE_PASSWORD")
        .env_remove("FERRY_TARGET_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ferry")
}

/// Loads `keys` keys of every type plus 5 streams into `url` with `ferry seed`.
pub fn seed(url: &str, keys: &str) {
    let out = ferry(
        &["seed", "--target", url, "--keys", keys, "--streams", "5"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// Runs `ferry replicate --source SOURCE --target TARGET EXTRA…` with the given environment.
pub fn replicate(source: &str, target: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["replicate", "--source", source, "--target", target];
    args.extend_from_slice(extra);
    ferry(&args, env)
}

/// Asserts, with an independent client, that db 0 of two servers holds the same keys, types,
/// values and expiry instants (within 1 s).
pub async fn assert_servers_same(source_url: &str, target_url: &str) {
    let (s, t) = (keyspace(source_url).await, keyspace(target_url).await);
    assert_same(&s, &t, 1000);
}

/// stdout + stderr of a run, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes one key of every core type and encoding, binary names included, some with TTLs.
pub async fn write_every_type(url: &str) {
    let mut c = client(url).await;
    let mut p = redis::pipe();
    p.cmd("SET")
        .arg("s:int")
        .arg("12345")
        .cmd("SET")
        .arg("s:embstr")
        .arg("short")
        .cmd("SET")
        .arg("s:raw")
        .arg("x".repeat(200))
        .cmd("SET")
        .arg("s:empty")
        .arg("")
        .cmd("SET")
        .arg(b"bin:\x00\xff\r\n".as_slice())
        .arg(b"\x00\x01\x02\xff".as_slice())
        .cmd("SET")
        .arg("s:ttl")
        .arg("v")
        .arg("PX")
        .arg(3_600_000)
        .cmd("HSET")
        .arg("h:small")
        .arg("f1")
        .arg("v1")
        .arg("f2")
        .arg("v2")
        .cmd("EXPIRE")
        .arg("h:small")
        .arg(7200);
    for i in 0..300 {
        p.cmd("HSET")
            .arg("h:big")
            .arg(format!("field{i}"))
            .arg("y".repeat(80));
        p.cmd("RPUSH").arg("l:big").arg(format!("item{i}"));
        p.cmd("SADD").arg("set:big").arg(format!("member{i}"));
        p.cmd("ZADD")
            .arg("z:big")
            .arg(i as f64 / 3.0)
            .arg(format!("m{i}"));
    }
    p.cmd("RPUSH")
        .arg("l:small")
        .arg("a")
        .arg("b")
        .arg("a")
        .cmd("SADD")
        .arg("set:int")
        .arg(1)
        .arg(2)
        .arg(3)
        .cmd("SADD")
        .arg("set:str")
        .arg("a")
        .arg("b")
        .cmd("ZADD")
        .arg("z:small")
        .arg("-inf")
        .arg("low")
        .arg("1.5")
        .arg("mid")
        .arg("+inf")
        .arg("high")
        .cmd("XADD")
        .arg("x:s")
        .arg("1-1")
        .arg("a")
        .arg("1")
        .cmd("XADD")
        .arg("x:s")
        .arg("2-1")
        .arg("b")
        .arg("2")
        .cmd("XADD")
        .arg("x:s")
        .arg("3-1")
        .arg("c")
        .arg("3")
        .cmd("XGROUP")
        .arg("CREATE")
        .arg("x:s")
        .arg("g1")
        .arg("0")
        .cmd("XGROUP")
        .arg("CREATE")
        .arg("x:s")
        .arg("g2")
        .arg("$")
        .cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g1")
        .arg("alice")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg("x:s")
        .arg(">")
        .cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg("x:s")
        .arg("g1")
        .arg("bob")
        .cmd("XDEL")
        .arg("x:s")
        .arg("3-1")
        .cmd("XADD")
        .arg("x:empty")
        .arg("5-5")
        .arg("f")
        .arg("v")
        .cmd("XDEL")
        .arg("x:empty")
        .arg("5-5");
    let _: () = p.query_async(&mut c).await.expect("write every type");
}

/// Creates `auth`'s ACL user on `server` (standing in for an IAM-enabled ElastiCache user): its
/// passwords are the tokens ferry's signer makes for `auth` with `(key id, secret key)` at
/// every second from a few seconds ago to `secs` seconds from now. Any other token is refused.
pub fn iam_user(
    server: &rig::Server,
    auth: &ferry_steps::iam::IamAuth,
    (key_id, secret): (&str, &str),
    secs: u64,
) {
    use std::time::{Duration, SystemTime};
    let region = auth.region.as_deref().expect("a region");
    let creds = aws_credential_types::Credentials::new(key_id, secret, None, None, "test");
    let now = SystemTime::now();
    let mut args = vec![
        "ACL".to_string(),
        "SETUSER".into(),
        auth.user_id.clone(),
        "on".into(),
    ];
    for s in 0..secs + 5 {
        let at = now + Duration::from_secs(s) - Duration::from_secs(5);
        let token = ferry_steps::iam::token(auth, region, &creds, at).unwrap();
        args.push(format!(">{token}"));
    }
    args.extend(["~*", "&*", "+@all"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(server.cmd(&args), "+OK");
}
