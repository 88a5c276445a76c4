//! Where a Redis server is and how to log in: parsed from a `redis://` / `rediss://` URL, with
//! credentials that can also come from the environment, and TLS settings.
//!
//! The password lives in a [`Secret`] whose `Debug` and `Display` print `***`, so no log line,
//! error or report built from an `Endpoint` can carry it.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Which side of the migration a server is on; errors and reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Source,
    Target,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Source => "source",
            Role::Target => "target",
        })
    }
}

/// A credential that must never be printed. Only [`Secret::expose`] reveals it, for AUTH.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The credential itself, for the AUTH command and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to verify the server's certificate on a `rediss://` endpoint.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// A PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM text of CA certificates (e.g. a bundle from Secrets Manager); used with `ca_file`.
    pub ca_pem: Option<String>,
    /// Skip certificate verification entirely. Only when the user asks; ferry warns about it.
    pub insecure: bool,
}

/// One Redis server ferry talks to: address, database, credentials and TLS.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Source or target, for messages.
    pub role: Role,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// ACL user name; `None` logs in as the default user.
    pub username: Option<String>,
    /// Password or auth token.
    pub password: Option<Secret>,
    /// The database the URL selects (used when a command names no other).
    pub db: u32,
    /// `Some` for `rediss://`.
    pub tls: Option<TlsSettings>,
}

const URL_SHAPE: &str = "expected redis://[user[:password]@]host[:port][/db] or rediss://…";

impl Endpoint {
    /// Parses a URL. Credentials may be in the URL, but the environment
    /// (see [`Endpoint::with_credentials`]) keeps them out of process listings.
    pub fn parse(role: Role, url: &str) -> Result<Endpoint> {
        let parsed = url::Url::parse(url.trim()).map_err(|e| {
            Error::InvalidInput(format!("{role} URL is not valid: {e} ({URL_SHAPE})"))
        })?;
        let tls = match parsed.scheme() {
            "redis" | "valkey" => None,
            "rediss" | "valkeys" => Some(TlsSettings::default()),
            other => {
                return Err(Error::InvalidInput(format!(
                    "{role} URL has scheme '{other}': {URL_SHAPE}"
                )))
            }
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::InvalidInput(format!("{role} URL has no host: {URL_SHAPE}")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = parsed.port().unwrap_or(6379);
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| Error::InvalidInput(format!("{role} URL credentials are not valid")))
        };
        let username = match parsed.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = match parsed.password() {
            None | Some("") => None,
            Some(p) => Some(Secret::new(decode(p)?)),
        };
        let db = match parsed.path().trim_start_matches('/') {
            "" => 0,
            d => d.parse::<u32>().map_err(|_| {
                Error::InvalidInput(format!("{role} URL path '/{d}' is not a database number"))
            })?,
        };
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::InvalidInput(format!(
                "{role} URL has a query or fragment; use command-line options instead ({URL_SHAPE})"
            )));
        }
        Ok(Endpoint {
            role,
            host,
            port,
            username,
            password,
            db,
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

    /// `host:port`, the way every message names this server.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL with the password replaced by `***`, safe for logs and reports.
    pub fn redacted_url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let user = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            (None, Some(_)) => ":***@".to_string(),
            (None, None) => String::new(),
        };
        format!("{scheme}://{user}{}/{}", self.addr(), self.db)
    }

    /// The same server on another host and port (a cluster node found by discovery).
    pub fn at(&self, host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
            ..self.clone()
        }
    }
}

/// Decodes `%XX` escapes in URL user info; `None` when the result is not UTF-8 or an escape is cut.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_url_and_hides_password() {
        let e =
            Endpoint::parse(Role::Source, "rediss://app:s%40cret@cache.example:6380/3").unwrap();
        assert_eq!(e.host, "cache.example");
        assert_eq!(e.port, 6380);
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
        assert_eq!((e.port, e.db, e.username.clone()), (6379, 0, None));
        assert_eq!(e.password.unwrap().expose(), "pw");
        let v6 = Endpoint::parse(Role::Target, "redis://[::1]:7000").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.addr(), "[::1]:7000");
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
