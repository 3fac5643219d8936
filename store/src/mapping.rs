//! Directory subject → online object: which Entra user or Exchange group a directory object is
//! linked to, and in which state the worker left it. Written by the workers (moss-workers).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{SledResultExt, StoreError};
use crate::store::Store;

/// What kind of online object a subject is linked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappedKind {
    /// An Entra ID user (object id + UPN).
    User,
    /// An Exchange Online distribution group (name).
    Group,
}

/// The state the worker left the online object in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappedState {
    /// About to be created: written before a create that is not idempotent, so that a retry
    /// that finds the object recognises it as its own.
    Pending,
    /// Exists and may sign in (user) or receive mail (group).
    Active,
    /// Sign-in blocked, data kept (a deactivated user).
    Inactive,
    /// Online account unassigned: licences removed, sign-in blocked, link kept.
    Unassigned,
    /// Deleted online.
    Removed,
}

/// One subject's link to its online object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingRecord {
    /// User or group.
    pub kind: MappedKind,
    /// The online object id (Entra object id), when known.
    pub online_id: Option<String>,
    /// The user principal name (user) or the group name (group).
    pub name: String,
    /// Where the worker left it.
    pub state: MappedState,
    /// When this record was written, milliseconds since the Unix epoch.
    pub updated_at_unix_ms: u64,
}

/// Subject → [`MappingRecord`].
#[derive(Clone)]
pub struct Mapping {
    store: Store,
    tree: sled::Tree,
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping").finish_non_exhaustive()
    }
}

impl Mapping {
    pub(crate) fn new(store: Store, tree: sled::Tree) -> Mapping {
        Mapping { store, tree }
    }

    /// The link of `subject`, if there is one.
    pub fn get(&self, subject: &str) -> Result<Option<MappingRecord>, StoreError> {
        self.tree
            .get(subject.as_bytes())
            .during("read the mapping")?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Decode {
                    record: "mapping",
                    source,
                })
            })
            .transpose()
    }

    /// Writes the link of `subject`, flushed before it returns. Blocking (one fsync).
    pub fn put(&self, subject: &str, record: &MappingRecord) -> Result<(), StoreError> {
        self.put_unflushed(subject, record)?;
        self.store.flush()
    }

    /// Writes the link of `subject` without waiting for the disk: it becomes durable with the
    /// store's next flush (sled's log is written in order, so any later flush covers it, and
    /// the background flush does within half a second). A worker handler uses it because the
    /// ledger record that settles the event is flushed before the ack; a crash before then
    /// loses the link together with the event's settlement, and the redelivered event finds
    /// the account again by its anchor. Blocking (no fsync).
    pub fn put_unflushed(&self, subject: &str, record: &MappingRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Decode {
            record: "mapping",
            source,
        })?;
        self.tree
            .insert(subject.as_bytes(), bytes)
            .during("write the mapping")?;
        Ok(())
    }

    /// Every link, in subject order (for `moss status` and `moss accounts`).
    pub fn all(&self) -> Result<Vec<(String, MappingRecord)>, StoreError> {
        self.tree
            .iter()
            .map(|item| {
                let (key, value) = item.during("read the mapping")?;
                let record =
                    serde_json::from_slice(&value).map_err(|source| StoreError::Decode {
                        record: "mapping",
                        source,
                    })?;
                Ok((String::from_utf8_lossy(&key).into_owned(), record))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_survives_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let record = MappingRecord {
            kind: MappedKind::User,
            online_id: Some("4d1f".into()),
            name: "a.vance@contoso.example".into(),
            state: MappedState::Active,
            updated_at_unix_ms: 1,
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store.mapping().unwrap().put("subject-1", &record).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let mapping = store.mapping().unwrap();
        assert_eq!(mapping.get("subject-1").unwrap(), Some(record));
        assert_eq!(mapping.get("subject-2").unwrap(), None);
        assert_eq!(mapping.all().unwrap().len(), 1);
    }
}
