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
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::Notify;

use crate::metrics::{ProducerMetrics, TypeLabel};
use crate::problem::{Problem, ProblemViolation};
use crate::record::OutboxRecord;
use crate::relay::RelayStatus;

/// Media type of one structured-mode CloudEvent.
pub const SINGLE_CONTENT_TYPE: &str = "application/cloudevents+json";
/// Media type of a CloudEvents JSON batch.
pub const BATCH_CONTENT_TYPE: &str = EventBatch::CONTENT_TYPE;

/// What every ingest request shares.
#[derive(Debug)]
pub(crate) struct IngestState {
    pub(crate) outbox: Outbox,
    pub(crate) sealing_key: SealingKey,
    pub(crate) partitions: u16,
    pub(crate) token: Option<SecretString>,
    pub(crate) max_body_bytes: usize,
    pub(crate) metrics: Arc<ProducerMetrics>,
    pub(crate) relay_wakeup: Arc<Notify>,
    pub(crate) relay_status: Arc<RelayStatus>,
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

    let records: Vec<OutboxRecord> = events
        .iter()
        .map(|event| OutboxRecord {
            message_id: event.id.to_string(),
            routing_key: format!("p{}", event.partition(state.partitions)),
            event_type: event.event_type().as_str().to_owned(),
            subject: event.subject.to_string(),
            body: String::from_utf8(event.to_json_vec()).unwrap_or_default(),
        })
        .collect();
    let payloads: Vec<Vec<u8>> = records.iter().map(OutboxRecord::to_bytes).collect();

    let outbox = state.outbox.clone();
    let stored = tokio::task::spawn_blocking(move || outbox.append_all(&payloads)).await;
    match stored {
        Ok(Ok(_ids)) => {}
        Ok(Err(error)) => {
            tracing::error!(error = %error, "outbox could not store accepted events; answered 503");
            state.metrics.reject("not_stored");
            return Problem::not_stored(&error.to_string()).into_response();
        }
        Err(join_error) => {
            tracing::error!(error = %join_error, "outbox write task failed; answered 503");
            state.metrics.reject("not_stored");
            return Problem::not_stored("the write did not complete").into_response();
        }
    }
    state.relay_wakeup.notify_one();

    for record in &records {
        tracing::debug!(event_id = %record.message_id, subject = %record.subject, r#type = %record.event_type, "accepted");
        state
            .metrics
            .accepted
            .get_or_create(&TypeLabel {
                r#type: record.event_type.clone(),
            })
            .inc();
    }
    state
        .metrics
        .accept_seconds
        .observe(started.elapsed().as_secs_f64());
    let accepted = Accepted {
        accepted: records
            .into_iter()
            .map(|record| record.message_id)
            .collect(),
    };
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

/// Ready once the outbox is open (it is, or the producer would not have started). The broker being away does not make the ingest unready:
/// accepting while RabbitMQ is down is the outbox's whole point; the body says how far behind it is.
async fn readyz(State(state): State<Arc<IngestState>>) -> Response {
    let backlog = state.outbox.len();
    let broker = if state.relay_status.connected() {
        "connected"
    } else {
        "reconnecting"
    };
    let body = serde_json::json!({"status": "ready", "outbox_backlog": backlog, "broker": broker});
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<IngestState>>) -> Response {
    state
        .metrics
        .outbox_backlog
        .set(i64::try_from(state.outbox.len()).unwrap_or(i64::MAX));
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
