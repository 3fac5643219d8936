use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};

use crate::error::{SledResultExt, StoreError};
use crate::store::Store;

/// The position of an entry in an outbox. Ids only grow, across restarts too (sled's
/// crash-safe id generator), so append order is id order; they are not contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxId(u64);

impl OutboxId {
    /// The id as a number (for logs and metrics).
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }

    /// Rebuilds an id from [`OutboxId::get`] (e.g. carried through a channel or a test's stdout).
    #[must_use]
    pub fn from_u64(value: u64) -> OutboxId {
        OutboxId(value)
    }

    /// Big-endian, so that sled's byte order is numeric order.
    pub(crate) fn key(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub(crate) fn from_key(key: &[u8]) -> Result<OutboxId, StoreError> {
        let bytes: [u8; 8] = key.try_into().map_err(|_| StoreError::Malformed {
            record: "outbox",
            detail: format!("key of {} bytes, expected 8", key.len()),
        })?;
        Ok(OutboxId(u64::from_be_bytes(bytes)))
    }
}

impl fmt::Display for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One stored entry, as [`Outbox::pending`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Where the entry sits; pass it to [`Outbox::remove`] once the broker confirmed it.
    pub id: OutboxId,
    /// The bytes given to [`Outbox::append`].
    pub payload: Vec<u8>,
}

/// The validated name of an outbox: 1 to 64 characters of `a-z`, `0-9`, `-`, `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxName(String);

