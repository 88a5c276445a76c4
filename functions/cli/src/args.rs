//! Command-line arguments.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ferry_engine::live::channel::LiveChannel;
use ferry_engine::model::migration::Method;
use ferry_engine::run::VerifySettings;
use ferry_engine::verify::{Level, VerifyChoice};

/// Move a live Redis keyspace (ElastiCache, Valkey, any Redis) to another Redis without downtime.
///
/// Credentials may be given in the URL or, to keep them out of process listings, in
/// FERRY_SOURCE_USER / FERRY_SOURCE_PASSWORD and FERRY_TARGET_USER / FERRY_TARGET_PASSWORD.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr (-v info, -vv debug); FERRY_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines as JSON.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Worker threads (ferry needs little CPU; the servers need the cores).
    #[arg(long, global = true, hide = true)]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy keys and verify them (snapshot), also follow live writes until cutover (live), or
    /// only compare source and target (compare).
    Replicate(ReplicateArgs),
    /// Describe source and target and check that they can be paired, without writing anything.
    Inventory(ConnectArgs),
    /// Write the embedded sample dataset (mixed types, TTLs, streams) into a server.
    Seed(SeedArgs),
    /// Write a steady load of SETs (for the live benchmark): --rate per second for --seconds.
    #[command(hide = true)]
    Load(LoadArgs),
    /// Follow the source's keyspace notifications and keep the target equal to it, until
    /// SIGINT/SIGTERM or --idle-timeout; then drain (what the Fargate task runs).
    Tail(TailArgs),
    #[cfg(feature = "aws")]
    /// Start a migration on the deployed stack (AWS): the execution input from a JSON file.
    Start(StartArgs),
    #[cfg(feature = "aws")]
    /// Show a migration on AWS: state, shards done, the tail's lag, whether it awaits cutover.
    Status(ExecutionArgs),
    #[cfg(feature = "aws")]
    /// Cut a migration on AWS over: the tail holds the source's writes, checks the target and
    /// says when to switch (exit 0: switch now; 3: refused, still following); after the
    /// switch, `--release` lifts the fence and reports stragglers.
    Cutover(CutoverArgs),
    #[cfg(feature = "aws")]
    /// Stop a migration on AWS.
    Abort(ExecutionArgs),
}

#[cfg(feature = "aws")]
/// Which deployed state machine: AWS credentials and region come from the environment
/// (AWS_PROFILE, AWS_REGION, …) as for the AWS CLI.
#[derive(Debug, Clone, Args)]
pub struct DeployedArgs {
    /// The SAM or CDK stack (its StateMachineArn output).
    #[arg(
        long,
        value_name = "NAME",
        env = "FERRY_STACK",
        conflicts_with = "state_machine"
    )]
    pub stack: Option<String>,
    /// The state machine's ARN, instead of --stack.
    #[arg(long, value_name = "ARN")]
    pub state_machine: Option<String>,
    /// Print JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "aws")]
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub deployed: DeployedArgs,
    /// The execution input (see tests/fixtures/execution-input.json): credentials by Secrets
    /// Manager ARN only.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// The execution's name (default: the input's migration_id).
    #[arg(long)]
    pub name: Option<String>,
}

#[cfg(feature = "aws")]
#[derive(Debug, Clone, Args)]
pub struct ExecutionArgs {
    /// The execution's ARN (default: the one running; with several running, name one; with
    /// none, the newest).
    #[arg(value_name = "EXECUTION")]
    pub execution: Option<String>,
    /// The migration's id, which names its execution (`ferry start` names it so).
    #[arg(long, value_name = "ID", conflicts_with = "execution")]
    pub migration: Option<String>,
    #[command(flatten)]
    pub deployed: DeployedArgs,
    /// status: refresh every SECS until the execution ends.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<f64>,
}

#[cfg(feature = "aws")]
#[derive(Debug, Clone, Args)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub execution: ExecutionArgs,
    /// The application now writes to the target: lift the fence, watch for stragglers and
    /// print the cutover report.
    #[arg(long)]
    pub release: bool,
    /// For a source that refuses CLIENT PAUSE: every writer of the source is stopped (the
    /// operator's fence).
    #[arg(long, conflicts_with = "release")]
    pub writers_stopped: bool,
    /// How long to follow the execution after answering (0: answer and return).
    #[arg(long, value_name = "SECS", default_value = "600")]
    pub wait: f64,
}

/// What to do; also which run a report describes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Copy every key once, then verify.
    #[default]
    Snapshot,
    /// Compare only: write nothing.
    Compare,
    /// Snapshot while following live changes, until SIGINT/SIGTERM or --idle-timeout; then
    /// drain and verify.
    Live,
    /// `ferry tail` (not a `--mode` value): follow changes only.
    #[value(skip)]
    Tail,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Snapshot => "snapshot",
            Mode::Compare => "compare",
            Mode::Live => "live",
            Mode::Tail => "tail",
        })
    }
}

