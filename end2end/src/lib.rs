//! Helpers for whole-system tests: the docker CLI, test images built locally
//! (no registry is reachable), and a `leakscope serve` child process.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::OnceLock;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub mod load;

/// Runs the docker CLI; panics with its stderr on failure (tests only).
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI runs");
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes every container carrying `label` (`key=value`), running or not.
pub fn remove_labelled(label: &str) {
    let ids = docker(&["ps", "-aq", "--filter", &format!("label={label}")]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids);
        docker(&args);
    }
}

/// A unique, recognisable name for a test container.
pub fn unique_name(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("lstest-{what}-{}-{nanos:x}", std::process::id())
}

/// `FROM scratch` + Debian's static busybox, tagged by a hash of its inputs so
/// the second run finds it built.
pub fn busybox_image() -> String {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("busybox-static is installed (./dev test installs it)");
    let dockerfile = "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n";
    let binary = std::fs::read(busybox).expect("read busybox");
    let mut hash = Sha256::new();
    hash.update(dockerfile.as_bytes());
    hash.update(&binary);
    let tag = format!("leakscope-test/busybox:{}", &format!("{:x}", hash.finalize())[..16]);
    if Command::new("docker").args(["image", "inspect", &tag]).output().map(|o| o.status.success()).unwrap_or(false) {
        return tag;
    }
    let dir = std::env::temp_dir().join(format!("leakscope-busybox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(dir.join("busybox"), &binary).unwrap();
    let mut perms = std::fs::metadata(dir.join("busybox")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(dir.join("busybox"), perms).unwrap();
    docker(&["build", "-q", "-t", &tag, dir.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    tag
}

/// The sample-service images (`java`, `java-jre`, `node`, `python`, `native` -> tag),
/// built by `end2end/fixtures/images.sh` when missing; once per test process.
pub fn fixture_images() -> &'static HashMap<String, String> {
    static IMAGES: OnceLock<HashMap<String, String>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images.sh");
        let output = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output().expect("run images.sh");
        assert!(output.status.success(), "{} failed", script.display());
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

pub fn fixture_image(name: &str) -> String {
    fixture_images().get(name).unwrap_or_else(|| panic!("images.sh built no '{name}' image")).clone()
}

/// A tmpfs of a given size (`40m`), for a server's data directory with little
/// room; unmounted and removed when dropped. The test suite runs as root.
pub struct SmallDisk {
    pub path: PathBuf,
}

impl SmallDisk {
    pub fn mount(size: &str) -> SmallDisk {
        let path = std::env::temp_dir().join(unique_name("smalldisk"));
        std::fs::create_dir_all(&path).unwrap();
        let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&path).status();
        assert!(mounted.map(|s| s.success()).unwrap_or(false), "cannot mount a small tmpfs (the test suite runs as root)");
        SmallDisk { path }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The host's gdb attached to a process (found by its host pid) and holding
/// it, as a debugger someone left open would; detached when dropped.
pub struct DebuggerAttached(Child);

impl DebuggerAttached {
    pub fn to(host_pid: &str) -> DebuggerAttached {
        let gdb = Command::new("gdb")
            .args(["-q", "-nx", "-batch", "-p", host_pid, "-ex", "shell sleep 60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gdb runs (the test command installs it)");
        let attached = DebuggerAttached(gdb);
        let started = Instant::now();
        let traced = || std::fs::read_to_string(format!("/proc/{host_pid}/status")).unwrap_or_default().lines().any(|l| l.starts_with("TracerPid:") && l.trim() != "TracerPid:\t0");
        while !traced() {
            assert!(started.elapsed() < Duration::from_secs(20), "gdb did not attach");
            std::thread::sleep(Duration::from_millis(100));
        }
        attached
    }
}

impl Drop for DebuggerAttached {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A container removed when the test ends, pass or fail.
pub struct TestContainer {
    pub name: String,
    pub id: String,
}

impl TestContainer {
    /// `docker run -d --name <name> <options> <busybox image> <command>`.
    pub fn run(what: &str, options: &[&str], command: &[&str]) -> TestContainer {
        Self::run_image(what, &busybox_image(), options, command)
    }

    /// `docker run -d --name <name> <options> <image> <command>`.
    pub fn run_image(what: &str, image: &str, options: &[&str], command: &[&str]) -> TestContainer {
        let name = unique_name(what);
        let mut args = vec!["run", "-d", "--name", name.as_str(), "--label", "io.leakscope.test=true"];
        args.extend_from_slice(options);
        args.push(image);
        args.extend_from_slice(command);
        let id = docker(&args);
        TestContainer { name, id }
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.name]).output();
    }
}

/// The binary under test: `LEAKSCOPE_BIN`, else the workspace's release then debug build.
pub fn leakscope_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LEAKSCOPE_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("target");
    ["release", "debug"]
        .into_iter()
        .map(|p| root.join(p).join("leakscope"))
        .find(|p| p.is_file())
        .expect("build leakscope first (./dev test does)")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The account every test server has (browser tests sign in with it).
pub const TEST_USER: &str = "tester";
pub const TEST_PASSWORD: &str = "tester-password-1";

/// A new API token of `role` in a data dir, through the CLI (`leakscope token create`).
/// The suite's pass with the access data in PostgreSQL (`LEAKSCOPE_TEST_DATABASE=postgres`):
/// each data folder gets a database of its own on the test server, named in
/// its `database-url` file; `None` in the default pass (the folder's SQLite file).
/// A test that moved a folder's data into PostgreSQL names it in that file too.
pub fn database_for(data_dir: &Path) -> Option<String> {
    let file = data_dir.join("database-url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return Some(url);
    }
    if std::env::var("LEAKSCOPE_TEST_DATABASE").as_deref() != Ok("postgres") {
        return None;
    }
    std::fs::create_dir_all(data_dir).unwrap();
    let url = leakscope_db::test_postgres_url();
    std::fs::write(&file, &url).unwrap();
    Some(url)
}

/// `--database URL` for the CLI and `serve` in the PostgreSQL pass, nothing otherwise.
pub fn database_args(data_dir: &Path) -> Vec<String> {
    database_for(data_dir).map(|url| vec!["--database".to_string(), url]).unwrap_or_default()
}

pub fn create_token(data_dir: &Path, role: &str, name: &str) -> String {
    let out = Command::new(leakscope_bin())
        .args(["token", "create", "--role", role, "--name", name, "--data-dir", data_dir.to_str().unwrap()])
        .args(database_args(data_dir))
        .output()
        .unwrap();
    assert!(out.status.success(), "token create: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string()
}

/// A new account in a data dir, through the CLI (`leakscope user create`).
pub fn create_user(data_dir: &Path, name: &str, password: &str, role: &str) {
    let out = Command::new(leakscope_bin())
        .args(["user", "create", "--name", name, "--role", role, "--data-dir", data_dir.to_str().unwrap()])
        .args(database_args(data_dir))
        .env("LEAKSCOPE_PASSWORD", password)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() || said.contains("exists already"), "user create: {said}");
}

/// A running `leakscope serve` on a free port with its own data dir, an
/// admin API token (sent by every helper below) and the test account.
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub token: String,
    /// What it was started with, for a restart.
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Server {
    pub fn start(extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let data_dir = std::env::temp_dir().join(format!("leakscope-test-{}", unique_name("data")));
        Self::start_with_data(data_dir, extra_args, env)
    }

    pub fn start_with_data(data_dir: PathBuf, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        std::fs::create_dir_all(&data_dir).unwrap();
        create_user(&data_dir, TEST_USER, TEST_PASSWORD, "admin");
        Self::spawn(data_dir, extra_args, env, format!("127.0.0.1:{}", free_port()))
    }

    /// Like `start`, listening on `ip` (an address of this machine other than loopback,
    /// e.g. a veth's, so that an agent in another network namespace reaches it).
    pub fn start_on(ip: &str, extra_args: &[&str]) -> Server {
        let data_dir = std::env::temp_dir().join(format!("leakscope-test-{}", unique_name("data")));
        std::fs::create_dir_all(&data_dir).unwrap();
        create_user(&data_dir, TEST_USER, TEST_PASSWORD, "admin");
        Self::spawn(data_dir, extra_args, &[], format!("{ip}:{}", free_port()))
    }

    /// A server on a new data dir without any account: it prints the setup link.
    pub fn start_without_accounts(extra_args: &[&str]) -> Server {
        let data_dir = std::env::temp_dir().join(format!("leakscope-test-{}", unique_name("data")));
        std::fs::create_dir_all(&data_dir).unwrap();
        Self::spawn(data_dir, extra_args, &[], format!("127.0.0.1:{}", free_port()))
    }

    fn spawn(data_dir: PathBuf, extra_args: &[&str], env: &[(&str, &str)], bind: String) -> Server {
        let token = create_token(&data_dir, "admin", "tests");
        let log = data_dir.join("serve.log");
        let mut cmd = Command::new(leakscope_bin());
        cmd.args(["serve", "--bind", &bind, "--data-dir", data_dir.to_str().unwrap()]);
        // The suite's pass with the access data in PostgreSQL.
        if !extra_args.contains(&"--database") {
            cmd.args(database_args(&data_dir));
        }
        // The suite's second pass over the dump tests keeps every dump in a bucket.
        if std::env::var("LEAKSCOPE_TEST_DUMP_STORE").as_deref() == Ok("s3") && !extra_args.contains(&"--dump-store") {
            let s3 = S3Server::shared();
            cmd.args(["--dump-store", &s3.url_for(data_dir.file_name().unwrap().to_str().unwrap())]);
            cmd.envs(s3.credentials());
        }
        // Tests sample every second unless they say otherwise.
        if !extra_args.contains(&"--interval") {
            cmd.args(["--interval", "1s"]);
        }
        // Both streams append: a separate offset for stdout would write over the
        // error line the server prints on stderr as it exits.
        let appending = || std::fs::File::options().create(true).append(true).open(&log).unwrap();
        cmd.args(extra_args).stdout(Stdio::from(appending())).stderr(Stdio::from(appending()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn leakscope serve");
        let server = Server {
            child,
            base: format!("http://{bind}"),
            data_dir,
            log,
            token,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        // A wrapped binary (LEAKSCOPE_BIN=a heaptrack script) starts slowly.
        let patience = Duration::from_secs(if std::env::var_os("LEAKSCOPE_BIN").is_some() { 300 } else { 30 });
        // Answering, and its first attempt to reach the engine decided (connected, or
        // failed with a reason): on a loaded machine the connection can take a moment,
        // and a test's first API call should not meet "not connected yet".
        server.wait_until(patience, "the server answers and has tried the engine", || {
            server.assert_running();
            let status = server.request("GET", "/api/v1/engine").call().ok().and_then(|r| r.into_json::<serde_json::Value>().ok());
            // Until the first attempt ends the engine says "connecting": not a decision yet.
            status.is_some_and(|s| s["connected"] == true || s["error"].as_str().is_some_and(|e| e != "connecting"))
        });
        server
    }

    /// Where this server's stored dumps are as files: its dump folder, or
    /// the test S3 server's folder for its prefix when dumps go to a bucket.
    pub fn dump_folder(&self) -> PathBuf {
        if std::env::var("LEAKSCOPE_TEST_DUMP_STORE").as_deref() == Ok("s3") && !self.extra_args.iter().any(|a| a == "--dump-store") {
            S3Server::shared().folder(self.data_dir.file_name().unwrap().to_str().unwrap())
        } else {
            self.data_dir.join("dumps")
        }
    }

    /// A request with this server's admin token.
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        ureq::request(method, &self.url(path)).set("Authorization", &format!("Bearer {}", self.token))
    }

    /// POST bytes with the admin token; returns (status, body).
    pub fn post_bytes(&self, path: &str, body: &[u8]) -> (u16, String) {
        answer(self.request("POST", path).send_bytes(body), path)
    }

    /// POST a JSON body with the admin token; returns (status, body).
    pub fn post_json(&self, path: &str, body: &str) -> (u16, String) {
        answer(self.request("POST", path).set("Content-Type", "application/json").send_string(body), path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET returning (status, body) for any status.
    pub fn get(&self, path: &str) -> (u16, String) {
        answer(self.request("GET", path).call(), path)
    }

    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path);
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"));
        (status, json)
    }

    /// `POST /api/v1/containers/<container>/dumps`: (status, JSON answer or the text).
    pub fn start_capture(&self, container: &str, body: &str) -> (u16, serde_json::Value) {
        let (status, text) = self.post_bytes(&format!("/api/v1/containers/{container}/dumps"), body.as_bytes());
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// Starts (or joins) a capture and returns its job id.
    /// A dump's analysis, once ready (up to two minutes).
    pub fn wait_analysis(&self, dump_id: &str) -> serde_json::Value {
        self.wait_analysis_at(&format!("/api/v1/dumps/{dump_id}/analysis"))
    }

    /// `wait_analysis` on the analysis's URL as given (e.g. with `?host=` for another host's dump).
    pub fn wait_analysis_at(&self, url: &str) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let (status, analysis) = self.get_json(url);
            if status == 200 {
                return analysis;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "analysis not ready: {analysis}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn capture_job(&self, container: &str, body: &str) -> String {
        let (status, answer) = self.start_capture(container, body);
        assert_eq!(status, 202, "{answer}");
        answer["job_id"].as_str().unwrap().to_string()
    }

    /// Waits (up to two minutes) until a capture job ends; returns its last state.
    pub fn wait_job(&self, job: &str) -> serde_json::Value {
        self.wait_job_at(&format!("/api/v1/jobs/{job}"))
    }

    /// `wait_job` on the job's URL as given (e.g. with `?host=` for another host's job).
    pub fn wait_job_at(&self, url: &str) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let (status, state) = self.get_json(url);
            assert_eq!(status, 200, "{state}");
            if state["state"] != "running" {
                return state;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "job still running: {state}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The container as `/api/v1/containers` lists it, if listed.
    pub fn listed(&self, name: &str) -> Option<serde_json::Value> {
        let (status, list) = self.get_json("/api/v1/containers");
        if status != 200 {
            return None;
        }
        list.as_array()?.iter().find(|c| c["name"] == name).cloned()
    }

    pub fn wait_until(&self, timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("timed out waiting until {what}; server log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    /// Panics with the log when the server process has ended.
    pub fn assert_running(&self) {
        // From /proc, as `try_wait` needs the child mutably: an ended child stays a zombie until reaped.
        let status = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let state = status.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).unwrap_or("X");
        if matches!(state, "Z" | "X") {
            panic!("the server exited; its log:\n{}", self.log_text());
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A real S3 server (s3s-fs, from crates.io: `./dev test` installs it and
/// sets `LEAKSCOPE_S3S_FS`) on a private port, storing into a temporary
/// folder, with keys of its own; one bucket, `leakscope-tests`.
pub struct S3Server {
    /// `sh` holding s3s-fs: it ends s3s-fs when our end of its stdin closes,
    /// which is when this test process ends, however it ends.
    _keeper: Child,
    _stdin: std::process::ChildStdin,
    pub endpoint: String,
    pub root: PathBuf,
    access_key: String,
    secret_key: String,
}

pub const TEST_BUCKET: &str = "leakscope-tests";

impl S3Server {
    pub fn start() -> S3Server {
        let binary = std::env::var("LEAKSCOPE_S3S_FS").expect("LEAKSCOPE_S3S_FS names the s3s-fs binary (./dev test installs it)");
        let root = std::env::temp_dir().join(unique_name("s3"));
        std::fs::create_dir_all(root.join(TEST_BUCKET)).unwrap();
        let port = free_port();
        let (access_key, secret_key) = (unique_name("ak"), unique_name("sk"));
        let log = std::fs::File::create(root.with_extension("log")).unwrap();
        let mut keeper = Command::new("sh")
            .args(["-c", "\"$@\" & pid=$!; cat >/dev/null; kill $pid; wait $pid", "s3s-keeper", &binary, "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key, root.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start s3s-fs");
        let stdin = keeper.stdin.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}: {}", std::fs::read_to_string(root.with_extension("log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server { _keeper: keeper, _stdin: stdin, endpoint: format!("http://127.0.0.1:{port}"), root, access_key, secret_key }
    }

    /// One server for the whole test process.
    pub fn shared() -> &'static S3Server {
        static SHARED: OnceLock<S3Server> = OnceLock::new();
        SHARED.get_or_init(S3Server::start)
    }

    /// `--dump-store` for a prefix of the test bucket.
    pub fn url_for(&self, prefix: &str) -> String {
        format!("s3://{TEST_BUCKET}/{prefix}?endpoint={}", self.endpoint)
    }

    /// The variables a client of this server needs.
    pub fn credentials(&self) -> Vec<(String, String)> {
        vec![("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()), ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone())]
    }

    /// The folder where s3s-fs keeps the objects under `prefix`.
    pub fn folder(&self, prefix: &str) -> PathBuf {
        self.root.join(TEST_BUCKET).join(prefix)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.data_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Parses docker CLI sizes such as `41.7MiB`, `556KiB`, `1.2GiB`, `0B`.
pub fn parse_docker_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().ok()?;
    let factor = match unit {
        "B" => 1.0,
        "KiB" | "kB" | "KB" => 1024.0,
        "MiB" | "MB" => 1024.0 * 1024.0,
        "GiB" | "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((value * factor) as u64)
}

/// Working set as `docker stats --no-stream` shows it for one container.
pub fn docker_stats_working_set(name: &str) -> u64 {
    let usage = docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", name]);
    let first = usage.split('/').next().unwrap_or("");
    parse_docker_size(first).unwrap_or_else(|| panic!("cannot read docker stats output '{usage}'"))
}

/// A heap dump of the repo's `LeakMain` fixture from the host JDK: `sessions`
/// leaked sessions of `payload` bytes each. Returns the `.hprof` path.
pub fn java_heap_dump(sessions: u32, payload: u32) -> PathBuf {
    java_heap_dump_of(sessions, payload, false)
}

/// As `java_heap_dump`; with `noise`, the payloads are random bytes (a dump that does not compress).
pub fn java_heap_dump_of(sessions: u32, payload: u32, noise: bool) -> PathBuf {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(unique_name("java"));
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/heap/tests/java/LeakMain.java");
    assert!(Command::new("javac").arg("-d").arg(&dir).arg(&src).status().expect("javac is installed").success());
    let mut child = Command::new("java")
        .args(["-Xmx256m", "-cp"])
        .arg(&dir)
        .args(["LeakMain", &sessions.to_string(), &payload.to_string(), "10", "8"])
        .args(noise.then_some("noise"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let dump = dir.join("dump.hprof");
    let out = Command::new("jcmd")
        .args([&child.id().to_string(), "GC.heap_dump", dump.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Heap dump file created"));
    dump
}

/// A V8 heap snapshot written by the host's Node.js running the heap crate's
/// `shapes.js` fixture: `sessions` Session objects of `elements` numbers each
/// in `global.sessions`, `listeners` closures on `global.requestBus`.
pub fn node_heap_snapshot(sessions: u32, elements: u32, listeners: u32) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name("node"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/heap/tests/node/shapes.js");
    let out = dir.join("shapes.heapsnapshot");
    let status = Command::new("node")
        .arg(&script)
        .arg(&out)
        .args([sessions.to_string(), elements.to_string(), listeners.to_string()])
        .status()
        .expect("node is installed (./dev test installs nodejs)");
    assert!(status.success(), "node {} failed", script.display());
    out
}

/// (status, body) of an answer, whatever its status.
pub fn answer(result: Result<ureq::Response, ureq::Error>, what: &str) -> (u16, String) {
    match result {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{what}: {e}"),
    }
}

impl Server {
    /// Kills the server with SIGKILL (no chance to flush anything) and starts
    /// a new one on the same data directory.
    pub fn kill9_and_restart(self) -> Server {
        self.kill9_and_restart_after(|| {})
    }

    /// Stops the server and hands back its data directory (not removed).
    pub fn stop_keeping_data(mut self) -> PathBuf {
        let data = std::mem::take(&mut self.data_dir);
        let _ = self.child.kill();
        let _ = self.child.wait();
        data
    }

    /// Like `kill9_and_restart`, running `meanwhile` while no server is up.
    pub fn kill9_and_restart_after(mut self, meanwhile: impl FnOnce()) -> Server {
        let data = std::mem::take(&mut self.data_dir);
        // The same address: agents and bookmarks come back to it.
        let bind = self.base.trim_start_matches("http://").to_string();
        let _ = Command::new("kill").args(["-9", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let (args, env) = (std::mem::take(&mut self.extra_args), std::mem::take(&mut self.env));
        drop(self);
        meanwhile();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Server::spawn(data, &args, &env, bind)
    }
}

/// Writes `minutes` of minute samples (a slow leak with a sawtooth, 512 MiB
/// limit) ending now under a container the server's sampler already stored,
/// so charts, verdicts and reports have long history to work on.
pub fn seed_history(server: &Server, container_name: &str, minutes: i64) {
    use leakscope_engine::memory::MemoryReading;
    use leakscope_engine::store::{SampleRow, Store};
    let id = docker(&["inspect", "-f", "{{.Id}}", container_name]).trim().to_string();
    // The server's own database: its folder's SQLite file, or its PostgreSQL in that pass.
    let url = database_for(&server.data_dir).unwrap_or_else(|| server.data_dir.join("leakscope.db").display().to_string());
    let store = Store::open(&url).unwrap();
    let now = leakscope_engine::now_ms();
    let record = store.find_container(&id).unwrap().expect("the sampler stored the container").1;
    let key = store.upsert_container(&record, now).unwrap();
    let start = now - minutes * 60_000;
    for chunk in (0..minutes).collect::<Vec<_>>().chunks(1440) {
        let rows: Vec<SampleRow> = chunk
            .iter()
            .map(|m| {
                let ws = 100_000_000 + (*m as u64) * 20_000 + (*m as u64 % 7) * 3_000_000;
                SampleRow {
                    container_key: key,
                    time_ms: start + m * 60_000,
                    reading: MemoryReading { usage: ws + 1_000_000, working_set: ws, rss: ws, cache: 1_000_000 },
                    limit_bytes: Some(512 << 20),
                }
            })
            .collect();
        let tick = rows.last().unwrap().time_ms + 60_000;
        store.write_tick(&rows, tick).unwrap();
    }
}

/// Uploads a real heap dump of `LeakMain` per entry of `sessions` for a
/// container and waits for each analysis; returns the dump ids, oldest first.
pub fn upload_analysed_dumps(server: &Server, container_name: &str, sessions: &[u32]) -> Vec<String> {
    let mut dumps = Vec::new();
    for (i, n) in sessions.iter().enumerate() {
        let bytes = std::fs::read(java_heap_dump(*n, 200)).unwrap();
        let (status, body) = server.post_bytes(&format!("/api/v1/dumps?name=d{i}.hprof&container={container_name}"), &bytes);
        assert_eq!(status, 201, "{body}");
        let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
        server.wait_until(Duration::from_secs(120), "analysed", || server.get(&format!("/api/v1/dumps/{id}/analysis")).0 == 200);
        dumps.push(id);
    }
    dumps
}

/// An RFC 3339 UTC time `seconds_ago` before now.
pub fn rfc3339_ago(seconds_ago: i64) -> String {
    leakscope_model::rfc3339_utc(leakscope_engine::now_ms() - seconds_ago * 1000)
}

/// Creates a report of a container's last `window_seconds` with these dumps;
/// returns `(id, page url)`.
pub fn create_report(server: &Server, container_name: &str, window_seconds: i64, dumps: &[String]) -> (String, String) {
    let body = serde_json::json!({
        "container": container_name, "from": rfc3339_ago(window_seconds), "to": rfc3339_ago(0),
        "dumps": dumps, "title": "load", "notes": "Seen during the **incident**.",
    });
    let (status, answer) =
        answer(server.request("POST", "/api/v1/reports").set("Content-Type", "application/json").send_string(&body.to_string()), "create report");
    assert_eq!(status, 201, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    (v["id"].as_str().unwrap().to_string(), v["url"].as_str().unwrap().to_string())
}

/// A webhook receiver on 127.0.0.1: keeps every JSON body posted to it and
/// answers 200. Stops with the test.
pub struct WebhookReceiver {
    pub url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook/secret-part", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(json) = serde_json::from_slice(&body) {
                        kept.lock().unwrap().push(json);
                    }
                }
                let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        });
        WebhookReceiver { url, bodies }
    }

    /// Every body received so far, oldest first.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Bodies of our own JSON shape with this `event` about this container.
    pub fn events(&self, event: &str, container: &str) -> Vec<serde_json::Value> {
        self.received().into_iter().filter(|b| b["event"] == event && b["container"] == container).collect()
    }
}

impl Server {
    /// Adds a webhook of our JSON shape through the API; returns its id.
    pub fn add_webhook(&self, name: &str, url: &str) -> i64 {
        let body = serde_json::json!({ "name": name, "url": url, "kind": "json" }).to_string();
        let (status, answer) = self.post_json("/api/v1/webhooks", &body);
        assert_eq!(status, 201, "{answer}");
        serde_json::from_str::<serde_json::Value>(&answer).unwrap()["id"].as_i64().unwrap()
    }
}

/// A network namespace joined to this one by a veth pair: the hub listens on `host_ip`,
/// the agent inside reaches it over a real link that the test can cut (needs root).
pub struct Netns {
    pub name: String,
    pub host_if: String,
    pub host_ip: String,
    /// The address of the namespace's own end.
    pub peer_ip: String,
}

impl Netns {
    pub fn new() -> Netns {
        // Tests of one process run side by side: each pair gets its own subnet.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = (std::process::id() * 7 + made) % 200 + 20;
        let name = unique_name("lsns");
        let (host_if, peer) = (format!("lsh{n}"), format!("lsa{n}"));
        let host_ip = format!("10.213.{n}.1");
        let ip = |args: &str| {
            let out = Command::new("ip").args(args.split_whitespace()).output().unwrap();
            assert!(out.status.success(), "ip {args}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&format!("netns add {name}"));
        ip(&format!("link add {host_if} type veth peer name {peer}"));
        ip(&format!("link set {peer} netns {name}"));
        ip(&format!("addr add {host_ip}/30 dev {host_if}"));
        ip(&format!("link set {host_if} up"));
        let peer_ip = format!("10.213.{n}.2");
        ip(&format!("-n {name} addr add {peer_ip}/30 dev {peer}"));
        ip(&format!("-n {name} link set {peer} up"));
        ip(&format!("-n {name} link set lo up"));
        Netns { name, host_if, host_ip, peer_ip }
    }

    pub fn link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        let out = Command::new("ip").args(["link", "set", &self.host_if, state]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it ours.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
    }
}

impl Netns {
    /// Bytes (received, sent) by this machine's end of the pair so far.
    pub fn host_side_bytes(&self) -> (u64, u64) {
        let read = |what: &str| std::fs::read_to_string(format!("/sys/class/net/{}/statistics/{what}", self.host_if)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        (read("rx_bytes"), read("tx_bytes"))
    }
}

/// A tiny load balancer in front of several servers, as a team puts one in front
/// of its hubs: each new connection goes to the next server in turn, and to the
/// one after it when that one refuses (a dead server is skipped). Bytes are
/// copied both ways untouched. Clients should not keep connections alive, so that
/// their requests spread (ureq: an agent with no idle connections).
pub struct RoundRobin {
    pub base: String,
    /// Connections each backend took, in the order given.
    served: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
}

impl RoundRobin {
    /// `backends`: the servers' base URLs (`http://127.0.0.1:PORT`).
    pub fn start(backends: &[&str]) -> RoundRobin {
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let addresses: Vec<String> = backends.iter().map(|b| b.trim_start_matches("http://").trim_end_matches('/').to_string()).collect();
        let served = Arc::new(Mutex::new(vec![0u64; addresses.len()]));
        let counts = served.clone();
        std::thread::spawn(move || {
            let mut next = 0;
            for client in listener.incoming().flatten() {
                let picked = (0..addresses.len()).find_map(|i| {
                    let at = (next + i) % addresses.len();
                    std::net::TcpStream::connect(&addresses[at]).ok().map(|server| (at, server))
                });
                next = (next + 1) % addresses.len();
                let Some((at, server)) = picked else { continue }; // none answers: the client sees the connection close
                counts.lock().unwrap()[at] += 1;
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        RoundRobin { base, served }
    }

    pub fn served(&self) -> Vec<u64> {
        self.served.lock().unwrap().clone()
    }

    /// A client that opens a connection per request (so requests spread over the servers).
    pub fn agent() -> ureq::Agent {
        ureq::AgentBuilder::new().max_idle_connections(0).redirects(0).build()
    }
}
