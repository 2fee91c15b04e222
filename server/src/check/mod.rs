//! `leakscope check`: the CI gate. Starts a service (or attaches to a running
//! container), drives it with a load command, samples it every second with
//! the engine's own sampler, skips the warm-up, and judges the rest with the
//! dashboard's detector (short-run settings) and the team's budgets.
//!
//! Exit codes: 0 no leak, 1 a leak or a budget exceeded (or an OOM kill),
//! 2 the check could not judge (engine unreachable, image missing, the
//! service or the load crashed, interrupted) — never 0 without a verdict.
//! It removes what it started, also on Ctrl-C or SIGTERM, and nothing else.

/// A progress line on stderr; a closed stderr (the pipeline went away) is not an error worth dying for.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// A line of the result table on stdout, likewise.
macro_rules! show {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod evidence;
mod outputs;
mod publish;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures::FutureExt;
use leakscope_detect::budget::{self, Breach, Budgets, Measured};
use leakscope_detect::Sample;
use leakscope_engine::bollard::models::{ContainerCreateBody, HostConfig};
use leakscope_engine::bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use leakscope_engine::bollard::Docker;
use leakscope_engine::{now_ms, Engine, EngineConfig};
use leakscope_model::{LeakStatus, MemoryPoint};
use serde::Serialize;

use crate::compose;
use evidence::{DumpEvidence, DumpPlan};
use outputs::{finish, write_chart};

const CHECK_LABEL: &str = "io.leakscope.check";

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Attach to this running container (it is left running afterwards).
    #[arg(long, conflicts_with_all = ["image", "compose"], required_unless_present_any = ["image", "compose"])]
    pub container: Option<String>,
    /// Start this (local) image for the check and remove it afterwards.
    #[arg(long, conflicts_with = "compose")]
    pub image: Option<String>,
    /// Start the services of this compose file (on their own networks) and remove them afterwards.
    #[arg(long)]
    pub compose: Option<PathBuf>,
    /// With --compose: judge only these services (repeatable; the others still run).
    #[arg(long = "service", requires = "compose")]
    pub services: Vec<String>,
    /// Memory limit of the started container (e.g. 512MiB); no swap beyond it.
    #[arg(long, requires = "image", value_parser = budget::parse_bytes)]
    pub memory: Option<f64>,
    /// Environment of the started container, repeatable: K=V.
    #[arg(long = "env", requires = "image")]
    pub env: Vec<String>,
    /// Name of the service in the outputs (default: the image's or container's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The load: one command line, split into an argv as a shell would (quotes
    /// respected) and run without a shell; `{target}` in it becomes the
    /// container's IP address (also in the environment as LEAKSCOPE_TARGET), and
    /// `{target:SERVICE}` a compose service's.
    /// A non-zero exit fails the check (2).
    #[arg(long)]
    pub load: Option<String>,
    /// The first part of the run that is not judged.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The whole run, warm-up included.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Budget: growth of the floor after the warm-up (e.g. 64MiB).
    #[arg(long, value_parser = budget::parse_bytes)]
    pub max_growth: Option<f64>,
    /// Budget: slope of the floor after the warm-up (e.g. 2MiB/min).
    #[arg(long, value_parser = budget::parse_rate)]
    pub max_slope: Option<f64>,
    /// Budget: the highest working set as a share of the limit, in percent.
    #[arg(long)]
    pub max_percent_of_limit: Option<f64>,
    /// JUnit XML: one test case per service, the failure's message is the verdict's sentence.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Markdown for a job summary (a chart is written beside it as FILE-SERVICE.svg).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// JSON: the verdict with the API's fields, the measurements and the budgets.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Docker engine address (defaults to DOCKER_HOST, then the local socket).
    #[arg(long, env = "LEAKSCOPE_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// `start-end`: a heap dump of each judged service after the warm-up and
    /// another at the end (any runtime Leakscope captures), compared; the
    /// classes that grew go into every output.
    #[arg(long, value_enum, default_value = "none")]
    pub dumps: DumpPlan,
    /// Our static capture helper (default: `capture/leakscope-agent` beside the site, as for `serve`).
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Send the run (series, verdict, events, dumps) to this Leakscope server as a report and print its link.
    #[arg(long, requires = "token")]
    pub server: Option<String>,
    /// An operator's API token for --server.
    #[arg(long, env = "LEAKSCOPE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// With --server: also make the report's public link (readable without an account) and print that.
    #[arg(long, requires = "server")]
    pub share: bool,
    /// The command the started container runs (as after `docker run IMAGE`).
    #[arg(last = true, requires = "image")]
    pub command: Vec<String>,
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("'{value}': {e} (examples: 30s, 2m, 15m)"))
}

