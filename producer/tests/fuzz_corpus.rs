//! Replays the kept fuzz corpus of ingest requests (`fuzz/corpus/ingest_http`) against a real
//! producer, through the same checks the fuzz target runs (`fuzz/src/ingest_http.rs`): every
//! request gets exactly the status the rules give (401, 415, 202 or 400, never a 5xx or a
//! dropped connection), a 202 lists the ids the decoder reads, a 400 every violation.

use std::path::Path;

#[path = "../../fuzz/src/ingest_http.rs"]
mod checks;

#[test]
fn every_kept_ingest_request_gets_the_answer_the_rules_give() {
    let ingest = checks::Ingest::start();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ingest_http");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            checks::check(&ingest, &bytes)
        }));
        assert!(
            outcome.is_ok(),
            "corpus file {} fails the ingest checks",
            path.display()
        );
    }
    assert!(files.len() >= 100, "only {} corpus files", files.len());
}
