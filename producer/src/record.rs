//! What the producer keeps in its outbox for each accepted event: the wire body (passwords already
//! sealed) and where it goes. Partition and routing are fixed at accept time, so a resend after a
//! crash goes exactly where the first attempt went.
//!
//! The stored form is a compact binary record, so the relay takes the body to publish as a slice
//! of the stored bytes instead of decoding JSON-in-JSON (unescaping every quote of the body):
//!
//! ```text
//! 0x01                      format version (an older JSON record starts with `{`)
//! u8 len, message id        the CloudEvent id, also the AMQP message id
//! u8 len, routing key       `p{n}`, the partition of the subject
//! u8 len, event type        the CloudEvents `type`, for metrics and logs
//! u16 len (LE), subject     the directory object the event is about
//! the rest                  the structured-mode CloudEvent JSON exactly as it is published
//! ```
//!
//! Records written by earlier versions (JSON objects) are still read.

use serde::Deserialize;

/// The first byte of a binary record.
const BINARY_V1: u8 = 0x01;

/// One outbox entry as the ingest builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxRecord {
    /// The CloudEvent id; also the AMQP message id, which the workers dedupe on.
    pub(crate) message_id: String,
    /// `p{n}`: the partition of the event's subject.
    pub(crate) routing_key: String,
    /// The CloudEvents `type`, kept for metrics and logs without re-decoding the body.
    pub(crate) event_type: String,
    /// The directory object the event is about.
    pub(crate) subject: String,
    /// The structured-mode CloudEvent JSON exactly as it is published.
    pub(crate) body: Vec<u8>,
}

/// A stored record read in place: the fields borrow the stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordRef<'a> {
    pub(crate) message_id: &'a str,
    pub(crate) routing_key: &'a str,
    pub(crate) body: &'a [u8],
}

/// Why a stored record cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("the record is cut short at byte {at} (of {len})")]
    Truncated { at: usize, len: usize },
    #[error("the record's {field} is not UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("the record has {field} longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("an older JSON record is unreadable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown record format {0:#04x}")]
    UnknownFormat(u8),
}

impl OutboxRecord {
    /// The stored form. Fails only for fields longer than the format allows (the ingest's
    /// validation keeps ids, types and subjects far shorter).
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::with_capacity(
            6 + self.message_id.len()
                + self.routing_key.len()
                + self.event_type.len()
                + self.subject.len()
                + self.body.len(),
        );
        out.push(BINARY_V1);
        put_u8_len(&mut out, "message id", &self.message_id)?;
        put_u8_len(&mut out, "routing key", &self.routing_key)?;
        put_u8_len(&mut out, "event type", &self.event_type)?;
        let subject_len = u16::try_from(self.subject.len()).map_err(|_| RecordError::TooLong {
            field: "subject",
            max: usize::from(u16::MAX),
        })?;
        out.extend_from_slice(&subject_len.to_le_bytes());
        out.extend_from_slice(self.subject.as_bytes());
        out.extend_from_slice(&self.body);
        Ok(out)
    }
}

fn put_u8_len(out: &mut Vec<u8>, field: &'static str, value: &str) -> Result<(), RecordError> {
    let len = u8::try_from(value.len()).map_err(|_| RecordError::TooLong {
        field,
        max: usize::from(u8::MAX),
    })?;
    out.push(len);
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

/// A stored record, either form.
pub(crate) enum Stored<'a> {
    Binary(RecordRef<'a>),
    /// An older JSON record, decoded.
    Json(LegacyRecord),
}

/// The JSON form earlier versions stored.
#[derive(Debug, Deserialize)]
pub(crate) struct LegacyRecord {
    pub(crate) message_id: String,
    pub(crate) routing_key: String,
    pub(crate) body: String,
}

impl<'a> Stored<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Stored<'a>, RecordError> {
        match bytes.first() {
            Some(&BINARY_V1) => parse_binary(bytes).map(Stored::Binary),
            Some(b'{') => Ok(Stored::Json(serde_json::from_slice(bytes)?)),
            Some(&other) => Err(RecordError::UnknownFormat(other)),
            None => Err(RecordError::Truncated { at: 0, len: 0 }),
        }
    }

    pub(crate) fn view(&self) -> RecordRef<'_> {
        match self {
            Stored::Binary(record) => *record,
            Stored::Json(record) => RecordRef {
                message_id: &record.message_id,
                routing_key: &record.routing_key,
                body: record.body.as_bytes(),
            },
        }
    }
}

