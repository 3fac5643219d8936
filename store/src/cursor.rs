//! A watcher's place in a source it follows: a small named key/value tree (a directory
//! watcher keeps its synchronisation cookie and what it last saw of each object there), so
//! that a restart resumes where it stopped.

use std::fmt;

use crate::error::{SledResultExt, StoreError};
use crate::store::Store;

/// One change to a [`Cursor`], applied with others in one atomic, flushed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorWrite {
    /// Sets `key` to `value`.
    Set {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// Removes `key` (nothing happens if it is absent).
    Remove {
        /// The key.
        key: String,
    },
}

/// A named key/value tree (`cursor/<name>`) whose writes are durable when they return.
#[derive(Clone)]
pub struct Cursor {
    store: Store,
    name: String,
    tree: sled::Tree,
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("name", &self.name)
            .field("path", &self.store.path())
            .finish_non_exhaustive()
    }
}

impl Cursor {
    pub(crate) fn open(store: &Store, name: &str) -> Result<Cursor, StoreError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
            });
        if !valid {
            return Err(StoreError::InvalidName {
                field: "cursor name",
                reason: "must be 1 to 64 characters of a-z, 0-9, - and _".to_owned(),
            });
        }
        let tree = store
            .inner
            .db
            .open_tree(format!("cursor/{name}"))
            .during("open a cursor")?;
        Ok(Cursor {
            store: store.clone(),
            name: name.to_owned(),
            tree,
        })
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(key.as_bytes())
            .during("read a cursor")?
            .map(|value| value.to_vec()))
    }

    /// Every key starting with `prefix`, with its value, in key order.
    pub fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut found = Vec::new();
        for item in self.tree.scan_prefix(prefix.as_bytes()) {
            let (key, value) = item.during("read a cursor")?;
            let key = String::from_utf8(key.to_vec()).map_err(|_| StoreError::Malformed {
                record: "cursor",
                detail: "a key is not UTF-8".to_owned(),
            })?;
            found.push((key, value.to_vec()));
        }
        Ok(found)
    }

    /// Applies every write atomically (all or none) and flushes before returning. Blocking.
    pub fn write_all(&self, writes: &[CursorWrite]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for write in writes {
            match write {
                CursorWrite::Set { key, value } => batch.insert(key.as_bytes(), value.as_slice()),
                CursorWrite::Remove { key } => batch.remove(key.as_bytes()),
            }
        }
        self.tree.apply_batch(batch).during("write a cursor")?;
        self.store.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_keeps_its_writes_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let cursor = store.cursor("ldap").unwrap();
            cursor
                .write_all(&[
                    CursorWrite::Set {
                        key: "cookie".into(),
                        value: b"rid=1".to_vec(),
                    },
                    CursorWrite::Set {
                        key: "entry/a".into(),
                        value: b"1".to_vec(),
                    },
                    CursorWrite::Set {
                        key: "entry/b".into(),
                        value: b"2".to_vec(),
                    },
                ])
                .unwrap();
            cursor
                .write_all(&[CursorWrite::Remove {
                    key: "entry/a".into(),
                }])
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let cursor = store.cursor("ldap").unwrap();
        assert_eq!(cursor.get("cookie").unwrap(), Some(b"rid=1".to_vec()));
        assert_eq!(
            cursor.scan_prefix("entry/").unwrap(),
            vec![("entry/b".to_owned(), b"2".to_vec())]
        );
    }

    #[test]
    fn a_cursor_name_outside_the_allowed_characters_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(
            store.cursor("Bad/Name"),
            Err(StoreError::InvalidName { .. })
        ));
    }
}
