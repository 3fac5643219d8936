//! Identifiers in the envelope: the event's id, the directory object it is about (the
//! subject, which also picks the partition) and the directory's per-object change number.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::reader::{Field, Reader};
use crate::violation::ValueError;

const GUID_PATTERN: &str = "^(?!0{8}-0{4}-0{4}-0{4}-0{12}$)[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";

/// Parses the hyphenated 8-4-4-4-12 form in either case, and nothing else (no braces, URNs or
/// bare hex), so that one object never has two spellings once normalised.
fn parse_guid(text: &str, rule_prefix: &'static str) -> Result<Uuid, ValueError> {
    let (format_rule, nil_rule) = match rule_prefix {
        "id" => ("id.format", "id.nil"),
        _ => ("subject.format", "subject.nil"),
    };
    let hyphenated = text.len() == 36
        && text.char_indices().all(|(index, character)| match index {
            8 | 13 | 18 | 23 => character == '-',
            _ => character.is_ascii_hexdigit(),
        });
    if !hyphenated {
        return Err(ValueError::new(
            format_rule,
            "must be a GUID in the hyphenated form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
        ));
    }
    let guid = Uuid::parse_str(text)
        .map_err(|_| ValueError::new(format_rule, "must be a GUID in the hyphenated form"))?;
    if guid.is_nil() {
        return Err(ValueError::new(nil_rule, "must not be the nil GUID"));
    }
    Ok(guid)
}

/// The event's id (CloudEvents `id`): a UUID, v7 when moss makes it, any version accepted.
/// Consumers deduplicate by it; a replay keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(Uuid);

impl EventId {
    /// A fresh, time-ordered id (UUID v7).
    #[allow(
        clippy::new_without_default,
        reason = "a default id would hide that each call makes a new one"
    )]
    pub fn new() -> EventId {
        EventId(Uuid::now_v7())
    }

    /// Parses the hyphenated form, any case; the nil UUID is refused.
    pub fn parse(text: &str) -> Result<EventId, ValueError> {
        parse_guid(text, "id").map(EventId)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for EventId {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<EventId, ValueError> {
        EventId::parse(text)
    }
}

impl TryFrom<Uuid> for EventId {
    type Error = ValueError;
    fn try_from(uuid: Uuid) -> Result<EventId, ValueError> {
        if uuid.is_nil() {
            return Err(ValueError::new("id.nil", "must not be the nil GUID"));
        }
        Ok(EventId(uuid))
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0.hyphenated())
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<EventId, D::Error> {
        let text = String::deserialize(deserializer)?;
        EventId::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for EventId {
    fn schema_name() -> Cow<'static, str> {
        "EventId".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The event's id: a UUID in hyphenated form (v7 when moss makes it), not nil.",
            "type": "string",
            "pattern": GUID_PATTERN,
        })
    }
}

impl Field for EventId {
    fn read(reader: &mut Reader, value: &serde_json::Value, pointer: &str) -> Option<EventId> {
        let text = reader.string(value, pointer)?;
        EventId::parse(text)
            .map_err(|error| reader.report_value_error(pointer, error))
            .ok()
    }
}

/// The directory's immutable id of the user or group an event is about (CloudEvents
/// `subject`): Active Directory's objectGUID or LDAP's entryUUID in the GUID's standard text
/// form, normalised to lower case. Renames never change it, so it anchors the online object
/// and picks the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subject(Uuid);

/// FNV-1a 64-bit offset basis and prime (http://www.isthe.com/chongo/tech/comp/fnv/).
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Subject {
    /// Parses the hyphenated form in either case; braces, URNs, bare hex and the nil GUID are
    /// refused.
    pub fn parse(text: &str) -> Result<Subject, ValueError> {
        parse_guid(text, "subject").map(Subject)
    }

    /// The GUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The partition this subject's events go to: FNV-1a 64-bit over the UTF-8 bytes of the
    /// normalised (lower-case, hyphenated) subject, modulo `partitions`. Part of the contract:
    /// every producer must agree, so it never changes within `v1`.
    ///
    /// # Panics
    ///
    /// If `partitions` is 0; configuration checks that it is at least 1 before any event flows.
    pub fn partition(&self, partitions: u16) -> u16 {
        assert!(
            partitions > 0,
            "the number of partitions must be at least 1"
        );
        let mut text = [0_u8; 36];
        let normalised = self.0.hyphenated().encode_lower(&mut text);
        let hash = normalised.bytes().fold(FNV_OFFSET_BASIS, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
        });
        u16::try_from(hash % u64::from(partitions))
            .unwrap_or_else(|_| unreachable!("remainder below a u16"))
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for Subject {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Subject, ValueError> {
        Subject::parse(text)
    }
}

impl TryFrom<Uuid> for Subject {
    type Error = ValueError;
    fn try_from(uuid: Uuid) -> Result<Subject, ValueError> {
        if uuid.is_nil() {
            return Err(ValueError::new("subject.nil", "must not be the nil GUID"));
        }
        Ok(Subject(uuid))
    }
}

impl Serialize for Subject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0.hyphenated())
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Subject, D::Error> {
        let text = String::deserialize(deserializer)?;
        Subject::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Subject {
    fn schema_name() -> Cow<'static, str> {
        "Subject".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The directory's immutable object id (objectGUID or entryUUID) as a hyphenated GUID, not nil; moss writes it in lower case.",
            "type": "string",
            "pattern": GUID_PATTERN,
        })
    }
}

