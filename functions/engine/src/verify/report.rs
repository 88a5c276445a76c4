//! What a verify finds: per-key statuses, counts per db, a sample of differences, and the
//! options that bound them.

use super::*;

/// How deep verify looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Existence, type and TTL.
    Quick,
    /// Also the value (stream groups included).
    #[default]
    Full,
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::Quick => "quick",
            Level::Full => "full",
        })
    }
}

/// How deep a run verifies: a [`Level`], or not at all (the CLI's `--verify`, the execution
/// input's `options.verify`; `none` makes the state machine skip the verify states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum VerifyChoice {
    /// Also every value.
    #[default]
    Full,
    /// Existence, type and TTL.
    Quick,
    /// Skip verify.
    #[serde(rename = "none")]
    #[cfg_attr(feature = "clap", value(name = "none"))]
    Skip,
}

impl VerifyChoice {
    /// The level to verify at; `None` for no verify.
    pub fn level(self) -> Option<Level> {
        match self {
            VerifyChoice::Quick => Some(Level::Quick),
            VerifyChoice::Full => Some(Level::Full),
            VerifyChoice::Skip => None,
        }
    }
}

/// What verify found for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Missing,
    Extra,
    Type,
    Ttl,
    Value,
    /// A key of a type verify cannot compare (a module type whose payloads differ in version):
    /// never counted as ok, and a run with any does not claim success.
    Unverified,
    /// A key of a type the run left out by request (`--skip-unsupported`): neither ok nor
    /// different.
    Skipped,
}

/// Counts per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub ok: u64,
    pub missing: u64,
    pub extra: u64,
    #[serde(rename = "type")]
    pub type_: u64,
    pub ttl: u64,
    pub value: u64,
    #[serde(default)]
    pub unverified: u64,
    #[serde(default)]
    pub skipped: u64,
}

impl StatusCounts {
    pub(super) fn bump(&mut self, status: Status) {
        *match status {
            Status::Ok => &mut self.ok,
            Status::Missing => &mut self.missing,
            Status::Extra => &mut self.extra,
            Status::Type => &mut self.type_,
            Status::Ttl => &mut self.ttl,
            Status::Value => &mut self.value,
            Status::Unverified => &mut self.unverified,
            Status::Skipped => &mut self.skipped,
        } += 1;
    }

    /// Keys that are not ok (unverified ones included: what was not proven is not ok).
    pub fn differences(&self) -> u64 {
        self.missing + self.extra + self.type_ + self.ttl + self.value + self.unverified
    }

    /// Adds another count (a shard's, an invocation's).
    pub fn add(&mut self, o: &StatusCounts) {
        self.ok += o.ok;
        self.missing += o.missing;
        self.extra += o.extra;
        self.type_ += o.type_;
        self.ttl += o.ttl;
        self.value += o.value;
        self.unverified += o.unverified;
        self.skipped += o.skipped;
    }
}

/// One differing key: for `extra`, the target db and key; otherwise the source db and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub db: u32,
    pub key: Bytes,
    pub status: Status,
}

/// A differing key as shown in reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffSample {
    pub db: u32,
    pub key: String,
    pub status: Status,
}

/// The outcome of a verify run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Counts per source db (extras per target db).
    pub per_db: BTreeMap<u32, StatusCounts>,
    /// Counts over all dbs.
    pub total: StatusCounts,
    /// A bounded sample of differing keys.
    pub sample: Vec<DiffSample>,
    /// The differing keys, for `--repair` (bounded; see `diffs_truncated`).
    #[serde(skip)]
    pub diffs: Vec<Diff>,
    /// Whether more keys differed than were kept for repair.
    pub diffs_truncated: bool,
}

impl VerifyReport {
    pub(super) fn record(&mut self, db: u32, key: &Bytes, status: Status, options: &VerifyOptions) {
        self.per_db.entry(db).or_default().bump(status);
        self.total.bump(status);
        if matches!(status, Status::Ok | Status::Skipped) {
            return;
        }
        if self.sample.len() < options.sample_limit {
            self.sample.push(DiffSample {
                db,
                key: display_key(key),
                status,
            });
        }
        if self.diffs.len() < options.keep_diffs {
            self.diffs.push(Diff {
                db,
                key: key.clone(),
                status,
            });
        } else {
            self.diffs_truncated = true;
        }
    }

    /// Merges another report (another shard or worker) into this one.
    pub fn merge(&mut self, other: VerifyReport, options: &VerifyOptions) {
        for (db, c) in &other.per_db {
            self.per_db.entry(*db).or_default().add(c);
        }
        self.total.add(&other.total);
        let room = options.sample_limit.saturating_sub(self.sample.len());
        self.sample.extend(other.sample.into_iter().take(room));
        let room = options.keep_diffs.saturating_sub(self.diffs.len());
        self.diffs_truncated |= other.diffs_truncated || other.diffs.len() > room;
        self.diffs.extend(other.diffs.into_iter().take(room));
    }
}

/// Verify settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyOptions {
    /// Quick or full.
    pub level: Level,
    /// Largest TTL difference that still counts as equal, in ms.
    pub ttl_tolerance_ms: i64,
    /// Differing keys listed in the report.
    pub sample_limit: usize,
    /// Differing keys remembered for repair.
    pub keep_diffs: usize,
    /// Keys whose DUMP payload is above this are compared by chunked digest.
    pub big_key_bytes: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            level: Level::Full,
            ttl_tolerance_ms: 2000,
            sample_limit: 20,
            keep_diffs: 1_000_000,
            big_key_bytes: 16 * 1024 * 1024,
        }
    }
}
