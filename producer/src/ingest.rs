//! The HTTP ingest: `POST /v1/events` takes one CloudEvent or a batch, validates every field,
//! seals clear passwords, stores the events in the outbox with one flush, and only then answers
//! `202`. Whatever fails, nothing is half-stored: a batch is stored whole or not at all.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use moss_schemas::{DecodeError, Envelope, EventBatch, SealingKey};
use moss_store::Outbox;
use prometheus_client::metrics::gauge::Gauge;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::Notify;

use crate::metrics::{ProducerMetrics, TypeLabel};
use crate::problem::{Problem, ProblemViolation};
use crate::record::{OutboxRecord, event_count, pack_group};
use crate::relay::{Group, Handoff, Ready, RelayStatus};

/// Media type of one structured-mode CloudEvent.
pub const SINGLE_CONTENT_TYPE: &str = "application/cloudevents+json";
/// Media type of a CloudEvents JSON batch.
pub const BATCH_CONTENT_TYPE: &str = EventBatch::CONTENT_TYPE;

/// What every ingest request shares.
#[derive(Debug)]
pub(crate) struct IngestState {
    pub(crate) sealing_key: SealingKey,
    pub(crate) partitions: u16,
    pub(crate) token: Option<SecretString>,
    pub(crate) max_body_bytes: usize,
    pub(crate) metrics: Arc<ProducerMetrics>,
    pub(crate) commits: GroupCommit,
    pub(crate) relay_status: Arc<RelayStatus>,
}

/// Group commit: one writer stores what concurrent requests accepted with one flush for all of
/// them (a request that arrives while a flush runs waits for the next, together with the others
/// that arrived meanwhile), then hands the flushed groups to the relay in id order and answers
/// each request. A lone request costs what it did before: one append and one flush.
///
/// The events of one group commit are packed into as few outbox entries as [`MAX_ENTRY_BYTES`]
/// allows (`record::pack_group`), all written in one atomic sled batch: sled then inserts, and
/// the relay later removes, one value per group of events instead of one per event.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    jobs: tokio::sync::mpsc::UnboundedSender<CommitJob>,
}

/// One request's events for the writer.
struct CommitJob {
    payloads: Vec<Vec<u8>>,
    /// What the relay publishes for each payload, in the same order.
    ready: Vec<Ready>,
    reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Most events stored under one flush; the rest wait for the next.
const MAX_GROUP_ENTRIES: usize = 10_000;

/// Largest outbox entry the writer packs (an entry holds at least one event, so a single larger
/// event makes a larger entry): about 10 events of the usual size.
///
/// Why not larger: sled writes any log record over about 128 KiB (a quarter of its 512 KiB
/// segment) to a separate file under `blobs/`, and sled 0.34 never fsyncs those files, so a
/// power loss could lose what was acknowledged. A leaf node holds up to 17 entries and is
/// rewritten whole when its changes are consolidated; with entries of 64 KiB the bench's outbox
/// wrote a hundred blob files in four seconds. 17 × 6 KiB stays under the threshold.
const MAX_ENTRY_BYTES: usize = 6 * 1024;

impl GroupCommit {
    /// Starts the writer; it ends once every [`GroupCommit`] handle is dropped (await the
    /// returned task before the store is closed).
    pub(crate) fn start(
        outbox: Outbox,
        handoff: Arc<Handoff>,
        relay_wakeup: Arc<Notify>,
        backlog: Gauge,
    ) -> (GroupCommit, tokio::task::JoinHandle<()>) {
        let (jobs, receiver) = tokio::sync::mpsc::unbounded_channel();
        let writer = tokio::task::spawn_blocking(move || {
            write_groups(&outbox, &handoff, &relay_wakeup, &backlog, receiver);
        });
        (GroupCommit { jobs }, writer)
    }

    /// Stores `payloads` durably (one flush, possibly shared with other requests); `ready` is
    /// what the relay publishes for each, in the same order.
    async fn append(&self, payloads: Vec<Vec<u8>>, ready: Vec<Ready>) -> Result<(), String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(CommitJob {
                payloads,
                ready,
                reply,
            })
            .map_err(|_| "the outbox writer has stopped".to_owned())?;
        answer.await.unwrap_or_else(|_| {
            Err("the outbox writer stopped before the write completed".to_owned())
        })
    }
}

