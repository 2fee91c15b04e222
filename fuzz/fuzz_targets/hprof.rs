//! Any bytes given to the HPROF parser and the whole analysis (graph,
//! dominators, suspects, histogram pass) yield an analysis or an error, never
//! a panic, a hang or an allocation sized by an unchecked field.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = leakscope_heap::analyze_bytes(data, &leakscope_heap::Options::default());
    let _ = leakscope_heap::histogram::histogram_only(data);
});
