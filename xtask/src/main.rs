//! `cargo run -p xtask -- build [--release]`: the site build that cargo-leptos
//! would do, in-repo. Why not cargo-leptos: its current release needs a newer
//! Rust than ours, an older pinned one takes ~16 minutes to install on two
//! cores, and it downloads a wasm-bindgen binary at run time. Here
//! wasm-bindgen is a library pinned in Cargo.lock to the exact version the
//! app links, so the two can never drift apart, and nothing is downloaded.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

mod tests;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let release = args.iter().any(|a| a == "--release");
    let with_tests = args.iter().any(|a| a == "--tests");
    match args.first().map(String::as_str) {
        Some("build") => build(release, with_tests),
        Some("site") => build_site(release),
        Some("test") => {
            let passthrough: Vec<String> = args.iter().skip_while(|a| *a != "--").skip(1).cloned().collect();
            tests::run(&passthrough)
        }
        _ => bail!(
            "usage: xtask build [--release] [--tests]   (site bundle + server [+ every test target])\n       \
             xtask site [--release]              (site bundle only)\n       \
             xtask test [-- TEST ARGS]           (run the release test binaries, slow ones side by side)"
        ),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(cargo).args(args).current_dir(workspace_root()).status()?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

fn build(release: bool, with_tests: bool) -> Result<()> {
    build_site(release)?;
    build_agent()?;
    if with_tests {
        // One feature resolution for the server and the tests: `cargo build -p leakscope`
        // resolves features without the test crates' dev-dependencies, so a later
        // `cargo test` would compile most of the workspace a second time (10 minutes cold).
        return cargo(&test_build_args(release));
    }
    let mut args = vec!["build", "-p", "leakscope", "--locked"];
    if release {
        args.push("--release");
    }
    cargo(&args)
}

fn test_build_args(release: bool) -> Vec<&'static str> {
    let mut args = vec!["build", "--workspace", "--exclude", "xtask", "--all-targets", "--locked"];
    if release {
        args.push("--release");
    }
    args
}

fn build_site(release: bool) -> Result<()> {
    let root = workspace_root();
    let profile = if release { "wasm-release" } else { "dev" };
    cargo(&[
        "build", "-p", "leakscope-app", "--lib", "--locked", "--target", "wasm32-unknown-unknown",
        "--features", "hydrate", "--profile", profile,
    ])?;
    let profile_dir = if release { "wasm-release" } else { "debug" };
    let wasm = root.join("target/wasm32-unknown-unknown").join(profile_dir).join("leakscope_app.wasm");
    let site = root.join("target/site");
    let pkg = site.join("pkg");
    std::fs::create_dir_all(&pkg)?;
    eprintln!("xtask: wasm-bindgen {}", wasm.display());
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .web(true)?
        .typescript(false)
        .out_name("leakscope")
        .generate(&pkg)
        .with_context(|| format!("wasm-bindgen on {}", wasm.display()))?;
    // Leptos loads `<output_name>_bg.wasm`; wasm-bindgen names it that already.
    std::fs::copy(root.join("style/main.css"), pkg.join("leakscope.css")).context("copying style/main.css")?;
    copy_dir(&root.join("public"), &site)?;
    for name in ["leakscope.js", "leakscope_bg.wasm", "leakscope.css"] {
        gzip(&pkg.join(name))?;
    }
    let size = std::fs::metadata(pkg.join("leakscope_bg.wasm"))?.len();
    let gz = std::fs::metadata(pkg.join("leakscope_bg.wasm.gz"))?.len();
    eprintln!("xtask: site ready in {} (wasm {} KiB, {} KiB gzipped)", site.display(), size / 1024, gz / 1024);
    Ok(())
}

/// The capture helper, static (musl) so it runs in any image, even one without
/// a libc; placed in `target/capture/`, beside (not inside) the served site.
fn build_agent() -> Result<()> {
    const TARGET: &str = "x86_64-unknown-linux-musl";
    cargo(&["build", "-p", "leakscope-agent", "--locked", "--release", "--target", TARGET])?;
    let root = workspace_root();
    let built = root.join("target").join(TARGET).join("release/leakscope-agent");
    let dir = root.join("target/capture");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(&built, dir.join("leakscope-agent")).with_context(|| format!("copying {}", built.display()))?;
    build_attach_jar(&root, &dir)
}

/// The helper's Java twin (for /tmp mounted noexec), when a JDK is present;
/// without one the server still captures, only not from noexec /tmp.
fn build_attach_jar(root: &Path, dir: &Path) -> Result<()> {
    let source = root.join("crates/agent/java/LeakscopeAttach.java");
    let classes = root.join("target/capture/classes");
    let _ = std::fs::remove_dir_all(&classes);
    std::fs::create_dir_all(&classes)?;
    let javac = Command::new("javac").args(["--release", "17", "-d"]).arg(&classes).arg(&source).status();
    match javac {
        Ok(status) if status.success() => {}
        _ => {
            eprintln!("xtask: no working javac: skipping leakscope-attach.jar (captures from a noexec /tmp without jcmd will fail)");
            return Ok(());
        }
    }
    let jar = dir.join("leakscope-attach.jar");
    let status = Command::new("jar").arg("cf").arg(&jar).arg("-C").arg(&classes).arg(".").status()?;
    if !status.success() {
        bail!("jar failed for {}", jar.display());
    }
    Ok(())
}

/// Precompressed copies so the server never compresses the bundle per request.
fn gzip(path: &Path) -> Result<()> {
    use std::io::Write;
    let data = std::fs::read(path)?;
    let out = std::fs::File::create(path.with_extension(format!(
        "{}.gz",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    )))?;
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::best());
    encoder.write_all(&data)?;
    encoder.finish()?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    if !from.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
