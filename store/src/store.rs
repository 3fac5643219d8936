use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cursor::Cursor;
use crate::delete_window::DeleteWindow;
use crate::error::{SledResultExt, StoreError};
use crate::group_commit::GroupCommit;
use crate::ledger::{Ledger, Versions};
use crate::mapping::Mapping;
use crate::outbox::{AppendSignal, Outbox, OutboxName};
use crate::quarantine::Quarantine;

/// How much of the database sled keeps in memory. sled's default (1 GiB) is sized for a database
/// server; moss keeps small records, and several moss processes may share one machine. 16 MiB
/// rather than 64: a worker that had applied 15 000 users peaked at 168 MB with 64 and at 97 MB
/// with 16, at the same rate (moss bench, docs/PERFORMANCE.md).
const CACHE_CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

/// sled's background fsync interval. Durability never depends on it (every write that must
/// survive a crash is flushed before its call returns); it only bounds how long a removal or
/// other best-effort write can stay in memory.
const BACKGROUND_FLUSH_MS: u64 = 500;

/// One durable database on local disk, holding every outbox, the ledger and the versions.
///
/// Cheap to clone; all clones share one sled database. Only one process may open a given
/// path at a time ([`StoreError::Locked`] otherwise).
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    pub(crate) db: sled::Db,
    path: PathBuf,
    /// Held while an outbox id is generated and its entry inserted, so that entries become
    /// visible in id order: a relay reading with an `after` cursor never skips an entry whose
    /// smaller id was inserted a moment later than a bigger one.
    append_order: Mutex<()>,
    /// Each outbox's append counter and watch wake-ups, by outbox name (see [`Outbox::watch`]).
    append_signals: Mutex<HashMap<String, Arc<AppendSignal>>>,
    /// The one flusher that [`Store::flush_grouped`] callers share.
    group_commit: Arc<GroupCommit>,
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        // Before `db` drops: a flusher thread still holding its own handle would keep sled's
        // lock on the directory a moment longer.
        self.group_commit.join_flushers();
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database in the directory `path`.
    ///
    /// A missing directory is created with mode 0700 (the CLI owns the permissions of an
    /// existing data directory). The database runs in sled's low-space mode.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        create_private_directory(path)?;
        let config = sled::Config::new()
            .path(path)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .flush_every_ms(Some(BACKGROUND_FLUSH_MS));
        let db = config.open().map_err(|error| match error {
            sled::Error::Io(source) if source.to_string().contains("could not acquire lock") => {
                StoreError::Locked {
                    path: path.to_owned(),
                }
            }
            other => StoreError::from_sled("open the database", other),
        })?;
        Ok(Store {
            inner: Arc::new(StoreInner {
                db,
                path: path.to_owned(),
                append_order: Mutex::new(()),
                append_signals: Mutex::new(HashMap::new()),
                group_commit: Arc::new(GroupCommit::default()),
            }),
        })
    }

    /// The directory this store lives in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// True when this open found a database that had not been closed cleanly.
    #[must_use]
    pub fn was_recovered(&self) -> bool {
        self.inner.db.was_recovered()
    }

    /// Bytes the database takes on disk (for `moss status`).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.db.size_on_disk().during("measure the database")
    }

    /// Makes every write so far durable (fsync). Blocking.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush().during("flush the database")?;
        Ok(())
    }

    /// Makes every write so far durable, on sled's thread pool instead of the caller's thread.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        self.inner
            .db
            .flush_async()
            .await
            .during("flush the database")?;
        Ok(())
    }

    /// Makes every write this caller made so far durable, sharing the fsync with every other
    /// caller waiting at the same time (group commit: one flusher thread runs sled's flush; a
    /// flush covers every caller that arrived before it began). Under many concurrent callers,
    /// that is one fsync for a whole group instead of one each, and no blocking thread per
    /// caller.
    pub async fn flush_grouped(&self) -> Result<(), StoreError> {
        self.inner.group_commit.flush(&self.inner.db).await
    }

    /// The append signal shared by every handle on the outbox called `name`.
    pub(crate) fn append_signal(&self, name: &str) -> Arc<AppendSignal> {
        let mut signals = self
            .inner
            .append_signals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(signals.entry(name.to_owned()).or_default())
    }

    /// The outbox called `name` (created on first use). The producer and each worker keep their own.
    ///
    /// `name` is 1 to 64 characters of `a-z`, `0-9`, `-` and `_`.
    pub fn outbox(&self, name: &str) -> Result<Outbox, StoreError> {
        let name = OutboxName::parse(name)?;
        let tree = self
            .inner
            .db
            .open_tree(name.tree_name())
            .during("open an outbox")?;
        Ok(Outbox::new(self.clone(), name, tree))
    }

    /// The ledger of events already applied (event id → record).
    pub fn ledger(&self) -> Result<Ledger, StoreError> {
        Ok(Ledger::new(self.ledger_tree()?))
    }

    /// The last applied sequence per subject.
    pub fn versions(&self) -> Result<Versions, StoreError> {
        Ok(Versions::new(self.clone(), self.versions_tree()?))
    }

    /// Directory subject → online object (workers).
    pub fn mapping(&self) -> Result<Mapping, StoreError> {
        let tree = self
            .inner
            .db
            .open_tree("mapping")
            .during("open the mapping")?;
        Ok(Mapping::new(self.clone(), tree))
    }

    /// Subjects quarantined behind a dead-lettered event (workers).
    pub fn quarantine(&self) -> Result<Quarantine, StoreError> {
        let tree = self
            .inner
            .db
            .open_tree("quarantine")
            .during("open the quarantine")?;
        Ok(Quarantine::new(self.clone(), tree))
    }

    /// The mass-delete guard's recent removals and deactivations (workers).
    pub fn delete_window(&self) -> Result<DeleteWindow, StoreError> {
        let tree = self
            .inner
            .db
            .open_tree("delete_window")
            .during("open the delete window")?;
        Ok(DeleteWindow::new(self.clone(), tree))
    }

    /// A watcher's cursor called `name` (tree `cursor/<name>`, created on first use): its
    /// synchronisation cookie and what it last saw, kept so that a restart resumes there.
    ///
    /// `name` is 1 to 64 characters of `a-z`, `0-9`, `-` and `_`.
    pub fn cursor(&self, name: &str) -> Result<Cursor, StoreError> {
        Cursor::open(self, name)
    }

    pub(crate) fn ledger_tree(&self) -> Result<sled::Tree, StoreError> {
        self.inner.db.open_tree("ledger").during("open the ledger")
    }

    pub(crate) fn versions_tree(&self) -> Result<sled::Tree, StoreError> {
        self.inner
            .db
            .open_tree("versions")
            .during("open the versions")
    }

    pub(crate) fn lock_append_order(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic while holding it cannot leave anything half-updated.
        self.inner
            .append_order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn create_private_directory(path: &Path) -> Result<(), StoreError> {
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(path)
        .map_err(|source| StoreError::CreateDirectory {
            path: path.to_owned(),
            source,
        })
}
