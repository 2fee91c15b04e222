//! `leakscope analyze FILE` and `leakscope diff A B`: the same analysis the
//! server runs, offline, with the API's JSON under `--json`.

use std::path::PathBuf;

use leakscope_heap::{analyze_file, Analysis, HeapDiff, Options};
use leakscope_model::{format_bytes, format_percent};

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// An HPROF dump (`.hprof` or gzipped `.hprof.gz`).
    pub file: PathBuf,
    /// Print the analysis as JSON (the same document as the API).
    #[arg(long)]
    pub json: bool,
    /// How many of the biggest objects to list.
    #[arg(long, default_value_t = 100)]
    pub top: usize,
    /// Only the class histogram (instances and shallow bytes): one fast pass, no graph.
    #[arg(long)]
    pub histogram: bool,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The earlier dump.
    pub before: PathBuf,
    /// The later dump.
    pub after: PathBuf,
    #[arg(long)]
    pub json: bool,
}

fn run_analysis(file: &PathBuf, top: usize) -> Result<Analysis, String> {
    let options = Options { top_dominators: top, ..Options::default() };
    analyze_file(file, &options).map_err(|e| format!("{}: {e}", file.display()))
}

fn histogram_only(args: &AnalyzeArgs) -> Result<(), String> {
    let started = std::time::Instant::now();
    let dump = leakscope_heap::DumpFile::open(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let histogram = leakscope_heap::histogram::histogram_only(dump.bytes()).map_err(|e| format!("{}: {e}", args.file.display()))?;
    if args.json {
        let doc = serde_json::json!({ "histogram": histogram });
        println!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}: {} in {:.0} ms ({:.2} GB/s)",
        args.file.display(),
        format_bytes(dump.bytes().len() as u64),
        secs * 1000.0,
        dump.bytes().len() as f64 / secs / 1e9
    );
    println!("{:>12} {:>14}  class", "instances", "shallow");
    for e in histogram.iter().take(40) {
        println!("{:>12} {:>14}  {}", e.instances, format_bytes(e.shallow_bytes), e.class);
    }
    Ok(())
}

pub fn analyze(args: AnalyzeArgs) -> Result<(), String> {
    if args.histogram {
        return histogram_only(&args);
    }
    let analysis = run_analysis(&args.file, args.top)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&analysis).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let s = &analysis.summary;
    println!(
        "{}: {} {} objects ({} reachable), {} classes, {} heap ({} reachable), {} GC roots, analysed in {} ms",
        args.file.display(),
        match s.format.as_str() {
            "v8" => "V8 heap snapshot (Node.js),".to_string(),
            "python" => "Python heap snapshot (CPython),".to_string(),
            "memmap" => "memory map (mappings, threads and open files as nodes),".to_string(),
            "core" => "ELF core dump, analysed by the memory map taken while the process was stopped (open the file in gdb for backtraces),".to_string(),
            "pprof" => "Go heap profile (call paths as nodes),".to_string(),
            _ => format!("HPROF (Java, {}-byte ids),", s.id_size),
        },
        s.objects,
        s.reachable_objects,
        s.classes,
        format_bytes(s.heap_bytes),
        format_bytes(s.reachable_bytes),
        s.gc_roots,
        s.analysis_millis
    );
    println!();
    if analysis.suspects.is_empty() {
        println!("No leak suspects: nothing retains 10 % of the heap on its own.");
    }
    for (i, suspect) in analysis.suspects.iter().enumerate() {
        println!("Suspect {}: {}", i + 1, suspect.description);
        let path: Vec<String> = suspect
            .path
            .iter()
            .map(|p| match &p.field {
                Some(f) => format!("{} .{f}", p.class),
                None => p.class.clone(),
            })
            .collect();
        if !path.is_empty() {
            println!("  path from GC root ({}): {}", suspect.path[0].root_kind.clone().unwrap_or_default(), path.join(" -> "));
        }
    }
    if !analysis.allocation_sites.is_empty() {
        println!();
        println!("Where the live memory was allocated ({}):", if s.format == "pprof" { "the profile's allocating lines" } else { "tracemalloc was tracing" });
        for s in analysis.allocation_sites.iter().take(10) {
            println!("{:>14} {:>10} blocks  {}:{}", format_bytes(s.size_bytes), s.blocks, s.file, s.line);
        }
    }
    println!();
    let (count, own, total, row) = match s.format.as_str() {
        "memmap" | "core" => ("mappings", "resident", "with swap", "kind"),
        "pprof" => ("objects", "flat", "cum", "function"),
        _ => ("instances", "shallow", "retained", "class"),
    };
    println!("{count:>12} {own:>14} {total:>14}  {row}");
    for e in analysis.histogram.iter().take(25) {
        println!("{:>12} {:>14} {:>14}  {}", e.instances, format_bytes(e.shallow_bytes), format_bytes(e.retained_bytes), e.class);
    }
    println!();
    println!("Biggest objects by retained size:");
    for d in analysis.dominators.iter().take(15) {
        println!(
            "{:>14} {:>7}  {} {}",
            format_bytes(d.retained_bytes),
            format_percent(d.retained_bytes as f64 / s.reachable_bytes.max(1) as f64),
            d.class,
            d.object_id
        );
    }
    Ok(())
}

pub fn diff(args: DiffArgs) -> Result<(), String> {
    let before = run_analysis(&args.before, 20)?;
    let after = run_analysis(&args.after, 20)?;
    let mut diff: HeapDiff = leakscope_heap::diff::diff(&before, &after);
    if before.summary.format == after.summary.format && matches!(before.summary.format.as_str(), "v8" | "python") {
        // Two snapshots of one process also compare object by object (None: two processes).
        diff.objects = leakscope_heap::diff::compare_object_files(&args.before, &args.after).map_err(|e| e.to_string())?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&diff).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "heap {} -> {} ({:+} bytes)",
        format_bytes(diff.before.heap_bytes),
        format_bytes(diff.after.heap_bytes),
        diff.heap_bytes_delta
    );
    for finding in &diff.findings {
        println!("{finding}");
    }
    println!("{:>12} {:>16}  class (grew most first)", "instances", "shallow bytes");
    for c in diff.classes.iter().take(25) {
        println!("{:>+12} {:>+16}  {}", c.instances_delta, c.shallow_bytes_delta, c.class);
    }
    for s in &diff.suspects {
        println!("suspect: {} ({:+} bytes since the earlier dump)", s.description, s.retained_bytes_delta);
    }
    if let Some(objects) = &diff.objects {
        println!("objects matched by id (one process): {:>9} {:>9} {:>14}  constructor", "new", "deleted", "size delta");
        for c in objects.iter().take(25) {
            println!("{:>47} {:>9} {:>+14}  {}", c.new_objects, c.deleted_objects, c.bytes_delta, c.class);
        }
    }
    Ok(())
}
