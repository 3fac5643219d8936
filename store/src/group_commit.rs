//! Group commit: many callers' writes made durable by one fsync.
//!
//! A caller writes (in memory), then waits in [`GroupCommit::flush`]. One flusher at a time
//! runs sled's `flush` on a blocking thread; every caller that arrived before that flush began
//! is covered by it (sled's log is written in order: a flush makes every earlier write
//! durable), and those that arrive meanwhile are covered together by the next one. Under load
//! that is one fsync for many workers' ledger records instead of one each, and one blocking
//! thread instead of one per waiting caller.
//!
//! Flushes begin at most every [`MIN_FLUSH_GAP`]. Without that gap a steady stream of callers
//! kept the flusher flushing back to back, about one flush per caller on a fast disk, and each
//! flush seals one of sled's log buffers, which wakes every idle thread of sled's I/O pool.
//! A caller that finds the flusher idle and the last flush long past is flushed at once.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::error::StoreError;

/// The least time between the starts of two flushes.
pub(crate) const MIN_FLUSH_GAP: Duration = Duration::from_millis(4);

/// What the flusher has done so far, by ticket.
#[derive(Debug, Default)]
struct State {
    /// The last ticket handed out.
    issued: u64,
    /// Whether a flusher thread is running (it loops while uncovered tickets exist).
    flushing: bool,
    /// Every ticket up to this one is durable (a flush that began after it was taken succeeded).
    durable: u64,
    /// The last failed flush: the highest ticket it was meant to cover, and the error.
    failed: Option<(u64, FlushFailure)>,
    /// When the last flush began.
    last_began: Option<Instant>,
}

/// A flush error, kept so that every caller it concerns gets its own copy.
#[derive(Debug, Clone)]
struct FlushFailure {
    io_kind: Option<io::ErrorKind>,
    text: String,
    corrupt: bool,
}

impl FlushFailure {
    fn of(error: &StoreError) -> FlushFailure {
        let (io_kind, text) = match error {
            StoreError::Io { source, .. } => (Some(source.kind()), source.to_string()),
            other => (None, other.to_string()),
        };
        FlushFailure {
            io_kind,
            text,
            corrupt: matches!(error, StoreError::Corrupt { .. }),
        }
    }

    fn to_error(&self) -> StoreError {
        const OPERATION: &str = "flush the database";
        if self.corrupt {
            return StoreError::Corrupt {
                operation: OPERATION,
            };
        }
        match self.io_kind {
            Some(kind) => StoreError::Io {
                operation: OPERATION,
                source: io::Error::new(kind, self.text.clone()),
            },
            None => StoreError::Engine {
                operation: OPERATION,
                detail: self.text.clone(),
            },
        }
    }
}

