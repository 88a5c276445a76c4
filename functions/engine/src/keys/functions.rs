//! Redis Functions (Redis ≥ 7.0, Valkey ≥ 7.0): server-level state a migration carries. The
//! libraries are read with `FUNCTION LIST WITHCODE` and loaded on every target primary with
//! `FUNCTION LOAD REPLACE` (their code, not a `FUNCTION DUMP` payload, so they go across engines
//! and RDB versions); verify compares names and code; live mode re-syncs them when a
//! `FUNCTION LOAD/DELETE/FLUSH/RESTORE` shows in the source's command counters.
//!
//! The target's libraries that the source never had are not the migration's: they are left
//! alone. One with a source library's name and other code is refused before anything is written.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::model::migration::Migration;
use crate::net::conn::Conn;
use crate::net::{cluster, info};

/// Libraries by name, with their code.
pub type Libraries = BTreeMap<String, Bytes>;

/// The libraries a server holds; `None` where it has no functions (before 7.0) or may not list
/// them. INFO is asked first, so a server with none is never sent `FUNCTION LIST` (a command a
/// read-only user without `@scripting` may not run); one that has some but refuses to list
/// them is an error: they would otherwise be silently left behind.
pub async fn libraries(conn: &mut Conn) -> Result<Option<Libraries>> {
    let memory = info::read(conn, "memory").await?;
    let Some(count) = info::number(&memory, "number_of_libraries") else {
        return Ok(None);
    };
    if count == 0 {
        return Ok(Some(Libraries::new()));
    }
    let reply = match conn.call(&["FUNCTION", "LIST", "WITHCODE"]).await {
        Ok(reply) => reply,
        Err(Error::Server { message, .. } | Error::AuthFailed { reason: message, .. }) => {
            return Err(Error::AuthFailed {
                addr: conn.addr(),
                reason: format!(
                    "{count} function libraries are on the server but FUNCTION LIST was refused ({message}): the user needs +function|list"
                ),
            })
        }
        Err(e) => return Err(e),
    };
    let mut libs = Libraries::new();
    for lib in reply.into_array().unwrap_or_default() {
        let fields = lib.into_array().unwrap_or_default();
        let field = |name: &[u8]| {
            fields
                .chunks(2)
                .find(|kv| kv[0].as_bytes().is_some_and(|k| &k[..] == name))
                .and_then(|kv| kv.get(1)?.as_bytes().cloned())
        };
        if let (Some(name), Some(code)) = (field(b"library_name"), field(b"library_code")) {
            libs.insert(String::from_utf8_lossy(&name).into_owned(), code);
        }
    }
    Ok(Some(libs))
}

/// The source's libraries, read from its seed node (functions are on every node alike).
pub async fn source_libraries(source: &Endpoint) -> Result<Option<Libraries>> {
    libraries(&mut Conn::connect(source).await?).await
}

/// Refuses, before anything is written, a pairing that cannot carry the source's libraries: a
/// target without functions, or one that holds a library of the same name with other code.
pub async fn preflight(source: &Libraries, target: &Endpoint) -> Result<()> {
    if source.is_empty() {
        return Ok(());
    }
    for node in cluster::primary_endpoints(target).await? {
        let Some(held) = libraries(&mut Conn::connect(&node).await?).await? else {
            return Err(Error::Incompatible(format!(
                "the source holds {} function libraries ({}) and the target {} has no functions (Redis and Valkey have them from 7.0)",
                source.len(),
                names(source),
                node.addr()
            )));
        };
        for (name, code) in source {
            if held.get(name).is_some_and(|c| c != code) {
                return Err(Error::Incompatible(format!(
                    "the target {} already holds a function library '{name}' with other code than the source's; delete or rename it there (FUNCTION DELETE {name}) and run again",
                    node.addr()
                )));
            }
        }
    }
    Ok(())
}

/// Loads the source's libraries on every target primary (`FUNCTION LOAD REPLACE`), and deletes
/// there the libraries in `dropped` (ones the migration copied before that the source no longer
/// has). Returns how many were loaded.
pub async fn sync(source: &Libraries, dropped: &[String], target: &Endpoint) -> Result<usize> {
    for node in cluster::primary_endpoints(target).await? {
        let mut conn = Conn::connect(&node).await?;
        for code in source.values() {
            conn.queue(&[&b"FUNCTION"[..], b"LOAD", b"REPLACE", code]);
        }
        for name in dropped {
            conn.queue(&["FUNCTION", "DELETE", name]);
        }
        conn.send().await?;
        for _ in source {
            conn.recv().await.and_then(|r| conn.check(r, b"FUNCTION"))?;
        }
        for _ in dropped {
            // A library already gone is what was wanted.
            conn.recv().await?;
        }
    }
    Ok(source.len())
}

/// What verify found of the source's libraries on the target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCounts {
    /// Libraries on every target primary with the same code.
    pub ok: u64,
    /// Libraries absent from a target primary.
    pub missing: u64,
    /// Libraries with other code on a target primary.
    pub different: u64,
}

impl FunctionCounts {
    /// Libraries that are not ok.
    pub fn differences(&self) -> u64 {
        self.missing + self.different
    }
}

/// Compares the source's libraries with every target primary's.
pub async fn verify(source: &Endpoint, target: &Endpoint) -> Result<FunctionCounts> {
    let mut counts = FunctionCounts::default();
    let Some(libs) = source_libraries(source).await? else {
        return Ok(counts);
    };
    if libs.is_empty() {
        return Ok(counts);
    }
    for node in cluster::primary_endpoints(target).await? {
        let held = libraries(&mut Conn::connect(&node).await?)
            .await?
            .unwrap_or_default();
        for (name, code) in &libs {
            match held.get(name) {
                None => counts.missing += 1,
                Some(c) if c != code => counts.different += 1,
                Some(_) => counts.ok += 1,
            }
        }
    }
    Ok(counts)
}

/// Calls of the commands that change a server's libraries, from `INFO commandstats` text.
pub fn change_calls(commandstats: &str) -> u64 {
    let calls = info::command_calls(commandstats);
    [
        "function|load",
        "function|delete",
        "function|flush",
        "function|restore",
    ]
    .iter()
    .filter_map(|c| calls.get(*c))
    .sum()
}

fn names(libs: &Libraries) -> String {
    libs.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Libraries `before` held that `now` does not: to delete on the target when re-syncing.
pub fn dropped(before: &Libraries, now: &Libraries) -> Vec<String> {
    before
        .keys()
        .filter(|name| !now.contains_key(*name))
        .cloned()
        .collect()
}

/// Loads the source's function libraries on the target (every primary); returns how many.
pub async fn copy_functions(m: &Migration) -> Result<usize> {
    match source_libraries(&m.source).await? {
        Some(libs) if !libs.is_empty() => sync(&libs, &[], &m.target).await,
        _ => Ok(0),
    }
}
