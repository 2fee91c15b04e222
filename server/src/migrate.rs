//! `leakscope migrate`: moves a data directory's heap dumps into the store a
//! team deployment uses (a bucket), so `serve --dump-store` finds them all.

use std::path::PathBuf;

use leakscope_engine::{Engine, EngineConfig};

#[derive(clap::Args, Clone, Debug)]
pub struct MigrateArgs {
    /// The data directory whose dumps are copied (its `dumps/` folder and its records).
    #[arg(long, default_value = "./data", env = "LEAKSCOPE_DATA_DIR")]
    pub from: PathBuf,
    /// Where they go: `s3://bucket/prefix` (credentials, region and endpoint as for `serve --dump-store`).
    #[arg(long)]
    pub dump_store: String,
}

pub async fn run(args: MigrateArgs) -> Result<(), String> {
    if !args.from.join("leakscope.db").is_file() {
        return Err(format!("{} holds no Leakscope data (no leakscope.db)", args.from.display()));
    }
    // Opened, not started: nothing is sampled, nothing in the folder is tidied.
    let engine = Engine::open(EngineConfig::new(&args.from)).map_err(|e| e.to_string())?;
    let report = engine
        .copy_dumps_to(&args.dump_store, |line| println!("{line}"))
        .await
        .map_err(|e| format!("{e} (dumps copied so far stay copied: run the command again to resume)"))?;
    println!(
        "{} dumps copied ({} MiB stored), {} already there; every copy read back with its size and SHA-256 checked.",
        report.copied,
        report.stored_bytes >> 20,
        report.present
    );
    println!(
        "Start the server with --data-dir {} --dump-store {} to use them; the files in {} are left for you to remove.",
        args.from.display(),
        args.dump_store,
        args.from.join("dumps").display()
    );
    Ok(())
}
