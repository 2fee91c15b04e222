//! `leakscope check`: the CI gate. Starts a service (or attaches to a running
//! container), drives it with a load command, samples it every second with
//! the engine's own sampler, skips the warm-up, and judges the rest with the
//! dashboard's detector (short-run settings) and the team's budgets.
//!
//! Exit codes: 0 no leak, 1 a leak or a budget exceeded (or an OOM kill),
//! 2 the check could not judge (engine unreachable, image missing, the
//! service or the load crashed, interrupted) — never 0 without a verdict.
//! It removes what it started, also on Ctrl-C or SIGTERM, and nothing else.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use leakscope_detect::budget::{self, Breach, Budgets, Measured};
use leakscope_detect::Sample;
use leakscope_engine::bollard::models::{ContainerCreateBody, HostConfig};
use leakscope_engine::bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use leakscope_engine::bollard::Docker;
use leakscope_engine::{now_ms, Engine, EngineConfig};
use leakscope_model::{LeakStatus, MemoryPoint};
use serde::Serialize;

use crate::compose;

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
                eprintln!("leakscope check: could not remove {name}: {e}");
            }
        }
        for network in &self.networks {
            if let Err(e) = self.docker.remove_network(network).await {
                eprintln!("leakscope check: could not remove network {network}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A container the check watches, and whether it is judged.
struct Target {
    container: String,
    service: String,
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
    let outcome = check(&args, &docker, &mut started, started_ms).await;
    started.clean_up().await;
    let report = match outcome {
        Ok(report) => report,
        Err(NotJudged(reason)) => not_judged(&args, started_ms, reason),
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
        targets.push(Target { container: name, service, judged: true, oom_killed: false });
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
            targets.push(Target { container: name, service: spec.name.clone(), judged, oom_killed: false });
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
        targets.push(Target { container: name.clone(), service: args.name.clone().unwrap_or(name), judged: true, oom_killed: false });
    } else {
        return Err(NotJudged("give --image, --compose or --container".into()));
    }
    for t in targets.iter().filter(|t| t.judged) {
        eprintln!(
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
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| NotJudged(e.to_string()))?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    while run_start.elapsed() < args.duration {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Err(NotJudged("interrupted (Ctrl-C)".into())),
            _ = sigterm.recv() => return Err(NotJudged("interrupted (SIGTERM)".into())),
            status = async { load_child.as_mut().unwrap().wait().await }, if load_child.is_some() => {
                load_child = None;
                match status {
                    Ok(s) if s.success() => eprintln!("leakscope check: the load command finished; sampling until the end"),
                    Ok(s) => return Err(NotJudged(format!("the load command exited with {s}"))),
                    Err(e) => return Err(NotJudged(format!("the load command: {e}"))),
                }
            }
            _ = ticker.tick() => {
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
    let judged_from_ms = container_start_ms + args.warmup.as_millis() as i64;
    let mut results = Vec::new();
    for t in targets.iter().filter(|t| t.judged) {
        let series = engine
            .series(&t.container, container_start_ms - 5_000, to_ms + 1, Some(1))
            .await
            .map_err(|e| NotJudged(format!("no samples of {}: {e}", t.container)))?;
        let result = judge(&t.service, &t.container, &series.points, judged_from_ms, to_ms, container_start_ms, t.oom_killed, args)?;
        if let Some(markdown) = &args.markdown {
            write_chart(markdown, &result, &series.points, container_start_ms, to_ms);
        }
        results.push(result);
    }
    let passed = results.iter().all(|r| r.passed);
    Ok(CheckReport {
        passed,
        exit_code: if passed { 0 } else { 1 },
        started_ms,
        finished_ms: now_ms(),
        warmup_seconds: args.warmup.as_secs_f64(),
        duration_seconds: args.duration.as_secs_f64(),
        services: results,
        error: None,
    })
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
    judged_from_ms: i64,
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
        return Err(NotJudged(format!("only {} samples of {container} after the warm-up: too few to judge", samples.len())));
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
    })
}

/// The outputs, then the exit code.
fn finish(args: &CheckArgs, report: CheckReport) -> ExitCode {
    print_table(&report);
    let mut write_failed = false;
    let mut write = |path: &Option<PathBuf>, text: String| {
        if let Some(path) = path {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("leakscope check: cannot write {}: {e}", path.display());
                write_failed = true;
            }
        }
    };
    write(&args.junit, junit(&report));
    write(&args.markdown, markdown(&report, args.markdown.as_deref()));
    write(&args.json, serde_json::to_string_pretty(&report).unwrap_or_default());
    // An output a pipeline relies on that could not be written is not a pass.
    ExitCode::from(if write_failed && report.exit_code == 0 { 2 } else { report.exit_code })
}

fn print_table(report: &CheckReport) {
    let colour = std::io::stdout().is_terminal();
    let paint = |text: &str, code: &str| if colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() };
    if let Some(error) = &report.error {
        println!("{} the check could not judge: {error}", paint("ERROR", "1;33"));
        return;
    }
    println!("{:<28} {:<11} {:>11} {:>13} {:>18}  RESULT", "SERVICE", "VERDICT", "GROWTH", "SLOPE", "PEAK / LIMIT");
    for s in &report.services {
        let peak = match s.measured.percent_of_limit {
            Some(p) => format!("{} ({p:.0} %)", leakscope_detect::mib(s.measured.peak_bytes)),
            None => leakscope_detect::mib(s.measured.peak_bytes),
        };
        let result = match &s.failure {
            None => paint("PASS", "32"),
            Some(why) => format!("{} {why}", paint("FAIL", "1;31")),
        };
        println!(
            "{:<28} {:<11} {:>11} {:>13} {:>18}  {result}",
            s.service,
            s.verdict.verdict,
            format!("+{}", leakscope_detect::mib(s.measured.growth_bytes)),
            format!("{}/min", leakscope_detect::mib(s.measured.slope_bytes_per_minute)),
            peak
        );
    }
}

/// XML text and attribute escaping (JUnit files are read by CI servers, not rendered as pages).
fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

fn junit(report: &CheckReport) -> String {
    let failures = report.services.iter().filter(|s| !s.passed).count();
    let seconds = (report.finished_ms - report.started_ms) as f64 / 1000.0;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let errors = usize::from(report.error.is_some());
    out.push_str(&format!(
        "<testsuites><testsuite name=\"leakscope check\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{seconds:.1}\">\n",
        report.services.len().max(errors)
    ));
    if let Some(error) = &report.error {
        out.push_str(&format!("<testcase classname=\"leakscope\" name=\"check\"><error message=\"{}\"/></testcase>\n", xml(error)));
    }
    for s in &report.services {
        out.push_str(&format!("<testcase classname=\"leakscope.memory\" name=\"{}\" time=\"{seconds:.1}\">", xml(&s.service)));
        if let Some(why) = &s.failure {
            let details = format!(
                "verdict: {} ({})\ngrowth after warm-up: {}\nslope: {}/min\npeak: {}\nbudgets exceeded: {}",
                s.verdict.verdict,
                s.verdict.reason,
                leakscope_detect::mib(s.measured.growth_bytes),
                leakscope_detect::mib(s.measured.slope_bytes_per_minute),
                leakscope_detect::mib(s.measured.peak_bytes),
                if s.breaches.is_empty() { "none".to_string() } else { s.breaches.iter().map(|b| b.sentence.clone()).collect::<Vec<_>>().join("; ") }
            );
            out.push_str(&format!("<failure message=\"{}\" type=\"memory\">{}</failure>", xml(why), xml(&details)));
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("</testsuite></testsuites>\n");
    out
}

/// Markdown table cells: no pipes or line breaks from the text.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn markdown(report: &CheckReport, path: Option<&Path>) -> String {
    let mut out = String::from("## Leakscope memory check\n\n");
    if let Some(error) = &report.error {
        out.push_str(&format!("**The check could not judge:** {}\n", cell(error)));
        return out;
    }
    out.push_str(&format!(
        "{} — warm-up {} s skipped, {} s judged.\n\n| Service | Result | Verdict | Growth after warm-up | Slope | Peak |\n|---|---|---|---|---|---|\n",
        if report.passed { "**Passed**" } else { "**Failed**" },
        report.warmup_seconds,
        report.duration_seconds - report.warmup_seconds
    ));
    for s in &report.services {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {}/min | {}{} |\n",
            cell(&s.service),
            if s.passed { "pass".to_string() } else { format!("**fail**: {}", cell(s.failure.as_deref().unwrap_or(""))) },
            cell(&s.verdict.verdict),
            leakscope_detect::mib(s.measured.growth_bytes),
            leakscope_detect::mib(s.measured.slope_bytes_per_minute),
            leakscope_detect::mib(s.measured.peak_bytes),
            s.measured.percent_of_limit.map(|p| format!(" ({p:.0} % of limit)")).unwrap_or_default()
        ));
    }
    for s in &report.services {
        out.push_str(&format!("\n**{}**: {}\n", cell(&s.service), cell(&s.verdict.reason)));
        if let Some(path) = path {
            out.push_str(&format!("\n![memory of {}]({})\n", cell(&s.service), chart_path(path, &s.service).file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    out
}

fn chart_path(markdown: &Path, service: &str) -> PathBuf {
    let stem = markdown.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "leakscope".into());
    markdown.with_file_name(format!("{stem}-{}.svg", image_service_name(service)))
}

/// The run's chart (the dashboard's renderer) beside the Markdown file.
fn write_chart(markdown: &Path, result: &ServiceResult, points: &[MemoryPoint], from_ms: i64, to_ms: i64) {
    let spec = leakscope_chart::ChartSpec {
        points,
        from_ms,
        to_ms,
        step_ms: 1000,
        width: 900,
        height: 320,
        tz_offset_minutes: 0,
        theme: leakscope_chart::Theme::Light,
        trend: leakscope_chart::trend_of(&result.verdict),
        events: &[],
    };
    match leakscope_chart::render_svg(&spec) {
        Ok(svg) => {
            let path = chart_path(markdown, &result.service);
            if let Err(e) = std::fs::write(&path, svg) {
                eprintln!("leakscope check: cannot write {}: {e}", path.display());
            }
        }
        Err(e) => eprintln!("leakscope check: no chart: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_come_from_the_image_and_xml_is_escaped() {
        assert_eq!(image_service_name("registry.example:5000/team/leak-service:1.2"), "leak-service");
        assert_eq!(image_service_name("leakscope-fixture/java:abc"), "java");
        assert_eq!(xml("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
