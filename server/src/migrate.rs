//! `leakscope migrate`: moves a data directory into what a team deployment
//! uses — its heap dumps into a bucket (`--dump-store`), its accounts, tokens,
//! audit log, agents, webhooks, reports, dumps' records and memory history into PostgreSQL (`--database`) — so
//! `serve --dump-store … --database …` finds them all.

use std::path::PathBuf;

use leakscope_engine::{Engine, EngineConfig};

#[derive(clap::Args, Clone, Debug)]
pub struct MigrateArgs {
    /// The data directory whose dumps are copied (its `dumps/` folder and its records).
    #[arg(long, default_value = "./data", env = "LEAKSCOPE_DATA_DIR")]
    pub from: PathBuf,
    /// Where the dumps go: `s3://bucket/prefix` (credentials, region and endpoint as for `serve --dump-store`).
    #[arg(long)]
    pub dump_store: Option<String>,
    /// Where accounts, sessions, tokens, the audit log, agents, webhooks, reports, dumps' records and the memory history go: `postgres://…` (as `serve --database`).
    #[arg(long, env = "LEAKSCOPE_DATABASE_URL")]
    pub database: Option<String>,
}

pub async fn run(args: MigrateArgs) -> Result<(), String> {
    if !args.from.join("leakscope.db").is_file() {
        return Err(format!("{} holds no Leakscope data (no leakscope.db)", args.from.display()));
    }
    if args.dump_store.is_none() && args.database.is_none() {
        return Err("say where to: --dump-store s3://…, --database postgres://…, or both".into());
    }
    if let Some(url) = args.database.clone() {
        let from = args.from.join("leakscope.db");
        tokio::task::spawn_blocking(move || copy_tables(&from, &url)).await.map_err(|e| e.to_string())??;
    }
    let Some(dump_store) = args.dump_store.clone() else { return Ok(()) };
    // Opened, not started: nothing is sampled, nothing in the folder is tidied.
    let engine = Engine::open(EngineConfig::new(&args.from)).map_err(|e| e.to_string())?;
    let report = engine
        .copy_dumps_to(&dump_store, |line| println!("{line}"))
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
        dump_store,
        args.from.join("dumps").display()
    );
    Ok(())
}

/// Copies the access, notify, report and dump tables and the memory history (containers,
/// samples, rollups, events) (a second run adds only
/// what is missing) and checks that every row of the file is in the database.
fn copy_tables(from: &std::path::Path, url: &str) -> Result<(), String> {
    use leakscope_db::Db;
    let source = Db::open_sqlite(from).map_err(|e| e.to_string())?;
    let target = Db::open(url).map_err(|e| e.to_string())?;
    // Both at this version's schema first (an older file gains its later columns).
    for db in [&source, &target] {
        leakscope_access::AccessStore::on(db.clone()).map_err(|e| e.to_string())?;
        leakscope_notify::NotifyStore::on(db.clone()).map_err(|e| e.to_string())?;
        leakscope_engine::reports::ReportStore::migrate(db).map_err(|e| e.to_string())?;
        leakscope_engine::dumps::DumpStore::migrate(db).map_err(|e| e.to_string())?;
        leakscope_engine::store::Store::on(db).map_err(|e| e.to_string())?;
    }
    let engine_tables = leakscope_engine::reports::TABLES.iter().chain(leakscope_engine::dumps::TABLES).chain(leakscope_engine::store::TABLES);
    for (table, id) in leakscope_access::TABLES.iter().chain(leakscope_notify::TABLES).chain(engine_tables) {
        let in_file = source.count(table).map_err(|e| e.to_string())?;
        let in_database = source.copy_table(&target, table, *id).map_err(|e| format!("{table}: {e} (rows copied so far stay: run the command again to resume)"))?;
        if in_database < in_file {
            return Err(format!("{table}: {in_file} rows in the file but only {in_database} in {} after the copy", target.shown()));
        }
        println!("{table}: {in_file} rows copied or already there ({in_database} in the database)");
    }
    println!("Accounts, sessions, tokens, the audit log, agents, webhooks, reports, dumps' records and the memory history are in {}: start the server with --database to use them.", target.shown());
    Ok(())
}
