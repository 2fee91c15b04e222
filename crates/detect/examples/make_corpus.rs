//! Writes the synthetic traces and their labels into `corpus/` (reproducible).
//! Recorded traces already there are kept; their label rows are preserved.
//!
//! Run: cargo run -p leakscope-detect --example make_corpus

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    std::fs::create_dir_all(&dir).unwrap();
    let labels_path = dir.join("labels.csv");
    let kept: Vec<String> = std::fs::read_to_string(&labels_path)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("synthetic-"))
        .map(str::to_string)
        .collect();
    let mut labels = String::from("file,label,kind,source,onset_seconds,description,rate_mib_per_min\n");
    for line in kept {
        labels.push_str(&line);
        labels.push('\n');
    }
    for trace in leakscope_detect::corpus::synthetic() {
        std::fs::write(dir.join(&trace.file), leakscope_detect::csv::write(&trace.samples, trace.limit, trace.starts.as_deref())).unwrap();
        let label = if trace.leak { "leak" } else { "no-leak" };
        let rate = if trace.leak { trace.rate_mib_per_min.to_string() } else { String::new() };
        labels.push_str(&format!("{},{label},{},synthetic,{},\"{}\",{rate}\n", trace.file, trace.kind, trace.onset_seconds, trace.description));
    }
    std::fs::write(&labels_path, labels).unwrap();
    println!("wrote {}", labels_path.display());
}
