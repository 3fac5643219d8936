//! The overview: health at a glance, from the same sources as `moss status` (the partition
//! queues, the dead queue, the management API, the worker's and the producer's `/metrics`).
//! Rates are measured over the last minute of the dashboard's own readings; a figure it cannot
//! get is shown as unknown with the reason, never guessed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use super::Shared;
use crate::figures::{Circuit, WorkerFigures, count_by_class, outbox_backlog, partition_depths};
use crate::operate::management::Management;
use crate::operate::metrics::Scrape;

/// Settled events by type and outcome (the worker's counter).
const WORKER_EVENTS: &str = "moss_worker_events_total";
const WORKER_THROTTLED: &str = "moss_worker_throttled_total";
const WORKER_RETRIES: &str = "moss_worker_retries_total";
/// How far back rates look.
const WINDOW: Duration = Duration::from_secs(60);

/// One reading of the worker's counters.
#[derive(Debug, Clone)]
struct Reading {
    at: Instant,
    applied_by_type: BTreeMap<String, f64>,
    throttled: f64,
    retries: f64,
}

/// The worker's readings of the last minute, for rates.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    readings: Mutex<VecDeque<Reading>>,
}

impl Rates {
    /// Adds `now` and returns the oldest reading still in the window (not `now` itself).
    fn add(&self, now: Reading) -> Option<Reading> {
        let mut readings = self
            .readings
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        while readings
            .front()
            .is_some_and(|oldest| now.at.duration_since(oldest.at) > WINDOW)
        {
            readings.pop_front();
        }
        let oldest = readings.front().cloned();
        readings.push_back(now);
        oldest
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    pub(crate) time: String,
    pub(crate) prefix: String,
    /// One line each, worst first: what needs the operator.
    pub(crate) health: Vec<Signal>,
    pub(crate) circuit: Option<Circuit>,
    pub(crate) partitions: Vec<Partition>,
    pub(crate) dead_letters: DeadLetters,
    /// Per event type, applied per minute over the last minute.
    pub(crate) applied_per_minute: Option<BTreeMap<String, f64>>,
    pub(crate) throttled_per_minute: Option<f64>,
    pub(crate) retries_per_minute: Option<f64>,
    pub(crate) throttled_total: Option<f64>,
    pub(crate) retries_total: Option<f64>,
    pub(crate) outbox_backlog: Option<u64>,
    pub(crate) free_seats: Option<Vec<(String, f64)>>,
    pub(crate) sources: Vec<Source>,
    pub(crate) outcome_history: usize,
}

#[derive(Debug, Serialize)]
pub(crate) struct Signal {
    /// `ok`, `warn` or `bad`.
    pub(crate) level: &'static str,
    pub(crate) text: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Partition {
    pub(crate) queue: String,
    pub(crate) ready: Option<u32>,
    pub(crate) unacked: Option<u64>,
    pub(crate) consumers: Option<u32>,
}

#[derive(Debug, Serialize)]
pub(crate) struct DeadLetters {
    pub(crate) in_queue: u32,
    pub(crate) by_class: BTreeMap<String, usize>,
    pub(crate) held_deletes: usize,
    pub(crate) read_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Source {
    pub(crate) name: &'static str,
    pub(crate) address: String,
    pub(crate) problem: Option<String>,
}

/// `GET /api/overview`.
pub(crate) async fn api(State(shared): State<Arc<Shared>>) -> Json<Overview> {
    Json(gather(&shared).await)
}

/// Reads every source once.
pub(crate) async fn gather(shared: &Shared) -> Overview {
    let settings = &shared.settings;
    let topology = &settings.topology;
    let mut sources = Vec::new();

    let management = match Management::new(&settings.management_url, &settings.amqp_url) {
        Ok(management) => management.queues(topology.prefix().as_str()).await,
        Err(error) => Err(error),
    };
    sources.push(Source {
        name: "RabbitMQ management API",
        address: settings.management_url.clone(),
        problem: management.as_ref().err().map(|error| format!("{error:#}")),
    });
    let mut partitions = Vec::new();
    let mut amqp_problem = None;
    for (queue, depth) in partition_depths(&shared.broker, topology).await {
        let depth = match depth {
            Ok(depth) => Some(depth),
            Err(error) => {
                amqp_problem.get_or_insert_with(|| format!("could not inspect {queue}: {error}"));
                None
            }
        };
        let unacked = management
            .as_ref()
            .ok()
            .and_then(|queues| queues.get(&queue))
            .and_then(|stats| stats.messages_unacknowledged);
        partitions.push(Partition {
            ready: depth.map(|depth| depth.ready),
            consumers: depth.map(|depth| depth.consumers),
            unacked,
            queue,
        });
    }
    sources.insert(
        0,
        Source {
            name: "RabbitMQ",
            address: crate::operate::connection::redacted(&settings.amqp_url),
            problem: amqp_problem,
        },
    );

    let snapshot = shared.letters.snapshot();
    let in_queue = shared
        .broker
        .queue_depth(&topology.dead_queue())
        .await
        .map_or(snapshot.in_queue, |depth| depth.ready);
    let (by_class, held_deletes) = count_by_class(&snapshot.letters);
    sources.push(Source {
        name: "dead queue",
        address: topology.dead_queue(),
        problem: snapshot.problem.clone(),
    });

    let worker = Scrape::fetch(&shared.http, &settings.worker_metrics).await;
    sources.push(Source {
        name: "worker /metrics",
        address: format!("http://{}/metrics", settings.worker_metrics),
        problem: worker.as_ref().err().map(|error| format!("{error:#}")),
    });
    let producer = Scrape::fetch(&shared.http, &settings.producer_metrics).await;
    sources.push(Source {
        name: "producer /metrics",
        address: format!("http://{}/metrics", settings.producer_metrics),
        problem: producer.as_ref().err().map(|error| format!("{error:#}")),
    });
    sources.push(Source {
        name: "outcomes",
        address: topology.outcomes_exchange(),
        problem: shared.outcomes.problem(),
    });

    let outbox_backlog = outbox_backlog(&producer);
    let WorkerFigures {
        circuit,
        free_seats,
        ..
    } = WorkerFigures::read(&worker);
    let (mut applied_per_minute, mut throttled_per_minute, mut retries_per_minute) =
        (None, None, None);
    let (mut throttled_total, mut retries_total) = (None, None);
    if let Ok(scrape) = &worker {
        let mut applied_by_type = BTreeMap::new();
        for sample in scrape.series(WORKER_EVENTS) {
            if sample.labels.get("outcome").map(String::as_str) == Some("applied") {
                let kind = sample.labels.get("type").cloned().unwrap_or_default();
                *applied_by_type.entry(kind).or_insert(0.0) += sample.value;
            }
        }
        let now = Reading {
            at: Instant::now(),
            applied_by_type,
            throttled: scrape.value(WORKER_THROTTLED).unwrap_or(0.0),
            retries: scrape.value(WORKER_RETRIES).unwrap_or(0.0),
        };
        throttled_total = Some(now.throttled);
        retries_total = Some(now.retries);
        if let Some(before) = shared.overview.add(now.clone()) {
            let minutes = now.at.duration_since(before.at).as_secs_f64() / 60.0;
            if minutes > 0.0 {
                let rate = |after: f64, before: f64| {
                    ((after - before).max(0.0) / minutes * 10.0).round() / 10.0
                };
                applied_per_minute = Some(
                    now.applied_by_type
                        .iter()
                        .map(|(kind, count)| {
                            let earlier = before.applied_by_type.get(kind).copied().unwrap_or(0.0);
                            (kind.clone(), rate(*count, earlier))
                        })
                        .collect(),
                );
                throttled_per_minute = Some(rate(now.throttled, before.throttled));
                retries_per_minute = Some(rate(now.retries, before.retries));
            }
        }
    }

    let mut health = Vec::new();
    match &circuit {
        Some(circuit) if circuit.state == "closed" => health.push(Signal {
            level: "ok",
            text: "the circuit is closed: the worker is applying events".to_owned(),
        }),
        Some(circuit) => {
            let cause = circuit.cause.as_deref().unwrap_or("unknown");
            health.push(Signal {
                level: "bad",
                text: format!(
                    "the circuit is {} (cause: {cause}): the tenant is paused, events wait in their partitions",
                    circuit.state
                ),
            });
            if cause == "configuration" {
                health.push(Signal {
                    level: "bad",
                    text: "the tenant refused moss's credentials or permissions: fix the app registration, then the worker resumes".to_owned(),
                });
            }
        }
        None => health.push(Signal {
            level: "warn",
            text: "the circuit is unknown: the worker's /metrics does not answer".to_owned(),
        }),
    }
    if held_deletes > 0 {
        health.push(Signal {
            level: "bad",
            text: format!(
                "{held_deletes} {} held by the mass-delete guard: approve or reject under Held deletes",
                if held_deletes == 1 { "removal or deactivation is" } else { "removals or deactivations are" }
            ),
        });
    }
    let consumers: u32 = partitions
        .iter()
        .filter_map(|partition| partition.consumers)
        .sum();
    if partitions
        .iter()
        .any(|partition| partition.consumers == Some(0))
    {
        health.push(Signal {
            level: "warn",
            text: "some partitions have no consumer: no worker is reading them".to_owned(),
        });
    } else if consumers > 0 {
        health.push(Signal {
            level: "ok",
            text: "every partition has a consumer".to_owned(),
        });
    }
    let other_dead = usize::try_from(in_queue)
        .unwrap_or(usize::MAX)
        .saturating_sub(held_deletes);
    if other_dead > 0 {
        health.push(Signal {
            level: "warn",
            text: if other_dead == 1 {
                "1 dead letter waits for an operator".to_owned()
            } else {
                format!("{other_dead} dead letters wait for an operator")
            },
        });
    }
    health.sort_by_key(|signal| match signal.level {
        "bad" => 0,
        "warn" => 1,
        _ => 2,
    });

    Overview {
        time: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        prefix: topology.prefix().as_str().to_owned(),
        health,
        circuit,
        partitions,
        dead_letters: DeadLetters {
            in_queue,
            by_class,
            held_deletes,
            read_at: snapshot
                .read_at
                .map(|time| time.to_rfc3339_opts(SecondsFormat::Secs, true)),
        },
        applied_per_minute,
        throttled_per_minute,
        retries_per_minute,
        throttled_total,
        retries_total,
        outbox_backlog,
        free_seats,
        sources,
        outcome_history: shared.outcomes.len(),
    }
}
