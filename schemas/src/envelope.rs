//! The CloudEvents 1.0 envelope in structured JSON mode, single and batched, and its decoders:
//! the wire decoder (sealed passwords only) and the ingest decoder (which seals
//! `{"clear": "…"}` passwords at once).

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use secrecy::SecretString;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use zeroize::Zeroize;

use crate::event_type::EventType;
use crate::identifiers::{EventId, Sequence, Subject};
use crate::keys::SealingKey;
use crate::payloads::EventData;
use crate::reader::{Field, Reader};
use crate::sealed::{SealError, SealedSecret};
use crate::uri::{DataSchema, Source};
use crate::violation::{DecodeError, ValueError, child_pointer};

/// The only CloudEvents version moss speaks.
pub const SPEC_VERSION: &str = "1.0";

/// One moss event: CloudEvents 1.0 attributes around typed `data`. The `type` attribute is
/// derived from `data`, so the two cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `id`: unique per event; a replay keeps it.
    pub id: EventId,
    /// `source`: who produced it, e.g. `moss-producer/ldap://dc1`.
    pub source: Source,
    /// `subject`: the directory object it is about; picks the partition.
    pub subject: Subject,
    /// `time`: when the change happened in the directory (or was observed).
    pub time: DateTime<Utc>,
    /// `sequence`: the directory's per-object change number; orders a subject's events.
    pub sequence: Sequence,
    /// `dataschema`: the URI of the schema `data` follows, when the producer names one.
    pub dataschema: Option<DataSchema>,
    /// `datacontenttype`: `application/json` when given; JSON either way.
    pub datacontenttype: Option<DataContentType>,
    /// `data`, typed by event type.
    pub data: EventData,
}

/// The `datacontenttype` values moss accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataContentType {
    /// `application/json`
    Json,
}

impl DataContentType {
    /// The media type.
    pub fn as_str(self) -> &'static str {
        match self {
            DataContentType::Json => "application/json",
        }
    }
}

impl Serialize for DataContentType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl JsonSchema for DataContentType {
    fn schema_name() -> Cow<'static, str> {
        "DataContentType".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({ "description": "The media type of data.", "const": "application/json" })
    }
}

impl Field for DataContentType {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<DataContentType> {
        match reader.string(value, pointer)? {
            "application/json" => Some(DataContentType::Json),
            _ => {
                reader.report(
                    pointer,
                    "datacontenttype.unsupported",
                    "must be application/json when given",
                );
                None
            }
        }
    }
}

impl Field for EventType {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<EventType> {
        let text = reader.string(value, pointer)?;
        EventType::parse(text)
            .map_err(|error| reader.report_value_error(pointer, error))
            .ok()
    }
}

impl Field for DateTime<Utc> {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<DateTime<Utc>> {
        let text = reader.string(value, pointer)?;
        match DateTime::parse_from_rfc3339(text) {
            Ok(time) => Some(time.with_timezone(&Utc)),
            Err(_) => {
                reader.report(
                    pointer,
                    "time.format",
                    "must be an RFC 3339 timestamp, as in 2025-01-31T12:00:00Z",
                );
                None
            }
        }
    }
}

impl Envelope {
    /// Media type of one event in structured mode.
    pub const CONTENT_TYPE: &'static str = "application/cloudevents+json";

    /// A new event with a fresh v7 id and the current time.
    pub fn new(source: Source, subject: Subject, sequence: Sequence, data: EventData) -> Envelope {
        Envelope {
            id: EventId::new(),
            source,
            subject,
            time: Utc::now(),
            sequence,
            dataschema: None,
            datacontenttype: None,
            data,
        }
    }