/// The shared flusher of one database.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    /// Notified after every flush.
    flushed: Event,
    /// Flusher threads that may not have ended yet (each holds a handle on the database).
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain counters: a panic while holding the lock cannot leave them half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once every write this caller made before calling is durable. `db` is the
    /// database the writes went to. The fsync runs on the flusher's own thread.
    pub(crate) async fn flush(self: &Arc<Self>, db: &sled::Db) -> Result<(), StoreError> {
        let (ticket, start_flusher) = {
            let mut state = self.lock();
            state.issued += 1;
            let start = !state.flushing;
            state.flushing = true;
            (state.issued, start)
        };
        if start_flusher {
            let group = Arc::clone(self);
            let thread_db = db.clone();
            let started = std::thread::Builder::new()
                .name("moss-store-flush".to_owned())
                .spawn(move || group.run_flusher(&thread_db));
            match started {
                Ok(thread) => {
                    let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
                    threads.retain(|thread| !thread.is_finished());
                    threads.push(thread);
                }
                Err(error) => {
                    // No thread: flush here instead (blocking this caller's thread for one fsync).
                    tracing::warn!(%error, "cannot start the store's flusher thread; flushing inline");
                    self.run_flusher(db);
                }
            }
        }
        loop {
            let listener = self.flushed.listen();
            if let Some(answer) = self.answer(ticket) {
                return answer;
            }
            listener.await;
        }
    }

    /// Waits until no flusher thread holds the database any more, so that the database's lock
    /// is released when the store is dropped (a restart in the same process reopens it at
    /// once). Called when the last handle on the store goes; a flusher ends right after its
    /// last flush, as no caller is left to start another.
    pub(crate) fn join_flushers(&self) {
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for thread in threads {
            if thread.join().is_err() {
                tracing::warn!("the store's flusher thread panicked");
            }
        }
    }

    /// The answer for `ticket` once a flush has covered it.
    fn answer(&self, ticket: u64) -> Option<Result<(), StoreError>> {
        let state = self.lock();
        if state.durable >= ticket {
            return Some(Ok(()));
        }
        match &state.failed {
            Some((covered, failure)) if *covered >= ticket => Some(Err(failure.to_error())),
            _ => None,
        }
    }

    /// Flushes until no ticket is left uncovered, then stops (the next caller starts another).
    fn run_flusher(&self, db: &sled::Db) {
        loop {
            let since_last = {
                let mut state = self.lock();
                let failed = state.failed.as_ref().map_or(0, |(ticket, _)| *ticket);
                if state.issued <= state.durable.max(failed) {
                    state.flushing = false;
                    return;
                }
                state.last_began.map(|began| began.elapsed())
            };
            if let Some(since_last) = since_last
                && since_last < MIN_FLUSH_GAP
            {
                // More callers arrive meanwhile, and this one flush covers them too.
                std::thread::sleep(MIN_FLUSH_GAP - since_last);
            }
            let target = {
                let mut state = self.lock();
                state.last_began = Some(Instant::now());
                state.issued
            };
            // Every ticket up to `target` was taken after its caller's writes: this flush,
            // begun now, covers them all.
            let flushed = db
                .flush()
                .map_err(|error| StoreError::from_sled("flush the database", error));
            {
                let mut state = self.lock();
                match &flushed {
                    Ok(_) => state.durable = state.durable.max(target),
                    Err(error) => state.failed = Some((target, FlushFailure::of(error))),
                }
            }
            self.flushed.notify(usize::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_callers_are_all_covered_and_a_write_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            let group = Arc::new(GroupCommit::default());
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..200_u32 {
                let (db, group) = (db.clone(), Arc::clone(&group));
                tasks.spawn(async move {
                    db.insert(i.to_be_bytes(), &b"v"[..]).unwrap();
                    group.flush(&db).await.unwrap();
                });
            }
            while let Some(joined) = tasks.join_next().await {
                joined.unwrap();
            }
            {
                let state = group.lock();
                assert_eq!(state.durable, 200, "every ticket is covered");
                assert!(state.failed.is_none());
            }
            // The flusher thread notices that nothing is left a moment after its last flush.
            let mut stopped = false;
            for _ in 0..100 {
                if !group.lock().flushing {
                    stopped = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert!(stopped, "the flusher stops when nothing is left");
        }
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        assert_eq!(db.len(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_store_can_be_reopened_at_once() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20_u32 {
            // Fails with `Locked` if a flusher thread still held the database.
            let store = crate::Store::open(dir.path()).unwrap();
            store
                .inner
                .db
                .insert(round.to_be_bytes(), &b"v"[..])
                .unwrap();
            store.flush_grouped().await.unwrap();
        }
        let store = crate::Store::open(dir.path()).unwrap();
        assert_eq!(store.inner.db.len(), 20);
    }

    #[test]
    fn a_failure_is_copied_with_its_kind() {
        let failure = FlushFailure::of(&StoreError::Io {
            operation: "flush the database",
            source: io::Error::new(io::ErrorKind::StorageFull, "no space left"),
        });
        match failure.to_error() {
            StoreError::Io { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::StorageFull);
                assert!(source.to_string().contains("no space left"));
            }
            other => panic!("expected an i/o error, got {other:?}"),
        }
    }
}
