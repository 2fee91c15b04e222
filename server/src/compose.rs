//! The part of a compose file `leakscope check --compose` needs, read with
//! serde_yaml: services' image, environment, command, memory limit
//! (`mem_limit` or `deploy.resources.limits.memory`), ports, and the networks
//! between them. Any other key is refused by name, so nothing is silently
//! ignored that would make the check differ from the real deployment.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<serde_yaml::Value>,
    #[serde(default)]
    name: Option<String>,
    services: BTreeMap<String, Service>,
    /// Declared networks: only their names are used (each becomes a bridge network).
    #[serde(default)]
    networks: BTreeMap<String, Option<serde_yaml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Service {
    image: Option<String>,
    /// Accepted only to say clearly that it is not supported.
    build: Option<serde_yaml::Value>,
    #[serde(default)]
    environment: Option<Environment>,
    command: Option<Words>,
    mem_limit: Option<Size>,
    deploy: Option<Deploy>,
    #[serde(default)]
    ports: Vec<Size>,
    #[serde(default)]
    networks: Option<ServiceNetworks>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Environment {
    Map(BTreeMap<String, Option<Size>>),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Words {
    Line(String),
    Argv(Vec<String>),
}

/// A scalar written as a number or a string (`512m`, `8080:80`, `3`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Number(u64),
    Text(String),
}

impl Size {
    fn text(&self) -> String {
        match self {
            Size::Number(n) => n.to_string(),
            Size::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deploy {
    resources: Option<Resources>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resources {
    limits: Option<Limits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    memory: Option<Size>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ServiceNetworks {
    List(Vec<String>),
    Map(BTreeMap<String, Option<serde_yaml::Value>>),
}

/// One service, ready to be created.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    pub env: Vec<String>,
    pub command: Option<Vec<String>>,
    pub memory_bytes: Option<f64>,
    /// `container port/tcp` → host port.
    pub ports: HashMap<String, String>,
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub name: String,
    pub services: Vec<ServiceSpec>,
    pub networks: Vec<String>,
}

const DEFAULT_NETWORK: &str = "default";

/// Reads a compose file's text; `project` is the fallback name (the file's folder).
pub fn parse(text: &str, project: &str) -> Result<Project, String> {
    let file: File = serde_yaml::from_str(text).map_err(|e| format!("compose file: {e} (leakscope check reads image, environment, command, mem_limit, deploy.resources.limits.memory, ports and networks)"))?;
    let project = file.name.clone().unwrap_or_else(|| project.to_string());
    let mut networks: Vec<String> = file.networks.keys().cloned().collect();
    let mut services = Vec::new();
    for (name, service) in file.services {
        if service.build.is_some() {
            return Err(format!("compose file: service {name}: `build` is not supported: build the image before the check and name it with `image:`"));
        }
        let image = service.image.ok_or_else(|| format!("compose file: service {name} has no `image`"))?;
        let env = match service.environment {
            None => Vec::new(),
            Some(Environment::List(list)) => list,
            Some(Environment::Map(map)) => map.into_iter().map(|(k, v)| format!("{k}={}", v.map(|v| v.text()).unwrap_or_default())).collect(),
        };
        let command = match service.command {
            None => None,
            Some(Words::Argv(argv)) => Some(argv),
            Some(Words::Line(line)) => Some(shlex::split(&line).ok_or_else(|| format!("compose file: service {name}: cannot split its command into words"))?),
        };
        let limit = service.deploy.and_then(|d| d.resources).and_then(|r| r.limits).and_then(|l| l.memory).or(service.mem_limit);
        let memory_bytes = limit.map(|m| leakscope_detect::budget::parse_bytes(&m.text())).transpose().map_err(|e| format!("compose file: service {name}: memory limit {e}"))?;
        let mut ports = HashMap::new();
        for port in &service.ports {
            let text = port.text();
            let (host, container) = match text.rsplit_once(':') {
                Some((host, container)) => (host.rsplit(':').next().unwrap_or(host).to_string(), container.to_string()),
                None => (String::new(), text.clone()),
            };
            let container = if container.contains('/') { container } else { format!("{container}/tcp") };
            ports.insert(container, host);
        }
        let service_networks = match service.networks {
            None => vec![DEFAULT_NETWORK.to_string()],
            Some(ServiceNetworks::List(list)) => list,
            Some(ServiceNetworks::Map(map)) => map.into_keys().collect(),
        };
        for network in &service_networks {
            if network != DEFAULT_NETWORK && !networks.contains(network) {
                return Err(format!("compose file: service {name} uses network {network}, which the file does not declare under `networks`"));
            }
        }
        if service_networks.iter().any(|n| n == DEFAULT_NETWORK) && !networks.iter().any(|n| n == DEFAULT_NETWORK) {
            networks.push(DEFAULT_NETWORK.to_string());
        }
        services.push(ServiceSpec { name, image, env, command, memory_bytes, ports, networks: service_networks });
    }
    if services.is_empty() {
        return Err("compose file: no services".into());
    }
    Ok(Project { name: project, services, networks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_is_read_and_anything_else_is_named() {
        let project = parse(
            "services:\n  web:\n    image: shop/web:1\n    environment:\n      MODE: leak\n      RATE: 85\n    command: serve --port 8080\n    deploy:\n      resources:\n        limits:\n          memory: 512m\n    ports: [\"18080:8080\"]\n  db:\n    image: postgres:16\n    environment: [\"POSTGRES_PASSWORD=x\"]\n    mem_limit: 256m\n",
            "shop",
        )
        .unwrap();
        assert_eq!(project.name, "shop");
        assert_eq!(project.networks, ["default"]);
        let web = project.services.iter().find(|s| s.name == "web").unwrap();
        assert_eq!(web.env, ["MODE=leak", "RATE=85"]);
        assert_eq!(web.command.as_deref(), Some(&["serve".to_string(), "--port".into(), "8080".into()][..]));
        assert_eq!(web.memory_bytes, Some(512.0 * 1048576.0));
        assert_eq!(web.ports.get("8080/tcp").map(String::as_str), Some("18080"));
        let db = project.services.iter().find(|s| s.name == "db").unwrap();
        assert_eq!(db.memory_bytes, Some(256.0 * 1048576.0));

        let unknown = parse("services:\n  web:\n    image: a\n    volumes: [\"/data:/data\"]\n", "p").unwrap_err();
        assert!(unknown.contains("unknown field `volumes`"), "{unknown}");
        let build = parse("services:\n  web:\n    build: .\n", "p").unwrap_err();
        assert!(build.contains("`build` is not supported"), "{build}");
        let network = parse("services:\n  web:\n    image: a\n    networks: [back]\n", "p").unwrap_err();
        assert!(network.contains("network back"), "{network}");
        assert!(parse("services: {}\n", "p").is_err());
    }
}
