//! moss-workers: consume the partition queues, dedupe, keep each user's order, apply events to
//! the tenant with retries, dead-letter what cannot succeed, and publish outcomes.
//!
//! The flow of one delivery (`pipeline.rs`): decode (a bad message is dead-lettered at once) →
//! its subject's lane (`lanes.rs`: one subject at a time, subjects side by side) → ledger
//! (duplicate), version (stale), quarantine → the event's handler (`handlers/`, one file per
//! event type, each applying the desired end state and returning an [`Outcome`]) under the
//! shared [`Circuit`] and the adaptive write rate ([`AdaptivePacer`]) → one place settles it:
//! ledger + version + outcome event in one flushed transaction, then ack; or dead letter with
//! confirm, quarantine, then ack; or hand back to RabbitMQ.
//!
//! It never speaks AMQP or HTTP itself and never parses Microsoft's bodies: RabbitMQ is behind
//! moss-broker, sled behind moss-store, Microsoft behind moss-online.

mod awaiting;
mod circuit;
mod control;
mod counters;
mod dead_letter;
mod delete_guard;
mod error;
mod fold;
mod handlers;
mod lanes;
mod outcome;
mod outcomes;
mod pacer;
mod partition;
mod pipeline;
mod recorder;
mod settings;
mod tenant;

use std::sync::Arc;

use moss_broker::Broker;
use moss_online::OnlineClient;
use moss_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use awaiting::DEFAULT_LICENCE_RECHECK;
pub use circuit::{Circuit, CircuitSettings, CircuitState};
pub use control::{CONTROL, CONTROL_CONTENT_TYPE, RELEASE_QUARANTINE, ReleaseQuarantine};
pub use counters::{CounterSnapshot, Counters, OUTCOME_KINDS, SETTLE_BUCKETS};
pub use dead_letter::{
    ATTEMPT, ATTEMPTS, CLIENT_REQUEST_ID, DEAD_AT, DEAD_BY, DELETE_APPROVED, ERROR_CLASS,
    ERROR_CODE, ERROR_MESSAGE, ERROR_STATUS, EVENT_TYPE, ORIGINAL_ROUTING_KEY, REPLAY_OF,
    REQUEST_ID, SUBJECT,
};
pub use delete_guard::DeleteGuardSettings;
pub use error::WorkerError;
pub use fold::{own_queue as worker_outcome_queue, recorded_worker_id};
pub use outcome::{Failure, FailureClass, Outcome};
pub use outcomes::{OUTCOME_CONTENT_TYPE, OUTCOME_WORKER_ID, OutcomeEvent, OutcomeKind};
pub use pacer::{AdaptivePacer, PacingSettings};
pub use settings::{DEFAULT_PREFETCH, RetrySettings, WorkerSettings};

use crate::pipeline::WorkerContext;
use crate::tenant::Tenant;

/// The name of the worker's outcome outbox in its store.
pub const OUTCOME_OUTBOX: &str = "outcomes";

/// A started worker. Stop it with [`RunningWorker::shutdown`].
#[derive(Debug)]
pub struct RunningWorker {
    shutdown: CancellationToken,
    counters: Arc<Counters>,
    circuit: Arc<Circuit>,
    pacer: Arc<AdaptivePacer>,
    ctx: Arc<WorkerContext>,
    outcome_queue: String,
    task: JoinHandle<Result<(), WorkerError>>,
}

impl RunningWorker {
    /// What the worker has done so far, throttled replies (counted by its pacer) included.
    pub fn counters(&self) -> CounterSnapshot {
        CounterSnapshot {
            throttled: self.pacer.throttled_replies(),
            ..self.counters.snapshot()
        }
    }

    /// The circuit's state now.
    pub fn circuit_state(&self) -> CircuitState {
        self.circuit.state()
    }

    /// Users whose online account awaits a free licence seat now (`moss status`).
    pub fn awaiting_licence(&self) -> usize {
        self.ctx.tenant.awaiting.count()
    }

    /// Users the worker licensed since it started after they had awaited a seat.
    pub fn licences_resumed(&self) -> u64 {
        self.ctx.tenant.awaiting.resumed()
    }

    /// The worker's own durable queue of outcome events (`{prefix}.outcomes.<worker id>`),
    /// which it reads to learn what other workers applied. It outlives the worker (that is its
    /// point); a test deletes it when done.
    pub fn outcome_queue(&self) -> &str {
        &self.outcome_queue
    }

    /// The adaptive write rate now, in writes per second.
    pub fn write_rate(&self) -> f64 {
        self.pacer.rate()
    }

    /// True once the worker has stopped, by shutdown or because it failed ([`RunningWorker::wait`]
    /// then says which).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops taking deliveries, finishes or hands back what is in flight, flushes the outcome
    /// outbox, closes the channels and then the connection.
    pub async fn shutdown(self) -> Result<(), WorkerError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the worker stops (after its shutdown token is cancelled).
    pub async fn wait(self) -> Result<(), WorkerError> {
        self.task
            .await
            .map_err(|join_error| WorkerError::Task(join_error.to_string()))?
    }
}