impl OutboxName {
    pub(crate) fn parse(name: &str) -> Result<OutboxName, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidName {
            field: "outbox name",
            reason: reason.to_owned(),
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > 64 {
            return Err(invalid("it is longer than 64 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(invalid(&format!(
                "{name:?} may contain only a-z, 0-9, '-' and '_'"
            )));
        }
        Ok(OutboxName(name.to_owned()))
    }

    pub(crate) fn tree_name(&self) -> String {
        format!("outbox/{}", self.0)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A durable queue of payloads waiting to be published: append, read in order, remove after
/// the broker confirmed.
///
/// Every append is flushed to disk before it returns, so an id handed back survives a crash
/// (kill -9, power loss after the fsync). Removals are not flushed: a removal lost in a crash
/// only means the entry is published again, which consumers deduplicate by message id.
///
/// The methods without `_async` block on disk I/O; async callers use the `_async` forms or
/// `spawn_blocking`.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    name: OutboxName,
    tree: sled::Tree,
    signal: Arc<AppendSignal>,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("name", &self.name.as_str())
            .field("path", &self.store.path())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    pub(crate) fn new(store: Store, name: OutboxName, tree: sled::Tree) -> Outbox {
        let signal = store.append_signal(name.as_str());
        Outbox {
            store,
            name,
            tree,
            signal,
        }
    }

    /// Wakes this outbox's watches; called after every append (also by the ledger, which
    /// appends an outcome inside its own transaction).
    pub(crate) fn signal_appended(&self) {
        self.signal.raise();
    }

    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// This outbox's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Stores `payload` durably and returns its id. Blocking (one fsync).
    pub fn append(&self, payload: &[u8]) -> Result<OutboxId, StoreError> {
        let id = self.insert_one(payload)?;
        self.flush_or_withdraw(&[id])?;
        Ok(id)
    }

    /// Like [`Outbox::append`], with the fsync on sled's thread pool.
    pub async fn append_async(&self, payload: &[u8]) -> Result<OutboxId, StoreError> {
        let id = self.insert_one(payload)?;
        if let Err(error) = self.store.flush_async().await {
            self.withdraw(&[id]);
            return Err(error);
        }
        Ok(id)
    }

    /// Stores every payload, atomically (all or none) and with one fsync; ids come back in
    /// the order of `payloads`. The producer uses it so that a batch is never half stored.
    pub fn append_all(&self, payloads: &[Vec<u8>]) -> Result<Vec<OutboxId>, StoreError> {
        let ids = self.insert_all(payloads)?;
        self.flush_or_withdraw(&ids)?;
        Ok(ids)
    }

    /// Group commit: stores several callers' batches with one fsync for all of them. Each group
    /// gets its ids back in order, and ids grow across the groups in the order given. Either
    /// every group is stored or none is (on a failed flush all are withdrawn), so each caller's
    /// batch is still whole or absent. Blocking.
    pub fn append_groups(&self, groups: &[&[Vec<u8>]]) -> Result<Vec<Vec<OutboxId>>, StoreError> {
        let ids = {
            let _order = self.store.lock_append_order();
            let mut batch = sled::Batch::default();
            let mut ids = Vec::with_capacity(groups.len());
            for payloads in groups {
                let mut group = Vec::with_capacity(payloads.len());
                for payload in *payloads {
                    let id = OutboxId(
                        self.store
                            .inner
                            .db
                            .generate_id()
                            .during("number an outbox entry")?,
                    );
                    batch.insert(&id.key(), payload.as_slice());
                    group.push(id);
                }
                ids.push(group);
            }
            self.tree
                .apply_batch(batch)
                .during("append to the outbox")?;
            self.signal.raise();
            ids
        };
        let all: Vec<OutboxId> = ids.iter().flatten().copied().collect();
        self.flush_or_withdraw(&all)?;
        Ok(ids)
    }

    /// Like [`Outbox::append_all`], with the fsync on sled's thread pool.
    pub async fn append_all_async(
        &self,
        payloads: &[Vec<u8>],
    ) -> Result<Vec<OutboxId>, StoreError> {
        let ids = self.insert_all(payloads)?;
        if let Err(error) = self.store.flush_async().await {
            self.withdraw(&ids);
            return Err(error);
        }
        Ok(ids)
    }

    /// Up to `limit` entries with an id greater than `after` (all when `None`), in append order.
    pub fn pending(
        &self,
        after: Option<OutboxId>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let range = match after {
            None => self.tree.range::<[u8; 8], _>(..),
            Some(after) => match after.0.checked_add(1) {
                Some(next) => self.tree.range(next.to_be_bytes()..),
                None => return Ok(Vec::new()),
            },
        };
        range
            .take(limit)
            .map(|item| {
                let (key, value) = item.during("read the outbox")?;
                Ok(OutboxEntry {
                    id: OutboxId::from_key(&key)?,
                    payload: value.to_vec(),
                })
            })
            .collect()
    }

    /// True while entry `id` waits in the outbox (it was appended and not yet removed).
    pub fn contains(&self, id: OutboxId) -> Result<bool, StoreError> {
        self.tree
            .contains_key(id.key())
            .during("look up an outbox entry")
    }

    /// Forgets an entry (the broker confirmed it). Removing an absent id is not an error.
    pub fn remove(&self, id: OutboxId) -> Result<(), StoreError> {
        self.tree
            .remove(id.key())
            .during("remove an outbox entry")?;
        Ok(())
    }

    /// Forgets several entries at once (atomically).
    pub fn remove_all(&self, ids: &[OutboxId]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.remove(&id.key());
        }
        self.tree.apply_batch(batch).during("remove outbox entries")
    }

    /// The number of entries waiting. Counts by walking the outbox, so it costs O(entries):
    /// fine for `moss status`, not for every request.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// The sum of `weight` over every entry waiting, read in place (nothing is copied): for an
    /// outbox whose entries hold several items each, the number of items. Costs O(entries),
    /// like [`Outbox::len`].
    pub fn weigh(&self, mut weight: impl FnMut(&[u8]) -> u64) -> Result<u64, StoreError> {
        let mut total = 0_u64;
        for item in self.tree.iter().values() {
            let value = item.during("read the outbox")?;
            total = total.saturating_add(weight(&value));
        }
        Ok(total)
    }

    /// True when nothing waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// A watch that wakes when entries are appended, so the relay need not poll in a tight loop.
    ///
    /// Register the watch before reading `pending`, then wait on it: an append that lands in
    /// between is then still seen. A relay should still bound each wait with a timeout (the
    /// watch is a wake-up hint; the outbox itself is the truth).
    ///
    /// A watch nobody waits on costs nothing and never holds up an append. (It used to be
    /// sled's `watch_prefix`, whose bounded channel blocks every writer once it is full, and
    /// did so inside the store's append-order lock: a worker whose outcome relay fell behind
    /// stopped for good.)
    #[must_use]
    pub fn watch(&self) -> OutboxWatch {
        OutboxWatch {
            seen: self.signal.generation(),
            signal: Arc::clone(&self.signal),
        }
    }

    fn insert_one(&self, payload: &[u8]) -> Result<OutboxId, StoreError> {
        let _order = self.store.lock_append_order();
        let id = OutboxId(
            self.store
                .inner
                .db
                .generate_id()
                .during("number an outbox entry")?,
        );
        self.tree
            .insert(id.key(), payload)
            .during("append to the outbox")?;
        self.signal.raise();
        Ok(id)
    }

    fn insert_all(&self, payloads: &[Vec<u8>]) -> Result<Vec<OutboxId>, StoreError> {
        let _order = self.store.lock_append_order();
        let mut batch = sled::Batch::default();
        let mut ids = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let id = OutboxId(
                self.store
                    .inner
                    .db
                    .generate_id()
                    .during("number an outbox entry")?,
            );
            batch.insert(&id.key(), payload.as_slice());
            ids.push(id);
        }
        self.tree
            .apply_batch(batch)
            .during("append to the outbox")?;
        self.signal.raise();
        Ok(ids)
    }

    fn flush_or_withdraw(&self, ids: &[OutboxId]) -> Result<(), StoreError> {
        if let Err(error) = self.store.flush() {
            self.withdraw(ids);
            return Err(error);
        }
        Ok(())
    }

    /// The caller is told the append failed, so it should not be relayed later either; if the
    /// withdrawal itself fails the entry may still be published, which is a duplicate, not a loss.
    fn withdraw(&self, ids: &[OutboxId]) {
        if let Err(error) = self.remove_all(ids) {
            tracing::warn!(outbox = self.name(), %error, "could not withdraw an unflushed append");
        }
    }
}

