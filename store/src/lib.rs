//! moss-store: durable local state on sled (outbox, ledger, per-user versions).
//!
//! The only crate that names sled. It stores bytes and small records; it never knows RabbitMQ or
//! Microsoft. Every write a caller relies on for durability (an outbox append before the
//! producer answers 202, a ledger entry before a worker acks) is fsynced before the call returns;
//! `tests/outbox_crash.rs` kills a writer with SIGKILL hundreds of times to hold sled to that.
//!
//! Layout inside the one sled database: a tree `outbox/<name>` per outbox (key: big-endian id
//! from sled's monotonic generator), `ledger` (event id → JSON [`AppliedRecord`]) and
//! `versions` (subject → big-endian last applied sequence); the workers add `mapping` (subject →
//! JSON [`MappingRecord`]) and `quarantine` (subject → JSON [`QuarantineRecord`]) and `delete_window` (the mass-delete guard's
//! recent deletes, see [`DeleteWindow`]); a directory watcher keeps
//! `cursor/<name>` (its cookie and what it last saw of each object, see [`Cursor`]).

mod awaiting;
mod cursor;
mod delete_window;
mod error;
mod group_commit;
mod ledger;
mod mapping;
mod outbox;
mod quarantine;
mod store;

pub use awaiting::{AwaitingLicence, AwaitingRecord};
pub use cursor::{Cursor, CursorWrite};
pub use delete_window::{DeleteKind, DeleteWindow};
pub use error::StoreError;
pub use ledger::{
    AppliedEvent, AppliedRecord, AppliedResult, Ledger, RecordOutcome, RecordVerdict,
    VersionUpdate, Versions,
};
pub use mapping::{MappedKind, MappedState, Mapping, MappingRecord};
pub use outbox::{Outbox, OutboxEntry, OutboxId, OutboxWatch, WatchWake};
pub use quarantine::{Quarantine, QuarantineRecord};
pub use store::Store;