/// Source and target, and how to reach them.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Source URL: redis://[user[:password]@]host[:port][/db], rediss:// for TLS.
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// Target URL.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// CA certificates (PEM) to verify the source's TLS certificate.
    #[arg(long, value_name = "FILE")]
    pub source_ca: Option<PathBuf>,
    /// CA certificates (PEM) to verify the target's TLS certificate.
    #[arg(long, value_name = "FILE")]
    pub target_ca: Option<PathBuf>,
    /// Do not verify the source's TLS certificate (unsafe; a warning is printed).
    #[arg(long)]
    pub source_insecure: bool,
    /// Do not verify the target's TLS certificate (unsafe; a warning is printed).
    #[arg(long)]
    pub target_insecure: bool,
    /// Client certificate (PEM) for a source that requires mutual TLS (with --source-key).
    #[arg(long, value_name = "FILE", requires = "source_key")]
    pub source_cert: Option<PathBuf>,
    /// Private key (PEM) of --source-cert.
    #[arg(long, value_name = "FILE", requires = "source_cert")]
    pub source_key: Option<PathBuf>,
    /// Client certificate (PEM) for a target that requires mutual TLS (with --target-key).
    #[arg(long, value_name = "FILE", requires = "target_key")]
    pub target_cert: Option<PathBuf>,
    /// Private key (PEM) of --target-cert.
    #[arg(long, value_name = "FILE", requires = "target_cert")]
    pub target_key: Option<PathBuf>,
    /// Map a source db to a target db, with an optional key prefix: SRC=DST[:PREFIX]
    /// (repeatable), e.g. 1=0:db1: for a target with only db 0. A db in the source URL
    /// (redis://host/3) limits the migration to that db; one in the target URL is where it lands.
    #[arg(long = "db-map", value_name = "SRC=DST[:PREFIX]")]
    pub db_map: Vec<String>,
    /// IAM authentication to an ElastiCache source instead of a password:
    /// user=ID,cache=NAME[,region=R][,serverless][,renew_secs=N]. NAME is the replication
    /// group or serverless cache; a token is signed per connection with the environment's AWS
    /// credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, a role), and connections are renewed
    /// before ElastiCache's 12-hour limit.
    #[cfg(feature = "aws")]
    #[arg(long, value_name = "SPEC")]
    pub source_iam: Option<ferry_steps::iam::IamAuth>,
    /// IAM authentication to an ElastiCache target, as --source-iam.
    #[cfg(feature = "aws")]
    #[arg(long, value_name = "SPEC")]
    pub target_iam: Option<ferry_steps::iam::IamAuth>,
    /// How long a server may take to answer before its connection counts as lost (a reply
    /// over 1 MiB gets a second more per MiB).
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = positive_seconds)]
    pub reply_timeout: f64,
}

/// A number of seconds: finite and above zero.
pub fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(s),
        _ => Err(format!("'{text}' is not a number of seconds above 0")),
    }
}

/// Key types `--key-type` takes: the core types and the module types ferry knows by name.
pub const KEY_TYPES: [&str; 10] = [
    "string",
    "hash",
    "list",
    "set",
    "zset",
    "stream",
    "ReJSON-RL",
    "MBbloom--",
    "MBbloomCF",
    "vectorset",
];

#[derive(Debug, Clone, Args)]
pub struct ReplicateArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// snapshot copies then verifies; compare only verifies.
    #[arg(long, value_enum, default_value = "snapshot")]
    pub mode: Mode,
    /// Copy method.
    #[arg(long = "type", value_enum, default_value = "auto")]
    pub copy_type: Method,
    /// Only keys matching this glob (SCAN MATCH).
    #[arg(long, value_name = "GLOB")]
    pub key_pattern: Option<String>,
    /// Only keys of this type (as TYPE names it).
    #[arg(long, value_name = "TYPE", value_parser = clap::builder::PossibleValuesParser::new(KEY_TYPES))]
    pub key_type: Option<String>,
    /// Shards per source database (SCAN cursor ranges; rounded down to a power of two).
    #[arg(long, default_value_t = 8)]
    pub shards: u32,
    /// Shards scanned at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Pipelined workers, each with one source and one target connection.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Keys per batch handed to a worker (copied in overlapping pipelined rounds).
    #[arg(long, default_value_t = 1024)]
    pub batch_keys: usize,
    /// SCAN COUNT: keys asked of each SCAN call (cut near a shard's end).
    #[arg(long, default_value_t = 1000)]
    pub scan_count: u32,
    /// Keys larger than this (MEMORY USAGE, bytes) are copied in chunks; 0 disables the check.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub big_key_bytes: u64,
    /// Copy hashes whose fields have TTLs into a target that cannot hold field TTLs (Redis
    /// < 7.4, Valkey < 9), without those TTLs; the report counts the fields. Otherwise such a
    /// run is refused before anything is written.
    #[arg(long)]
    pub drop_field_ttls: bool,
    /// Copy the rest when the source holds keys of a type the target cannot take (a module
    /// type it lacks, or any non-core type where the copy is per type); they are counted and
    /// verify reports them as skipped. Otherwise such a run is refused before writing.
    #[arg(long)]
    pub skip_unsupported: bool,
    /// Cap on commands per second sent to the source (0: no cap).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_ops_per_sec: u64,
    /// Verify after the copy (compare mode: how to compare).
    #[arg(long, value_enum, default_value = "full")]
    pub verify: VerifyChoice,
    /// Largest TTL difference that still counts as equal.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub ttl_tolerance_ms: i64,
    /// Re-copy exactly the keys verify found different (and delete extras on the target).
    #[arg(long)]
    pub repair: bool,
    /// Write into a target that already holds keys (keys of the same name are replaced).
    #[arg(long)]
    pub allow_nonempty_target: bool,
    /// Cluster source: scan and read each primary's slots on one of its replicas, sparing the
    /// primaries (live mode first waits for the replicas to catch up). Verify reads primaries.
    #[arg(long)]
    pub read_from_replicas: bool,
    /// Write a JSON report to FILE ("-" for stdout; the summary then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub live: LiveArgs,
}

