//! Outcome events: what became of each event (applied, already applied, stale, dead-lettered),
//! written to the worker's sled outbox `outcomes` together with the ledger entry, and relayed
//! to the `{prefix}.outcomes` fan-out exchange by one task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use moss_broker::{Headers, OutgoingMessage, Persistence, PublishError, Publisher, Topology};
use moss_schemas::Envelope;
use moss_store::{Outbox, OutboxId, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::counters::Counters;
use crate::outcome::Failure;

/// The content type of outcome events.
pub const OUTCOME_CONTENT_TYPE: &str = "application/json";

/// The kind of an outcome event (`outcome` member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Applied to the tenant.
    Applied,
    /// The tenant already was as the event wants.
    AlreadyApplied,
    /// Older than what was applied; acknowledged, not applied.
    Stale,
    /// Sent to `{prefix}.dead`.
    DeadLettered,
}

/// One outcome event, as published (JSON).
#[derive(Debug, Clone, Serialize)]
pub struct OutcomeEvent {
    /// The event's id (`null` when the message did not decode).
    pub event_id: Option<String>,
    /// Its subject.
    pub subject: Option<String>,
    /// Its CloudEvents type.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Its sequence.
    pub sequence: Option<u64>,
    /// What became of it.
    pub outcome: OutcomeKind,
    /// Attempts this worker made.
    pub attempts: u32,
    /// Request ids from the tenant (of the failure, for dead letters).
    pub request_ids: Vec<String>,
    /// For dead letters: the failure class.
    pub error_class: Option<String>,
    /// For dead letters: the reason.
    pub error_message: Option<String>,
    /// The worker.
    pub worker: String,
    /// When (RFC 3339).
    pub time: String,
}

