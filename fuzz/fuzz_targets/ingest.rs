//! The ingest's decoder, which seals clear passwords, on arbitrary bytes (see `src/envelope.rs`).
#![no_main]

use std::sync::LazyLock;

#[allow(dead_code)] // each target uses part of the checks
#[path = "../src/envelope.rs"]
mod checks;

static KEY: LazyLock<moss_schemas::SealingKey> = LazyLock::new(|| {
    moss_schemas::SealingKey::parse(&moss_schemas::generate_key_pair().public).expect("a key")
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_ingest(data, &KEY));