    /// The CloudEvents `type`, derived from `data`.
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }

    /// The partition of this event's subject (see [`Subject::partition`]).
    ///
    /// # Panics
    ///
    /// If `partitions` is 0.
    pub fn partition(&self, partitions: u16) -> u16 {
        self.subject.partition(partitions)
    }

    /// Decodes one event from the wire, reporting every violation. Passwords must be sealed.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        decode_document(bytes, None, read_single)
    }

    /// Decodes one event as the producer's ingest receives it: a password field may hold
    /// `{"clear": "…"}`, which is sealed to `key` at once; the clear text is wiped from the
    /// decoder's memory afterwards. See EVENTS.md for what "wiped" can and cannot promise.
    pub fn from_ingest_json_slice(bytes: &[u8], key: &SealingKey) -> Result<Envelope, DecodeError> {
        decode_document(bytes, Some(key), read_single)
    }

    /// Decodes one event from an already parsed JSON value (wire rules: sealed passwords only).
    pub fn from_json_value(value: &Value) -> Result<Envelope, DecodeError> {
        let mut reader = Reader::default();
        let envelope = read_single(&mut reader, value);
        finish(reader, envelope)
    }

    /// The structured-mode JSON of this event.
    pub fn to_json_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("{}", ENCODING_IS_TOTAL))
    }

    /// The structured-mode JSON of this event as a value.
    pub fn to_json_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| unreachable!("{}", ENCODING_IS_TOTAL))
    }
}

/// Why serialising cannot fail: every field serialises to a string, bool, array or object with
/// string keys, all of which serde_json always writes.
const ENCODING_IS_TOTAL: &str = "an envelope always serialises to JSON";

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("specversion", SPEC_VERSION)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("source", &self.source)?;
        map.serialize_entry("type", &self.event_type())?;
        map.serialize_entry("subject", &self.subject)?;
        map.serialize_entry(
            "time",
            &self.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        )?;
        map.serialize_entry("sequence", &self.sequence)?;
        if let Some(dataschema) = &self.dataschema {
            map.serialize_entry("dataschema", dataschema)?;
        }
        if let Some(datacontenttype) = &self.datacontenttype {
            map.serialize_entry("datacontenttype", datacontenttype)?;
        }
        map.serialize_entry("data", &self.data)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Envelope {
    /// Through [`Envelope::from_json_value`], so serde users get the same rules (and the list
    /// of every violation in the error text).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Envelope, D::Error> {
        let mut value = Value::deserialize(deserializer)?;
        let decoded = Envelope::from_json_value(&value);
        wipe(&mut value);
        decoded.map_err(serde::de::Error::custom)
    }
}

/// A batch of events (`application/cloudevents-batch+json`): a non-empty JSON array of
/// structured events. Violations point into it, as in `/0/data/online_account/upn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBatch {
    /// The events, in the order given.
    pub events: Vec<Envelope>,
}

impl EventBatch {
    /// Media type of a batch.
    pub const CONTENT_TYPE: &'static str = "application/cloudevents-batch+json";

    /// Decodes a batch from the wire, reporting every violation of every event.
    pub fn from_json_slice(bytes: &[u8]) -> Result<EventBatch, DecodeError> {
        decode_document(bytes, None, read_batch)
    }

    /// Decodes a batch as the producer's ingest receives it, sealing `{"clear": "…"}`
    /// passwords to `key` (see [`Envelope::from_ingest_json_slice`]).
    pub fn from_ingest_json_slice(
        bytes: &[u8],
        key: &SealingKey,
    ) -> Result<EventBatch, DecodeError> {
        decode_document(bytes, Some(key), read_batch)
    }

    /// The batch's JSON.
    pub fn to_json_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("{}", ENCODING_IS_TOTAL))
    }
}

impl Serialize for EventBatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.events.serialize(serializer)
    }
}

fn decode_document<T>(
    bytes: &[u8],
    sealing_key: Option<&SealingKey>,
    read: fn(&mut Reader, &Value) -> Option<T>,
) -> Result<T, DecodeError> {
    let mut value: Value = serde_json::from_slice(bytes).map_err(|error| DecodeError {
        violations: vec![crate::violation::Violation {
            pointer: String::new(),
            rule: "json.syntax".to_owned(),
            message: format!(
                "is not valid JSON (line {}, column {})",
                error.line(),
                error.column()
            ),
        }],
    })?;
    let mut reader = Reader::default();
    if let Some(key) = sealing_key {
        seal_clear_passwords(&mut reader, &mut value, key);
    }
    let decoded = read(&mut reader, &value);
    wipe(&mut value);
    finish(reader, decoded)
}

