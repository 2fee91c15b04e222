//! Go heap profiles, against `go tool pprof` on the same file: the Go fixture
//! (`end2end/fixtures/go/leak.go`) is built and run by the host's Go, its
//! profile fetched from its own /debug/pprof/heap, and our histogram must
//! equal `go tool pprof -top` row by row (flat = shallow, cum = retained,
//! flat objects = instances).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use leakscope_heap::{analyze_bytes, HeapError, Options};

struct Leaker {
    child: Child,
    port: u16,
}

impl Drop for Leaker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("leakscope-pprof-{}-{name}", std::process::id()))
}

/// The Go fixture, built once for all the tests of this file (they run side by side).
fn leaker_binary() -> &'static Path {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../end2end/fixtures/go/leak.go");
        // In the target's scratch folder, not /tmp: one binary, replaced by the next run.
        let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("goleak");
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(&source)
            .env("CGO_ENABLED", "0")
            .status()
            .expect("Go is installed (./dev test installs Debian's golang-go)");
        assert!(built.success(), "go build of {} failed", source.display());
        binary
    })
}

fn start_leaker() -> Leaker {
    let mut child = Command::new(leaker_binary())
        .env("LEAK_PER_SECOND", "100")
        .env("PPROF_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    Leaker { child, port }
}

fn fetch(port: u16, path: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    answer.split_off(end + 4)
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

/// `go tool pprof -top` rows: function -> (flat, cum), in exact units.
fn pprof_top(file: &Path, sample_index: &str, diff_base: Option<&Path>) -> HashMap<String, (i64, i64)> {
    let mut command = Command::new("go");
    command.args(["tool", "pprof", "-top", "-nodefraction=0", "-nodecount=100000", &format!("-sample_index={sample_index}")]);
    if sample_index.ends_with("space") {
        command.arg("-unit=B");
    }
    if let Some(base) = diff_base {
        command.arg(format!("-diff_base={}", base.display()));
    }
    let output = command.arg(file).output().unwrap();
    assert!(output.status.success(), "go tool pprof: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let number = |v: &str| v.trim_end_matches('B').parse::<i64>().unwrap_or_else(|_| panic!("not a number in pprof's output: {v}"));
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6).then(|| (f[5].to_string(), (number(f[0]), number(f[3]))))
        })
        .collect()
}

#[test]
fn histogram_equals_go_tool_pprof_top() {
    let leaker = start_leaker();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let gz = fetch(leaker.port, "/debug/pprof/heap");
    let file = temp("heap.pb.gz");
    std::fs::write(&file, &gz).unwrap();
    let analysis = analyze_bytes(&gunzip(&gz), &Options::default()).unwrap();
    assert_eq!((analysis.summary.format.as_str(), analysis.summary.runtime.as_str()), ("pprof", "go"));
    let ours: HashMap<&str, _> = analysis.histogram.iter().map(|e| (e.class.as_str(), e)).collect();
    let space = pprof_top(&file, "inuse_space", None);
    let objects = pprof_top(&file, "inuse_objects", None);
    assert!(space.contains_key("main.rememberSession"), "{space:?}");
    for (function, (flat, cum)) in &space {
        let e = ours.get(function.as_str()).unwrap_or_else(|| panic!("{function} is in pprof's top but not in our histogram"));
        assert_eq!((e.shallow_bytes as i64, e.retained_bytes as i64), (*flat, *cum), "{function}");
        assert_eq!(e.instances as i64, objects[function].0, "{function}: in-use objects");
    }
    assert_eq!(analysis.histogram.iter().filter(|e| e.retained_bytes > 0 && e.class != "(all call paths)").count(), space.len());
    // In-use and allocated space and objects per function: each column is pprof's with that sample index.
    let rows: HashMap<&str, _> = analysis.profile_functions.iter().map(|f| (f.function.as_str(), f)).collect();
    for index in ["inuse_space", "inuse_objects", "alloc_space", "alloc_objects"] {
        let theirs = pprof_top(&file, index, None);
        for (function, (flat, cum)) in &theirs {
            let f = rows.get(function.as_str()).unwrap_or_else(|| panic!("{function} ({index}) is in pprof's top but not in our table"));
            let ours = match index {
                "inuse_space" => (f.inuse_space_flat, Some(f.inuse_space_cum)),
                "inuse_objects" => (f.inuse_objects_flat, None),
                "alloc_space" => (f.alloc_space_flat, Some(f.alloc_space_cum)),
                _ => (f.alloc_objects_flat, None),
            };
            assert_eq!(ours.0 as i64, *flat, "{function}: flat {index}");
            if let Some(cum_ours) = ours.1 {
                assert_eq!(cum_ours as i64, *cum, "{function}: cum {index}");
            }
        }
    }
    let leak = rows["main.rememberSession"];
    assert!(leak.alloc_space_flat >= leak.inuse_space_flat && leak.alloc_objects_flat >= leak.inuse_objects_flat, "{leak:?}");

    // The biggest holder is the leaking function, and the sites table names its line.
    let top = analysis.histogram.iter().filter(|e| e.class != "(all call paths)").max_by_key(|e| e.shallow_bytes).unwrap();
    assert_eq!(top.class, "main.rememberSession");
    assert!(analysis.allocation_sites[0].file.starts_with("main.rememberSession ("), "{:?}", analysis.allocation_sites[0]);
    std::fs::remove_file(file).ok();
}

#[test]
fn diff_of_two_profiles_equals_pprof_diff_base() {
    let leaker = start_leaker();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let first = fetch(leaker.port, "/debug/pprof/heap");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let second = fetch(leaker.port, "/debug/pprof/heap");
    let (a, b) = (temp("a.pb.gz"), temp("b.pb.gz"));
    std::fs::write(&a, &first).unwrap();
    std::fs::write(&b, &second).unwrap();
    let before = analyze_bytes(&gunzip(&first), &Options::default()).unwrap();
    let after = analyze_bytes(&gunzip(&second), &Options::default()).unwrap();
    let diff = leakscope_heap::diff::diff(&before, &after);
    let theirs = pprof_top(&b, "inuse_space", Some(&a));
    let grown = diff.classes.iter().find(|c| c.class == "main.rememberSession").unwrap();
    assert_eq!(grown.shallow_bytes_delta, theirs["main.rememberSession"].0);
    assert_eq!(grown.retained_bytes_delta, theirs["main.rememberSession"].1);
    assert!(grown.shallow_bytes_delta > 0);
    let site = diff.allocation_sites.first().unwrap();
    assert!(site.file.starts_with("main.rememberSession") && site.size_bytes_delta > 0, "{site:?}");
    std::fs::remove_file(a).ok();
    std::fs::remove_file(b).ok();
}

#[test]
fn cut_or_foreign_profiles_are_refused_with_a_reason() {
    let leaker = start_leaker();
    let profile = gunzip(&fetch(leaker.port, "/debug/pprof/heap"));
    for cut in [profile.len() / 2, profile.len() - 1, 5] {
        let err = analyze_bytes(&profile[..cut], &Options::default()).err().unwrap_or_else(|| panic!("a profile cut at {cut} was accepted"));
        assert!(matches!(err, HeapError::Truncated { .. } | HeapError::Corrupt { .. }), "{err}");
    }
    // A CPU profile is a pprof profile too, but not one of memory.
    let cpu = gunzip(&fetch(leaker.port, "/debug/pprof/profile?seconds=1"));
    let err = analyze_bytes(&cpu, &Options::default()).unwrap_err();
    assert!(err.to_string().contains("not a heap profile"), "{err}");
}
