//! Users awaiting a licence: the worker created (or linked) their online account, but no seat
//! of a SKU they are to hold was free. They wait here, subject → what they are to hold, until a
//! seat frees and the worker assigns it (moss-workers' `awaiting.rs`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{SledResultExt, StoreError};
use crate::store::Store;

/// One user awaiting a licence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitingRecord {
    /// The online user's object id.
    pub online_id: String,
    /// Its user principal name, for the operator.
    pub upn: String,
    /// Every SKU id the user is to hold (the whole desired set, not only the missing ones).
    pub skus: Vec<String>,
    /// When the user was first parked, milliseconds since the Unix epoch: the oldest gets the
    /// next free seat.
    pub since_unix_ms: u64,
}

/// Subject → [`AwaitingRecord`].
#[derive(Clone)]
pub struct AwaitingLicence {
    store: Store,
    tree: sled::Tree,
}

impl fmt::Debug for AwaitingLicence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitingLicence").finish_non_exhaustive()
    }
}

impl Store {
    /// Users whose online account waits for a free licence seat (workers).
    pub fn awaiting_licence(&self) -> Result<AwaitingLicence, StoreError> {
        let tree = self
            .inner
            .db
            .open_tree("awaiting_licence")
            .during("open the users awaiting a licence")?;
        Ok(AwaitingLicence {
            store: self.clone(),
            tree,
        })
    }
}

impl AwaitingLicence {
    /// What `subject` awaits, if it does.
    pub fn get(&self, subject: &str) -> Result<Option<AwaitingRecord>, StoreError> {
        self.tree
            .get(subject.as_bytes())
            .during("read the users awaiting a licence")?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Parks `subject`, flushed before it returns. A subject already parked keeps its place
    /// in the queue (its first `since_unix_ms`) and takes the new account and SKUs.
    pub fn park(&self, subject: &str, record: &AwaitingRecord) -> Result<(), StoreError> {
        let mut record = record.clone();
        if let Some(earlier) = self.get(subject)? {
            record.since_unix_ms = earlier.since_unix_ms;
        }
        let bytes = serde_json::to_vec(&record).map_err(|source| StoreError::Decode {
            record: "awaiting licence",
            source,
        })?;
        self.tree
            .insert(subject.as_bytes(), bytes)
            .during("park a user awaiting a licence")?;
        self.store.flush()
    }

    /// Takes `subject` off the list, flushed before it returns. True when it was on it.
    pub fn release(&self, subject: &str) -> Result<bool, StoreError> {
        let removed = self
            .tree
            .remove(subject.as_bytes())
            .during("release a user awaiting a licence")?;
        if removed.is_none() {
            return Ok(false);
        }
        self.store.flush()?;
        Ok(true)
    }

    /// Every parked user, oldest first.
    pub fn all(&self) -> Result<Vec<(String, AwaitingRecord)>, StoreError> {
        let mut all = self
            .tree
            .iter()
            .map(|item| {
                let (key, value) = item.during("read the users awaiting a licence")?;
                Ok((String::from_utf8_lossy(&key).into_owned(), decode(&value)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        all.sort_by(|(a_subject, a), (b_subject, b)| {
            (a.since_unix_ms, a_subject).cmp(&(b.since_unix_ms, b_subject))
        });
        Ok(all)
    }

    /// How many users are parked; O(entries).
    #[must_use]
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// True when nobody is parked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

fn decode(bytes: &[u8]) -> Result<AwaitingRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        record: "awaiting licence",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(upn: &str, since: u64) -> AwaitingRecord {
        AwaitingRecord {
            online_id: "4d1f".into(),
            upn: upn.into(),
            skus: vec!["6fd2c87f-b296-42f0-b197-1e91e994b900".into()],
            since_unix_ms: since,
        }
    }

    #[test]
    fn parked_users_come_back_oldest_first_and_a_repark_keeps_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let awaiting = store.awaiting_licence().unwrap();
        awaiting.park("b", &record("b@x", 20)).unwrap();
        awaiting.park("a", &record("a@x", 10)).unwrap();
        awaiting.park("b", &record("b2@x", 30)).unwrap();
        let all = awaiting.all().unwrap();
        assert_eq!(all[0].0, "a");
        assert_eq!(all[1].1.since_unix_ms, 20);
        assert_eq!(all[1].1.upn, "b2@x");
        assert!(awaiting.release("a").unwrap());
        assert!(!awaiting.release("a").unwrap());
        assert_eq!(awaiting.len(), 1);
    }
}