impl OutcomeEvent {
    pub(crate) fn new(
        event: Option<&Envelope>,
        outcome: OutcomeKind,
        attempts: u32,
        failure: Option<&Failure>,
        worker: &str,
    ) -> OutcomeEvent {
        OutcomeEvent {
            event_id: event.map(|event| event.id.to_string()),
            subject: event.map(|event| event.subject.to_string()),
            event_type: event.map(|event| event.event_type().as_str().to_owned()),
            sequence: event.map(|event| event.sequence.value()),
            outcome,
            attempts,
            request_ids: failure
                .into_iter()
                .flat_map(|failure| failure.request_id.iter().chain(&failure.client_request_id))
                .cloned()
                .collect(),
            error_class: failure.map(|failure| failure.class.as_str().to_owned()),
            error_message: failure.map(|failure| failure.message.clone()),
            worker: worker.to_owned(),
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        // Strings, numbers and arrays of strings only: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The header naming the worker (its stable id, see `fold.rs`) whose outbox an outcome event
/// came from, so that a worker does not fold its own outcomes back into its store.
pub const OUTCOME_WORKER_ID: &str = "moss-worker-id";

/// Lets a lane wait until the relay has had an outcome entry confirmed by RabbitMQ.
///
/// Each waiting lane is woken by the relay round that removed its own entry, and by no other:
/// with hundreds of lanes waiting, waking all of them after every round (each reading the
/// outbox again to see whether its entry was among the removed) cost more CPU than the
/// events' own work.
#[derive(Debug, Clone)]
pub(crate) struct Confirmations {
    outbox: Outbox,
    waiting: Arc<Mutex<HashMap<OutboxId, Vec<oneshot::Sender<()>>>>>,
}

/// How long a lane waits for its wake-up before it looks at the outbox itself: covers a relay
/// that has stopped (shutdown).
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(1);

impl Confirmations {
    pub(crate) fn new(outbox: Outbox) -> Confirmations {
        Confirmations {
            outbox,
            waiting: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OutboxId, Vec<oneshot::Sender<()>>>> {
        // A map of senders: a panic while holding the lock cannot leave it half-updated.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once entry `id` has left the outbox: RabbitMQ confirmed it (routed to every
    /// worker's outcome queue). Waits as long as that takes; a delivery whose outcome is not
    /// in RabbitMQ must not be acknowledged (another worker taking the partition over would
    /// not know it was applied).
    pub(crate) async fn wait(&self, id: OutboxId) -> Result<(), StoreError> {
        loop {
            // Registered before looking: a removal after the look finds the sender; one
            // before it is seen by the look.
            let (sender, confirmed) = oneshot::channel();
            self.lock().entry(id).or_default().push(sender);
            if !self.outbox.contains(id)? {
                self.lock().remove(&id);
                return Ok(());
            }
            if let Ok(Ok(())) = tokio::time::timeout(LOOK_AGAIN_AFTER, confirmed).await {
                return Ok(());
            }
            self.lock().remove(&id);
        }
    }

    /// The relay removed `ids` from the outbox: wakes the lanes waiting for them.
    fn removed(&self, ids: &[OutboxId]) {
        let senders: Vec<_> = {
            let mut waiting = self.lock();
            if waiting.is_empty() {
                return;
            }
            ids.iter().filter_map(|id| waiting.remove(id)).collect()
        };
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(());
        }
    }
}

/// Publishes the outbox to `{prefix}.outcomes` until `shutdown`, then once more. After each
/// round it wakes the lanes waiting for the entries it removed (see [`Confirmations`]).
pub(crate) async fn relay(
    outbox: Outbox,
    publisher: Publisher,
    topology: Topology,
    counters: Arc<Counters>,
    worker_id: String,
    confirmations: Confirmations,
    shutdown: CancellationToken,
) {
    let exchange = topology.outcomes_exchange();
    let mut pause = Duration::from_millis(200);
    loop {
        let mut watch = outbox.watch();
        let published = publish_pending(
            &outbox,
            &publisher,
            &exchange,
            &worker_id,
            &counters,
            &confirmations,
        )
        .await;
        let stopping = shutdown.is_cancelled();
        match published {
            Ok(0) if stopping => return,
            Ok(0) => {
                pause = Duration::from_millis(200);
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    _ = watch.appended() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Ok(_) => {}
            Err(()) if stopping => return,
            Err(()) => {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// One batch; `Err` when the broker did not take all of it.
async fn publish_pending(
    outbox: &Outbox,
    publisher: &Publisher,
    exchange: &str,
    worker_id: &str,
    counters: &Counters,
    confirmations: &Confirmations,
) -> Result<usize, ()> {
    let entries = match outbox.pending(None, 256) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::error!(error = %error, "cannot read the outcome outbox");
            return Err(());
        }
    };
    counters
        .outcome_backlog
        .store(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
    if entries.is_empty() {
        return Ok(0);
    }
    let messages = entries
        .iter()
        .map(|entry| OutgoingMessage {
            exchange: exchange.to_owned(),
            routing_key: String::new(),
            message_id: format!("outcome-{}", entry.id),
            body: entry.payload.clone(),
            content_type: OUTCOME_CONTENT_TYPE.to_owned(),
            headers: Headers::new().with_text(OUTCOME_WORKER_ID, worker_id),
            persistence: Persistence::Persistent,
        })
        .collect();
    let results = publisher.publish_batch(messages).await;
    let mut done = Vec::with_capacity(entries.len());
    let mut failed = false;
    for (entry, result) in entries.iter().zip(results) {
        match result {
            // A fan-out exchange with no queue bound returns mandatory messages: nobody listens
            // to outcomes right now, which is fine: they are informational.
            Ok(()) | Err(PublishError::Returned { .. }) => done.push(entry.id),
            Err(error) => {
                failed = true;
                tracing::warn!(error = %error, "an outcome event was not confirmed; it stays in the outbox");
            }
        }
    }
    if let Err(error) = outbox.remove_all(&done) {
        tracing::error!(error = %error, "cannot remove published outcome events from the outbox");
        return Err(());
    }
    confirmations.removed(&done);
    counters
        .outcomes_published
        .fetch_add(done.len() as u64, std::sync::atomic::Ordering::Relaxed);
    counters.outcome_backlog.store(
        (entries.len() - done.len()) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    if failed { Err(()) } else { Ok(done.len()) }
}

#[cfg(test)]
mod tests {
    use moss_schemas::{EventData, Sequence, Source, Subject, UserRemoved};

    use tokio::time::Instant;

    use super::*;
    use crate::outcome::FailureClass;

    /// Waits for `id` on a task of its own; the task answers how long the wait took.
    fn timed_wait(
        confirmations: &Confirmations,
        id: OutboxId,
    ) -> tokio::task::JoinHandle<Duration> {
        let confirmations = confirmations.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            confirmations.wait(id).await.unwrap();
            began.elapsed()
        })
    }

    /// In paused time the clock moves only when every task waits, so the virtual time a wait
    /// took says what ended it: 0 for the relay's wake-up, 1 s for the fallback look.
    #[tokio::test(start_paused = true)]
    async fn a_lane_is_woken_by_the_round_that_removed_its_entry_and_otherwise_looks_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = moss_store::Store::open(dir.path()).unwrap();
        let outbox = store.outbox("outcomes").unwrap();
        let confirmations = Confirmations::new(outbox.clone());
        let mine = outbox.append(b"mine").unwrap();
        let other = outbox.append(b"other").unwrap();

        let waiting = timed_wait(&confirmations, mine);
        tokio::task::yield_now().await;
        // A round that removed another entry does not end the wait.
        outbox.remove_all(&[other]).unwrap();
        confirmations.removed(&[other]);
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "only its own entry's removal ends a wait"
        );
        outbox.remove_all(&[mine]).unwrap();
        confirmations.removed(&[mine]);
        assert_eq!(waiting.await.unwrap(), Duration::ZERO, "woken by the round");

        // An entry already gone: at once.
        let began = Instant::now();
        confirmations.wait(mine).await.unwrap();
        assert_eq!(began.elapsed(), Duration::ZERO);

        // Removed without a wake-up (a relay that stopped): found by looking again.
        let late = outbox.append(b"late").unwrap();
        let waiting = timed_wait(&confirmations, late);
        tokio::task::yield_now().await;
        outbox.remove_all(&[late]).unwrap();
        assert_eq!(waiting.await.unwrap(), LOOK_AGAIN_AFTER);
        assert!(confirmations.lock().is_empty(), "no sender is left behind");
    }

    #[test]
    fn an_outcome_event_names_the_event_the_outcome_and_the_request_ids() {
        let event = Envelope::new(
            Source::parse("moss-producer/test").unwrap(),
            Subject::parse("3f0c2a7e-1d2b-4c5d-8e9f-0a1b2c3d4e5f").unwrap(),
            Sequence(42),
            EventData::UserRemoved(UserRemoved {}),
        );
        let failure = Failure {
            request_id: Some("req-9".into()),
            client_request_id: Some("client-9".into()),
            ..Failure::local(FailureClass::Conflict, "Conflict", "taken")
        };
        let json: serde_json::Value = serde_json::from_slice(
            &OutcomeEvent::new(
                Some(&event),
                OutcomeKind::DeadLettered,
                2,
                Some(&failure),
                "w",
            )
            .to_json(),
        )
        .unwrap();
        assert_eq!(json["event_id"], event.id.to_string());
        assert_eq!(json["subject"], "3f0c2a7e-1d2b-4c5d-8e9f-0a1b2c3d4e5f");
        assert_eq!(json["type"], "moss.user.removed.v1");
        assert_eq!(json["sequence"], 42);
        assert_eq!(json["outcome"], "dead_lettered");
        assert_eq!(json["attempts"], 2);
        assert_eq!(
            json["request_ids"],
            serde_json::json!(["req-9", "client-9"])
        );
        assert_eq!(json["error_class"], "conflict");
        assert!(json["time"].as_str().is_some());
    }
}