/// Why a check could not judge (exit 2).
#[derive(Debug)]
struct NotJudged(String);

impl<E: std::fmt::Display> From<E> for NotJudged {
    fn from(e: E) -> Self {
        NotJudged(e.to_string())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ServiceResult {
    pub service: String,
    pub container: String,
    pub passed: bool,
    /// Why it failed, in one sentence (the detector's, a budget's, or the OOM kill).
    pub failure: Option<String>,
    /// The detector's verdict on the judged window, as the API gives it.
    pub verdict: LeakStatus,
    pub measured: Measured,
    pub breaches: Vec<Breach>,
    pub oom_killed: bool,
    pub judged_from_ms: i64,
    pub judged_to_ms: i64,
    pub samples: usize,
    /// `--dumps start-end`: the two dumps and what grew between them.
    pub dumps: Option<DumpEvidence>,
    /// `--server`: the report's link.
    pub report_url: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub passed: bool,
    pub exit_code: u8,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub warmup_seconds: f64,
    pub duration_seconds: f64,
    pub services: Vec<ServiceResult>,
    /// Set when the check could not judge.
    pub error: Option<String>,
    /// Set when the run was judged but `--server` could not take the report.
    pub report_error: Option<String>,
}

/// What the check started and must remove.
struct Started {
    docker: Docker,
    containers: Vec<String>,
    networks: Vec<String>,
    data_dir: PathBuf,
}

impl Started {
    async fn clean_up(self) {
        for name in &self.containers {
            let options = RemoveContainerOptionsBuilder::default().force(true).build();
            if let Err(e) = self.docker.remove_container(name, Some(options)).await {
                say!("leakscope check: could not remove {name}: {e}");
            }
        }
        for network in &self.networks {
            if let Err(e) = self.docker.remove_network(network).await {
                say!("leakscope check: could not remove network {network}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A container the check watches, and whether it is judged.
struct Target {
    container: String,
    service: String,
    image: String,
    judged: bool,
    oom_killed: bool,
}

pub async fn run(args: CheckArgs) -> ExitCode {
    let started_ms = now_ms();
    let address = leakscope_engine::docker::resolve_address(args.docker_host.as_deref());
    let docker = match leakscope_engine::docker::connect(&address).await {
        Ok(connection) => connection.docker,
        Err(e) => return finish(&args, not_judged(&args, started_ms, format!("the Docker engine at {address} does not answer: {e}"))),
    };
    let data_dir = std::env::temp_dir().join(format!("leakscope-check-{}-{started_ms}", std::process::id()));
    let mut started = Started { docker: docker.clone(), containers: Vec::new(), networks: Vec::new(), data_dir: data_dir.clone() };
    // Whatever happens inside (even a panic, e.g. printing to a closed pipe), what was started is removed.
    let outcome = AssertUnwindSafe(check(&args, &docker, &mut started, started_ms)).catch_unwind().await;
    started.clean_up().await;
    let report = match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(NotJudged(reason))) => not_judged(&args, started_ms, reason),
        Err(_) => not_judged(&args, started_ms, "the check stopped on an internal error (see above); what it started was removed".into()),
    };
    finish(&args, report)
}

fn not_judged(args: &CheckArgs, started_ms: i64, reason: String) -> CheckReport {
    CheckReport {
        passed: false,
        exit_code: 2,
        started_ms,
        finished_ms: now_ms(),
        warmup_seconds: args.warmup.as_secs_f64(),
        duration_seconds: args.duration.as_secs_f64(),
        services: Vec::new(),
        error: Some(reason),
        report_error: None,
    }
}

async fn check(args: &CheckArgs, docker: &Docker, started: &mut Started, started_ms: i64) -> Result<CheckReport, NotJudged> {
    if args.duration <= args.warmup + Duration::from_secs(60) {
        return Err(NotJudged(format!(
            "--duration ({}) must exceed --warmup ({}) by at least a minute: nothing would be judged",
            humantime::format_duration(args.duration),
            humantime::format_duration(args.warmup)
        )));
    }
    let load = match &args.load {
        Some(line) => {
            let argv = shlex::split(line).filter(|a| !a.is_empty()).ok_or_else(|| NotJudged(format!("--load: cannot split '{line}' into words (unbalanced quotes?)")))?;
            Some(argv)
        }
        None => None,
    };
    // The engine's own sampler, every second, into a scratch store.
    let mut config = EngineConfig::new(&started.data_dir);
    config.docker_host = args.docker_host.clone();
    config.sample_interval = Duration::from_secs(1);
    let server = match (&args.server, &args.token) {
        (Some(url), Some(token)) => Some(publish::Target::new(url, token, args.share).map_err(NotJudged)?),
        _ => None,
    };
    if let Some(server) = &server {
        publish::preflight(server).await.map_err(NotJudged)?;
    }
    if args.dumps == DumpPlan::StartEnd {
        let site = crate::serve::site_root(None);
        if let Err(missing) = crate::serve::use_capture_helpers(&mut config, args.agent.clone(), &site) {
            // Images with jcmd still work; the others say so in the dump's problem.
            say!("leakscope check: capture helper not found at {} (build it with `./dev build` or pass --agent)", missing.display());
        }
    }
    let engine = Engine::start(config).map_err(|e| NotJudged(format!("cannot start the sampler: {e}")))?;

    let mut targets: Vec<Target> = Vec::new();
    if let Some(image) = &args.image {
        let service = args.name.clone().unwrap_or_else(|| image_service_name(image));
        let name = format!("leakscope-check-{service}-{}", std::process::id());
        let spec = compose::ServiceSpec {
            name: service.clone(),
            image: image.clone(),
            env: args.env.clone(),
            command: (!args.command.is_empty()).then(|| args.command.clone()),
            memory_bytes: args.memory,
            ports: HashMap::new(),
            networks: Vec::new(),
        };
        create_container(docker, &spec, &name, None, started_ms).await?;
        // Removed at the end whatever happens from here on.
        started.containers.push(name.clone());
        docker.start_container(&name, None).await.map_err(|e| NotJudged(format!("cannot start {name}: {e}")))?;
        targets.push(Target { container: name, service, image: image.clone(), judged: true, oom_killed: false });
    } else if let Some(file) = &args.compose {
        let text = std::fs::read_to_string(file).map_err(|e| NotJudged(format!("{}: {e}", file.display())))?;
        let folder = file.canonicalize().ok().and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().to_string()));
        let project = compose::parse(&text, &folder.map(|f| image_service_name(&f)).unwrap_or_else(|| "check".into())).map_err(NotJudged)?;
        for wanted in &args.services {
            if !project.services.iter().any(|s| &s.name == wanted) {
                return Err(NotJudged(format!("--service {wanted}: the compose file has no such service")));
            }
        }
        let pid = std::process::id();
        for network in &project.networks {
            let name = format!("leakscope-check-{}-{network}-{pid}", project.name);
            let request = leakscope_engine::bollard::models::NetworkCreateRequest {
                name: name.clone(),
                labels: Some(HashMap::from([(CHECK_LABEL.to_string(), started_ms.to_string())])),
                ..Default::default()
            };
            docker.create_network(request).await.map_err(|e| NotJudged(format!("cannot create network {name}: {e}")))?;
            started.networks.push(name);
        }
        for spec in &project.services {
            let name = format!("leakscope-check-{}-{}-{pid}", project.name, spec.name);
            let network = spec.networks.first().map(|n| format!("leakscope-check-{}-{n}-{pid}", project.name));
            create_container(docker, spec, &name, network.as_deref(), started_ms).await?;
            started.containers.push(name.clone());
            for extra in spec.networks.iter().skip(1) {
                let network = format!("leakscope-check-{}-{extra}-{pid}", project.name);
                let request = leakscope_engine::bollard::models::NetworkConnectRequest {
                    container: name.clone(),
                    endpoint_config: Some(leakscope_engine::bollard::models::EndpointSettings { aliases: Some(vec![spec.name.clone()]), ..Default::default() }),
                };
                docker.connect_network(&network, request).await.map_err(|e| NotJudged(format!("cannot connect {name} to {network}: {e}")))?;
            }
            let judged = args.services.is_empty() || args.services.contains(&spec.name);
            targets.push(Target { container: name, service: spec.name.clone(), image: spec.image.clone(), judged, oom_killed: false });
        }
        for target in &targets {
            docker.start_container(&target.container, None).await.map_err(|e| NotJudged(format!("cannot start {}: {e}", target.container)))?;
        }
    } else if let Some(name) = &args.container {
        let inspected = docker.inspect_container(name, None).await.map_err(|e| NotJudged(format!("container {name}: {e}")))?;
        if !inspected.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Err(NotJudged(format!("container {name} is not running")));
        }
        let name = inspected.name.as_deref().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_else(|| name.clone());
        let image = inspected.config.and_then(|c| c.image).unwrap_or_default();
        targets.push(Target { container: name.clone(), service: args.name.clone().unwrap_or(name), image, judged: true, oom_killed: false });
    } else {
        return Err(NotJudged("give --image, --compose or --container".into()));
    }
    for t in targets.iter().filter(|t| t.judged) {
        say!(
            "leakscope check: {} ({}): warm-up {}, judged until {}",
            t.service,
            t.container,
            humantime::format_duration(args.warmup),
            humantime::format_duration(args.duration)
        );
    }

    // Where the load finds the services: {target} (the first judged one) and {target:SERVICE}.
    let mut addresses: Vec<(String, String)> = Vec::new();
    for t in &targets {
        addresses.push((format!("{{target:{}}}", t.service), container_address(docker, &t.container).await));
    }
    let first = targets.iter().position(|t| t.judged).unwrap_or(0);
    let target = addresses[first].1.clone();
    let place = |word: &String| addresses.iter().fold(word.replace("{target}", &target), |w, (key, ip)| w.replace(key, ip));
    let mut load_child = match &load {
        Some(argv) => Some(
            tokio::process::Command::new(&argv[0])
                .args(argv[1..].iter().map(place))
                .env("LEAKSCOPE_TARGET", &target)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| NotJudged(format!("the load command '{}' does not start: {e}", argv[0])))?,
        ),
        None => None,
    };
    let run_start = Instant::now();
    // `--dumps start-end`: the first dumps, started when the warm-up ends, by target index.
    let mut first_dumps: Vec<(usize, tokio::task::JoinHandle<Result<evidence::TakenDump, String>>)> = Vec::new();
    let mut first_dumps_started = args.dumps == DumpPlan::None;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| NotJudged(e.to_string()))?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    while run_start.elapsed() < args.duration {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Err(NotJudged("interrupted (Ctrl-C)".into())),
            _ = sigterm.recv() => return Err(NotJudged("interrupted (SIGTERM)".into())),
            status = async { load_child.as_mut().unwrap().wait().await }, if load_child.is_some() => {
                load_child = None;
                match status {
                    Ok(s) if s.success() => say!("leakscope check: the load command finished; sampling until the end"),
                    Ok(s) => return Err(NotJudged(format!("the load command exited with {s}"))),
                    Err(e) => return Err(NotJudged(format!("the load command: {e}"))),
                }
            }
            _ = ticker.tick() => {
                if !first_dumps_started && run_start.elapsed() >= args.warmup {
                    first_dumps_started = true;
                    for (index, t) in targets.iter().enumerate().filter(|(_, t)| t.judged) {
                        say!("leakscope check: {}: warm-up over, taking the first heap dump", t.service);
                        let (engine, container) = (engine.clone(), t.container.clone());
                        first_dumps.push((index, tokio::spawn(async move { evidence::take(&engine, &container, false).await })));
                    }
                }
                for t in targets.iter_mut().filter(|t| !t.oom_killed) {
                    let inspected = docker.inspect_container(&t.container, None).await.map_err(|e| NotJudged(format!("container {}: {e}", t.container)))?;
                    let state = inspected.state.unwrap_or_default();
                    if state.running.unwrap_or(false) {
                        continue;
                    }
                    if state.oom_killed.unwrap_or(false) {
                        // A finding, not a failure to judge: the service ran out of memory.
                        t.oom_killed = true;
                        continue;
                    }
                    return Err(NotJudged(format!(
                        "{} stopped after {} (exit code {})",
                        t.service,
                        humantime::format_duration(Duration::from_secs(run_start.elapsed().as_secs())),
                        state.exit_code.unwrap_or(-1)
                    )));
                }
                if targets.iter().filter(|t| t.judged).all(|t| t.oom_killed) {
                    break;
                }
            }
        }
    }
    drop(load_child);
    engine.sample_now().await;
    let to_ms = now_ms();
    let container_start_ms = to_ms - run_start.elapsed().as_millis() as i64;
    let warm_ms = container_start_ms + args.warmup.as_millis() as i64;
    let mut evidence: HashMap<usize, DumpEvidence> = HashMap::new();
    for (index, handle) in first_dumps {
        let taken = interruptible(handle).await?.unwrap_or_else(|e| Err(e.to_string()));
        let entry = evidence.entry(index).or_default();
        match taken {
            Ok(dump) => entry.start = Some(dump),
            Err(why) => entry.problems.push(format!("no first dump: {why}")),
        }
    }
    let mut results = Vec::new();
    let mut runs = Vec::new();
    for (index, t) in targets.iter().enumerate().filter(|(_, t)| t.judged) {
        let series = engine
            .series(&t.container, container_start_ms - 5_000, to_ms + 1, Some(1))
            .await
            .map_err(|e| NotJudged(format!("no samples of {}: {e}", t.container)))?;
        // The first dump's pause and the full collection it forces are not the service's own growth.
        let judged_from_ms = evidence::judged_after(evidence.get(&index)).map_or(warm_ms, |after| after.max(warm_ms));
        // A first heap dump that ended after the warm-up moves the window's start: say which.
        let window_start = if judged_from_ms > warm_ms { "the first heap dump" } else { "the warm-up" };
        let result = judge(&t.service, &t.container, &series.points, (judged_from_ms, window_start), to_ms, container_start_ms, t.oom_killed, args)?;
        if let Some(markdown) = &args.markdown {
            write_chart(markdown, &result, &series.points, container_start_ms, to_ms);
        }
        results.push(result);
        runs.push((index, series.points));
    }
    if args.dumps == DumpPlan::StartEnd {
        // The judged window is closed: a dump near the limit may be taken now.
        let mut last_dumps = Vec::new();
        for (index, t) in targets.iter().enumerate().filter(|(_, t)| t.judged && !t.oom_killed) {
            say!("leakscope check: {}: taking the last heap dump", t.service);
            let (engine, container) = (engine.clone(), t.container.clone());
            last_dumps.push((index, tokio::spawn(async move { evidence::take(&engine, &container, true).await })));
        }
        for (index, handle) in last_dumps {
            let taken = interruptible(handle).await?.unwrap_or_else(|e| Err(e.to_string()));
            let entry = evidence.entry(index).or_default();
            match taken {
                Ok(dump) => entry.end = Some(dump),
                Err(why) => entry.problems.push(format!("no last dump: {why}")),
            }
        }
        for (result, (index, _)) in results.iter_mut().zip(&runs) {
            let mut found = evidence.remove(index).unwrap_or_default();
            if targets[*index].oom_killed {
                found.problems.push("no last dump: the service was OOM-killed".into());
            }
            evidence::compare(&engine, &mut found).await;
            result.dumps = Some(found);
        }
    }
    let passed = results.iter().all(|r| r.passed);
    let mut report_error = None;
    if let Some(server) = &server {
        for (result, (index, points)) in results.iter_mut().zip(runs) {
            let events = engine.events(&result.container, container_start_ms - 5_000, now_ms()).await.unwrap_or_default();
            let dumps = result.dumps.as_ref().map(|d| d.start.iter().chain(d.end.iter()).map(|t| t.id.clone()).collect()).unwrap_or_default();
            let run = publish::Run {
                service: result.service.clone(),
                container: result.container.clone(),
                image: targets[index].image.clone(),
                from_ms: container_start_ms,
                to_ms,
                limit_bytes: points.iter().rev().find_map(|p| p.limit_bytes),
                points,
                events,
                verdict: result.verdict.clone(),
                notes: outputs::report_notes(result, args),
                dumps,
            };
            match interruptible(tokio::spawn({
                let (engine, server) = (engine.clone(), server.clone());
                async move { publish::publish(&engine, &server, run).await }
            }))
            .await?
            .unwrap_or_else(|e| Err(e.to_string()))
            {
                Ok(url) => {
                    say!("leakscope check: report for {}: {url}", result.service);
                    result.report_url = Some(url);
                }
                Err(why) => {
                    say!("leakscope check: the report for {} was not created: {why}", result.service);
                    report_error.get_or_insert(why);
                }
            }
        }
    }
    Ok(CheckReport {
        passed,
        // A report the pipeline asked for and did not get is not a pass.
        exit_code: if !passed { 1 } else if report_error.is_some() { 2 } else { 0 },
        started_ms,
        finished_ms: now_ms(),
        warmup_seconds: args.warmup.as_secs_f64(),
        duration_seconds: args.duration.as_secs_f64(),
        services: results,
        error: None,
        report_error,
    })
}

