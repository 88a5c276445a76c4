//! The run's report: printed as a short summary for people and written as JSON for machines.

use std::io::Write;

use ferry_engine::inventory::Inventory;
use ferry_engine::live::cutover::CutoverReport;
use ferry_engine::live::tail::TailReport;
use ferry_engine::run::{CopySummary, VerifySummary};
use ferry_engine::verify::RepairReport;
use ferry_engine::Error;
use serde::Serialize;

use crate::args::Mode;
use crate::{EXIT_BAD_INPUT, EXIT_FAILED};

/// Everything a run did, with no secret in it (URLs are redacted).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The run: snapshot, compare, live or tail.
    pub mode: Mode,
    /// How the run ended.
    pub outcome: Outcome,
    /// The process exit code.
    pub exit_code: i32,
    /// Redacted source URL.
    pub source: String,
    /// Redacted target URL.
    pub target: String,
    /// What inventory found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    /// The copy's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopySummary>,
    /// The verify's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySummary>,
    /// What the live tail did (live mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<TailReport>,
    /// What --repair did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairReport>,
    /// What the cutover did (live mode, SIGUSR1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutover: Option<CutoverReport>,
    /// Keys still dirty when a live stop gave up draining (a sample: db and key).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub still_dirty: Vec<(u32, String)>,
    /// Why the run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorSummary>,
}

/// How a run ended, as the summary line and the JSON report say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Copied (or compared) and verify found the target equal.
    Verified,
    /// Copied, not verified (`--verify none`).
    Copied,
    /// Verify found differences.
    Different,
    /// `--repair` fixed every difference.
    Repaired,
    /// Stopped by a signal, with a partial report.
    Interrupted,
    /// Live mode switched the application over (fence, check, release).
    #[serde(rename = "cut over")]
    CutOver,
    /// `ferry tail`: stopped with nothing left to copy.
    Drained,
    /// Stopped with keys still dirty.
    #[serde(rename = "not drained")]
    NotDrained,
    /// An error ended the run (the report's `error` says which).
    #[default]
    Failed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Verified => "verified",
            Outcome::Copied => "copied",
            Outcome::Different => "different",
            Outcome::Repaired => "repaired",
            Outcome::Interrupted => "interrupted",
            Outcome::CutOver => "cut over",
            Outcome::Drained => "drained",
            Outcome::NotDrained => "not drained",
            Outcome::Failed => "failed",
        })
    }
}

/// A failure, by stable kind name.
#[derive(Debug, Serialize)]
pub struct ErrorSummary {
    /// Stable kind name (e.g. TargetNotEmpty).
    pub kind: String,
    /// What happened and what to do.
    pub message: String,
    /// Whether running again may succeed.
    pub retryable: bool,
}

/// One line of live-tail figures, for the summary and the periodic status.
pub fn live_line(t: &TailReport) -> String {
    format!(
        "{} events ({:.0}/s), {} keys copied, {} deleted, queue {}, lag p50 {:.1} ms p99 {:.1} ms, {} replayed at barriers (peak set {}), {} gaps healed {}",
        t.events, t.events_per_sec, t.keys_copied, t.keys_deleted, t.queue_depth, t.lag_p50_ms, t.lag_p99_ms, t.replayed, t.remembered_peak, t.gaps, t.heals
    )
}

impl From<&Error> for ErrorSummary {
    fn from(e: &Error) -> Self {
        ErrorSummary {
            kind: e.kind_name().to_string(),
            message: e.to_string(),
            retryable: e.is_retryable(),
        }
    }
}

