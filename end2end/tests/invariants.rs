//! Architecture invariants that a refactor could break silently.

#[test]
fn the_wasm_bundle_links_no_server_only_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree", "--offline", "--locked", "-p", "leakscope-app", "--features", "hydrate",
            "--target", "wasm32-unknown-unknown", "-e", "normal", "--prefix", "none",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    for forbidden in ["bollard ", "rusqlite ", "leakscope-engine ", "leakscope-heap ", "tokio ", "axum ", "utoipa "] {
        assert!(!tree.lines().any(|l| l.starts_with(forbidden)), "the browser bundle links {forbidden}");
    }
    assert!(tree.lines().any(|l| l.starts_with("leakscope-model ")));
}
