//! A delivery's `headers` field table as the worker reads it (see `src/amqp_headers.rs`).
#![no_main]

#[allow(dead_code)] // each target uses part of the checks
#[path = "../src/amqp_headers.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
