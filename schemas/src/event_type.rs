//! The closed set of event types (the CloudEvents `type`).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::violation::ValueError;

/// Every event moss knows. The version is part of the name: a new required field makes a new
/// type (`…v2`), never a change to an old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    /// `moss.user.added.v1`
    UserAdded,
    /// `moss.user.password_changed.v1`
    UserPasswordChanged,
    /// `moss.user.deactivated.v1`
    UserDeactivated,
    /// `moss.user.reactivated.v1`
    UserReactivated,
    /// `moss.user.removed.v1`
    UserRemoved,
    /// `moss.online_account.assigned.v1`
    OnlineAccountAssigned,
    /// `moss.online_account.unassigned.v1`
    OnlineAccountUnassigned,
    /// `moss.user.alias_added.v1`
    UserAliasAdded,
    /// `moss.user.alias_removed.v1`
    UserAliasRemoved,
    /// `moss.group.added.v1`
    GroupAdded,
    /// `moss.group.members_changed.v1`
    GroupMembersChanged,
    /// `moss.group.removed.v1`
    GroupRemoved,
}

impl EventType {
    /// Every type, in the order of ARCHITECTURE.md's table.
    pub const ALL: [EventType; 12] = [
        EventType::UserAdded,
        EventType::UserPasswordChanged,
        EventType::UserDeactivated,
        EventType::UserReactivated,
        EventType::UserRemoved,
        EventType::OnlineAccountAssigned,
        EventType::OnlineAccountUnassigned,
        EventType::UserAliasAdded,
        EventType::UserAliasRemoved,
        EventType::GroupAdded,
        EventType::GroupMembersChanged,
        EventType::GroupRemoved,
    ];

    /// The CloudEvents `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UserAdded => "moss.user.added.v1",
            EventType::UserPasswordChanged => "moss.user.password_changed.v1",
            EventType::UserDeactivated => "moss.user.deactivated.v1",
            EventType::UserReactivated => "moss.user.reactivated.v1",
            EventType::UserRemoved => "moss.user.removed.v1",
            EventType::OnlineAccountAssigned => "moss.online_account.assigned.v1",
            EventType::OnlineAccountUnassigned => "moss.online_account.unassigned.v1",
            EventType::UserAliasAdded => "moss.user.alias_added.v1",
            EventType::UserAliasRemoved => "moss.user.alias_removed.v1",
            EventType::GroupAdded => "moss.group.added.v1",
            EventType::GroupMembersChanged => "moss.group.members_changed.v1",
            EventType::GroupRemoved => "moss.group.removed.v1",
        }
    }

    /// Whether the subject of this type is a group (otherwise a user).
    pub fn is_about_a_group(self) -> bool {
        matches!(
            self,
            EventType::GroupAdded | EventType::GroupMembersChanged | EventType::GroupRemoved
        )
    }

    /// The members of `data` that hold a sealed password for this type.
    pub(crate) fn password_fields(self) -> &'static [&'static str] {
        match self {
            EventType::UserAdded => &["initial_password"],
            EventType::UserPasswordChanged => &["password"],
            _ => &[],
        }
    }

    /// Parses a CloudEvents `type`; an unknown one is an error, never a default.
    pub fn parse(text: &str) -> Result<EventType, ValueError> {
        EventType::ALL
            .into_iter()
            .find(|event_type| event_type.as_str() == text)
            .ok_or_else(|| {
                ValueError::new(
                    "type.unknown",
                    "is not a moss event type (see schemas/EVENTS.md for the list)",
                )
            })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<EventType, ValueError> {
        EventType::parse(text)
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<EventType, D::Error> {
        let text = String::deserialize(deserializer)?;
        EventType::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for EventType {
    fn schema_name() -> Cow<'static, str> {
        "EventType".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = EventType::ALL
            .iter()
            .map(|event_type| event_type.as_str())
            .collect();
        json_schema!({
            "description": "The moss event type.",
            "type": "string",
            "enum": names,
        })
    }
}