fn write_groups(
    outbox: &Outbox,
    handoff: &Handoff,
    relay_wakeup: &Notify,
    backlog: &Gauge,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<CommitJob>,
) {
    while let Some(first) = jobs.blocking_recv() {
        let mut entries = first.payloads.len();
        let mut group = vec![first];
        while entries < MAX_GROUP_ENTRIES {
            let Ok(job) = jobs.try_recv() else { break };
            entries += job.payloads.len();
            group.push(job);
        }
        let (entries, sizes) = pack(&group);
        // Counted before the entries are visible, so that a relay removing them at once never
        // takes the gauge below zero; taken back if the write fails.
        let stored = i64::try_from(sizes.iter().sum::<usize>()).unwrap_or(i64::MAX);
        backlog.inc_by(stored);
        match outbox.append_all(&entries) {
            Ok(ids) => {
                drop(entries);
                // Offered before any 202 goes out, in id order (this is the only writer).
                let mut events = group
                    .iter_mut()
                    .flat_map(|job| std::mem::take(&mut job.ready));
                handoff.offer(ids.into_iter().zip(sizes).map(|(id, size)| Group {
                    id,
                    events: events.by_ref().take(size).collect(),
                }));
                relay_wakeup.notify_one();
                for job in group {
                    let _ = job.reply.send(Ok(()));
                }
            }
            Err(error) => {
                backlog.dec_by(stored);
                tracing::error!(error = %error, requests = group.len(), "outbox could not store accepted events; answered 503");
                let text = error.to_string();
                for job in group {
                    let _ = job.reply.send(Err(text.clone()));
                }
            }
        }
    }
}

/// The group commit's events, in order, packed into outbox entries of at most [`MAX_ENTRY_BYTES`]
/// (or one event), with the number of events in each.
fn pack(jobs: &[CommitJob]) -> (Vec<Vec<u8>>, Vec<usize>) {
    let mut entries = Vec::new();
    let mut sizes = Vec::new();
    let mut pending: Vec<&[u8]> = Vec::new();
    let mut bytes = 0;
    for record in jobs.iter().flat_map(|job| &job.payloads) {
        // 4 bytes of length per record, 5 of group header.
        if !pending.is_empty() && 5 + bytes + 4 + record.len() > MAX_ENTRY_BYTES {
            sizes.push(pending.len());
            entries.push(pack_group(pending.drain(..)));
            bytes = 0;
        }
        bytes += 4 + record.len();
        pending.push(record);
    }
    if !pending.is_empty() {
        sizes.push(pending.len());
        entries.push(pack_group(pending.drain(..)));
    }
    (entries, sizes)
}

/// The `202` body: the ids of the events now stored, in the order given.
#[derive(Debug, Serialize)]
struct Accepted {
    accepted: Vec<String>,
}

