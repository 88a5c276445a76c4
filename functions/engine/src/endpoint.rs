//! Where a Redis server is and how to log in: parsed from a `redis://` / `rediss://` URL, with
//! credentials that can also come from the environment, and TLS settings.
//!
//! The password lives in a [`Secret`] whose `Debug` and `Display` print `***`, so no log line,
//! error or report built from an `Endpoint` can carry it.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
pub use crate::node_addr::NodeAddr;
pub use crate::secret::{ChangingPassword, PasswordSource, Secret};

pub use crate::role::Role;

/// How to verify the server's certificate on a `rediss://` endpoint.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// A PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM text of CA certificates (e.g. a bundle from Secrets Manager); used with `ca_file`.
    pub ca_pem: Option<String>,
    /// Skip certificate verification entirely. Only when the user asks; ferry warns about it.
    pub insecure: bool,
    /// A client certificate chain (PEM) for servers that require mutual TLS.
    pub client_cert_pem: Option<String>,
    /// The client certificate's private key (PEM).
    pub client_key_pem: Option<Secret>,
}

/// One Redis server ferry talks to: address, database, credentials and TLS.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Source or target, for messages.
    pub role: Role,
    /// Host and port.
    pub node: NodeAddr,
    /// ACL user name; `None` logs in as the default user.
    pub username: Option<String>,
    /// Password or auth token.
    pub password: Option<Secret>,
    /// Where a fresh password comes from on every connect (IAM), instead of `password`.
    pub changing_password: Option<ChangingPassword>,
    /// The database the URL selects (used when a command names no other).
    pub db: u32,
    /// The database the URL named, if it named one: the migration then covers that database
    /// only (source), or puts it there (target).
    pub db_in_url: Option<u32>,
    /// `Some` for `rediss://`.
    pub tls: Option<TlsSettings>,
}

const URL_SHAPE: &str = "expected redis://[user[:password]@]host[:port][/db] or rediss://…";

impl Endpoint {
    /// Parses a URL. Credentials may be in the URL, but the environment
    /// (see [`Endpoint::with_credentials`]) keeps them out of process listings.
    ///
    /// The user info is everything before the last `@`, split at its first `:`, so a password
    /// may hold any character (`/`, `@`, `:`, `?`, `#`) written as is or percent-encoded. It is
    /// cut off before the rest of the URL is parsed: no message about the URL can quote it.
    pub fn parse(role: Role, url: &str) -> Result<Endpoint> {
        let url = url.trim();
        let invalid = |what: &str| Error::InvalidInput(format!("{role} URL {what} ({URL_SHAPE})"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("is not valid: it has no scheme://"))?;
        let (user_info, location) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (username, password) = match user_info {
            None => (None, None),
            Some(info) => {
                let (user, password) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let user = Some(percent_decode(user)).filter(|u| !u.is_empty());
                let password = password
                    .filter(|p| !p.is_empty())
                    .map(|p| Secret::new(percent_decode(p)));
                (user, password)
            }
        };
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "redis" | "valkey" => None,
            "rediss" | "valkeys" => Some(TlsSettings::default()),
            // A scheme is letters, digits and `+.-`; anything else is not repeated.
            s if s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) =>
            {
                return Err(invalid(&format!("has scheme '{s}'")))
            }
            _ => return Err(invalid("has an unknown scheme")),
        };
        // Only the location (host, port, path) goes through the URL parser.
        let parsed = url::Url::parse(&format!("redis://{location}"))
            .map_err(|e| invalid(&format!("is not valid: {e}")))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let node = NodeAddr::new(host, parsed.port().unwrap_or(6379));
        let db_in_url = match parsed.path().trim_start_matches('/') {
            "" => None,
            d => Some(
                d.parse::<u32>()
                    .map_err(|_| invalid("has a path that is not a database number"))?,
            ),
        };
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid(
                "has a query or fragment; use command-line options instead",
            ));
        }
        Ok(Endpoint {
            role,
            node,
            username,
            password,
            changing_password: None,
            db: db_in_url.unwrap_or(0),
            db_in_url,
            tls,
        })
    }

    /// Fills in credentials from outside the URL (environment, Secrets Manager).
    /// A value given here wins over one in the URL.
    pub fn with_credentials(mut self, username: Option<String>, password: Option<Secret>) -> Self {
        if username.is_some() {
            self.username = username;
        }
        if password.is_some() {
            self.password = password;
        }
        self
    }

    /// Logs in with a password from `source` on every connect (IAM auth) as `username`.
    pub fn with_changing_password(mut self, username: String, source: ChangingPassword) -> Self {
        self.username = Some(username);
        self.password = None;
        self.changing_password = Some(source);
        self
    }

    /// How long a connection to this endpoint may live before it is renewed (IAM auth).
    pub fn renew_after(&self) -> Option<Duration> {
        self.changing_password.as_ref()?.0.renew_after()
    }

    /// The password to log in with now: the changing one's current value, or the fixed one.
    pub async fn current_password(&self) -> Result<Option<Secret>> {
        match &self.changing_password {
            Some(source) => Ok(Some(source.0.password().await?)),
            None => Ok(self.password.clone()),
        }
    }

    /// `host:port`, the way every message names this server.
    pub fn addr(&self) -> String {
        self.node.to_string()
    }

    /// The URL with the password replaced by `***`, safe for logs and reports.
    pub fn redacted_url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let has_password = self.password.is_some() || self.changing_password.is_some();
        let user = match (&self.username, has_password) {
            (Some(u), true) => format!("{u}:***@"),
            (Some(u), false) => format!("{u}@"),
            (None, true) => ":***@".to_string(),
            (None, false) => String::new(),
        };
        match self.db_in_url {
            Some(db) => format!("{scheme}://{user}{}/{db}", self.addr()),
            None => format!("{scheme}://{user}{}", self.addr()),
        }
    }

    /// The same credentials and TLS at another node (a cluster node found by discovery, or
    /// named by a redirect).
    pub fn at(&self, node: &NodeAddr) -> Endpoint {
        Endpoint {
            node: node.clone(),
            ..self.clone()
        }
    }
}

