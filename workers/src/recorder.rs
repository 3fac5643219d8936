//! Writes settled events to the ledger in groups.
//!
//! Every lane settling an event hands its ledger record and outcome payload to one task, which
//! writes all that are waiting in a single sled transaction and then waits for the group
//! flush before it answers any of them. sled seals a log buffer for each transaction, and its
//! I/O pool writes each sealed buffer and wakes every idle I/O thread to do so: with a
//! transaction per event, that was a third of a busy worker's CPU.

use std::time::Duration;

use std::sync::{Arc, Mutex, PoisonError};

use moss_store::{AppliedEvent, Outbox, OutboxId, Store, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The most records written in one transaction.
const MAX_GROUP: usize = 256;

/// The least time between the starts of two transactions: the records arriving meanwhile
/// join the next group. Measured: without it, groups averaged 1.5 records at 1 000 events/s
/// (each lane's record arrived alone), and every transaction sealed two log buffers.
const MIN_GROUP_GAP: Duration = Duration::from_millis(4);

/// What [`Recorder::record`] answers: the outcome's outbox entry when the event was new to the
/// ledger (`None` when it was recorded before, or stale).
type Answer = Result<Option<OutboxId>, StoreError>;

/// One lane's record, waiting for its group.
#[derive(Debug)]
struct Request {
    event: AppliedEvent,
    payload: Vec<u8>,
    answer: oneshot::Sender<Answer>,
}

/// The handle lanes record through.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    requests: mpsc::UnboundedSender<Request>,
    stop: CancellationToken,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Recorder {
    /// Starts the recording task on the current runtime.
    pub(crate) fn start(store: Store, outcomes: Outbox) -> Recorder {
        let (requests, waiting) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(store, outcomes, waiting, stop.clone()));
        Recorder {
            requests,
            stop,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Writes what is waiting, waits for its flush, and stops: afterwards the task holds no
    /// handle on the store (a worker restarted in the same process opens it again at once).
    /// Records asked for later are refused.
    pub(crate) async fn close(&self) {
        self.stop.cancel();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::warn!(error = %error, "the recorder task failed");
        }
    }

    /// Records `event` with its outcome `payload`, durably: returns once the group it was
    /// written with has been flushed.
    pub(crate) async fn record(&self, event: AppliedEvent, payload: Vec<u8>) -> Answer {
        let (answer, answered) = oneshot::channel();
        let request = Request {
            event,
            payload,
            answer,
        };
        if self.requests.send(request).is_err() {
            return Err(stopped());
        }
        answered.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> StoreError {
    StoreError::Engine {
        operation: "record an applied event",
        detail: "the worker's recorder has stopped".to_owned(),
    }
}

async fn run(
    store: Store,
    outcomes: Outbox,
    mut waiting: mpsc::UnboundedReceiver<Request>,
    stop: CancellationToken,
) {
    let mut flushes = JoinSet::new();
    let mut last_began: Option<Instant> = None;
    loop {
        let first = tokio::select! {
            biased;
            request = waiting.recv() => request,
            () = stop.cancelled() => None,
        };
        let Some(first) = first else {
            break;
        };
        if let Some(began) = last_began
            && began.elapsed() < MIN_GROUP_GAP
        {
            tokio::time::sleep_until(began + MIN_GROUP_GAP).await;
        }
        last_began = Some(Instant::now());
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match waiting.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        // On the runtime thread: the transaction works in sled's memory; the fsync that makes
        // it durable runs on the group flusher's thread.
        let items: Vec<(&AppliedEvent, &[u8])> = group
            .iter()
            .map(|request| (&request.event, request.payload.as_slice()))
            .collect();
        let verdicts = store.record_applied_batch_unflushed(&outcomes, &items);
        // The flush is awaited on its own task, so that the next group is written meanwhile
        // (and shares that flush or the next).
        let store = store.clone();
        flushes.spawn(async move {
            let flushed = store.flush_grouped().await;
            for (request, verdict) in group.into_iter().zip(verdicts) {
                let answer = match (&flushed, verdict) {
                    (Ok(()), verdict) => verdict.map(|(_, id)| id),
                    (Err(error), _) => Err(StoreError::Engine {
                        operation: "flush the database",
                        detail: error.to_string(),
                    }),
                };
                // A lane that stopped waiting (shutdown) no longer needs the answer.
                let _ = request.answer.send(answer);
            }
        });
        while flushes.try_join_next().is_some() {}
    }
    while flushes.join_next().await.is_some() {}
    waiting.close();
    while let Ok(request) = waiting.try_recv() {
        let _ = request.answer.send(Err(stopped()));
    }
}

#[cfg(test)]
mod tests {
    use moss_store::{AppliedRecord, AppliedResult};

    use super::*;

    fn applied(id: &str, subject: &str, sequence: u64) -> AppliedEvent {
        AppliedEvent {
            event_id: id.to_owned(),
            record: AppliedRecord {
                subject: subject.to_owned(),
                sequence,
                result: AppliedResult::Applied,
                recorded_at_unix_ms: 0,
            },
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_records_are_each_answered_and_durable_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let outcomes = store.outbox("outcomes").unwrap();
            let recorder = Recorder::start(store.clone(), outcomes.clone());
            let mut lanes = tokio::task::JoinSet::new();
            for i in 0..500_u64 {
                let recorder = recorder.clone();
                lanes.spawn(async move {
                    let event = applied(&format!("e{i}"), &format!("user-{i}"), 1);
                    recorder
                        .record(event, format!("outcome {i}").into_bytes())
                        .await
                });
            }
            let mut ids = Vec::new();
            while let Some(answer) = lanes.join_next().await {
                ids.push(
                    answer
                        .unwrap()
                        .unwrap()
                        .expect("a new event has an outcome entry"),
                );
            }
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), 500, "every outcome has its own entry");
            // The same event again: recorded before, so no second outcome.
            let again = recorder
                .record(applied("e7", "user-7", 1), b"again".to_vec())
                .await
                .unwrap();
            assert_eq!(again, None);
            recorder.close().await;
            let refused = recorder
                .record(applied("late", "user-x", 1), Vec::new())
                .await;
            assert!(refused.is_err(), "a closed recorder refuses records");
        }
        // Closed: the recording task holds no handle on the database any more.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.outbox("outcomes").unwrap().len(), 500);
        let ledger = store.ledger().unwrap();
        for i in 0..500_u64 {
            let record = ledger
                .get(&format!("e{i}"))
                .unwrap()
                .expect("in the ledger");
            assert_eq!(record.result, AppliedResult::Applied);
        }
        assert_eq!(store.versions().unwrap().get("user-3").unwrap(), Some(1));
    }
}
