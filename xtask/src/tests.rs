//! `xtask test`: runs the release test binaries that `xtask build --tests` built.
//!
//! Why not plain `cargo test`: it runs one test binary after the other, and a few
//! of ours spend most of their time waiting on the wall clock (the detection test
//! lets real services leak for eight minutes, the CI gate's checks for four).
//! Those run beside the others; the
//! one that restarts dockerd runs alone at the end. The workspace has no doctests,
//! so running the binaries directly loses nothing.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Test targets that mostly wait: started first, run beside the rest.
const BESIDE_THE_REST: &[&str] = &["detection", "check", "check_evidence"];
/// Test targets that disturb every other test (restarting the engine): run alone, last.
const ALONE_AT_THE_END: &[&str] = &["engine_restart"];
/// Test targets that store dumps: run a second time with every dump in an S3
/// bucket (`LEAKSCOPE_TEST_DUMP_STORE=s3`; the harness starts s3s-fs), so both
/// dump stores pass the same tests.
const AGAIN_WITH_DUMPS_IN_A_BUCKET: &[&str] = &["dumps", "capture", "node_capture", "python_capture", "native_capture"];

/// Test targets about the memory history, accounts, sessions, tokens, the audit log, agents,
/// webhooks, reports and dumps' records: run a second time with that data in PostgreSQL
/// (`LEAKSCOPE_TEST_DATABASE=postgres`; each server gets a database of its own on the cluster `./dev test` starts).
const AGAIN_WITH_ACCESS_IN_POSTGRES: &[&str] = &["engine", "access", "hub", "alerts", "browser", "dumps", "node_capture"];

#[derive(Clone)]
struct TestBinary {
    name: String,
    executable: PathBuf,
    package_dir: PathBuf,
}

pub fn run(passthrough: &[String]) -> Result<()> {
    let binaries = list_test_binaries()?;
    let started = Instant::now();
    let log_dir = super::workspace_root().join("target/test-logs");
    std::fs::create_dir_all(&log_dir)?;

    let mut beside = Vec::new();
    for binary in binaries.iter().filter(|b| BESIDE_THE_REST.contains(&b.name.as_str())) {
        let log = log_dir.join(format!("{}.log", binary.name));
        eprintln!("xtask: {} runs beside the others (output in {})", binary.name, log.display());
        let file = std::fs::File::create(&log)?;
        let child = command(binary, passthrough).stdout(file.try_clone()?).stderr(file).spawn()?;
        beside.push((binary, child, log, Instant::now()));
    }

    let mut outcome = Outcome::default();
    let in_order = binaries
        .iter()
        .filter(|b| !BESIDE_THE_REST.contains(&b.name.as_str()) && !ALONE_AT_THE_END.contains(&b.name.as_str()));
    for binary in in_order {
        let child = command(binary, passthrough).stdout(Stdio::piped()).spawn()?;
        outcome.follow(binary, child)?;
    }
    for binary in binaries.iter().filter(|b| AGAIN_WITH_DUMPS_IN_A_BUCKET.contains(&b.name.as_str())) {
        let again = TestBinary { name: format!("{} (dumps in a bucket)", binary.name), ..binary.clone() };
        let child = command(binary, passthrough).env("LEAKSCOPE_TEST_DUMP_STORE", "s3").stdout(Stdio::piped()).spawn()?;
        outcome.follow(&again, child)?;
    }
    for binary in binaries.iter().filter(|b| AGAIN_WITH_ACCESS_IN_POSTGRES.contains(&b.name.as_str())) {
        let again = TestBinary { name: format!("{} (access data in PostgreSQL)", binary.name), ..binary.clone() };
        let child = command(binary, passthrough).env("LEAKSCOPE_TEST_DATABASE", "postgres").stdout(Stdio::piped()).spawn()?;
        outcome.follow(&again, child)?;
    }
    for (binary, mut child, log, spawned) in beside {
        let status = child.wait()?;
        outcome.took.push((format!("{} (beside the others; until waited for)", binary.name), spawned.elapsed().as_secs_f64()));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        print!("\n     Ran {} (beside the others)\n{text}", binary.name);
        outcome.record(binary, status.success(), &text);
    }
    for binary in binaries.iter().filter(|b| ALONE_AT_THE_END.contains(&b.name.as_str())) {
        let child = command(binary, passthrough).stdout(Stdio::piped()).spawn()?;
        outcome.follow(binary, child)?;
    }

    // The slowest binaries, where the suite's time goes (CI keeps only the end of the log).
    outcome.took.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("\nxtask: the slowest test binaries");
    for (name, seconds) in outcome.took.iter().take(15) {
        println!("{seconds:8.0} s  {name}");
    }
    println!(
        "\nxtask: {} passed, {} failed in {} test binaries, {:.0} s",
        outcome.passed,
        outcome.failed,
        binaries.len(),
        started.elapsed().as_secs_f64()
    );
    if !outcome.failed_binaries.is_empty() {
        bail!("failing test binaries: {}", outcome.failed_binaries.join(", "));
    }
    Ok(())
}