/// Decodes `%XX` escapes in URL user info; a `%` that starts no valid escape, and an escape
/// whose bytes are not UTF-8, stay as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_node_keeps_credentials() {
        let base = Endpoint::parse(Role::Source, "redis://u:p@a.example:1/0").unwrap();
        let node = base.at(&NodeAddr::parse("[::1]:7000").unwrap());
        assert_eq!(
            (node.addr(), node.username.as_deref()),
            ("[::1]:7000".into(), Some("u"))
        );
    }

    #[test]
    fn parses_full_url_and_hides_password() {
        let e =
            Endpoint::parse(Role::Source, "rediss://app:s%40cret@cache.example:6380/3").unwrap();
        assert_eq!(e.node.host, "cache.example");
        assert_eq!(e.node.port, 6380);
        assert_eq!(e.db, 3);
        assert_eq!(e.username.as_deref(), Some("app"));
        assert_eq!(e.password.as_ref().unwrap().expose(), "s@cret");
        assert!(e.tls.is_some());
        let shown = format!("{e:?} {}", e.redacted_url());
        assert!(
            !shown.contains("s@cret") && !shown.contains("s%40cret"),
            "{shown}"
        );
        assert_eq!(e.redacted_url(), "rediss://app:***@cache.example:6380/3");
    }

    #[test]
    fn defaults_and_password_only() {
        let e = Endpoint::parse(Role::Target, "redis://:pw@127.0.0.1").unwrap();
        assert_eq!((e.node.port, e.db, e.username.clone()), (6379, 0, None));
        assert_eq!(e.password.unwrap().expose(), "pw");
        let v6 = Endpoint::parse(Role::Target, "redis://[::1]:7000").unwrap();
        assert_eq!(v6.node.host, "::1");
        assert_eq!(v6.addr(), "[::1]:7000");
    }

    use proptest::prelude::*;

    /// Passwords with every character that has a meaning in a URL, and some that are not ASCII;
    /// the capitals never occur elsewhere in the URLs below, so finding one in a message means
    /// the password leaked.
    fn password() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(vec![
                'Q', 'Z', 'X', 'W', '/', '@', ':', '%', '?', '#', '[', ']', ' ', 'é', '€', '+',
            ]),
            8..24,
        )
        .prop_map(|cs| cs.into_iter().collect::<String>())
        .prop_filter("holds a capital", |p| {
            p.chars().any(|c| c.is_ascii_uppercase())
        })
    }

    /// The password as a user would write it: as is, or (for `%`) percent-encoded.
    fn written(p: &str, encode_all: bool) -> String {
        p.chars()
            .map(|c| match c {
                '%' => "%25".to_string(),
                c if encode_all && !c.is_ascii_alphanumeric() => {
                    let mut b = [0u8; 4];
                    c.encode_utf8(&mut b)
                        .bytes()
                        .map(|x| format!("%{x:02X}"))
                        .collect()
                }
                c => c.to_string(),
            })
            .collect()
    }

    fn leaks(text: &str, p: &str) -> bool {
        let chars: Vec<char> = p.chars().collect();
        chars
            .windows(4)
            .map(|w| w.iter().collect::<String>())
            .filter(|w| w.chars().any(|c| c.is_ascii_uppercase()))
            .any(|w| text.contains(&w))
    }

    proptest! {
        #[test]
        fn any_password_in_any_url_shape_parses_and_never_shows(
            pw in password(),
            user in proptest::option::of("[a-z]{1,8}"),
            host in proptest::sample::select(vec!["127.0.0.1", "cache.example", "[::1]"]),
            port in proptest::option::of(1u16..),
            db in proptest::option::of(0u32..16),
            tls in any::<bool>(),
            encode_all in any::<bool>(),
        ) {
            let url = format!(
                "{}://{}:{}@{host}{}{}",
                if tls { "rediss" } else { "redis" },
                user.clone().unwrap_or_default(),
                written(&pw, encode_all),
                port.map(|p| format!(":{p}")).unwrap_or_default(),
                db.map(|d| format!("/{d}")).unwrap_or_default(),
            );
            let e = Endpoint::parse(Role::Source, &url).unwrap();
            prop_assert_eq!(e.password.as_ref().unwrap().expose(), pw.as_str());
            prop_assert_eq!(e.username.clone(), user);
            prop_assert_eq!(e.node.port, port.unwrap_or(6379));
            prop_assert_eq!(e.db_in_url, db);
            prop_assert_eq!(e.node.host.as_str(), host.trim_matches(['[', ']']));
            let shown = format!("{e:?} {} {}", e.redacted_url(), e.addr());
            prop_assert!(!leaks(&shown, &pw), "{}", shown);
        }

        #[test]
        fn a_bad_url_with_a_password_never_repeats_it(
            pw in password(),
            tail in proptest::sample::select(vec![
                ":99999", ":port", "/x", "/0?db=1", "/0#frag", ":1/2/3", "", "/-1",
            ]),
            scheme in proptest::sample::select(vec!["redis", "http", "rediss", ""]),
        ) {
            for url in [
                format!("{scheme}://u:{pw}@h{tail}"),
                format!("{scheme}://:{pw}@{tail}"),
                format!("{scheme}://{pw}{tail}"),
            ] {
                if let Err(err) = Endpoint::parse(Role::Target, &url) {
                    prop_assert!(!leaks(&err.to_string(), &pw), "{}", err);
                }
            }
        }
    }

    #[test]
    fn a_password_with_a_slash_is_a_password() {
        let e = Endpoint::parse(
            Role::Source,
            "redis://default:7601/S3cr3t+x@127.0.0.1:7601/2",
        )
        .unwrap();
        assert_eq!(e.password.unwrap().expose(), "7601/S3cr3t+x");
        assert_eq!((e.node.port, e.db_in_url), (7601, Some(2)));
    }

    #[test]
    fn rejects_bad_urls_without_echoing_them() {
        for bad in [
            "http://h:1",
            "redis://",
            "redis://h:1/x",
            "redis://h:99999",
            "redis://h:1/0?password=topsecret",
            "not a url topsecret",
        ] {
            let err = Endpoint::parse(Role::Source, bad).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{bad}: {err}");
            assert!(!err.to_string().contains("topsecret"), "{err}");
        }
    }
}