/// Checks the settings, opens the store, connects, declares the topology and starts consuming
/// every partition. Returns once consuming has started; `shutdown` stops it.
pub async fn start(
    settings: WorkerSettings,
    shutdown: CancellationToken,
) -> Result<RunningWorker, WorkerError> {
    settings.validate()?;
    let WorkerSettings {
        amqp_url,
        topology,
        store_path,
        online,
        opening_key,
        worker_name,
        prefetch,
        retry,
        circuit,
        pacing,
        delete_guard,
        shutdown_grace,
        licence_recheck,
    } = settings;
    let store = Store::open(&store_path)?;
    let pacer = Arc::new(AdaptivePacer::new(pacing));
    let online =
        OnlineClient::with_pacer(online, Arc::clone(&pacer) as Arc<dyn moss_online::Pacer>)?;
    let broker = Arc::new(Broker::connect(&amqp_url, &worker_name).await?);
    broker.declare(&topology).await?;
    let worker_id = fold::worker_id(&store)?;
    let own_queue = fold::own_queue(&topology, &worker_id);
    let created = broker
        .declare_own_queue(
            &own_queue,
            &topology.outcomes_exchange(),
            fold::OWN_QUEUE_MAX_LENGTH,
            fold::OWN_QUEUE_EXPIRES,
        )
        .await?;
    if created && !store.ledger()?.is_empty() {
        tracing::warn!(queue = %own_queue, "this worker's outcome queue was gone (unused for longer than its expiry, or deleted): what other workers applied meanwhile is unknown here, and a partition taken over may re-apply their older events");
    }
    let dead_letters = broker.publisher().await?;
    let outcome_publisher = broker.publisher().await?;
    let fold = Arc::new(fold::Fold::new(
        own_queue.clone(),
        topology.outcomes_exchange(),
        broker.publisher().await?,
    ));
    let counters = Arc::new(Counters::default());
    let circuit = Arc::new(Circuit::new(circuit));
    let outcomes = store.outbox(OUTCOME_OUTBOX)?;
    let confirmations = outcomes::Confirmations::new(outcomes.clone());
    let ctx = Arc::new(WorkerContext {
        ledger: store.ledger()?,
        versions: store.versions()?,
        quarantine: store.quarantine()?,
        delete_guard: delete_guard::DeleteGuard::new(
            delete_guard,
            store.delete_window()?,
            store.mapping()?,
        ),
        tenant: Tenant {
            online,
            opening_key,
            mapping: store.mapping()?,
            awaiting: awaiting::Awaiting::new(store.awaiting_licence()?, licence_recheck),
        },
        outcomes: outcomes.clone(),
        recorder: recorder::Recorder::start(store.clone(), outcomes.clone()),
        confirmations,
        fold: Arc::clone(&fold),
        dead_letters,
        topology: topology.clone(),
        circuit: Arc::clone(&circuit),
        counters: Arc::clone(&counters),
        retry,
        worker_name: worker_name.clone(),
        shutdown: shutdown.clone(),
    });
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(outcomes::relay(
        outcomes,
        outcome_publisher,
        topology.clone(),
        Arc::clone(&counters),
        worker_id.clone(),
        ctx.confirmations.clone(),
        relay_stop.clone(),
    ));
    let resumer = tokio::spawn(awaiting::run(
        Arc::clone(&ctx),
        Arc::clone(&circuit),
        shutdown.clone(),
    ));
    let fold_stop = CancellationToken::new();
    let folding = tokio::spawn(fold::run_fold(
        fold,
        Arc::clone(&broker),
        store.clone(),
        worker_id.clone(),
        fold_stop.clone(),
    ));
    let mut partitions = tokio::task::JoinSet::new();
    for partition in 0..topology.partitions() {
        partitions.spawn(partition::run_partition(
            Arc::clone(&ctx),
            Arc::clone(&broker),
            partition,
            prefetch,
            shutdown_grace,
        ));
    }
    tracing::info!(
        worker = %worker_name,
        worker_id = %worker_id,
        outcome_queue = %own_queue,
        partitions = topology.partitions(),
        prefetch,
        "worker consuming"
    );
    let worker_ctx = Arc::clone(&ctx);
    let task = tokio::spawn(async move {
        let mut failure = None;
        while let Some(joined) = partitions.join_next().await {
            if let Err(join_error) = joined {
                failure = Some(WorkerError::Task(join_error.to_string()));
            }
        }
        // Partitions are closed: the last outcome events are in the outbox; relay them, then
        // close the connection (channels first, as the consumers already did).
        relay_stop.cancel();
        let _ = relay.await;
        let _ = resumer.await;
        ctx.recorder.close().await;
        fold_stop.cancel();
        let _ = folding.await;
        if let Err(error) = ctx.dead_letters.close().await {
            tracing::debug!(error = %error, "closing the dead-letter channel");
        }
        if let Err(error) = broker.close().await {
            tracing::warn!(error = %error, "closing the RabbitMQ connection");
        }
        store.flush_async().await?;
        tracing::info!(worker = %worker_name, "worker stopped");
        failure.map_or(Ok(()), Err)
    });
    Ok(RunningWorker {
        shutdown,
        counters,
        circuit,
        pacer,
        ctx: worker_ctx,
        outcome_queue: own_queue,
        task,
    })
}

/// Runs a worker until `shutdown` is cancelled: the CLI's `moss worker`.
pub async fn run(settings: WorkerSettings, shutdown: CancellationToken) -> Result<(), WorkerError> {
    start(settings, shutdown).await?.wait().await
}