fn command(binary: &TestBinary, passthrough: &[String]) -> Command {
    let mut command = Command::new(&binary.executable);
    // As cargo runs them: from the package's directory, with CARGO set.
    command.args(passthrough).current_dir(&binary.package_dir);
    command.env("CARGO", std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
}

#[derive(Default)]
struct Outcome {
    passed: u64,
    failed: u64,
    failed_binaries: Vec<String>,
    /// Wall-clock seconds per binary run.
    took: Vec<(String, f64)>,
}

impl Outcome {
    /// Streams a binary's output through (so progress shows) while counting.
    fn follow(&mut self, binary: &TestBinary, mut child: Child) -> Result<()> {
        println!("\n     Running {} ({})", binary.name, binary.executable.display());
        let started = Instant::now();
        let stdout = child.stdout.take().context("test binary stdout")?;
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            text.push_str(&line);
            text.push('\n');
        }
        let status = child.wait()?;
        self.took.push((binary.name.clone(), started.elapsed().as_secs_f64()));
        self.record(binary, status.success(), &text);
        Ok(())
    }

    fn record(&mut self, binary: &TestBinary, success: bool, text: &str) {
        for line in text.lines().filter(|l| l.starts_with("test result:")) {
            self.passed += count_before(line, " passed");
            self.failed += count_before(line, " failed");
        }
        if !success {
            self.failed_binaries.push(binary.name.clone());
        }
    }
}

/// `test result: ok. 4 passed; 0 failed; …` → the number before `label`.
fn count_before(line: &str, label: &str) -> u64 {
    line.split(';')
        .find_map(|part| part.trim().strip_suffix(label.trim_start()).map(str::trim))
        .and_then(|n| n.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Every test executable of the workspace, from cargo's own build messages
/// (a no-op build after `xtask build --tests`).
fn list_test_binaries() -> Result<Vec<TestBinary>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = super::test_build_args(true);
    args.push("--message-format=json-render-diagnostics");
    let output = Command::new(cargo)
        .args(&args)
        .current_dir(super::workspace_root())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
            continue;
        }
        // As `cargo test`: benchmarks are built (so they cannot rot) but not run.
        let kinds = message["target"]["kind"].as_array().cloned().unwrap_or_default();
        if kinds.iter().any(|k| k == "bench") {
            continue;
        }
        let (Some(executable), Some(name), Some(manifest)) = (
            message["executable"].as_str(),
            message["target"]["name"].as_str(),
            message["manifest_path"].as_str(),
        ) else {
            continue;
        };
        let package_dir = PathBuf::from(manifest).parent().map(PathBuf::from).unwrap_or_default();
        binaries.push(TestBinary { name: name.to_string(), executable: executable.into(), package_dir });
    }
    if binaries.is_empty() {
        bail!("cargo listed no test binaries");
    }
    Ok(binaries)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_from_the_result_line() {
        let line = "test result: ok. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.05s";
        assert_eq!(super::count_before(line, " passed"), 4);
        assert_eq!(super::count_before(line, " failed"), 1);
    }
}
