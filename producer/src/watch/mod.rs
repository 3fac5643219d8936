//! Directory watchers: follow the directory's own change stream and hand what changed to the
//! producer's ingest as events, so administrators need no hook for every change.
//!
//! The watcher speaks to the ingest over HTTP (`POST /v1/events`, one batch per directory
//! change) rather than to the outbox directly: the ingest is the one door that validates, seals
//! and stores with one flush, and a sled database can be open in only one process, so a watcher
//! running beside `moss producer` could not share its outbox. Its own place in the directory (the
//! RFC 4533 cookie and what it last saw of each object) lives in its own moss-store [`Cursor`].
//! Only after the ingest answers `202` does the watcher move its cursor, so a crash in between
//! sends a change twice (workers drop the second as stale), never loses one.
//!
//! [`Cursor`]: moss_store::Cursor

mod csn;
mod directory;
mod ldap;
mod mapping;
mod poll;
mod sink;
mod tls;

pub use directory::{AddOutcome, Directory, DirectoryUser, UnusableUser};
pub use ldap::{LdapWatchSettings, WatchError, WatchMode, run_ldap};
pub use mapping::{DirectoryMapping, DisabledRule, OnlineAccountPolicy};
pub use poll::PollSettings;
pub use sink::IngestSink;
pub use tls::LdapTls;
