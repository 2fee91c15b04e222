//! `leakscope detect --csv FILE [--json]`: the leak detector offline, for
//! evaluation and CI (a non-zero exit is not used for a leak: read `leak`).

use std::path::PathBuf;

use leakscope_detect::{assess, csv, Params};

#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    /// CSV with a header: `timestamp` (Unix seconds), `working_set_bytes`, optional `limit_bytes`,
    /// and optionally the restarts: `started_at` (the process's start per row) or `restart` (1 after one).
    #[arg(long)]
    pub csv: PathBuf,
    /// Print the verdict as JSON (`leak`, `verdict`, `slope_bytes_per_hour`, `time_to_limit_seconds`, …).
    #[arg(long)]
    pub json: bool,
}

pub fn detect(args: DetectArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.csv).map_err(|e| format!("{}: {e}", args.csv.display()))?;
    let trace = csv::parse(&text).map_err(|e| format!("{}: {e}", args.csv.display()))?;
    let assessment = assess(&trace.samples, trace.limit, trace.starts(), &Params::default());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&assessment).map_err(|e| e.to_string())?);
    } else {
        println!("{}: {} ({:.0} % confident)", args.csv.display(), assessment.verdict.as_str(), assessment.confidence * 100.0);
        println!("slope: {}/h", leakscope_detect::mib(assessment.slope_bytes_per_hour));
        match assessment.time_to_limit_seconds {
            Some(t) => println!("time to limit: {}", leakscope_detect::duration(t)),
            None if assessment.limit_bytes.is_none() => println!("time to limit: no limit"),
            None => println!("time to limit: not approaching it"),
        }
        println!("why: {}", assessment.reason);
    }
    Ok(())
}
