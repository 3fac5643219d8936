//! Quarantined subjects: a subject whose event was dead-lettered, and the id of that event.
//! Later events of the subject are dead-lettered behind it, so that a replay of the dead
//! letters (in order) restores the subject's order; the replay of the blocking event lifts it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{SledResultExt, StoreError};
use crate::store::Store;

/// Why a subject is quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// The dead-lettered event that blocks the subject.
    pub blocking_event_id: String,
    /// Its error class, for the operator.
    pub error_class: String,
    /// When the subject was quarantined, milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
}

/// Subject → [`QuarantineRecord`].
#[derive(Clone)]
pub struct Quarantine {
    store: Store,
    tree: sled::Tree,
}

impl fmt::Debug for Quarantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quarantine").finish_non_exhaustive()
    }
}

impl Quarantine {
    pub(crate) fn new(store: Store, tree: sled::Tree) -> Quarantine {
        Quarantine { store, tree }
    }

    /// Why `subject` is quarantined, if it is.
    pub fn get(&self, subject: &str) -> Result<Option<QuarantineRecord>, StoreError> {
        self.tree
            .get(subject.as_bytes())
            .during("read the quarantine")?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Quarantines `subject` behind `record.blocking_event_id`, flushed before it returns.
    /// A subject already quarantined keeps its first blocking event.
    pub fn enter(&self, subject: &str, record: &QuarantineRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Decode {
            record: "quarantine",
            source,
        })?;
        let _ = self
            .tree
            .compare_and_swap(subject.as_bytes(), None::<&[u8]>, Some(bytes))
            .during("quarantine a subject")?;
        self.store.flush()
    }

    /// Lifts the quarantine of `subject`, flushed before it returns.
    pub fn lift(&self, subject: &str) -> Result<(), StoreError> {
        self.tree
            .remove(subject.as_bytes())
            .during("lift a quarantine")?;
        self.store.flush()
    }

    /// The number of quarantined subjects; O(entries).
    #[must_use]
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// True when no subject is quarantined.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

fn decode(bytes: &[u8]) -> Result<QuarantineRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        record: "quarantine",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> QuarantineRecord {
        QuarantineRecord {
            blocking_event_id: id.into(),
            error_class: "permanent".into(),
            since_unix_ms: 1,
        }
    }

    #[test]
    fn the_first_blocking_event_stays_until_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let quarantine = store.quarantine().unwrap();
        quarantine.enter("s", &record("first")).unwrap();
        quarantine.enter("s", &record("second")).unwrap();
        assert_eq!(
            quarantine.get("s").unwrap().unwrap().blocking_event_id,
            "first"
        );
        quarantine.lift("s").unwrap();
        assert_eq!(quarantine.get("s").unwrap(), None);
        assert!(quarantine.is_empty());
    }
}
