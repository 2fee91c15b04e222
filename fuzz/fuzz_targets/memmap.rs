//! Any bytes given to the memory-map front end and the whole analysis yield
//! an analysis or an error, never a panic. The bytes are made to start like a
//! memory map (the front end is chosen by the first bytes), so every input reaches it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let magic = b"LEAKSCOPE MEMMAP 1\n".as_slice();
    let mut input = magic.to_vec();
    input.extend_from_slice(data.strip_prefix(magic).unwrap_or(data));
    let _ = leakscope_heap::analyze_bytes(&input, &leakscope_heap::Options::default());
    let _ = leakscope_heap::histogram::histogram_only(&input);
});
