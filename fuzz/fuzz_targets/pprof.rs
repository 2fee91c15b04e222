//! Any bytes given to the Go heap profile front end (directly: a protobuf has
//! no magic to start with) and to the whole analysis yield an analysis or an
//! error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(graph) = leakscope_heap::formats::pprof::parse(data) {
        let _ = leakscope_heap::graph::ObjectGraph::len(&graph);
    }
    let _ = leakscope_heap::analyze_bytes(data, &leakscope_heap::Options::default());
});