pub(crate) fn router(state: Arc<IngestState>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// A router with only `/metrics`, for the separate metrics listener.
pub(crate) fn metrics_router(state: Arc<IngestState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Whether the request carried one event or a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Single,
    Batch,
}

async fn post_events(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    if let Some(expected) = &state.token
        && !bearer_matches(&headers, expected)
    {
        state.metrics.reject("unauthorized");
        return Problem::unauthorized().into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let kind = match media_type(content_type).as_str() {
        SINGLE_CONTENT_TYPE | "application/json" => BodyKind::Single,
        BATCH_CONTENT_TYPE => BodyKind::Batch,
        _ => {
            state.metrics.reject("unsupported_media_type");
            return Problem::unsupported_media_type(content_type).into_response();
        }
    };
    let Ok(bytes) = to_bytes(body, state.max_body_bytes).await else {
        state.metrics.reject("too_large");
        return Problem::too_large(state.max_body_bytes).into_response();
    };

    let decoded =
        match kind {
            BodyKind::Single => Envelope::from_ingest_json_slice(&bytes, &state.sealing_key)
                .map(|event| vec![event]),
            BodyKind::Batch => EventBatch::from_ingest_json_slice(&bytes, &state.sealing_key)
                .map(|batch| batch.events),
        };
    // The body may hold clear passwords: drop it now that they are sealed.
    drop(bytes);
    let events = match decoded {
        Ok(events) => events,
        Err(error) => {
            state.metrics.reject("invalid");
            return invalid(&error).into_response();
        }
    };

    let mut payloads = Vec::with_capacity(events.len());
    let mut ready = Vec::with_capacity(events.len());
    let mut accepted = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    for event in &events {
        let record = OutboxRecord {
            message_id: event.id.to_string(),
            routing_key: format!("p{}", event.partition(state.partitions)),
            event_type: event.event_type().as_str().to_owned(),
            subject: event.subject.to_string(),
            body: event.to_json_vec(),
        };
        let bytes = match record.to_bytes() {
            Ok(bytes) => bytes,
            Err(error) => {
                // Validation keeps every field far inside the record's limits.
                tracing::error!(error = %error, "an accepted event does not fit an outbox record; answered 503");
                state.metrics.reject("not_stored");
                return Problem::not_stored(&error.to_string()).into_response();
            }
        };
        tracing::debug!(event_id = %record.message_id, subject = %record.subject, r#type = %record.event_type, "accepted");
        payloads.push(bytes);
        accepted.push(record.message_id.clone());
        types.push(record.event_type);
        ready.push(Ready {
            message_id: record.message_id,
            routing_key: record.routing_key,
            body: record.body,
        });
    }
    drop(events);

    if let Err(error) = state.commits.append(payloads, ready).await {
        state.metrics.reject("not_stored");
        return Problem::not_stored(&error).into_response();
    }

    for event_type in types {
        state
            .metrics
            .accepted
            .get_or_create(&TypeLabel { r#type: event_type })
            .inc();
    }
    state
        .metrics
        .accept_seconds
        .observe(started.elapsed().as_secs_f64());
    let accepted = Accepted { accepted };
    (StatusCode::ACCEPTED, axum::Json(accepted)).into_response()
}

fn invalid(error: &DecodeError) -> Problem {
    let errors: Vec<ProblemViolation> = error
        .violations
        .iter()
        .map(|violation| ProblemViolation {
            pointer: violation.pointer.clone(),
            rule: violation.rule.clone(),
            detail: violation.message.clone(),
        })
        .collect();
    let detail = match errors.len() {
        1 => format!(
            "{} at {}",
            errors[0].detail,
            display_pointer(&errors[0].pointer)
        ),
        count => format!("{count} violations; see errors"),
    };
    Problem::invalid_event(detail, errors)
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() {
        "the document root"
    } else {
        pointer
    }
}

/// The media type without parameters, lower case (`Application/JSON; charset=utf-8` → `application/json`).
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Compares the bearer token in constant time with respect to its content.
fn bearer_matches(headers: &HeaderMap, expected: &SecretString) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    let expected = expected.expose_secret().as_bytes();
    let given = given.trim().as_bytes();
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

async fn healthz() -> &'static str {
    "ok"
}

/// Events waiting in the outbox (each entry holds a group of them), counted by walking every
/// entry's header: O(entries), so done once, at start. From then on the
/// `moss_producer_outbox_backlog` gauge follows it: the ingest adds what it stored, the relay
/// takes away what it removed.
pub(crate) fn count_backlog(outbox: &Outbox) -> u64 {
    outbox
        .weigh(|entry| event_count(entry) as u64)
        .unwrap_or_else(|error| {
            tracing::warn!(error = %error, "could not count the outbox backlog");
            0
        })
}

/// Ready once the outbox is open (it is, or the producer would not have started). The broker being away does not make the ingest unready:
/// accepting while RabbitMQ is down is the outbox's whole point; the body says how far behind it is.
async fn readyz(State(state): State<Arc<IngestState>>) -> Response {
    let backlog = state.metrics.outbox_backlog.get().max(0);
    let broker = if state.relay_status.connected() {
        "connected"
    } else {
        "reconnecting"
    };
    let body = serde_json::json!({"status": "ready", "outbox_backlog": backlog, "broker": broker});
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<IngestState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_compared_without_parameters_or_case() {
        assert_eq!(
            media_type("Application/CloudEvents+JSON; charset=utf-8"),
            SINGLE_CONTENT_TYPE
        );
        assert_eq!(media_type(""), "");
    }

    #[test]
    fn a_bearer_token_must_match_exactly() {
        let expected = SecretString::from("s3cret-token");
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, &expected));
        headers.insert(
            header::AUTHORIZATION,
            "Bearer s3cret-token".parse().unwrap(),
        );
        assert!(bearer_matches(&headers, &expected));
        headers.insert(
            header::AUTHORIZATION,
            "Bearer s3cret-tokem".parse().unwrap(),
        );
        assert!(!bearer_matches(&headers, &expected));
        headers.insert(header::AUTHORIZATION, "Basic s3cret-token".parse().unwrap());
        assert!(!bearer_matches(&headers, &expected));
    }
}