impl Report {
    /// A few lines for people.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "ferry {}: {} -> {}",
            self.mode, self.source, self.target
        ));
        if let Some(inv) = &self.inventory {
            line(format!(
                "  source {} {} ({}, RDB {}), {} keys; target {} {} (RDB {}); method {}",
                inv.source.product,
                inv.source.version,
                inv.source.mode,
                inv.source.rdb_version,
                inv.source.total_keys(),
                inv.target.product,
                inv.target.version,
                inv.target.rdb_version,
                inv.copy_method
            ));
            for note in &inv.notes {
                line(format!("  note: {note}"));
            }
        }
        if let Some(c) = &self.copy {
            line(format!(
                "  copied {} keys ({} per type, {} big, {} gone meanwhile) in {:.2}s, {:.0} keys/s, {}/{} shards done",
                c.counts.copied,
                c.counts.struct_copied,
                c.counts.big_keys,
                c.counts.gone,
                c.seconds,
                c.keys_per_sec,
                c.shards_done,
                c.shards
            ));
            if c.functions > 0 {
                line(format!("  {} function libraries loaded", c.functions));
            }
            if c.counts.skipped > 0 {
                line(format!(
                    "  {} keys of a type the target cannot take left out (--skip-unsupported)",
                    c.counts.skipped
                ));
            }
            if c.counts.field_ttls_dropped > 0 {
                line(format!(
                    "  {} hash fields copied without their TTL (--drop-field-ttls)",
                    c.counts.field_ttls_dropped
                ));
            }
        }
        if let Some(t) = &self.live {
            line(format!("  live: {}", live_line(t)));
        }
        if let Some(v) = &self.verify {
            let t = &v.report.total;
            line(format!(
                "  verify ({}) in {:.2}s: ok {}, missing {}, extra {}, type {}, ttl {}, value {}{}",
                v.level,
                v.seconds,
                t.ok,
                t.missing,
                t.extra,
                t.type_,
                t.ttl,
                t.value,
                match (t.unverified, t.skipped) {
                    (0, 0) => String::new(),
                    (n, 0) => format!(", unverified {n} (a type verify could not compare: not ok)"),
                    (0, s) => format!(", skipped {s} (left out by --skip-unsupported)"),
                    (n, s) => format!(", unverified {n} (not ok), skipped {s}"),
                }
            ));
            let f = &v.functions;
            if f.ok + f.differences() > 0 {
                line(format!(
                    "  functions: ok {}, missing {}, different {} (libraries, per target primary)",
                    f.ok, f.missing, f.different
                ));
            }
            for d in &v.report.sample {
                line(format!("    {:?} db{} {}", d.status, d.db, d.key));
            }
            if !v.complete {
                line(
                    "  note: verify was stopped early: these counts cover part of the keys".into(),
                );
            }
        }
        if let Some(r) = &self.repair {
            line(format!(
                "  repair: re-copied {}, deleted {} extra, {} still different",
                r.recopied, r.deleted, r.still_different
            ));
        }
        if !self.still_dirty.is_empty() {
            let shown: Vec<String> = self
                .still_dirty
                .iter()
                .take(10)
                .map(|(db, k)| format!("db{db} {k}"))
                .collect();
            line(format!(
                "  still dirty (not on the target yet): {}",
                shown.join(", ")
            ));
        }
        if let Some(e) = &self.error {
            line(format!("  error [{}]: {}", e.kind, e.message));
        }
        line(format!(
            "  outcome: {} (exit {})",
            self.outcome, self.exit_code
        ));
        out
    }
}

/// Exit code for an engine error.
pub fn exit_code_of(e: &Error) -> i32 {
    if e.is_bad_input() {
        EXIT_BAD_INPUT
    } else {
        EXIT_FAILED
    }
}

/// Prints the summary and writes the JSON report where asked; returns the exit code.
pub fn emit(report: &Report, json: Option<&std::path::Path>) -> i32 {
    let text = serde_json::to_string_pretty(report).expect("report serializes");
    match json {
        Some(p) if p.as_os_str() == "-" => {
            eprint!("{}", report.summary());
            println!("{text}");
        }
        Some(p) => {
            print!("{}", report.summary());
            if let Err(e) = std::fs::write(p, text + "\n") {
                eprintln!("cannot write the JSON report to {}: {e}", p.display());
                return EXIT_FAILED;
            }
        }
        None => print!("{}", report.summary()),
    }
    std::io::stdout().flush().ok();
    report.exit_code
}