impl ReplicateArgs {
    /// The verify settings `--ttl-tolerance-ms`, `--big-key-bytes` and `--repair` ask for, at
    /// `level` (`--verify`'s, or full for a cutover's checks).
    pub fn verify_settings(&self, level: Level) -> VerifySettings {
        VerifySettings {
            level,
            ttl_tolerance_ms: self.ttl_tolerance_ms,
            big_key_bytes: self.big_key_bytes,
            repair: self.repair,
        }
    }
}

/// How the live tail runs.
#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// Live mode: stop following after this many seconds without a keyspace event.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    pub idle_timeout: Option<f64>,
    /// Live mode: at the stop, how long to wait for the tail to copy what is dirty and go
    /// quiet; past it ferry reports the keys still dirty and exits 4 (writers still running?).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = positive_seconds)]
    pub drain_timeout: f64,
    /// Live mode: how ferry hears changes on the source. keyspace: keyspace notifications
    /// (notify-keyspace-events); tracking: client tracking in broadcast mode (Redis 6+), which
    /// needs no configuration change; auto: keyspace when the source has notifications on,
    /// tracking otherwise.
    #[arg(long, value_name = "CHANNEL", default_value = "auto",
          value_parser = clap::builder::PossibleValuesParser::new(LiveChannel::NAMES)
              .map(|s| s.parse::<LiveChannel>().expect("a listed name")))]
    pub live_channel: LiveChannel,
    /// Live mode: if the source's notify-keyspace-events lacks flags, set them (CONFIG SET) and
    /// restore the original value at the end (the keyspace channel).
    #[arg(long)]
    pub enable_notifications: bool,
    /// Live mode: workers copying dirty keys.
    #[arg(long, default_value_t = 4)]
    pub tail_workers: usize,
    /// Cutover (SIGUSR1 during live): the longest time writes are held on the source
    /// (CLIENT PAUSE ... WRITE); the server lifts the fence by itself then, and a switch not
    /// confirmed by then refuses the cutover (ferry goes on following).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = positive_seconds)]
    pub fence_secs: f64,
    /// Cutover: after the release, how long to keep following the source and report writes
    /// still reaching it (stragglers) and the clients still connected.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = positive_seconds)]
    pub watch_secs: f64,
}

#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Run as the state machine's Fargate task: the migration, task token and control queue
    /// come from FERRY_MIGRATION, FERRY_TASK_TOKEN, FERRY_EXECUTION and FERRY_CONTROL_QUEUE_URL
    /// (credentials from Secrets Manager); answers ready, barrier and drain requests.
    #[arg(long, conflicts_with_all = ["source", "target"])]
    pub from_state_machine: bool,
    /// Source and target (required unless --from-state-machine).
    #[command(flatten)]
    pub connect: Option<ConnectArgs>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Write a JSON report to FILE ("-" for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Server to write into.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// Writes per second.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// How long.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Distinct keys written to.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
}

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// Server to write into.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// Mixed keys (70% strings, 10% hashes, 10% lists, 5% sets, 5% zsets).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Percent of keys with a TTL.
    #[arg(long, default_value_t = 20)]
    pub ttl_percent: u8,
    /// Streams with a consumer group and pending entries.
    #[arg(long, default_value_t = 0)]
    pub streams: u64,
    /// Big hashes.
    #[arg(long, default_value_t = 0)]
    pub big_hashes: u64,
    /// Fields per big hash.
    #[arg(long, default_value_t = 10_000)]
    pub big_hash_fields: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// CA certificates (PEM) for a rediss:// target.
    #[arg(long, value_name = "FILE")]
    pub target_ca: Option<PathBuf>,
}
