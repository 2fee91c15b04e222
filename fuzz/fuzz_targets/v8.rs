//! Any bytes given to the V8 heap snapshot front end and the whole analysis
//! yield an analysis or an error, never a panic, a hang or an allocation
//! sized by an unchecked count. The bytes are made to look like a snapshot
//! (the front end is chosen by the first bytes), so every input reaches it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = b"{\"snapshot\":".to_vec();
    input.extend_from_slice(data.strip_prefix(b"{\"snapshot\":".as_slice()).unwrap_or(data));
    let _ = leakscope_heap::analyze_bytes(&input, &leakscope_heap::Options::default());
    let _ = leakscope_heap::histogram::histogram_only(&input);
});