fn finish<T>(reader: Reader, decoded: Option<T>) -> Result<T, DecodeError> {
    match decoded {
        Some(decoded) if !reader.has_violations() => Ok(decoded),
        _ => {
            let mut violations = reader.into_violations();
            if violations.is_empty() {
                // A reader that refused a value always says why; this guards the invariant
                // that an error is never empty.
                violations.push(crate::violation::Violation {
                    pointer: String::new(),
                    rule: "invalid".to_owned(),
                    message: "is not a valid moss event".to_owned(),
                });
            }
            Err(DecodeError { violations })
        }
    }
}

fn read_single(reader: &mut Reader, value: &Value) -> Option<Envelope> {
    let envelope = read_envelope(reader, value, "");
    scan_for_clear_passwords(reader, value, "", &password_pointers(value, ""));
    envelope
}

fn read_batch(reader: &mut Reader, value: &Value) -> Option<EventBatch> {
    let Value::Array(items) = value else {
        reader.report(
            "",
            "expected.array",
            "a batch must be a JSON array of events",
        );
        return None;
    };
    if items.is_empty() {
        reader.report("", "batch.empty", "a batch must hold at least one event");
        return None;
    }
    let mut events = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let pointer = format!("/{index}");
        if let Some(envelope) = read_envelope(reader, item, &pointer) {
            events.push(envelope);
        }
        scan_for_clear_passwords(reader, item, &pointer, &password_pointers(item, &pointer));
    }
    (events.len() == items.len()).then_some(EventBatch { events })
}

fn read_envelope(reader: &mut Reader, value: &Value, pointer: &str) -> Option<Envelope> {
    let object = reader.object(value, pointer)?;
    let specversion_is_valid = read_specversion(reader, object, pointer);
    let id = reader.required(object, pointer, "id");
    let source = reader.required(object, pointer, "source");
    let event_type: Option<EventType> = reader.required(object, pointer, "type");
    let subject = reader.required(object, pointer, "subject");
    let time = reader.required(object, pointer, "time");
    let sequence = reader.required(object, pointer, "sequence");
    let dataschema = reader.optional(object, pointer, "dataschema");
    let datacontenttype = reader.optional(object, pointer, "datacontenttype");
    let data_pointer = child_pointer(pointer, "data");
    let data = match object.get("data") {
        None | Some(Value::Null) => {
            reader.report(
                &data_pointer,
                "required",
                "`data` is required ({} for types without data)",
            );
            None
        }
        Some(data) => match event_type {
            Some(event_type) => EventData::read(reader, event_type, data, &data_pointer),
            None => {
                reader.object(data, &data_pointer);
                None
            }
        },
    };
    specversion_is_valid.then_some(())?;
    Some(Envelope {
        id: id?,
        source: source?,
        subject: subject?,
        time: time?,
        sequence: sequence?,
        dataschema: dataschema?,
        datacontenttype: datacontenttype?,
        data: data?,
    })
}

fn read_specversion(reader: &mut Reader, object: &Map<String, Value>, pointer: &str) -> bool {
    let specversion_pointer = child_pointer(pointer, "specversion");
    match object.get("specversion") {
        None | Some(Value::Null) => {
            reader.report(
                &specversion_pointer,
                "required",
                "`specversion` is required and must be \"1.0\"",
            );
            false
        }
        Some(Value::String(version)) if version == SPEC_VERSION => true,
        Some(Value::String(_)) => {
            reader.report(
                &specversion_pointer,
                "specversion.unsupported",
                "must be \"1.0\" (CloudEvents 1.0)",
            );
            false
        }
        Some(_) => {
            reader.report(
                &specversion_pointer,
                "expected.string",
                "must be the string \"1.0\"",
            );
            false
        }
    }
}

