//! Cold partitions: what the other workers applied, folded into this worker's ledger and
//! versions, and the barrier a partition passes when this worker takes it over.
//!
//! Every worker has a durable queue of its own, `{prefix}.outcomes.<worker id>`, bound to the
//! `{prefix}.outcomes` fan-out. A lane acknowledges an applied event only after RabbitMQ has
//! confirmed its outcome event (`outcomes::Confirmations`), so by the time a partition's
//! delivery can reach another worker, the outcome of everything the old owner acknowledged is
//! in that worker's queue. [`run_fold`] reads the queue and records other workers' applied and
//! dead-lettered events in this worker's ledger, and raises its versions. On the first delivery
//! after (re)subscribing to a partition, the partition waits in [`Fold::caught_up`]: it sends a
//! marker through its own queue and waits for the reader to reach it, so that everything
//! queued before it is recorded before the delivery is admitted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moss_broker::{Broker, Delivery, Headers, OutgoingMessage, Persistence, Publisher, Topology};
use moss_store::{AppliedEvent, AppliedRecord, AppliedResult, CursorWrite, Store, StoreError};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::outcomes::{OUTCOME_WORKER_ID, OutcomeKind};
use crate::tenant::unix_ms;

/// At most this many outcome events wait in a worker's own queue; past it the oldest are
/// dropped. A worker stopped for that long forgets what others applied meanwhile.
pub(crate) const OWN_QUEUE_MAX_LENGTH: u32 = 1_000_000;

/// RabbitMQ deletes a worker's own queue once nothing has used it for this long, so a worker
/// that is gone for good leaves nothing growing behind it.
pub(crate) const OWN_QUEUE_EXPIRES: Duration = Duration::from_secs(7 * 24 * 3600);

/// The header of a barrier marker (its value is the marker's id).
const MARKER: &str = "moss-fold-marker";

/// How many outcome events are recorded in one sled flush.
const BATCH: usize = 256;

/// The worker's stable id, kept in its store (`cursor/worker`, key `id`): the same sled, the
/// same queue of outcomes across restarts.
pub(crate) fn worker_id(store: &Store) -> Result<String, StoreError> {
    if let Some(id) = recorded_worker_id(store)? {
        return Ok(id);
    }
    let cursor = store.cursor("worker")?;
    let id = format!("w-{}", uuid::Uuid::new_v4().simple());
    cursor.write_all(&[CursorWrite::Set {
        key: "id".to_owned(),
        value: id.clone().into_bytes(),
    }])?;
    Ok(id)
}

/// The id of the worker whose store this is, if a worker ever ran on it. Reads only.
pub fn recorded_worker_id(store: &Store) -> Result<Option<String>, StoreError> {
    let cursor = store.cursor("worker")?;
    Ok(cursor
        .get("id")?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| !id.is_empty()))
}

/// A worker's own outcome queue, `{prefix}.outcomes.<worker id>`: not part of the
/// [`Topology`], so whoever retires a worker (or a whole topology) deletes it by this name.
pub fn own_queue(topology: &Topology, worker_id: &str) -> String {
    format!("{}.{worker_id}", topology.outcomes_exchange())
}

