//! The figures `moss status` and the dashboard's overview both show, read one way: the
//! partition queues' depths, dead letters by class, and what the worker's and the producer's
//! `/metrics` say (circuit, free seats, users awaiting a licence, outbox backlog). Each caller
//! renders them in its own shape; a figure a source does not give is `None`, never a guess.

use std::collections::BTreeMap;

use anyhow::Result;
use moss_broker::{Broker, BrokerError, QueueDepth, Topology};
use serde::Serialize;

use crate::operate::dead_letters::DeadLetter;
use crate::operate::metrics::{
    PRODUCER_OUTBOX_BACKLOG, Scrape, WORKER_AWAITING_LICENCE, WORKER_CIRCUIT, WORKER_FREE_SEATS,
};

/// The class the mass-delete guard gives a held delete.
pub(crate) const HELD: &str = "held";

/// Each partition queue with its depth, in partition order.
pub(crate) async fn partition_depths(
    broker: &Broker,
    topology: &Topology,
) -> Vec<(String, Result<QueueDepth, BrokerError>)> {
    let mut depths = Vec::with_capacity(usize::from(topology.partitions()));
    for partition in 0..topology.partitions() {
        let queue = topology.partition_queue(partition);
        let depth = broker.queue_depth(&queue).await;
        depths.push((queue, depth));
    }
    depths
}

/// Dead letters counted by error class, and how many of them are held deletes.
pub(crate) fn count_by_class<'a>(
    letters: impl IntoIterator<Item = &'a DeadLetter>,
) -> (BTreeMap<String, usize>, usize) {
    let mut by_class = BTreeMap::new();
    for letter in letters {
        *by_class.entry(letter.error.class.clone()).or_insert(0) += 1;
    }
    let held = by_class.get(HELD).copied().unwrap_or(0);
    (by_class, held)
}

/// The worker's circuit breaker: its state and why (`moss.status.v1` and the overview).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Circuit {
    pub(crate) state: String,
    pub(crate) cause: Option<String>,
}

/// What the worker's `/metrics` says; all `None` when it does not answer.
#[derive(Debug, Default)]
pub(crate) struct WorkerFigures {
    pub(crate) circuit: Option<Circuit>,
    /// Free seats per SKU; `None` when the worker reports none.
    pub(crate) free_seats: Option<Vec<(String, f64)>>,
    /// Users whose account waits for a free licence seat.
    pub(crate) awaiting_licence: Option<u64>,
}

impl WorkerFigures {
    pub(crate) fn read(worker: &Result<Scrape>) -> WorkerFigures {
        let Ok(scrape) = worker else {
            return WorkerFigures::default();
        };
        let circuit = scrape
            .series(WORKER_CIRCUIT)
            .find(|sample| sample.value >= 1.0)
            .map(|sample| Circuit {
                state: sample
                    .labels
                    .get("state")
                    .cloned()
                    .unwrap_or_else(|| "unknown".to_owned()),
                cause: sample
                    .labels
                    .get("cause")
                    .filter(|cause| !cause.is_empty())
                    .cloned(),
            });
        let seats: Vec<(String, f64)> = scrape
            .series(WORKER_FREE_SEATS)
            .map(|sample| {
                (
                    sample.labels.get("sku").cloned().unwrap_or_default(),
                    sample.value,
                )
            })
            .collect();
        WorkerFigures {
            circuit,
            free_seats: (!seats.is_empty()).then_some(seats),
            awaiting_licence: scrape
                .value(WORKER_AWAITING_LICENCE)
                .map(|value| value.max(0.0) as u64),
        }
    }
}

/// The producer's outbox backlog, from its `/metrics`.
pub(crate) fn outbox_backlog(producer: &Result<Scrape>) -> Option<u64> {
    producer
        .as_ref()
        .ok()
        .and_then(|scrape| scrape.value(PRODUCER_OUTBOX_BACKLOG))
        .map(|backlog| backlog.max(0.0) as u64)
}