/// The append counter of one outbox, shared by every handle on it within the store, with the
/// wake-ups of its watches. Raising never blocks.
#[derive(Debug, Default)]
pub(crate) struct AppendSignal {
    generation: AtomicU64,
    event: Event,
}

impl AppendSignal {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn raise(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.event.notify(usize::MAX);
    }
}

/// Wakes a relay when an outbox gets new entries. See [`Outbox::watch`].
pub struct OutboxWatch {
    signal: Arc<AppendSignal>,
    seen: u64,
}

impl fmt::Debug for OutboxWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxWatch").finish_non_exhaustive()
    }
}

/// What ended a wait on an [`OutboxWatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchWake {
    /// An entry was appended since the watch was made or last woke.
    Appended,
    /// The time ran out with nothing appended.
    TimedOut,
}

impl OutboxWatch {
    /// True (and remembered) when something was appended since the last wake.
    fn take_news(&mut self) -> bool {
        let now = self.signal.generation();
        if now == self.seen {
            return false;
        }
        self.seen = now;
        true
    }

    /// Waits (async, any runtime) until an entry is appended.
    pub async fn appended(&mut self) -> WatchWake {
        loop {
            if self.take_news() {
                return WatchWake::Appended;
            }
            // Listen first, then look again: an append between the two is not missed.
            let listener = self.signal.event.listen();
            if self.take_news() {
                return WatchWake::Appended;
            }
            listener.await;
        }
    }

    /// Waits, blocking the thread, at most `timeout` for an append.
    pub fn wait_blocking(&mut self, timeout: Duration) -> WatchWake {
        let deadline = Instant::now() + timeout;
        loop {
            if self.take_news() {
                return WatchWake::Appended;
            }
            let listener = self.signal.event.listen();
            if self.take_news() {
                return WatchWake::Appended;
            }
            if listener.wait_deadline(deadline).is_none() {
                return if self.take_news() {
                    WatchWake::Appended
                } else {
                    WatchWake::TimedOut
                };
            }
        }
    }
}
