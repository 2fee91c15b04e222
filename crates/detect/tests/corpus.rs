//! The accuracy figures in the README, checked on the whole labelled corpus
//! (recorded and synthetic traces), not on hand-picked cases.

use std::path::Path;

use leakscope_detect::corpus::{evaluate, load, Method};
use leakscope_detect::Params;

#[test]
fn detector_beats_both_baselines_with_precision_and_recall_of_at_least_095() {
    let traces = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")).expect("corpus loads");
    assert!(traces.len() >= 70, "the corpus is too small: {}", traces.len());
    assert!(traces.iter().any(|t| t.source == "recorded"), "the corpus has no recorded traces");
    let scores: Vec<_> = Method::ALL.iter().map(|m| evaluate(&traces, *m, &Params::default())).collect();
    for s in &scores {
        println!("{:<52} precision {:.3} recall {:.3} median detect {:?} s", s.method.name(), s.precision, s.recall, s.median_detect_seconds);
    }
    let ours = &scores[0];
    let wrong: Vec<_> = ours.results.iter().filter(|r| r.leak != r.flagged).map(|r| &r.file).collect();
    assert!(ours.precision >= 0.95, "precision {:.3}; wrong: {wrong:?}", ours.precision);
    assert!(ours.recall >= 0.95, "recall {:.3}; wrong: {wrong:?}", ours.recall);
    // Sooner where it matters: fast leaks, and leaks that would reach their limit within the hour.
    let fast = ours.median_detect_fast_seconds.expect("fast leaks in the corpus");
    let urgent = ours.median_detect_urgent_seconds.expect("urgent leaks in the corpus");
    assert!(fast <= 15.0 * 60.0, "median time to detect a leak of 1 MiB/min or more: {:.0} min", fast / 60.0);
    assert!(urgent <= 10.0 * 60.0, "median time to detect a leak that reaches its limit within the hour: {:.0} min", urgent / 60.0);
    assert!(traces.iter().any(|t| t.starts.is_some()), "the corpus has no trace with its restarts");
    for baseline in &scores[1..] {
        assert!(ours.precision > baseline.precision, "{} has precision {:.3}", baseline.method.name(), baseline.precision);
        assert!(ours.recall > baseline.recall, "{} has recall {:.3}", baseline.method.name(), baseline.recall);
    }
}
