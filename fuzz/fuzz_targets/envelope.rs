//! The worker's event decoder on arbitrary bytes (see `src/envelope.rs`).
#![no_main]

#[allow(dead_code)] // each target uses part of the checks
#[path = "../src/envelope.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_wire(data));
