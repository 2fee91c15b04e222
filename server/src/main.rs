//! `leakscope`: the one binary. `serve` runs the dashboard; more subcommands
//! arrive with later capabilities.

mod analyze;
mod agent_link;
mod alerts_api;
mod api;
mod capture_api;
mod charts;
mod check;
mod compose;
mod auth;
mod demo;
mod memory;
mod migrate;
mod metrics_api;
mod openapi;
mod detect;
mod direct_hosts;
mod host_agent;
mod hub;
mod dumps_api;
mod report_view;
mod reports_api;
mod serve;
mod tunnel;
mod users;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "leakscope", version, about = "Find memory leaks in Docker containers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the dashboard (and the sampler) against a Docker engine.
    Serve(ServeArgs),
    /// Analyse a heap dump offline: histogram, dominators, retained sizes, leak suspects.
    Analyze(analyze::AnalyzeArgs),
    /// What grew between two heap dumps of the same service.
    Diff(analyze::DiffArgs),
    /// Leak verdict on a memory series from a CSV file (offline).
    Detect(detect::DetectArgs),
    /// CI gate: run a service under load, judge its memory; exit 1 on a leak or an exceeded budget.
    Check(check::CheckArgs),
    /// API tokens for scripts and CI (`token create` prints the token on its last line).
    #[command(subcommand)]
    Token(users::TokenCommand),
    /// Accounts from the console (for when the setup link is lost or a password forgotten).
    #[command(subcommand)]
    User(users::UserCommand),
    /// Start or remove a set of leaky sample containers to try Leakscope on.
    Demo(demo::DemoArgs),
    /// Run on a Docker host: sample its engine and report to a hub (`leakscope serve`) it dials out to.
    Agent(host_agent::AgentArgs),
    /// Copy a data directory's heap dumps into a bucket (`--dump-store s3://…`), each copy checked.
    Migrate(migrate::MigrateArgs),
    /// Enrollment tokens for host agents (`agent-token create` prints the token on its last line).
    #[command(subcommand)]
    AgentToken(users::AgentTokenCommand),
}

#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "LEAKSCOPE_BIND")]
    pub bind: SocketAddr,
    /// Where the SQLite database and the dump folder live.
    #[arg(long, default_value = "./data", env = "LEAKSCOPE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Keep heap dumps in an S3-compatible bucket instead of `<data-dir>/dumps`:
    /// `s3://bucket/prefix`, optionally `?endpoint=URL&region=NAME` (a self-hosted store is
    /// reached path-style). Credentials, region and endpoint also come from `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`.
    #[arg(long, env = "LEAKSCOPE_DUMP_STORE")]
    pub dump_store: Option<String>,
    /// Where accounts, sessions, API tokens, the audit log, agents, webhooks,
    /// reports and dumps' records are kept: `postgres://user:password@host/db`
    /// (libpq's `sslmode` for TLS), shared by a team's servers, or a SQLite file.
    /// Default: the data folder's leakscope.db. (Samples stay in the data folder for now.)
    #[arg(long, env = "LEAKSCOPE_DATABASE_URL")]
    pub database: Option<String>,
    /// `[NAME=]URL`: the Docker engine's address (defaults to DOCKER_HOST, then the local socket)
    /// and the host's display name (defaults to the engine's own host name). Repeatable: every
    /// further engine is watched directly too (for hosts where no agent may be installed).
    #[arg(long, env = "LEAKSCOPE_DOCKER_HOST")]
    pub docker_host: Vec<String>,
    /// `[NAME=]DIR`: reach the `tcp://` engine named NAME in `--docker-host` over TLS with DIR's
    /// `ca.pem`, `cert.pem` and `key.pem` (as `docker --tlsverify`); without NAME, every `tcp://`
    /// engine that has no directory of its own. Repeatable.
    #[arg(long)]
    pub docker_cert_path: Vec<String>,
    /// How often every container's memory is sampled.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long raw samples are kept.
    #[arg(long, default_value = "48h", value_parser = parse_duration)]
    pub raw_retention: Duration,
    /// How long 1-minute rollups are kept.
    #[arg(long, default_value = "90days", value_parser = parse_duration)]
    pub rollup_retention: Duration,
    /// How long hourly rollups are kept (charts of months and years read them).
    #[arg(long, default_value = "730days", value_parser = parse_duration)]
    pub hourly_retention: Duration,
    /// Where memory numbers come from: auto (host cgroup files when found, else the Engine API), api, cgroup.
    #[arg(long, default_value = "auto")]
    pub stats_source: leakscope_engine::StatsSource,
    /// The host's cgroup filesystem (mount it into a container to use the fast path there).
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    /// The built site (WASM bundle, CSS, public files); defaults to `site/` beside the binary's target dir.
    #[arg(long, env = "LEAKSCOPE_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
    /// Steady growth needed before the leak verdict (shorter finds leaks sooner and warm-ups wrongly).
    #[arg(long, default_value = "25m", value_parser = parse_duration)]
    pub leak_min_age: Duration,
    /// The static capture helper copied into containers; defaults to `capture/leakscope-agent` beside the site root.
    #[arg(long, env = "LEAKSCOPE_AGENT")]
    pub agent: Option<PathBuf>,
    /// Automatic heap dumps for every container: off, on-leak, at-85% (of the memory limit) or
    /// on-leak,at-85%. A container's `io.leakscope.capture` label overrides it.
    #[arg(long, default_value = "off", env = "LEAKSCOPE_AUTO_CAPTURE")]
    pub auto_capture: leakscope_engine::CapturePolicy,
    /// Least time between two automatic dumps of one container (at most two per day and container).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub auto_capture_spacing: Duration,
    /// How long a Python process may take to start Leakscope's heap walk (its main thread
    /// may be blocked in a C call) and the walk to finish; then the capture fails and the walk is dropped.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub python_walk_timeout: Duration,
    /// Mark session cookies Secure (set this when a TLS proxy is in front; `X-Forwarded-Proto: https` does it per request).
    #[arg(long)]
    pub secure_cookies: bool,
    /// The address team mates open Leakscope at (links in notifications); default `http://` + `--bind`.
    #[arg(long, env = "LEAKSCOPE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Notify when a container's working set reaches this share of its memory limit (0.5 to 1).
    #[arg(long, default_value = "0.9", value_parser = parse_share)]
    pub alert_limit_share: f64,
    /// At most one notification per container and kind (leak, OOM kill, limit) in this time; the ones held back are counted in the next.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub alert_repeat: Duration,
}

