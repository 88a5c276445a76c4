//! Credentials that never print: a [`Secret`] (its `Debug` and `Display` are `***`), and a
//! password that changes on every login (a [`PasswordSource`], such as an IAM token).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;

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

/// A password that changes, asked for on every connect: an ElastiCache IAM token (valid 15
/// minutes) is one. The engine knows nothing of how it is made (that is AWS's side).
pub trait PasswordSource: Send + Sync {
    /// A password to log in with now.
    fn password(&self) -> Pin<Box<dyn Future<Output = Result<Secret>> + Send + '_>>;

    /// How long a connection may stay logged in on one password: long-lived connections are
    /// renewed (a new connection, a new password) before this (ElastiCache closes IAM
    /// connections after 12 hours).
    fn renew_after(&self) -> Option<Duration>;

    /// What it is, for messages (never the password): e.g. `IAM user ferry on my-cache`.
    fn describe(&self) -> String;
}

/// An endpoint's [`PasswordSource`], shared by every connection made from it.
#[derive(Clone)]
pub struct ChangingPassword(pub Arc<dyn PasswordSource>);

impl fmt::Debug for ChangingPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.describe())
    }
}
