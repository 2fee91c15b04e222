//! Precision, recall and median time-to-detect of the detector and the two
//! baselines on the labelled corpus (the README's figures).
//!
//! Run: cargo run --release -p leakscope-detect --example evaluate [-- --verbose]

use std::path::Path;

use leakscope_detect::corpus::{evaluate, load, Method};
use leakscope_detect::Params;

fn main() {
    let verbose = std::env::args().any(|a| a == "--verbose");
    let traces = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")).expect("corpus loads");
    // `--trace FILE`: the detector's verdict every 5 minutes of one trace.
    if let Some(file) = std::env::args().skip_while(|a| a != "--trace").nth(1) {
        let trace = traces.iter().find(|t| t.file == file).expect("no such trace");
        let t0 = trace.samples[0].t;
        for minute in (5..).step_by(5) {
            let now = t0 + minute as f64 * 60.0;
            let prefix: Vec<_> = trace.samples.iter().copied().filter(|s| s.t <= now).collect();
            if prefix.len() == trace.samples.len() && minute > 5 && prefix.last().unwrap().t < now - 300.0 {
                break;
            }
            let a = leakscope_detect::assess(&prefix, trace.limit, &[], &Params::default());
            println!("{minute:>4} min  {:<10} {}", a.verdict.as_str(), a.reason);
        }
        return;
    }
    let leaks = traces.iter().filter(|t| t.leak).count();
    println!("corpus: {} traces ({leaks} leaks, {} not), {} recorded", traces.len(), traces.len() - leaks, traces.iter().filter(|t| t.source == "recorded").count());
    println!("{:<52} {:>9} {:>7} {:>16} {:>4} {:>4}", "method", "precision", "recall", "median detect", "FP", "FN");
    let mut params = Params::default();
    if let Some(m) = std::env::args().skip_while(|a| a != "--min-age-min").nth(1) {
        params.min_age_seconds = m.parse::<f64>().unwrap() * 60.0;
    }
    if let Some(m) = std::env::args().skip_while(|a| a != "--slowdown").nth(1) {
        params.slowdown_share = m.parse().unwrap();
    }
    for method in Method::ALL {
        let score = evaluate(&traces, method, &params);
        let detect = score.median_detect_seconds.map(|s| format!("{:.0} min", s / 60.0)).unwrap_or_else(|| "-".into());
        println!("{:<52} {:>9.3} {:>7.3} {:>16} {:>4} {:>4}", method.name(), score.precision, score.recall, detect, score.false_positives, score.false_negatives);
        if verbose {
            for r in score.results.iter().filter(|r| r.leak != r.flagged) {
                println!("    wrong: {} (leak: {}, flagged: {})", r.file, r.leak, r.flagged);
            }
        }
    }
}