/// The reader's side the partitions talk to.
#[derive(Debug)]
pub(crate) struct Fold {
    queue: String,
    exchange: String,
    publisher: Publisher,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Fold {
    pub(crate) fn new(queue: String, exchange: String, publisher: Publisher) -> Fold {
        Fold {
            queue,
            exchange,
            publisher,
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// The barrier: returns true once every outcome event queued for this worker before the
    /// call is recorded in its store; false if the worker shuts down first. Waits as long as
    /// RabbitMQ is unreachable (trying again every few seconds).
    pub(crate) async fn caught_up(&self, shutdown: &CancellationToken) -> bool {
        // Any marker sent during this call will do: everything queued before the call is ahead
        // of it. So the markers of earlier tries stay valid while a long backlog is folded.
        let reached = Arc::new(Notify::new());
        let mut sent = Vec::new();
        let mut pause = Duration::from_millis(200);
        let caught_up = loop {
            let marker = uuid::Uuid::new_v4().simple().to_string();
            self.lock().insert(marker.clone(), Arc::clone(&reached));
            sent.push(marker.clone());
            let message = OutgoingMessage {
                exchange: String::new(),
                routing_key: self.queue.clone(),
                message_id: format!("marker-{marker}"),
                body: Vec::new(),
                content_type: "application/octet-stream".to_owned(),
                headers: Headers::new().with_text(MARKER, marker),
                persistence: Persistence::Transient,
            };
            let wait = match self.publisher.publish(message).await {
                Ok(()) => Duration::from_secs(10),
                Err(error) => {
                    tracing::warn!(error = %error, queue = %self.queue, "cannot send the takeover marker; trying again");
                    pause
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break false,
                () = reached.notified() => break true,
                () = tokio::time::sleep(wait) => {}
            }
            tracing::warn!(queue = %self.queue, "other workers' outcomes not caught up yet; the partition waits");
            pause = (pause * 2).min(Duration::from_secs(5));
        };
        let mut waiters = self.lock();
        for marker in &sent {
            waiters.remove(marker);
        }
        caught_up
    }

    fn reached(&self, marker: &str) {
        if let Some(reached) = self.lock().remove(marker) {
            // A permit is kept if the waiter is between two tries.
            reached.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The part of an outcome event the fold reads.
#[derive(Debug, Deserialize)]
struct Recorded {
    event_id: Option<String>,
    subject: Option<String>,
    sequence: Option<u64>,
    outcome: OutcomeKind,
}

/// What one message of the queue asks of the fold.
enum Item {
    Marker(String),
    Record(AppliedEvent),
    Nothing,
}

fn read(delivery: &Delivery, own_id: &str) -> Item {
    if let Some(marker) = delivery.headers.get_str(MARKER) {
        return Item::Marker(marker.to_owned());
    }
    if delivery.headers.get_str(OUTCOME_WORKER_ID) == Some(own_id) {
        // Our own outcome: the ledger wrote it in the same transaction.
        return Item::Nothing;
    }
    let Ok(recorded) = serde_json::from_slice::<Recorded>(&delivery.body) else {
        tracing::debug!(message_id = ?delivery.message_id, "an outcome event that does not decode is skipped");
        return Item::Nothing;
    };
    let result = match recorded.outcome {
        OutcomeKind::Applied => AppliedResult::Applied,
        OutcomeKind::AlreadyApplied => AppliedResult::DoneBefore,
        OutcomeKind::DeadLettered => AppliedResult::DeadLettered,
        // The applied event that made it stale carried the news already.
        OutcomeKind::Stale => return Item::Nothing,
    };
    match (recorded.event_id, recorded.subject, recorded.sequence) {
        (Some(event_id), Some(subject), Some(sequence)) => Item::Record(AppliedEvent {
            event_id,
            record: AppliedRecord {
                subject,
                sequence,
                result,
                recorded_at_unix_ms: unix_ms(),
            },
        }),
        _ => Item::Nothing,
    }
}

/// Another worker applied the event that blocks a subject quarantined here (an operator
/// replayed it there): the quarantine is lifted, as the replay would have lifted it here.
fn lift_replayed_quarantines(store: &Store, records: &[AppliedEvent]) -> Result<(), StoreError> {
    let quarantine = store.quarantine()?;
    for event in records {
        if !event.record.result.advances_version() {
            continue;
        }
        if let Some(blocking) = quarantine.get(&event.record.subject)?
            && blocking.blocking_event_id == event.event_id
        {
            quarantine.lift(&event.record.subject)?;
            tracing::info!(subject = %event.record.subject, event_id = %event.event_id, "another worker applied the blocking event; quarantine lifted");
        }
    }
    Ok(())
}

/// Reads the worker's own outcome queue until `shutdown`, recording other workers' outcomes
/// (one flush per batch, then the batch is acknowledged) and releasing barrier markers.
pub(crate) async fn run_fold(
    fold: Arc<Fold>,
    broker: Arc<Broker>,
    store: Store,
    own_id: String,
    shutdown: CancellationToken,
) {
    let tag = format!("{own_id}-fold");
    'consume: loop {
        let mut pause = Duration::from_millis(500);
        let mut consumer = loop {
            match broker.consume(&fold.queue, BATCH as u16, &tag).await {
                Ok(consumer) => break consumer,
                Err(error) => {
                    tracing::warn!(error = %error, queue = %fold.queue, "cannot read the worker's outcome queue; trying again");
                    if matches!(error, moss_broker::BrokerError::QueueNotFound { .. }) {
                        // Deleted under us: declare it again (what was in it is lost).
                        if let Err(error) = broker
                            .declare_own_queue(
                                &fold.queue,
                                &fold.exchange,
                                OWN_QUEUE_MAX_LENGTH,
                                OWN_QUEUE_EXPIRES,
                            )
                            .await
                        {
                            tracing::warn!(error = %error, queue = %fold.queue, "cannot declare the worker's outcome queue again");
                        }
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        };
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => {
                    if let Err(error) = consumer.shutdown().await {
                        tracing::debug!(error = %error, "closing the outcome queue's consumer");
                    }
                    return;
                }
                next = consumer.next() => next,
            };
            let mut deliveries = Vec::with_capacity(BATCH);
            let mut lost = false;
            match first {
                Some(Ok(delivery)) => deliveries.push(delivery),
                Some(Err(_)) | None => lost = true,
            }
            while !lost && deliveries.len() < BATCH {
                match tokio::time::timeout(Duration::ZERO, consumer.next()).await {
                    Ok(Some(Ok(delivery))) => deliveries.push(delivery),
                    Ok(Some(Err(_)) | None) => lost = true,
                    Err(_) => break,
                }
            }
            let mut markers = Vec::new();
            let mut records = Vec::new();
            for delivery in &deliveries {
                match read(delivery, &own_id) {
                    Item::Marker(marker) => markers.push(marker),
                    Item::Record(record) => records.push(record),
                    Item::Nothing => {}
                }
            }
            if !records.is_empty() {
                let store = store.clone();
                let folded = tokio::task::spawn_blocking(move || {
                    let added = store.fold_recorded(&records)?;
                    lift_replayed_quarantines(&store, &records)?;
                    Ok::<_, StoreError>(added)
                })
                .await;
                if !matches!(folded, Ok(Ok(_))) {
                    tracing::error!(result = ?folded.map(|inner| inner.map(|_| ())), "cannot record other workers' outcomes; they come again");
                    for delivery in &deliveries {
                        let _ = delivery.nack_requeue().await;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            }
            for delivery in &deliveries {
                if let Err(error) = delivery.ack().await {
                    tracing::debug!(error = %error, "an outcome ack failed; it comes again and is recorded again (harmless)");
                }
            }
            for marker in markers {
                fold.reached(&marker);
            }
            if lost {
                tracing::warn!(queue = %fold.queue, "the outcome queue's channel closed; reading it again");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue 'consume;
            }
        }
    }
}