fn parse_binary(bytes: &[u8]) -> Result<RecordRef<'_>, RecordError> {
    let mut reader = Reader { bytes, at: 1 };
    let message_id = reader.str_u8("message id")?;
    let routing_key = reader.str_u8("routing key")?;
    let _event_type = reader.str_u8("event type")?;
    let subject_len = u16::from_le_bytes([reader.byte()?, reader.byte()?]);
    let _subject = reader.str("subject", usize::from(subject_len))?;
    Ok(RecordRef {
        message_id,
        routing_key,
        body: &bytes[reader.at..],
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, RecordError> {
        let byte = *self.bytes.get(self.at).ok_or(RecordError::Truncated {
            at: self.at,
            len: self.bytes.len(),
        })?;
        self.at += 1;
        Ok(byte)
    }

    fn str_u8(&mut self, field: &'static str) -> Result<&'a str, RecordError> {
        let len = usize::from(self.byte()?);
        self.str(field, len)
    }

    fn str(&mut self, field: &'static str, len: usize) -> Result<&'a str, RecordError> {
        let end = self.at + len;
        let slice = self.bytes.get(self.at..end).ok_or(RecordError::Truncated {
            at: self.at,
            len: self.bytes.len(),
        })?;
        self.at = end;
        std::str::from_utf8(slice).map_err(|_| RecordError::NotUtf8 { field })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> OutboxRecord {
        OutboxRecord {
            message_id: "0a6f3c2e-6a55-4bd5-9a43-2f6f0b1d6c11".to_owned(),
            routing_key: "p5".to_owned(),
            event_type: "moss.user.added.v1".to_owned(),
            subject: "8d2b0f4e-1c8a-4a59-8f5e-5f0d8d7c2b10".to_owned(),
            body: r#"{"specversion":"1.0","id":"x","data":{"quote":"\"é\""}}"#
                .as_bytes()
                .to_vec(),
        }
    }

    #[test]
    fn a_binary_record_gives_back_the_exact_body_and_routing() {
        let record = record();
        let bytes = record.to_bytes().unwrap();
        let stored = Stored::parse(&bytes).unwrap();
        let view = stored.view();
        assert_eq!(view.message_id, record.message_id);
        assert_eq!(view.routing_key, record.routing_key);
        assert_eq!(view.body, record.body.as_slice());
    }

    #[test]
    fn a_json_record_of_an_earlier_version_is_still_read() {
        let legacy = serde_json::json!({
            "message_id": "id-1",
            "routing_key": "p0",
            "event_type": "moss.user.added.v1",
            "subject": "s",
            "body": "{\"a\":\"b\"}",
        });
        let bytes = serde_json::to_vec(&legacy).unwrap();
        let stored = Stored::parse(&bytes).unwrap();
        let view = stored.view();
        assert_eq!(view.message_id, "id-1");
        assert_eq!(view.routing_key, "p0");
        assert_eq!(view.body, br#"{"a":"b"}"#);
    }

    #[test]
    fn a_cut_or_unknown_record_is_an_error_not_a_panic() {
        let bytes = record().to_bytes().unwrap();
        for len in 0..12 {
            assert!(Stored::parse(&bytes[..len]).is_err(), "cut at {len}");
        }
        assert!(matches!(
            Stored::parse(&[0x07, 1, 2]),
            Err(RecordError::UnknownFormat(0x07))
        ));
        let mut long = record();
        long.message_id = "x".repeat(300);
        assert!(matches!(
            long.to_bytes(),
            Err(RecordError::TooLong {
                field: "message id",
                ..
            })
        ));
    }
}
