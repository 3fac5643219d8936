//! The mass-delete guard's sliding window: which removals and deactivations a worker applied
//! recently, kept on disk so that a restart does not reset the count (a crash loop must not let
//! a bad directory change through 500 at a time).
//!
//! Key: kind byte, big-endian milliseconds since the Unix epoch, event id; no value. Counting the
//! entries of a kind at or after a time is one range scan.

use std::fmt;

use crate::error::{SledResultExt, StoreError};
use crate::store::Store;

/// What a guarded change does to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeleteKind {
    /// The account is deleted.
    Removal,
    /// The account is blocked from signing in (or loses its licences).
    Deactivation,
}

impl DeleteKind {
    fn tag(self) -> u8 {
        match self {
            DeleteKind::Removal => b'r',
            DeleteKind::Deactivation => b'd',
        }
    }
}

/// Kind + time + event id → (), the guard's recent deletes.
#[derive(Clone)]
pub struct DeleteWindow {
    store: Store,
    tree: sled::Tree,
}

impl fmt::Debug for DeleteWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeleteWindow").finish_non_exhaustive()
    }
}

fn key(kind: DeleteKind, at_unix_ms: u64, event_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + event_id.len());
    key.push(kind.tag());
    key.extend_from_slice(&at_unix_ms.to_be_bytes());
    key.extend_from_slice(event_id.as_bytes());
    key
}

impl DeleteWindow {
    pub(crate) fn new(store: Store, tree: sled::Tree) -> DeleteWindow {
        DeleteWindow { store, tree }
    }

    /// How many deletes of `kind` were recorded at or after `since_unix_ms`; O(those entries).
    pub fn count_since(&self, kind: DeleteKind, since_unix_ms: u64) -> Result<usize, StoreError> {
        let start = key(kind, since_unix_ms, "");
        let end = [kind.tag() + 1];
        let mut count = 0;
        for entry in self.tree.range(start..end.to_vec()) {
            entry.during("read the delete window")?;
            count += 1;
        }
        Ok(count)
    }

    /// Records a delete of `kind` at `at_unix_ms`, flushed before it returns.
    pub fn record(
        &self,
        kind: DeleteKind,
        at_unix_ms: u64,
        event_id: &str,
    ) -> Result<(), StoreError> {
        self.tree
            .insert(key(kind, at_unix_ms, event_id), &[][..])
            .during("record a delete")?;
        self.store.flush()
    }

    /// Takes back a recorded delete (it did not change the tenant after all).
    pub fn forget(
        &self,
        kind: DeleteKind,
        at_unix_ms: u64,
        event_id: &str,
    ) -> Result<(), StoreError> {
        self.tree
            .remove(key(kind, at_unix_ms, event_id))
            .during("forget a delete")?;
        self.store.flush()
    }

    /// Drops every entry older than `before_unix_ms` (of either kind): they no longer count.
    pub fn prune(&self, before_unix_ms: u64) -> Result<(), StoreError> {
        for kind in [DeleteKind::Removal, DeleteKind::Deactivation] {
            let start = [kind.tag()];
            let end = key(kind, before_unix_ms, "");
            let old: Vec<sled::IVec> = self
                .tree
                .range(start.to_vec()..end)
                .keys()
                .collect::<Result<_, _>>()
                .during("read the delete window")?;
            for old_key in old {
                self.tree
                    .remove(old_key)
                    .during("prune the delete window")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deletes_of_the_kind_at_or_after_the_time_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let window = store.delete_window().unwrap();
        window.record(DeleteKind::Removal, 1_000, "a").unwrap();
        window.record(DeleteKind::Removal, 2_000, "b").unwrap();
        window.record(DeleteKind::Removal, 2_000, "c").unwrap();
        window.record(DeleteKind::Deactivation, 3_000, "d").unwrap();
        assert_eq!(window.count_since(DeleteKind::Removal, 0).unwrap(), 3);
        assert_eq!(window.count_since(DeleteKind::Removal, 2_000).unwrap(), 2);
        assert_eq!(window.count_since(DeleteKind::Removal, 2_001).unwrap(), 0);
        assert_eq!(window.count_since(DeleteKind::Deactivation, 0).unwrap(), 1);
        window.forget(DeleteKind::Removal, 2_000, "b").unwrap();
        assert_eq!(window.count_since(DeleteKind::Removal, 0).unwrap(), 2);
        window.prune(2_500).unwrap();
        assert_eq!(window.count_since(DeleteKind::Removal, 0).unwrap(), 0);
        assert_eq!(window.count_since(DeleteKind::Deactivation, 0).unwrap(), 1);
    }
}
