//! The checks the `envelope` and `ingest` fuzz targets run on every input. This file is also
//! compiled into `schemas/tests/fuzz_corpus.rs`, which replays the kept corpus through the
//! same code in an ordinary `cargo test`, so CI checks every corpus file without a fuzzer.
//!
//! What must hold for any bytes at all:
//! - decoding never panics;
//! - a refusal lists at least one violation, each with a rule and a message, and its text
//!   names them (the operator's error);
//! - what decodes re-encodes to JSON that the wire decoder reads back to the same events (what
//!   the producer stores is what the worker applies);
//! - after the ingest decoder, no `{"clear": …}` password is left anywhere in what is stored.

use moss_schemas::{DecodeError, Envelope, EventBatch, SealingKey};

/// The worker's decoder (`Envelope::from_json_slice`, `EventBatch::from_json_slice`).
pub(crate) fn check_wire(data: &[u8]) {
    match Envelope::from_json_slice(data) {
        Ok(event) => {
            let again = Envelope::from_json_slice(&event.to_json_vec())
                .expect("a decoded event re-encodes to an event the decoder accepts");
            assert_eq!(again, event, "the round trip changes the event");
            let from_value = Envelope::from_json_value(&event.to_json_value())
                .expect("a decoded event's JSON value decodes");
            assert_eq!(from_value, event, "the value round trip changes the event");
        }
        Err(error) => check_refusal(&error),
    }
    match EventBatch::from_json_slice(data) {
        Ok(batch) => {
            assert!(!batch.events.is_empty(), "a batch is never empty");
            let again = EventBatch::from_json_slice(&batch.to_json_vec())
                .expect("a decoded batch re-encodes to a batch the decoder accepts");
            assert_eq!(again, batch, "the round trip changes the batch");
        }
        Err(error) => check_refusal(&error),
    }
}

/// The producer's ingest decoder, which seals `{"clear": …}` passwords to `key`.
pub(crate) fn check_ingest(data: &[u8], key: &SealingKey) {
    match Envelope::from_ingest_json_slice(data, key) {
        Ok(event) => check_stored(&event.to_json_vec(), std::slice::from_ref(&event)),
        Err(error) => check_refusal(&error),
    }
    match EventBatch::from_ingest_json_slice(data, key) {
        Ok(batch) => {
            assert!(!batch.events.is_empty(), "a batch is never empty");
            check_stored(&batch.to_json_vec(), &batch.events);
        }
        Err(error) => check_refusal(&error),
    }
}

/// What the ingest would store: free of clear passwords and readable by the worker.
fn check_stored(json: &[u8], events: &[Envelope]) {
    let value: serde_json::Value = serde_json::from_slice(json).expect("stored JSON parses");
    assert!(
        !holds_clear(&value),
        "a clear password survived the ingest decoder"
    );
    for event in events {
        let wire = Envelope::from_json_slice(&event.to_json_vec())
            .expect("the worker's decoder accepts what the ingest stores");
        assert_eq!(&wire, event, "the stored event is not the accepted one");
    }
}

fn holds_clear(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            map.contains_key("clear") || map.values().any(holds_clear)
        }
        serde_json::Value::Array(items) => items.iter().any(holds_clear),
        _ => false,
    }
}

fn check_refusal(error: &DecodeError) {
    assert!(
        !error.violations.is_empty(),
        "a refusal names at least one violation"
    );
    let text = error.to_string();
    for violation in &error.violations {
        assert!(!violation.rule.is_empty(), "a violation without a rule");
        assert!(
            !violation.message.is_empty(),
            "a violation without a message"
        );
        assert!(
            violation.pointer.is_empty() || violation.pointer.starts_with('/'),
            "a violation's pointer is not a JSON pointer: {:?}",
            violation.pointer
        );
    }
    assert!(!text.is_empty(), "an empty error text");
}
