//! `leakscope demo up|down`: a labelled set of leaky (and not leaky) sample
//! services so a first-time user sees Leakscope find a leak within minutes.
//!
//! The images are built from `end2end/fixtures` by its `images.sh` (offline,
//! hash-tagged, a no-op when they exist). Containers are created through the
//! Engine API with the label `io.leakscope.demo=true`; `down` removes exactly the
//! containers carrying that label and nothing else.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use leakscope_engine::bollard::models::{ContainerCreateBody, HostConfig};
use leakscope_engine::bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use leakscope_engine::bollard::Docker;

pub const DEMO_LABEL: &str = "io.leakscope.demo";
const MIB: i64 = 1 << 20;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    #[command(subcommand)]
    action: DemoAction,
    /// Docker engine address (defaults to DOCKER_HOST, then the local socket).
    #[arg(long, global = true, env = "LEAKSCOPE_DOCKER_HOST")]
    docker_host: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum DemoAction {
    /// Build the sample images when missing and start the demo containers (harmless to repeat).
    Up {
        /// The fixtures folder of a Leakscope source tree (holds images.sh).
        #[arg(long, env = "LEAKSCOPE_FIXTURES", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../end2end/fixtures"))]
        fixtures: PathBuf,
        /// Leak rate of the leaking services, KiB/s (the default reaches the limit in about 20 minutes).
        #[arg(long, default_value_t = 170)]
        leak_kib_per_sec: u32,
    },
    /// Remove the demo containers (only those labelled io.leakscope.demo=true).
    Down,
}

/// One demo container: name, image (a key of images.sh's output), limit, environment.
struct DemoService {
    name: &'static str,
    image: &'static str,
    limit_mib: i64,
    env: &'static [(&'static str, &'static str)],
    leaks: bool,
}

const SERVICES: &[DemoService] = &[
    DemoService { name: "java-leak", image: "java", limit_mib: 256, env: &[("MODE", "leak")], leaks: true },
    DemoService { name: "java-steady", image: "java", limit_mib: 256, env: &[("MODE", "steady"), ("GARBAGE_MIB_PER_SEC", "20")], leaks: false },
    DemoService { name: "java-warmup", image: "java", limit_mib: 256, env: &[("MODE", "warmup"), ("CACHE_MIB", "96")], leaks: false },
    DemoService { name: "node-leak", image: "node", limit_mib: 192, env: &[], leaks: true },
    DemoService { name: "python-leak", image: "python", limit_mib: 192, env: &[], leaks: true },
    DemoService { name: "native-leak", image: "native", limit_mib: 192, env: &[], leaks: true },
];

pub fn container_name(service: &str) -> String {
    format!("leakscope-demo-{service}")
}

pub async fn run(args: DemoArgs) -> Result<(), String> {
    let address = leakscope_engine::docker::resolve_address(args.docker_host.as_deref());
    let docker = leakscope_engine::docker::connect(&address).await?.docker;
    match args.action {
        DemoAction::Up { fixtures, leak_kib_per_sec } => up(&docker, &fixtures, leak_kib_per_sec).await,
        DemoAction::Down => down(&docker).await,
    }
}

async fn up(docker: &Docker, fixtures: &std::path::Path, leak_kib_per_sec: u32) -> Result<(), String> {
    let images = build_images(fixtures).await?;
    for service in SERVICES {
        let image = images
            .get(service.image)
            .ok_or_else(|| format!("images.sh did not report an image for '{}'", service.image))?;
        let name = container_name(service.name);
        match docker.inspect_container(&name, None).await {
            Ok(existing) => {
                let labels = existing.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
                if labels.get(DEMO_LABEL).map(String::as_str) != Some("true") {
                    return Err(format!("a container named {name} exists and is not a demo container; rename or remove it"));
                }
                let same_image = existing.config.as_ref().and_then(|c| c.image.as_deref()) == Some(image.as_str());
                let running = existing.state.as_ref().and_then(|s| s.running).unwrap_or(false);
                if same_image && running {
                    println!("{name}: already running");
                    continue;
                }
                remove(docker, &name).await?;
            }
            Err(leakscope_engine::bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => return Err(format!("inspect {name}: {e}")),
        }
        create_and_start(docker, service, &name, image, leak_kib_per_sec).await?;
        println!("{name}: started ({image}, limit {} MiB)", service.limit_mib);
    }
    let minutes = 200.0 * 1024.0 / leak_kib_per_sec.max(1) as f64 / 60.0;
    println!();
    println!("The demo is up. Open the dashboard (./dev run, http://127.0.0.1:3000):");
    for service in SERVICES {
        let what = if service.leaks { "leaks" } else { "does not leak" };
        println!("  /containers/{}  {what}", container_name(service.name));
    }
    println!("Leakers grow by {leak_kib_per_sec} KiB/s and reach their limits in about {minutes:.0} minutes.");
    println!("`leakscope demo down` removes these containers and nothing else.");
    Ok(())
}

async fn create_and_start(
    docker: &Docker,
    service: &DemoService,
    name: &str,
    image: &str,
    leak_kib_per_sec: u32,
) -> Result<(), String> {
    let mut env = vec![format!("LEAK_KIB_PER_SEC={leak_kib_per_sec}")];
    env.extend(service.env.iter().map(|(k, v)| format!("{k}={v}")));
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        env: Some(env),
        labels: Some(HashMap::from([
            (DEMO_LABEL.to_string(), "true".to_string()),
            ("io.leakscope.demo.service".to_string(), service.name.to_string()),
        ])),
        host_config: Some(HostConfig {
            memory: Some(service.limit_mib * MIB),
            // No swap, so the limit is where the container is OOM-killed.
            memory_swap: Some(service.limit_mib * MIB),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    docker.create_container(Some(options), body).await.map_err(|e| format!("create {name}: {e}"))?;
    docker.start_container(name, None).await.map_err(|e| format!("start {name}: {e}"))
}

async fn remove(docker: &Docker, name: &str) -> Result<(), String> {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    docker.remove_container(name, Some(options)).await.map_err(|e| format!("remove {name}: {e}"))
}

async fn down(docker: &Docker) -> Result<(), String> {
    let filters = HashMap::from([("label", vec![format!("{DEMO_LABEL}=true")])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let containers = docker.list_containers(Some(options)).await.map_err(|e| format!("list containers: {e}"))?;
    for container in &containers {
        let Some(id) = container.id.as_deref() else { continue };
        let name = container.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/')).unwrap_or(id);
        remove(docker, id).await?;
        println!("{name}: removed");
    }
    if containers.is_empty() {
        println!("no demo containers were running");
    }
    Ok(())
}

/// Runs `images.sh` (argv, no shell string) and reads its `name=tag` lines.
async fn build_images(fixtures: &std::path::Path) -> Result<HashMap<String, String>, String> {
    let script = fixtures.join("images.sh");
    if !script.is_file() {
        return Err(format!(
            "{} not found: the demo images are built from a Leakscope source tree; pass --fixtures <repo>/end2end/fixtures",
            script.display()
        ));
    }
    eprintln!("building the demo images when missing (the first time takes about 4 minutes)");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({}); see the messages above", script.display(), output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}
