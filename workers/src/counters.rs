//! What a worker has done so far, as plain counters, for `/metrics` and `moss status`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters, shared by every task of one worker.
#[derive(Debug, Default)]
pub struct Counters {
    /// Deliveries taken from the partition queues.
    pub received: AtomicU64,
    /// Events applied to the tenant.
    pub applied: AtomicU64,
    /// Events found already in effect in the tenant.
    pub already_applied: AtomicU64,
    /// Redeliveries of events the ledger already had.
    pub duplicates: AtomicU64,
    /// Events older than their subject's applied sequence.
    pub stale: AtomicU64,
    /// Events dead-lettered (including quarantined ones).
    pub dead_lettered: AtomicU64,
    /// Of those, dead-lettered behind an earlier dead letter of the same subject.
    pub quarantined: AtomicU64,
    /// Attempts that ended in a retry.
    pub retries: AtomicU64,
    /// Deliveries handed back to RabbitMQ (shutdown, local failure).
    pub handed_back: AtomicU64,
    /// Outcome events confirmed by RabbitMQ.
    pub outcomes_published: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // reason: each field mirrors the documented field of Counters
pub struct CounterSnapshot {
    pub received: u64,
    pub applied: u64,
    pub already_applied: u64,
    pub duplicates: u64,
    pub stale: u64,
    pub dead_lettered: u64,
    pub quarantined: u64,
    pub retries: u64,
    pub handed_back: u64,
    pub outcomes_published: u64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The values now.
    pub fn snapshot(&self) -> CounterSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CounterSnapshot {
            received: read(&self.received),
            applied: read(&self.applied),
            already_applied: read(&self.already_applied),
            duplicates: read(&self.duplicates),
            stale: read(&self.stale),
            dead_lettered: read(&self.dead_lettered),
            quarantined: read(&self.quarantined),
            retries: read(&self.retries),
            handed_back: read(&self.handed_back),
            outcomes_published: read(&self.outcomes_published),
        }
    }
}
