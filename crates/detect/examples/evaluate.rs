//! Precision, recall and median time-to-detect of the detector and the two
//! baselines on the labelled corpus (the README's figures).
//!
//! Run: cargo run --release -p leakscope-detect --example evaluate [-- --verbose]
//! (`--min-age-min M`, `--fast-min-age-min M`, `--urgent-min-age-min M`: the
//! detector's minimum ages, to see what precision costs in time to detect).

use std::path::Path;

use leakscope_detect::corpus::{evaluate, load, Method};
use leakscope_detect::Params;

fn main() {
    let verbose = std::env::args().any(|a| a == "--verbose");
    let traces = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")).expect("corpus loads");
    // `--trace FILE`: the detector's verdict minute by minute through one trace,
    // printed when it changes (and every 30 minutes).
    if let Some(file) = std::env::args().skip_while(|a| a != "--trace").nth(1) {
        let name = Path::new(&file).file_name().and_then(|n| n.to_str()).unwrap_or(&file);
        let Some(trace) = traces.iter().find(|t| t.file == name) else {
            eprintln!("no trace named {name} in the corpus; it holds:");
            for t in &traces {
                eprintln!("  {}", t.file);
            }
            std::process::exit(2);
        };
        let t0 = trace.samples[0].t;
        let last = trace.samples[trace.samples.len() - 1].t;
        let mut previous = None;
        for minute in 2.. {
            let now = t0 + minute as f64 * 60.0;
            if now > last + 60.0 {
                break;
            }
            let prefix: Vec<_> = trace.samples.iter().copied().filter(|s| s.t <= now).collect();
            let a = leakscope_detect::assess(&prefix, trace.limit, trace.starts(), &Params::default());
            if previous != Some(a.verdict) || minute % 30 == 0 {
                println!("{minute:>4} min  {:<10} {}", a.verdict.as_str(), a.reason);
            }
            previous = Some(a.verdict);
        }
        return;
    }
    let leaks = traces.iter().filter(|t| t.leak).count();
    println!("corpus: {} traces ({leaks} leaks, {} not), {} recorded", traces.len(), traces.len() - leaks, traces.iter().filter(|t| t.source == "recorded").count());
    println!("{:<52} {:>9} {:>7} {:>16} {:>4} {:>4}", "method", "precision", "recall", "median detect", "FP", "FN");
    let mut params = Params::default();
    // Minimum ages in minutes, to see what precision costs in time to detect.
    for (flag, field) in [
        ("--min-age-min", &mut params.min_age_seconds),
        ("--fast-min-age-min", &mut params.fast_min_age_seconds),
        ("--urgent-min-age-min", &mut params.urgent_min_age_seconds),
    ] {
        if let Some(m) = std::env::args().skip_while(|a| a != flag).nth(1) {
            *field = m.parse::<f64>().unwrap() * 60.0;
        }
    }
    if let Some(m) = std::env::args().skip_while(|a| a != "--slowdown").nth(1) {
        params.slowdown_share = m.parse().unwrap();
    }
    let minutes = |s: Option<f64>| s.map(|s| format!("{:.0} min", s / 60.0)).unwrap_or_else(|| "-".into());
    let mut scores = Vec::new();
    for method in Method::ALL {
        let score = evaluate(&traces, method, &params);
        println!(
            "{:<52} {:>9.3} {:>7.3} {:>16} {:>4} {:>4}",
            method.name(),
            score.precision,
            score.recall,
            minutes(score.median_detect_seconds),
            score.false_positives,
            score.false_negatives
        );
        if verbose {
            for r in score.results.iter().filter(|r| r.leak != r.flagged) {
                let when = r.detect_seconds.map(|s| format!(" after {}", minutes(Some(s)))).unwrap_or_default();
                println!("    wrong: {} (leak: {}, flagged: {}{when})", r.file, r.leak, r.flagged);
            }
            // What the detector said when it flagged, and the urgent leaks' times.
            for r in score.results.iter().filter(|r| method == Method::Leakscope && (r.leak != r.flagged || traces.iter().any(|t| t.file == r.file && t.urgent()))) {
                println!("    {}: {}", r.file, r.detect_seconds.map(|s| minutes(Some(s))).unwrap_or_else(|| "not flagged".into()));
            }
        }
        scores.push(score);
    }
    let ours = &scores[0];
    println!(
        "\nLeakscope's median time to detect: {} over the leaks of 1 MiB/min or more ({}), {} over those that would reach their limit within an hour ({})",
        minutes(ours.median_detect_fast_seconds),
        traces.iter().filter(|t| t.leak && t.rate_mib_per_min >= 1.0).count(),
        minutes(ours.median_detect_urgent_seconds),
        traces.iter().filter(|t| t.urgent()).count()
    );
    // Per shape, so a regression shows where.
    let mut kinds: Vec<&str> = traces.iter().map(|t| t.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    println!("\n| Shape | Leak? | Traces | Leakscope flagged | Median time to detect | predict_linear flagged | Coroot flagged |");
    println!("|---|---|---|---|---|---|---|");
    for kind in kinds {
        let of = |score: &leakscope_detect::corpus::Score| {
            let rows: Vec<_> = traces.iter().zip(&score.results).filter(|(t, _)| t.kind == kind).map(|(_, r)| r).collect();
            (rows.len(), rows.iter().filter(|r| r.flagged).count(), rows.iter().filter_map(|r| r.detect_seconds).collect::<Vec<_>>())
        };
        let (n, flagged, mut detect) = of(ours);
        detect.sort_by(f64::total_cmp);
        let median = (!detect.is_empty()).then(|| detect[detect.len() / 2]);
        let leak = traces.iter().any(|t| t.kind == kind && t.leak);
        println!(
            "| {kind} | {} | {n} | {flagged} | {} | {} | {} |",
            if leak { "yes" } else { "no" },
            if leak { minutes(median) } else { "-".into() },
            of(&scores[1]).1,
            of(&scores[2]).1
        );
    }
}
