//! The JSON Schema files (draft 2020-12) generated from the Rust types, so that the schema
//! other languages validate against says exactly what the decoder checks. The files in
//! `schemas/json/` are this module's output, committed and checked by a test, never edited by
//! hand. A few rules a schema cannot state are checked by the decoder only; EVENTS.md lists them.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value, json};

use crate::envelope::{DataContentType, SPEC_VERSION};
use crate::event_type::EventType;
use crate::identifiers::{EventId, Sequence, Subject};
use crate::payloads::{
    GroupAdded, GroupMembersChanged, GroupRemoved, OnlineAccount, OnlineAccountUnassigned,
    UserAdded, UserAliasAdded, UserAliasRemoved, UserDeactivated, UserPasswordChanged,
    UserReactivated, UserRemoved,
};
use crate::uri::{DataSchema, Source};

/// The dialect every generated file declares.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// One generated file: its name in `schemas/json/` and its contents (pretty JSON, newline at
/// the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFile {
    /// File name, e.g. `moss.user.added.v1.json` or `envelope.json`.
    pub name: String,
    /// The file's text.
    pub contents: String,
}

/// Every file of `schemas/json/`: one per event type, then `envelope.json`.
pub fn schema_files() -> Vec<SchemaFile> {
    let mut files: Vec<SchemaFile> = EventType::ALL
        .iter()
        .map(|event_type| SchemaFile {
            name: format!("{event_type}.json"),
            contents: pretty(&event_schema(*event_type)),
        })
        .collect();
    files.push(SchemaFile {
        name: "envelope.json".to_owned(),
        contents: pretty(&envelope_schema()),
    });
    files
}

fn pretty(schema: &Schema) -> String {
    let mut text = serde_json::to_string_pretty(&schema)
        .unwrap_or_else(|_| unreachable!("a schema is plain JSON"));
    text.push('\n');
    text
}

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().into_generator()
}

/// The schema of one event of `event_type`: the envelope with that `type` and its `data`.
pub fn event_schema(event_type: EventType) -> Schema {
    let mut generator = generator();
    let type_schema = json!({ "const": event_type.as_str() });
    let data_schema = data_schema(&mut generator, event_type);
    let mut schema = envelope_object(&mut generator, type_schema, data_schema);
    schema.insert("title".to_owned(), json!(event_type.as_str()));
    schema.insert("description".to_owned(), json!(describe(event_type)));
    finish(schema, &mut generator)
}

/// The schema of any moss event: the envelope whose `data` follows the schema its `type`
/// names.
pub fn envelope_schema() -> Schema {
    let mut generator = generator();
    let type_schema = generator.subschema_for::<EventType>().to_value();
    let mut schema = envelope_object(&mut generator, type_schema, json!({ "type": "object" }));
    let by_type: Vec<Value> = EventType::ALL
        .iter()
        .map(|event_type| {
            json!({
                "if": {
                    "properties": { "type": { "const": event_type.as_str() } },
                    "required": ["type"]
                },
                "then": { "properties": { "data": data_schema(&mut generator, *event_type) } }
            })
        })
        .collect();
    schema.insert("title".to_owned(), json!("moss event"));
    schema.insert(
        "description".to_owned(),
        json!("A moss event: a CloudEvents 1.0 structured-mode JSON envelope whose data follows the schema of its type."),
    );
    schema.insert("allOf".to_owned(), Value::Array(by_type));
    finish(schema, &mut generator)
}

fn finish(mut schema: serde_json::Map<String, Value>, generator: &mut SchemaGenerator) -> Schema {
    let definitions = generator.take_definitions(true);
    schema.insert("$defs".to_owned(), Value::Object(definitions));
    let mut ordered = serde_json::Map::new();
    ordered.insert("$schema".to_owned(), json!(DIALECT));
    ordered.extend(schema);
    Schema::from(ordered)
}

fn envelope_object(
    generator: &mut SchemaGenerator,
    type_schema: Value,
    data_schema: Value,
) -> serde_json::Map<String, Value> {
    let mut properties = json!({
        "specversion": { "description": "The CloudEvents version.", "const": SPEC_VERSION },
        "id": generator.subschema_for::<EventId>(),
        "source": generator.subschema_for::<Source>(),
        "subject": generator.subschema_for::<Subject>(),
        "time": {
            "description": "When the change happened: an RFC 3339 timestamp; moss writes UTC with Z.",
            "type": "string",
            "format": "date-time"
        },
        "sequence": generator.subschema_for::<Sequence>(),
        "dataschema": generator.subschema_for::<DataSchema>(),
        "datacontenttype": generator.subschema_for::<DataContentType>(),
    });
    properties["type"] = type_schema;
    properties["data"] = data_schema;
    let Value::Object(object) = json!({
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "sequence", "data"],
        "properties": properties,
    }) else {
        unreachable!("a json! object literal is an object")
    };
    object
}

fn data_schema(generator: &mut SchemaGenerator, event_type: EventType) -> Value {
    fn of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
        generator.subschema_for::<T>().to_value()
    }
    match event_type {
        EventType::UserAdded => of::<UserAdded>(generator),
        EventType::UserPasswordChanged => of::<UserPasswordChanged>(generator),
        EventType::UserDeactivated => of::<UserDeactivated>(generator),
        EventType::UserReactivated => of::<UserReactivated>(generator),
        EventType::UserRemoved => of::<UserRemoved>(generator),
        EventType::OnlineAccountAssigned => of::<OnlineAccount>(generator),
        EventType::OnlineAccountUnassigned => of::<OnlineAccountUnassigned>(generator),
        EventType::UserAliasAdded => of::<UserAliasAdded>(generator),
        EventType::UserAliasRemoved => of::<UserAliasRemoved>(generator),
        EventType::GroupAdded => of::<GroupAdded>(generator),
        EventType::GroupMembersChanged => of::<GroupMembersChanged>(generator),
        EventType::GroupRemoved => of::<GroupRemoved>(generator),
    }
}

fn describe(event_type: EventType) -> &'static str {
    match event_type {
        EventType::UserAdded => {
            "A directory user exists; create or link its online account when data.online_account is given."
        }
        EventType::UserPasswordChanged => {
            "The user's password changed; set the online password (password sync). The password is sealed."
        }
        EventType::UserDeactivated => {
            "The user is deactivated: block online sign-in, keep the data."
        }
        EventType::UserReactivated => "The user is active again: allow online sign-in.",
        EventType::UserRemoved => "The user is removed: delete the online account (soft delete).",
        EventType::OnlineAccountAssigned => {
            "The user has this online account (created or linked) with exactly these licences."
        }
        EventType::OnlineAccountUnassigned => {
            "The user has no online account any more: remove licences, block sign-in, keep the mapping."
        }
        EventType::UserAliasAdded => "The user's mailbox answers to this address too.",
        EventType::UserAliasRemoved => "The user's mailbox no longer answers to this address.",
        EventType::GroupAdded => {
            "A distribution group exists with this name, alias, sender policy and members."
        }
        EventType::GroupMembersChanged => {
            "These members are added to and removed from the distribution group."
        }
        EventType::GroupRemoved => "The distribution group is removed.",
    }
}
