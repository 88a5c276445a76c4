//! Proving a copy (design §5): for every source key, that it exists on the target with the same
//! type, a TTL within tolerance and (full mode) the same value; and, in a reverse pass, that the
//! target holds no key the source lacks. Values are compared by DUMP payload first and, where
//! payloads differ (other RDB version or encoding), by a type-aware digest.
//!
//! What a verify finds is [`report`]'s; the forward check of a batch [`forward`]'s, the reverse
//! one [`reverse`]'s; the passes over a plan [`pass`]'s, and re-checks and `--repair`
//! [`repair`]'s.

mod forward;
mod pass;
mod repair;
mod report;
mod reverse;

pub use forward::VerifyWorker;
pub use pass::*;
pub use repair::*;
pub use report::*;
pub use reverse::ReverseWorker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::keys::digest::{self, Digested, WholeRead};
use crate::keys::field_ttl;
use crate::keys::module_values;
use crate::keys::value::{Kind, Ttl};
use crate::keys::vectorset;
use crate::model::scope::{display_key, Scope};
use crate::net::conn::Conn;
use crate::net::resp::Reply;
use crate::scan::BatchWorker;
use crate::util::ratelimit::RateLimiter;

/// What every verify worker shares.
pub struct VerifyContext {
    /// Settings.
    pub options: VerifyOptions,
    /// Keys in scope and their target names.
    pub scope: Scope,
    /// Both servers have PEXPIRETIME; otherwise both are asked PTTL.
    pub absolute_ttl: bool,
    /// Both servers have hash-field TTLs: hashes' field expiries are compared too.
    pub field_ttls: bool,
    /// Both servers keep streams' 7.0 counters: they are compared too.
    pub stream_counters: bool,
    /// Both servers write the same RDB version, so equal DUMP payloads prove equal values;
    /// otherwise full verify skips DUMP and compares every key by its contents.
    pub same_payloads: bool,
    /// Types the run left out (`--skip-unsupported`): their keys count as skipped.
    pub skipped_types: Vec<Bytes>,
    /// Source dbs in scope (for mapping target keys back in the reverse pass).
    pub source_dbs: Vec<u32>,
    /// The run's load cap on the source: verify's reads count against it too.
    pub limiter: Option<Arc<RateLimiter>>,
    /// The accumulated report.
    pub report: Mutex<VerifyReport>,
}

impl VerifyContext {
    /// Adds a worker's findings to the run's report.
    fn merge(&self, local: VerifyReport) {
        self.report
            .lock()
            .expect("report")
            .merge(local, &self.options);
    }

    /// Waits until `ops` more source commands fit under the load cap.
    pub async fn throttle(&self, ops: usize) {
        if let Some(l) = &self.limiter {
            l.acquire(ops as u64).await;
        }
    }

    /// Takes the finished report.
    pub fn take_report(&self) -> VerifyReport {
        std::mem::take(&mut *self.report.lock().expect("report"))
    }
}
