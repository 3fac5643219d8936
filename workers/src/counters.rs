//! What a worker has done so far, as plain counters, for `/metrics` and `moss status`: totals,
//! settled events per (event type, outcome), and how long deliveries took to settle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moss_schemas::EventType;

use crate::outcomes::OutcomeKind;

/// Every outcome an event settles with, in the order of [`CounterSnapshot::events`]' columns.
pub const OUTCOME_KINDS: [OutcomeKind; 4] = [
    OutcomeKind::Applied,
    OutcomeKind::AlreadyApplied,
    OutcomeKind::Stale,
    OutcomeKind::DeadLettered,
];

/// Upper bounds, in seconds, of the settle-duration histogram's buckets (`+Inf` is implied).
/// From a quick write (5 ms) to a delivery held through throttling or an outage (5 min).
pub const SETTLE_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

const EVENT_TYPES: usize = EventType::ALL.len();

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
    /// Outcome events the relay found waiting in the outbox at its last read (a gauge; one
    /// read takes at most a batch of 256, so a larger backlog shows as 256 until it drains).
    pub outcome_backlog: AtomicU64,
    events: [[AtomicU64; OUTCOME_KINDS.len()]; EVENT_TYPES],
    settle: Histogram,
}

/// Settle durations in fixed buckets, each counted once (not cumulative).
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; SETTLE_BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // reason: each plain field mirrors the documented field of Counters
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
    pub outcome_backlog: u64,
    /// Replies of the tenant that throttled (429, or 503 with `Retry-After`), read from the
    /// worker's pacer.
    pub throttled: u64,
    /// Settled events, one row per [`EventType::ALL`] entry, one column per [`OUTCOME_KINDS`].
    pub events: [[u64; OUTCOME_KINDS.len()]; EVENT_TYPES],
    /// Settled events at or under each [`SETTLE_BUCKETS`] bound (cumulative, as Prometheus wants).
    pub settle_buckets: [u64; SETTLE_BUCKETS.len()],
    /// Total settle time of all settled events, in microseconds.
    pub settle_sum_micros: u64,
    /// Number of settled events timed.
    pub settle_count: u64,
}

impl CounterSnapshot {
    /// Every (event type, outcome, count), zeros included, in a stable order.
    pub fn events_by_type(&self) -> impl Iterator<Item = (EventType, OutcomeKind, u64)> + '_ {
        EventType::ALL
            .iter()
            .zip(&self.events)
            .flat_map(|(event_type, row)| {
                OUTCOME_KINDS
                    .iter()
                    .zip(row)
                    .map(move |(kind, count)| (*event_type, *kind, *count))
            })
    }
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one event of `event_type` settled with `kind`.
    pub(crate) fn settled(&self, event_type: EventType, kind: OutcomeKind) {
        let row = EventType::ALL
            .iter()
            .position(|candidate| *candidate == event_type);
        let column = OUTCOME_KINDS
            .iter()
            .position(|candidate| *candidate == kind);
        if let (Some(row), Some(column)) = (row, column) {
            Counters::bump(&self.events[row][column]);
        }
    }

    /// Records how long one delivery took from arrival to settlement.
    pub(crate) fn observe_settle(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(bucket) = SETTLE_BUCKETS.iter().position(|bound| seconds <= *bound) {
            Counters::bump(&self.settle.buckets[bucket]);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.settle.sum_micros.fetch_add(micros, Ordering::Relaxed);
        Counters::bump(&self.settle.count);
    }

    /// The values now. `throttled` is the pacer's, so it reads 0 here.
    pub fn snapshot(&self) -> CounterSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut settle_buckets = [0; SETTLE_BUCKETS.len()];
        let mut below = 0;
        for (cumulative, bucket) in settle_buckets.iter_mut().zip(&self.settle.buckets) {
            below += read(bucket);
            *cumulative = below;
        }
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
            outcome_backlog: read(&self.outcome_backlog),
            throttled: 0,
            events: self.events.each_ref().map(|row| row.each_ref().map(read)),
            settle_buckets,
            settle_sum_micros: read(&self.settle.sum_micros),
            settle_count: read(&self.settle.count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_events_are_counted_by_type_and_outcome() {
        let counters = Counters::default();
        counters.settled(EventType::ALL[1], OutcomeKind::Stale);
        counters.settled(EventType::ALL[1], OutcomeKind::Stale);
        counters.settled(EventType::ALL[0], OutcomeKind::Applied);
        let snapshot = counters.snapshot();
        let found: Vec<_> = snapshot
            .events_by_type()
            .filter(|(_, _, count)| *count > 0)
            .collect();
        assert_eq!(
            found,
            vec![
                (EventType::ALL[0], OutcomeKind::Applied, 1),
                (EventType::ALL[1], OutcomeKind::Stale, 2),
            ]
        );
    }

    #[test]
    fn settle_durations_fill_cumulative_buckets() {
        let counters = Counters::default();
        counters.observe_settle(Duration::from_millis(3));
        counters.observe_settle(Duration::from_millis(700));
        counters.observe_settle(Duration::from_secs(1000));
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.settle_buckets[0], 1, "3 ms is under 5 ms");
        assert_eq!(snapshot.settle_buckets[7], 2, "700 ms is under 1 s");
        assert_eq!(snapshot.settle_buckets[SETTLE_BUCKETS.len() - 1], 2);
        assert_eq!(snapshot.settle_count, 3, "+Inf holds the 1000 s one");
        assert_eq!(snapshot.settle_sum_micros, 1_000_703_000);
    }
}