fn parse_share(value: &str) -> Result<f64, String> {
    match value.trim().trim_end_matches('%').parse::<f64>() {
        Ok(v) if value.trim().ends_with('%') && (50.0..=100.0).contains(&v) => Ok(v / 100.0),
        Ok(v) if (0.5..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{value}' is not a share between 0.5 and 1 (or 50% and 100%)")),
    }
}

pub(crate) fn parse_duration(value: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(value).map_err(|e| format!("'{value}': {e} (examples: 2s, 500ms, 48h, 90days)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

/// Huge pages for the analysis's big arrays (see `leakscope_heap::alloc`).
#[global_allocator]
static ALLOCATOR: leakscope_heap::alloc::HugePageAllocator = leakscope_heap::alloc::HugePageAllocator;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // A CI check's log is its table: only warnings from the sampler it runs.
                // PostgreSQL's notices ("relation … already exists, skipping" at each start) are not news.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(if std::env::args().nth(1).as_deref() == Some("check") { "warn" } else { "info,sqlx::postgres::notice=warn" })
                }),
        )
        .init();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Check(_)) {
        // Report tools end quietly when their reader goes away (`| head`), like other CLI tools.
        // Not `serve`, and not `check`: it must still remove what it started.
        // SAFETY: setting a signal disposition to its default before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    } else {
        memory::limit_arenas();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        // Its own exit codes: 1 a leak, 2 could not judge.
        Command::Check(args) => return runtime.block_on(check::run(args)),
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Analyze(args) => analyze::analyze(args),
        Command::Diff(args) => analyze::diff(args),
        Command::Detect(args) => detect::detect(args),
        Command::Token(command) => users::token(command).map_err(|e| e.to_string()),
        Command::User(command) => users::user(command).map_err(|e| e.to_string()),
        Command::Demo(args) => runtime.block_on(demo::run(args)).map_err(Into::into),
        Command::Agent(args) => runtime.block_on(host_agent::run(args)),
        Command::Migrate(args) => runtime.block_on(migrate::run(args)),
        Command::AgentToken(command) => users::agent_token(command).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
