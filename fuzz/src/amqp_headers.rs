//! The checks the `amqp_headers` fuzz target runs on every input. Also compiled into
//! `broker/tests/fuzz_corpus.rs`, which replays the kept corpus in an ordinary `cargo test`.
//!
//! The input is what a peer controls in a delivery's `headers` property: an AMQP field table on
//! the wire. It is parsed with lapin's own parser (as lapin does for every delivery), read into
//! moss's `Headers` as the consumer does, and then read the way the worker reads it. What must
//! hold for any bytes:
//! - nothing panics (a malformed table is lapin's error, not a crash);
//! - the worker's lookups (`moss-replay-of`, `moss-delete-approved`, `moss-control`,
//!   `moss-attempt`, `x-delivery-count`) see exactly the wire value when it has a type moss
//!   keeps, and nothing otherwise (an array or a table never reads as text);
//! - the headers a dead letter carries on (everything but `x-*`) go back on the wire and are
//!   read back unchanged: a replay keeps its `moss-replay-of` and `moss-attempt`.

use lapin::types::AMQPValue;
use lapin::types::parsing::parse_field_table;
use moss_broker::{HeaderValue, Headers};

/// The headers the worker reads (`moss_workers::{REPLAY_OF, DELETE_APPROVED, CONTROL,
/// ATTEMPT}` and RabbitMQ's delivery count).
pub(crate) const READ_BY_THE_WORKER: [&str; 5] = [
    "moss-replay-of",
    "moss-delete-approved",
    "moss-control",
    "moss-attempt",
    "x-delivery-count",
];

pub(crate) fn check(data: &[u8]) {
    let Ok((_rest, table)) = parse_field_table(data) else {
        assert_eq!(Headers::from_wire_table(data), None, "not a field table");
        return;
    };
    let headers = Headers::from_wire_table(data).expect("a field table lapin parses");
    for (name, value) in &table {
        let read = headers.get(name.as_str());
        match (kept(value), read) {
            (Some(expected), Some(read)) => assert_eq!(&expected, read, "header {name}"),
            (None, None) => {}
            (expected, read) => {
                panic!("header {name}: wire {value:?} read as {read:?}, expected {expected:?}")
            }
        }
    }
    for name in READ_BY_THE_WORKER {
        // The worker's own reads: typed lookups never panic and agree with `get`.
        let text = headers.get_str(name);
        let int = headers.get_i64(name);
        let flag = headers.get_bool(name);
        match headers.get(name) {
            Some(HeaderValue::Text(value)) => assert_eq!(text, Some(value.as_str())),
            Some(HeaderValue::Int(value)) => assert_eq!(int, Some(*value)),
            Some(HeaderValue::Bool(value)) => assert_eq!(flag, Some(*value)),
            None => assert!(text.is_none() && int.is_none() && flag.is_none()),
        }
        let _count = int.and_then(|count| u64::try_from(count).ok()).unwrap_or(0);
    }

    // A dead letter copies every non-`x-` header and publishes it again.
    let mut carried = Headers::new();
    for (name, value) in headers.iter() {
        if !name.starts_with("x-") {
            carried.insert(name, value.clone());
        }
    }
    let bytes = carried
        .to_wire_table()
        .expect("names read from the wire fit on the wire");
    assert_eq!(
        Headers::from_wire_table(&bytes),
        Some(carried),
        "the headers changed on their way through a dead letter"
    );
}

/// What moss keeps of a wire value (mirrors the consumer's documented rules).
fn kept(value: &AMQPValue) -> Option<HeaderValue> {
    Some(match value {
        AMQPValue::LongString(text) => {
            HeaderValue::Text(std::str::from_utf8(text.as_bytes()).ok()?.to_owned())
        }
        AMQPValue::ShortString(text) => HeaderValue::Text(text.as_str().to_owned()),
        AMQPValue::Boolean(value) => HeaderValue::Bool(*value),
        AMQPValue::ShortShortInt(value) => HeaderValue::Int(i64::from(*value)),
        AMQPValue::ShortShortUInt(value) => HeaderValue::Int(i64::from(*value)),
        AMQPValue::ShortInt(value) => HeaderValue::Int(i64::from(*value)),
        AMQPValue::ShortUInt(value) => HeaderValue::Int(i64::from(*value)),
        AMQPValue::LongInt(value) => HeaderValue::Int(i64::from(*value)),
        AMQPValue::LongUInt(value) => HeaderValue::Int(i64::from(*value)),
        AMQPValue::LongLongInt(value) => HeaderValue::Int(*value),
        _ => return None,
    })
}