/// Pointers of the typed password fields of the event at `pointer`, by its `type`.
fn password_pointers(value: &Value, pointer: &str) -> Vec<String> {
    let event_type = value
        .get("type")
        .and_then(Value::as_str)
        .and_then(|text| EventType::parse(text).ok());
    let data_pointer = child_pointer(pointer, "data");
    event_type
        .map(|event_type| {
            event_type
                .password_fields()
                .iter()
                .map(|field| child_pointer(&data_pointer, field))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a member name suggests it holds a secret.
fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "clear"
        || ["password", "passwd", "passphrase", "secret"]
            .iter()
            .any(|word| key.contains(word))
}

/// Reports a clear-text password anywhere outside the typed password fields (which report
/// their own): a member whose name suggests a secret and that holds a string which is not a
/// sealed secret, or an object with a `clear` member. Such a member would otherwise be ignored
/// as unknown, and the clear text would sit in the producer's input.
fn scan_for_clear_passwords(
    reader: &mut Reader,
    value: &Value,
    pointer: &str,
    typed_fields: &[String],
) {
    match value {
        Value::Object(object) => {
            for (key, member) in object {
                let member_pointer = child_pointer(pointer, key);
                if typed_fields.contains(&member_pointer) {
                    continue;
                }
                let holds_clear_text = match member {
                    Value::String(text) => {
                        names_a_secret(key) && SealedSecret::parse(text).is_err()
                    }
                    Value::Object(inner) => {
                        inner.get("clear").is_some_and(|clear| !clear.is_null())
                    }
                    _ => false,
                };
                if holds_clear_text {
                    reader.report(
                        &member_pointer,
                        "password.clear",
                        "looks like a clear-text secret; passwords travel only sealed, in the fields EVENTS.md names",
                    );
                } else {
                    scan_for_clear_passwords(reader, member, &member_pointer, typed_fields);
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                scan_for_clear_passwords(
                    reader,
                    item,
                    &child_pointer(pointer, &index.to_string()),
                    typed_fields,
                );
            }
        }
        _ => {}
    }
}

/// The ingest step: replaces `{"clear": "…"}` in typed password fields by the sealed secret,
/// wiping the clear text. Other members of that object are dropped with it.
fn seal_clear_passwords(reader: &mut Reader, document: &mut Value, key: &SealingKey) {
    match document {
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                seal_event_passwords(reader, item, &format!("/{index}"), key);
            }
        }
        event => seal_event_passwords(reader, event, "", key),
    }
}

fn seal_event_passwords(reader: &mut Reader, event: &mut Value, pointer: &str, key: &SealingKey) {
    let fields = password_pointers(event, pointer);
    let Some(data) = event.get_mut("data").and_then(Value::as_object_mut) else {
        return;
    };
    let data_pointer = child_pointer(pointer, "data");
    for field_pointer in fields {
        let field = field_pointer
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let Some(Value::Object(password)) = data.get_mut(&field) else {
            continue;
        };
        let Some(clear_value) = password.get_mut("clear") else {
            continue;
        };
        let clear_pointer = child_pointer(&child_pointer(&data_pointer, &field), "clear");
        let Value::String(clear_text) = clear_value else {
            reader.report(
                &clear_pointer,
                "expected.string",
                "a clear password must be a JSON string",
            );
            reader.suppress(&field_pointer);
            continue;
        };
        let mut taken = std::mem::take(clear_text);
        let clear = SecretString::from(taken.as_str());
        taken.zeroize();
        wipe(&mut Value::Object(std::mem::take(password)));
        match SealedSecret::seal(&clear, key) {
            Ok(sealed) => {
                data.insert(field, Value::String(sealed.to_wire_string()));
            }
            Err(error) => {
                let violation = match error {
                    SealError::Empty | SealError::TooLong => ValueError::new(
                        "password.length",
                        format!(
                            "a password must be 1 to {} characters",
                            crate::sealed::MAX_CLEAR_LENGTH
                        ),
                    ),
                    SealError::Encryption(_) | SealError::Write(_) => ValueError::new(
                        "password.seal_failed",
                        "the password could not be sealed to the workers' key",
                    ),
                };
                reader.report_value_error(&clear_pointer, violation);
                reader.suppress(&field_pointer);
            }
        }
    }
}

/// Overwrites every string in a decoded JSON tree before it is freed, so clear passwords do
/// not linger in freed memory. Object keys cannot be reached mutably and are left as they are.
pub(crate) fn wipe(value: &mut Value) {
    match value {
        Value::String(text) => text.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(object) => object.values_mut().for_each(wipe),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