/// Awaits a task unless the user interrupts first (the caller then cleans up).
async fn interruptible<T>(task: tokio::task::JoinHandle<T>) -> Result<Result<T, tokio::task::JoinError>, NotJudged> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| NotJudged(e.to_string()))?;
    let abort = task.abort_handle();
    tokio::select! {
        done = task => Ok(done),
        _ = tokio::signal::ctrl_c() => { abort.abort(); Err(NotJudged("interrupted (Ctrl-C)".into())) }
        _ = sigterm.recv() => { abort.abort(); Err(NotJudged("interrupted (SIGTERM)".into())) }
    }
}

/// The container's IP address on its first network (how a load on this host reaches it).
async fn container_address(docker: &Docker, container: &str) -> String {
    let inspected = docker.inspect_container(container, None).await.ok();
    inspected
        .and_then(|c| c.network_settings)
        .and_then(|n| n.networks)
        .and_then(|networks| networks.into_values().find_map(|n| n.ip_address.filter(|ip| !ip.is_empty())))
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// `registry/team/leak-service:1.2` → `leak-service`.
fn image_service_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let name = last.split([':', '@']).next().unwrap_or(last);
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    if clean.is_empty() { "service".into() } else { clean }
}

async fn create_container(docker: &Docker, spec: &compose::ServiceSpec, name: &str, network: Option<&str>, run_id: i64) -> Result<(), NotJudged> {
    let image = &spec.image;
    if let Err(e) = docker.inspect_image(image).await {
        return Err(NotJudged(format!("image {image} is not on this engine ({e}); build or pull it before the check")));
    }
    for pair in &spec.env {
        if !pair.contains('=') {
            return Err(NotJudged(format!("{}: environment {pair}: expected K=V", spec.name)));
        }
    }
    let memory = spec.memory_bytes.map(|m| m as i64);
    let port_bindings: HashMap<String, Option<Vec<leakscope_engine::bollard::models::PortBinding>>> = spec
        .ports
        .iter()
        .map(|(container, host)| {
            let binding = leakscope_engine::bollard::models::PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(host.clone()) };
            (container.clone(), (!host.is_empty()).then(|| vec![binding]))
        })
        .collect();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        env: Some(spec.env.clone()),
        cmd: spec.command.clone(),
        labels: Some(HashMap::from([(CHECK_LABEL.to_string(), run_id.to_string())])),
        exposed_ports: (!spec.ports.is_empty()).then(|| spec.ports.keys().cloned().collect()),
        host_config: Some(HostConfig {
            memory,
            memory_swap: memory,
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            network_mode: network.map(str::to_string),
            ..Default::default()
        }),
        networking_config: network.map(|n| leakscope_engine::bollard::models::NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                n.to_string(),
                leakscope_engine::bollard::models::EndpointSettings { aliases: Some(vec![spec.name.clone()]), ..Default::default() },
            )])),
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    docker.create_container(Some(options), body).await.map_err(|e| NotJudged(format!("cannot create the container from {image}: {e}")))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn judge(
    service: &str,
    container: &str,
    points: &[MemoryPoint],
    (judged_from_ms, window_start): (i64, &str),
    to_ms: i64,
    container_start_ms: i64,
    oom_killed: bool,
    args: &CheckArgs,
) -> Result<ServiceResult, NotJudged> {
    let samples: Vec<Sample> = points
        .iter()
        .filter(|p| p.time_ms >= judged_from_ms)
        .map(|p| Sample { t: p.time_ms as f64 / 1000.0, bytes: p.working_set_bytes as f64 })
        .collect();
    if samples.len() < 30 && !oom_killed {
        return Err(NotJudged(format!("only {} samples of {container} after {window_start}: too few to judge", samples.len())));
    }
    let limit = points.iter().rev().find_map(|p| p.limit_bytes).map(|l| l as f64);
    let judged_seconds = (to_ms - judged_from_ms) as f64 / 1000.0;
    let params = budget::short_run_params(judged_seconds);
    let verdict = leakscope_engine::detection::status_of(&samples, limit, &[container_start_ms as f64 / 1000.0], to_ms, &params);
    let measured = budget::measure(&samples, limit);
    let budgets = Budgets { max_growth_bytes: args.max_growth, max_slope_bytes_per_minute: args.max_slope, max_percent_of_limit: args.max_percent_of_limit };
    let breaches = budget::breaches(&measured, &budgets);
    let failure = if oom_killed {
        Some(format!("{service} was OOM-killed at its memory limit during the check"))
    } else if verdict.leak {
        Some(format!("leak: {}", verdict.reason))
    } else {
        breaches.first().map(|b| format!("budget {} exceeded: {}", b.budget, b.sentence))
    };
    Ok(ServiceResult {
        service: service.to_string(),
        container: container.to_string(),
        passed: failure.is_none(),
        failure,
        verdict,
        measured,
        breaches,
        oom_killed,
        judged_from_ms,
        judged_to_ms: to_ms,
        samples: samples.len(),
        dumps: None,
        report_url: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_come_from_the_image() {
        assert_eq!(image_service_name("registry.example:5000/team/leak-service:1.2"), "leak-service");
        assert_eq!(image_service_name("leakscope-fixture/java:abc"), "java");
    }
}
