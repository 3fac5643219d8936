//! moss-schemas: the event contract between every moss component — the CloudEvents 1.0
//! envelope, the typed `data` of each event type, the validating newtypes its fields are made
//! of, the JSON Schema files generated from them, and sealed passwords.
//!
//! A serialisable type here is a contract (STYLE.md habit 3): changes within a `v1` type are
//! additive, unknown members are ignored on read, and a new required field is a new version.
//! Decoding reports every violation with its JSON pointer and rule, never only the first.
//!
//! serde only: this crate never does I/O and never knows about RabbitMQ, sled, HTTP or
//! Microsoft.

mod addresses;
mod envelope;
mod event_type;
mod identifiers;
pub mod keys;
mod licensing;
mod names;
mod payloads;
mod reader;
pub mod schema;
mod sealed;
mod text;
mod uri;
mod violation;

pub use addresses::{DomainName, EmailAddress, MailAlias, Upn};
pub use envelope::{DataContentType, Envelope, EventBatch, SPEC_VERSION};
pub use event_type::EventType;
pub use identifiers::{EventId, Sequence, Subject};
pub use keys::{KeyError, KeyPair, OpeningKey, SealingKey, generate_key_pair};
pub use licensing::{SkuPartNumber, UsageLocation};
pub use names::{AccountName, Description, DisplayName, GroupName, PersonName, Reason};
pub use payloads::{
    EventData, GroupAdded, GroupMembersChanged, GroupRemoved, OnlineAccount,
    OnlineAccountUnassigned, UserAdded, UserAliasAdded, UserAliasRemoved, UserDeactivated,
    UserPasswordChanged, UserReactivated, UserRemoved,
};
pub use sealed::{
    MAX_CLEAR_LENGTH, MAX_SEALED_LENGTH, OpenError, SEALED_PREFIX, SealError, SealedSecret,
};
pub use uri::{DataSchema, Source};
pub use violation::{DecodeError, ValueError, Violation};
