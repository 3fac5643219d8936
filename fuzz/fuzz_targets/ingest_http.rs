//! `POST /v1/events` of a real producer in this process (see `src/ingest_http.rs`).
#![no_main]

use std::sync::LazyLock;

#[allow(dead_code)] // each target uses part of the checks
#[path = "../src/ingest_http.rs"]
mod checks;

static INGEST: LazyLock<checks::Ingest> = LazyLock::new(checks::Ingest::start);

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(&INGEST, data));
