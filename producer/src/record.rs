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
//!
//! Since version 2 one outbox entry holds a *group* of events (what one group commit of the
//! ingest stored together), so sled inserts and removes one value per group instead of one per
//! event:
//!
//! ```text
//! 0x02                      format version
//! u32 (LE) count            how many events follow, at least 1
//! count times:
//!   u32 (LE) len, record    a version-1 record (above) of len bytes
//! ```
//!
//! A single-event record (version 1 or JSON) reads as a group of one, so an outbox written by an
//! earlier version drains after an upgrade.

use serde::Deserialize;

/// The first byte of a binary record.
const BINARY_V1: u8 = 0x01;
/// The first byte of a group of binary records.
const GROUP_V2: u8 = 0x02;

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
    #[error("the group holds no events")]
    EmptyGroup,
    #[error("the group has {0} bytes after its last event")]
    TrailingBytes(usize),
}

/// Packs version-1 records (from [`OutboxRecord::to_bytes`], in order) into one group entry.
pub(crate) fn pack_group<'r>(records: impl IntoIterator<Item = &'r [u8]>) -> Vec<u8> {
    let mut out = vec![GROUP_V2, 0, 0, 0, 0];
    let mut count: u32 = 0;
    for record in records {
        let len = u32::try_from(record.len()).expect("an outbox record is far below 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(record);
        count += 1;
    }
    out[1..5].copy_from_slice(&count.to_le_bytes());
    out
}

/// How many events a stored entry holds, from its header alone (1 for a single-event record;
/// 0 for an entry too short to say, which the relay reports when it reads it).
pub(crate) fn event_count(bytes: &[u8]) -> usize {
    match bytes {
        [GROUP_V2, a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]) as usize,
        [GROUP_V2, ..] | [] => 0,
        _ => 1,
    }
}

/// Reads a stored entry, either a group or a single-event record of any version, as its events
/// in order. All or nothing: an entry with one unreadable event is unreadable.
pub(crate) fn parse_entry(bytes: &[u8]) -> Result<Vec<Stored<'_>>, RecordError> {
    if bytes.first() != Some(&GROUP_V2) {
        return Stored::parse(bytes).map(|stored| vec![stored]);
    }
    let mut reader = Reader { bytes, at: 1 };
    let count = reader.u32()? as usize;
    if count == 0 {
        return Err(RecordError::EmptyGroup);
    }
    // Every event takes at least its 4-byte length: a corrupt count cannot make us allocate.
    let mut events = Vec::with_capacity(count.min(bytes.len() / 4));
    for _ in 0..count {
        let len = reader.u32()? as usize;
        let record = reader.slice(len)?;
        match record.first() {
            Some(&BINARY_V1) => events.push(Stored::Binary(parse_binary(record)?)),
            Some(&other) => return Err(RecordError::UnknownFormat(other)),
            None => {
                return Err(RecordError::Truncated {
                    at: reader.at,
                    len: bytes.len(),
                });
            }
        }
    }
    if reader.at != bytes.len() {
        return Err(RecordError::TrailingBytes(bytes.len() - reader.at));
    }
    Ok(events)
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

    fn u32(&mut self) -> Result<u32, RecordError> {
        let bytes = self.slice(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn slice(&mut self, len: usize) -> Result<&'a [u8], RecordError> {
        let slice = self
            .at
            .checked_add(len)
            .and_then(|end| self.bytes.get(self.at..end))
            .ok_or(RecordError::Truncated {
                at: self.at,
                len: self.bytes.len(),
            })?;
        self.at += len;
        Ok(slice)
    }

    fn str(&mut self, field: &'static str, len: usize) -> Result<&'a str, RecordError> {
        let slice = self.slice(len)?;
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
    fn a_group_gives_back_its_events_in_order() {
        let mut second = record();
        second.message_id = "second".to_owned();
        second.routing_key = "p1".to_owned();
        let records = [record().to_bytes().unwrap(), second.to_bytes().unwrap()];
        let group = pack_group(records.iter().map(Vec::as_slice));
        assert_eq!(event_count(&group), 2);
        let events = parse_entry(&group).unwrap();
        let views: Vec<_> = events.iter().map(Stored::view).collect();
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].message_id, record().message_id);
        assert_eq!(views[0].body, record().body.as_slice());
        assert_eq!(views[1].message_id, "second");
        assert_eq!(views[1].routing_key, "p1");
    }

    #[test]
    fn a_single_event_record_of_either_earlier_version_reads_as_a_group_of_one() {
        let binary = record().to_bytes().unwrap();
        assert_eq!(event_count(&binary), 1);
        let events = parse_entry(&binary).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].view().message_id, record().message_id);
        let json = br#"{"message_id":"id-1","routing_key":"p0","body":"{}"}"#;
        assert_eq!(event_count(json), 1);
        assert_eq!(parse_entry(json).unwrap()[0].view().message_id, "id-1");
    }

    #[test]
    fn a_cut_or_corrupt_group_is_an_error_not_a_panic() {
        let records = [record().to_bytes().unwrap(), record().to_bytes().unwrap()];
        let group = pack_group(records.iter().map(Vec::as_slice));
        for len in 0..group.len() {
            assert!(parse_entry(&group[..len]).is_err(), "cut at {len}");
        }
        let mut longer = group.clone();
        longer.push(0);
        assert!(matches!(
            parse_entry(&longer),
            Err(RecordError::TrailingBytes(1))
        ));
        assert!(matches!(
            parse_entry(&pack_group(std::iter::empty())),
            Err(RecordError::EmptyGroup)
        ));
        let mut huge_count = group;
        huge_count[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_entry(&huge_count).is_err());
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
