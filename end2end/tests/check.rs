//! `leakscope check`, the CI gate, on real services: exit codes, JUnit,
//! budgets, bad input, and that it removes what it started. The slow runs go
//! concurrently in one test (each is minutes of waiting).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use end2end::{docker, fixture_image, leakscope_bin, unique_name};

fn scratch(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name(what));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check(args: &[&str]) -> Child {
    Command::new(leakscope_bin()).arg("check").args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("leakscope check starts")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Containers the checks of these services left behind (they must leave none).
fn leftovers(services: &[&str]) -> String {
    let all = docker(&["ps", "-a", "--filter", "label=io.leakscope.check", "--format", "{{.Names}}"]);
    all.lines().filter(|name| services.iter().any(|s| name.starts_with(&format!("leakscope-check-{s}-")))).collect::<Vec<_>>().join(" ")
}

#[test]
fn leaks_fail_the_check_and_steady_or_warmed_up_services_pass() {
    let java = fixture_image("java");
    let dir = scratch("check");
    let file = |name: &str| dir.join(name).to_string_lossy().to_string();
    let (leak_junit, leak_json, leak_md) = (file("leak.xml"), file("leak.json"), file("leak.md"));
    let started = Instant::now();
    // 5 MiB/min: the README's time-to-verdict figure is this run's length. The
    // JVM's resident memory grows in steps of about a minute (heap expansions):
    // seven judged minutes see seven of them.
    let leak = check(&[
        "--image", &java, "--env", "MODE=leak", "--env", "LEAK_KIB_PER_SEC=85", "--memory", "512MiB", "--name", "orders",
        "--warmup", "1m", "--duration", "8m", "--junit", &leak_junit, "--json", &leak_json, "--markdown", &leak_md,
    ]);
    // The load learns where the service is: {target} in its argv, LEAKSCOPE_TARGET in its environment.
    let target_file = file("target.txt");
    let load = format!("sh -c 'echo \"$LEAKSCOPE_TARGET\" {{target}} > {target_file}'");
    let steady = check(&[
        "--image", &java, "--name", "steady", "--env", "MODE=steady", "--env", "GARBAGE_MIB_PER_SEC=20", "--memory", "256MiB",
        "--warmup", "1m", "--duration", "4m", "--junit", &file("steady.xml"), "--load", &load,
    ]);
    // A 48 MiB cache filled in its first minute: a pass once the warm-up is skipped...
    let warm = ["--image", java.as_str(), "--env", "MODE=warmup", "--env", "CACHE_MIB=48", "--env", "LEAK_KIB_PER_SEC=1024", "--memory", "256MiB", "--max-growth", "16MiB"];
    let warmed = check(&[&warm[..], &["--name", "warmed", "--warmup", "90s", "--duration", "4m"]].concat());
    // ...and a budget failure when it is not.
    let unskipped = check(&[&warm[..], &["--name", "unskipped", "--warmup", "0s", "--duration", "4m", "--json", &file("unskipped.json")]].concat());

    let leak = leak.wait_with_output().unwrap();
    let took = started.elapsed();
    println!("check of a 5 MiB/min leak decided in {:.0} s", took.as_secs_f64());
    assert_eq!(leak.status.code(), Some(1), "{}", text(&leak));
    assert!(text(&leak).contains("FAIL leak:"), "{}", text(&leak));
    assert!(took < Duration::from_secs(10 * 60));
    let junit = std::fs::read_to_string(&leak_junit).unwrap();
    assert!(junit.contains("<testcase classname=\"leakscope.memory\" name=\"orders\"") && junit.contains("<failure message=\"leak: floor grew"), "{junit}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&leak_json).unwrap()).unwrap();
    assert_eq!((json["passed"].clone(), json["exit_code"].clone()), (false.into(), 1.into()), "{json}");
    let slope = json["services"][0]["measured"]["slope_bytes_per_minute"].as_f64().unwrap() / 1048576.0;
    assert!((3.5..6.5).contains(&slope), "slope {slope:.1} MiB/min, configured 5");
    assert_eq!(json["services"][0]["verdict"]["verdict"], "leak", "the API's verdict fields: {json}");
    let markdown = std::fs::read_to_string(&leak_md).unwrap();
    assert!(markdown.contains("**Failed**") && markdown.contains("| orders | **fail**"), "{markdown}");
    let chart = std::fs::read_to_string(dir.join("leak-orders.svg")).expect("a chart beside the markdown");
    assert!(chart.starts_with("<svg"));

    let steady = steady.wait_with_output().unwrap();
    assert_eq!(steady.status.code(), Some(0), "{}", text(&steady));
    let junit = std::fs::read_to_string(file("steady.xml")).unwrap();
    assert!(junit.contains("failures=\"0\"") && !junit.contains("<failure"), "{junit}");
    let target = std::fs::read_to_string(&target_file).unwrap();
    let words: Vec<&str> = target.split_whitespace().collect();
    assert!(words.len() == 2 && words[0] == words[1] && words[0].parse::<std::net::Ipv4Addr>().is_ok(), "the load saw '{target}'");
    let warmed = warmed.wait_with_output().unwrap();
    assert_eq!(warmed.status.code(), Some(0), "{}", text(&warmed));
    let unskipped = unskipped.wait_with_output().unwrap();
    assert_eq!(unskipped.status.code(), Some(1), "{}", text(&unskipped));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file("unskipped.json")).unwrap()).unwrap();
    assert_eq!(json["services"][0]["breaches"][0]["budget"], "max-growth", "{json}");
    assert_eq!(leftovers(&["orders", "steady", "warmed", "unskipped"]), "", "a check left containers behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_check_that_cannot_judge_exits_2_and_says_why() {
    let dir = scratch("check-bad");
    let junit = dir.join("error.xml").to_string_lossy().to_string();
    let missing = check(&["--image", "leakscope-fixture/no-such-image:1", "--warmup", "5s", "--duration", "2m", "--junit", &junit]).wait_with_output().unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("image leakscope-fixture/no-such-image:1 is not on this engine"), "{}", text(&missing));
    assert!(std::fs::read_to_string(&junit).unwrap().contains("<error message=\"image leakscope-fixture/no-such-image:1"));

    let native = fixture_image("native");
    let failing_load = check(&["--image", &native, "--env", "LEAK_KIB_PER_SEC=0", "--warmup", "5s", "--duration", "2m", "--load", "sh -c 'sleep 2; exit 3'"]).wait_with_output().unwrap();
    assert_eq!(failing_load.status.code(), Some(2), "{}", text(&failing_load));
    assert!(text(&failing_load).contains("the load command exited with exit status: 3"), "{}", text(&failing_load));

    let unsplittable = check(&["--image", &native, "--warmup", "5s", "--duration", "2m", "--load", "echo 'unbalanced"]).wait_with_output().unwrap();
    assert_eq!(unsplittable.status.code(), Some(2), "{}", text(&unsplittable));
    assert!(text(&unsplittable).contains("unbalanced quotes"));

    let too_short = check(&["--image", &native, "--warmup", "2m", "--duration", "2m"]).wait_with_output().unwrap();
    assert_eq!(too_short.status.code(), Some(2));
    assert!(text(&too_short).contains("must exceed --warmup"), "{}", text(&too_short));

    let absent = check(&["--container", "leakscope-no-such-container", "--warmup", "5s", "--duration", "2m"]).wait_with_output().unwrap();
    assert_eq!(absent.status.code(), Some(2), "{}", text(&absent));

    // The service dies: not a pass, not a leak.
    let crashing = check(&["--image", &native, "--name", "crashing", "--warmup", "5s", "--duration", "2m", "--", "/no-such-program"]).wait_with_output().unwrap();
    assert_eq!(crashing.status.code(), Some(2), "{}", text(&crashing));
    assert_eq!(leftovers(&["crashing"]), "", "a container that did not start was left behind");

    // Ctrl-C mid-run: exit 2 and nothing left running.
    let interrupted = check(&["--image", &native, "--name", "interrupted", "--env", "LEAK_KIB_PER_SEC=0", "--warmup", "5s", "--duration", "5m"]);
    let wait_started = Instant::now();
    while leftovers(&["interrupted"]).is_empty() && wait_started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(!leftovers(&["interrupted"]).is_empty(), "the check never started its container");
    std::thread::sleep(Duration::from_secs(3));
    assert!(Command::new("kill").args(["-INT", &interrupted.id().to_string()]).status().unwrap().success());
    let interrupted = interrupted.wait_with_output().unwrap();
    assert_eq!(interrupted.status.code(), Some(2), "{}", text(&interrupted));
    assert!(text(&interrupted).contains("interrupted (Ctrl-C)"), "{}", text(&interrupted));
    assert_eq!(leftovers(&["interrupted"]), "", "the interrupted check left its container");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_compose_file_fails_on_its_leaking_service_and_everything_is_removed() {
    let native = fixture_image("native");
    let dir = scratch("check-compose");
    // One network between the two services; the file is the subset Leakscope reads.
    let project = unique_name("shop");
    let compose = dir.join("compose.yaml");
    std::fs::write(
        &compose,
        format!(
            "name: {project}\nservices:\n  leaky:\n    image: {native}\n    environment:\n      LEAK_KIB_PER_SEC: 170\n    mem_limit: 512m\n    networks: [back]\n  steady:\n    image: {native}\n    environment: [\"LEAK_KIB_PER_SEC=0\"]\n    deploy:\n      resources:\n        limits:\n          memory: 128m\n    networks: [back]\nnetworks:\n  back: {{}}\n"
        ),
    )
    .unwrap();
    let junit = dir.join("compose.xml");
    // The load reaches the other service by its address.
    let load = "sh -c 'test -n \"{target:steady}\" && test \"{target:steady}\" != \"{target:leaky}\"'".to_string();
    let out = check(&["--compose", compose.to_str().unwrap(), "--warmup", "30s", "--duration", "4m", "--junit", junit.to_str().unwrap(), "--load", &load])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let junit = std::fs::read_to_string(&junit).unwrap();
    let case = |name: &str| junit.lines().find(|l| l.contains(&format!("name=\"{name}\""))).unwrap_or_else(|| panic!("no test case {name}: {junit}")).to_string();
    assert!(case("leaky").contains("<failure message=\"leak:"), "{junit}");
    assert!(!case("steady").contains("<failure"), "{junit}");
    assert_eq!(leftovers(&[&project]), "", "the compose services were left behind");
    let networks = docker(&["network", "ls", "--filter", "label=io.leakscope.check", "--format", "{{.Name}}"]);
    assert!(!networks.contains(&project), "the compose network was left behind: {networks}");

    // Keys outside the subset are refused by name.
    std::fs::write(&compose, format!("services:\n  web:\n    image: {native}\n    volumes: [\"/data:/data\"]\n")).unwrap();
    let refused = check(&["--compose", compose.to_str().unwrap(), "--warmup", "5s", "--duration", "2m"]).wait_with_output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("unknown field `volumes`"), "{}", text(&refused));
    let _ = std::fs::remove_dir_all(&dir);
}