impl Field for Subject {
    fn read(reader: &mut Reader, value: &serde_json::Value, pointer: &str) -> Option<Subject> {
        let text = reader.string(value, pointer)?;
        Subject::parse(text)
            .map_err(|error| reader.report_value_error(pointer, error))
            .ok()
    }
}

/// The directory's per-object change number (the CloudEvents `sequence` extension): USN, CSN
/// or a producer's counter, increasing per subject. A string of decimal digits on the wire, as
/// the extension defines it; no sign, no leading zero, at most `u64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sequence(pub u64);

impl Sequence {
    /// Parses a string of decimal digits.
    pub fn parse(text: &str) -> Result<Sequence, ValueError> {
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(ValueError::new(
                "sequence.format",
                "must be a string of decimal digits, as in \"42\"",
            ));
        }
        if text.len() > 1 && text.starts_with('0') {
            return Err(ValueError::new(
                "sequence.format",
                "must not have leading zeros",
            ));
        }
        text.parse::<u64>().map(Sequence).map_err(|_| {
            ValueError::new("sequence.overflow", "must not exceed 18446744073709551615")
        })
    }

    /// The number.
    pub fn value(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Sequence {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Sequence, ValueError> {
        Sequence::parse(text)
    }
}

impl From<u64> for Sequence {
    fn from(value: u64) -> Sequence {
        Sequence(value)
    }
}

impl Serialize for Sequence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sequence {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Sequence, D::Error> {
        let text = String::deserialize(deserializer)?;
        Sequence::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Sequence {
    fn schema_name() -> Cow<'static, str> {
        "Sequence".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The directory's per-object change number as a string of decimal digits without leading zeros, at most 18446744073709551615 (the upper bound is checked by the decoder, not by this pattern).",
            "type": "string",
            "maxLength": 20,
            "pattern": "^(0|[1-9][0-9]*)$",
        })
    }
}

impl Field for Sequence {
    fn read(reader: &mut Reader, value: &serde_json::Value, pointer: &str) -> Option<Sequence> {
        let Some(text) = value.as_str() else {
            reader.report(pointer, "expected.string", "must be a JSON string of decimal digits, as in \"42\" (CloudEvents defines sequence as a string)");
            return None;
        };
        Sequence::parse(text)
            .map_err(|error| reader.report_value_error(pointer, error))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upper_case_subject_is_normalised_to_lower_case() {
        let subject = Subject::parse("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
        assert_eq!(subject.to_string(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
    }

    #[test]
    fn a_braced_subject_is_refused() {
        let error = Subject::parse("{6f9619ff-8b86-d011-b42d-00c04fc964ff}").unwrap_err();
        assert_eq!(error.rule, "subject.format");
    }

    #[test]
    fn a_sequence_past_u64_is_an_overflow() {
        assert_eq!(
            Sequence::parse("18446744073709551616").unwrap_err().rule,
            "sequence.overflow"
        );
        assert_eq!(
            Sequence::parse("18446744073709551615").unwrap(),
            Sequence(u64::MAX)
        );
    }

    #[test]
    fn a_sequence_with_a_sign_or_leading_zero_is_refused() {
        for text in ["", "-1", "+1", "01", "1.0", " 1"] {
            assert_eq!(
                Sequence::parse(text).unwrap_err().rule,
                "sequence.format",
                "{text:?}"
            );
        }
    }

    #[test]
    fn new_event_ids_are_version_7() {
        assert_eq!(EventId::new().as_uuid().get_version_num(), 7);
    }
}
