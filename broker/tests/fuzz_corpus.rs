//! Replays the kept fuzz corpus of AMQP delivery headers (`fuzz/corpus/amqp_headers`) through
//! the same checks the fuzz target runs (`fuzz/src/amqp_headers.rs`): lapin's field-table
//! parser, moss's reading of it, the worker's lookups, and the dead letter's round trip.

use std::path::Path;

#[path = "../../fuzz/src/amqp_headers.rs"]
mod checks;

#[test]
fn every_kept_header_table_passes_the_header_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/amqp_headers");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| checks::check(&bytes));
        assert!(
            outcome.is_ok(),
            "corpus file {} fails the header checks",
            path.display()
        );
        replayed += 1;
    }
    assert!(replayed >= 9, "only {replayed} corpus files");
    assert_eq!(checks::READ_BY_THE_WORKER.len(), 5);
}
