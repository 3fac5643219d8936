//! Replays the kept fuzz corpora of the event decoders (`fuzz/corpus/envelope` and
//! `fuzz/corpus/ingest`) through the same checks the fuzz targets run (`fuzz/src/envelope.rs`),
//! so every input the fuzzer found interesting, and every crash it found and we fixed, stays
//! checked by a plain `cargo test`.

use std::path::{Path, PathBuf};

use moss_schemas::{SealingKey, generate_key_pair};

#[path = "../../fuzz/src/envelope.rs"]
mod checks;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("the corpus {} is readable: {error}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file, naming the file that fails.
fn replay(target: &str, check: impl Fn(&[u8])) -> usize {
    let files = corpus(target);
    for (path, bytes) in &files {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(bytes)));
        assert!(
            outcome.is_ok(),
            "corpus file {} fails the {target} checks",
            path.display()
        );
    }
    files.len()
}

#[test]
fn every_kept_envelope_input_passes_the_decoder_checks() {
    let replayed = replay("envelope", checks::check_wire);
    assert!(replayed >= 50, "only {replayed} corpus files");
}

#[test]
fn every_kept_ingest_input_passes_the_sealing_decoder_checks() {
    let key = SealingKey::parse(&generate_key_pair().public).unwrap();
    let replayed = replay("ingest", |bytes| checks::check_ingest(bytes, &key));
    assert!(replayed >= 50, "only {replayed} corpus files");
}
