//! Any bytes given to the ELF core front end and the whole analysis yield an
//! analysis or an error, never a panic. The bytes are made to start like a
//! 64-bit core (the front end is chosen by the first bytes), so every input reaches it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = data.to_vec();
    if input.len() < 18 {
        input.resize(18, 0);
    }
    input[..6].copy_from_slice(b"\x7fELF\x02\x01");
    input[16..18].copy_from_slice(&[4, 0]);
    let _ = leakscope_heap::analyze_bytes(&input, &leakscope_heap::Options::default());
    let _ = leakscope_heap::histogram::histogram_only(&input);
});
