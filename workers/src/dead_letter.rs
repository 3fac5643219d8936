//! The dead letter: the original body, under the same message id, with our own headers saying
//! why (never `x-death`, which RabbitMQ 3.13+ ignores when a client republishes it).

use chrono::{SecondsFormat, Utc};
use moss_broker::{Headers, OutgoingMessage, Persistence, Topology};
use moss_schemas::{Envelope, Subject};

use crate::outcome::Failure;

/// `moss-error-class`: the [`crate::FailureClass`] name.
pub const ERROR_CLASS: &str = "moss-error-class";
/// `moss-error-status`: the HTTP status, when a reply arrived.
pub const ERROR_STATUS: &str = "moss-error-status";
/// `moss-error-code`: the service's error code or moss's own.
pub const ERROR_CODE: &str = "moss-error-code";
/// `moss-error-message`: one sentence, never holding a secret.
pub const ERROR_MESSAGE: &str = "moss-error-message";
/// `moss-request-id`: the server's request id, for Microsoft support.
pub const REQUEST_ID: &str = "moss-request-id";
/// `moss-client-request-id`: our id of the failed operation.
pub const CLIENT_REQUEST_ID: &str = "moss-client-request-id";
/// `moss-attempts`: attempts this worker made on this delivery.
pub const ATTEMPTS: &str = "moss-attempts";
/// `moss-attempt`: how many times the event has been sent so far (1, then each replay adds one).
pub const ATTEMPT: &str = "moss-attempt";
/// `moss-replay-of`: set by `moss dlq replay` to the id of the event it replays.
pub const REPLAY_OF: &str = "moss-replay-of";
/// `moss-delete-approved`: `true` on a replay `moss deletes approve` sent; the worker applies
/// the removal or deactivation even over the mass-delete threshold.
pub const DELETE_APPROVED: &str = "moss-delete-approved";
/// `moss-original-routing-key`: the partition routing key it came with.
pub const ORIGINAL_ROUTING_KEY: &str = "moss-original-routing-key";
/// `moss-event-type`: the CloudEvents type, or `unknown`.
pub const EVENT_TYPE: &str = "moss-event-type";
/// `moss-subject`: the subject, when it could be read.
pub const SUBJECT: &str = "moss-subject";
/// `moss-dead-at`: when it was dead-lettered (RFC 3339).
pub const DEAD_AT: &str = "moss-dead-at";
/// `moss-dead-by`: the worker that dead-lettered it.
pub const DEAD_BY: &str = "moss-dead-by";

/// Longest `moss-error-message`; a decode error listing many violations is cut here.
const MAX_MESSAGE: usize = 2_000;

/// What the dead letter is made from: the delivery as it came.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received<'a> {
    pub(crate) body: &'a [u8],
    pub(crate) message_id: Option<&'a str>,
    pub(crate) headers: &'a Headers,
    pub(crate) routing_key: &'a str,
}

/// The message to publish to `{prefix}.dead`.
pub(crate) fn dead_letter_message(
    topology: &Topology,
    received: Received<'_>,
    event: Option<&Envelope>,
    failure: &Failure,
    attempts: u32,
    worker_name: &str,
) -> OutgoingMessage {
    let mut headers = Headers::new();
    // Our own headers travel on (moss-replay-of, moss-attempt); the broker's x-* do not.
    for (name, value) in received.headers.iter() {
        if !name.starts_with("x-") {
            headers.insert(name, value.clone());
        }
    }
    if headers.get(ATTEMPT).is_none() {
        headers.insert(ATTEMPT, moss_broker::HeaderValue::Int(1));
    }
    let mut message = failure.message.clone();
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    let subject = event
        .map(|event| event.subject)
        .or_else(|| subject_of_undecodable(received.body));
    let mut headers = headers
        .with_text(ERROR_CLASS, failure.class.as_str())
        .with_text(ERROR_CODE, failure.code.clone())
        .with_text(ERROR_MESSAGE, message)
        .with_int(ATTEMPTS, i64::from(attempts))
        .with_text(ORIGINAL_ROUTING_KEY, received.routing_key)
        .with_text(
            EVENT_TYPE,
            event.map_or("unknown", |event| event.event_type().as_str()),
        )
        .with_text(
            DEAD_AT,
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        )
        .with_text(DEAD_BY, worker_name);
    if let Some(status) = failure.status {
        headers = headers.with_int(ERROR_STATUS, i64::from(status));
    }
    if let Some(request_id) = &failure.request_id {
        headers = headers.with_text(REQUEST_ID, request_id.clone());
    }
    if let Some(client_request_id) = &failure.client_request_id {
        headers = headers.with_text(CLIENT_REQUEST_ID, client_request_id.clone());
    }
    if let Some(subject) = subject {
        headers = headers.with_text(SUBJECT, subject.to_string());
    }
    let message_id = received
        .message_id
        .map(str::to_owned)
        .or_else(|| event.map(|event| event.id.to_string()))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    OutgoingMessage {
        exchange: topology.dead_exchange(),
        routing_key: received.routing_key.to_owned(),
        message_id,
        body: received.body.to_vec(),
        content_type: Envelope::CONTENT_TYPE.to_owned(),
        headers,
        persistence: Persistence::Persistent,
    }
}

/// The subject of a message that failed to decode, if its `subject` member is still a valid
/// one: the operator's filter (`moss dlq list --user`) then finds it.
fn subject_of_undecodable(body: &[u8]) -> Option<Subject> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    Subject::parse(value.get("subject")?.as_str()?).ok()
}

#[cfg(test)]
mod tests {
    use moss_broker::{HeaderValue, TopologyPrefix};

    use super::*;
    use crate::outcome::FailureClass;

    fn topology() -> Topology {
        Topology::new(TopologyPrefix::parse("moss-unit").unwrap(), 4).unwrap()
    }

    #[test]
    fn a_dead_letter_keeps_body_and_id_and_says_why_in_our_headers() {
        let original = Headers::new()
            .with_text(REPLAY_OF, "0190-replayed")
            .with_int(ATTEMPT, 2)
            .with_int("x-delivery-count", 3);
        let body = br#"{"subject":"3f0c2a7e-1d2b-4c5d-8e9f-0a1b2c3d4e5f","garbage":true}"#;
        let failure = Failure {
            class: FailureClass::Permanent,
            status: Some(400),
            code: "Request_BadRequest".into(),
            message: "create user failed: invalid usage location".into(),
            request_id: Some("req-1".into()),
            client_request_id: Some("client-1".into()),
        };
        let message = dead_letter_message(
            &topology(),
            Received {
                body,
                message_id: Some("event-1"),
                headers: &original,
                routing_key: "p3",
            },
            None,
            &failure,
            4,
            "worker-a",
        );
        assert_eq!(message.exchange, "moss-unit.dead");
        assert_eq!(message.message_id, "event-1");
        assert_eq!(message.body, body.to_vec());
        let headers = &message.headers;
        assert_eq!(headers.get_str(ERROR_CLASS), Some("permanent"));
        assert_eq!(headers.get_i64(ERROR_STATUS), Some(400));
        assert_eq!(headers.get_str(ERROR_CODE), Some("Request_BadRequest"));
        assert_eq!(headers.get_str(REQUEST_ID), Some("req-1"));
        assert_eq!(headers.get_i64(ATTEMPTS), Some(4));
        assert_eq!(headers.get_str(ORIGINAL_ROUTING_KEY), Some("p3"));
        assert_eq!(headers.get_str(EVENT_TYPE), Some("unknown"));
        assert_eq!(
            headers.get_str(SUBJECT),
            Some("3f0c2a7e-1d2b-4c5d-8e9f-0a1b2c3d4e5f")
        );
        assert_eq!(headers.get_str(REPLAY_OF), Some("0190-replayed"));
        assert_eq!(headers.get(ATTEMPT), Some(&HeaderValue::Int(2)));
        assert_eq!(headers.get("x-delivery-count"), None);
        assert!(headers.get_str(DEAD_AT).is_some());
    }

    #[test]
    fn a_very_long_reason_is_cut_on_a_character_boundary() {
        let failure = Failure::local(FailureClass::Invalid, "SchemaViolation", "é".repeat(3_000));
        let message = dead_letter_message(
            &topology(),
            Received {
                body: b"not json",
                message_id: None,
                headers: &Headers::new(),
                routing_key: "p0",
            },
            None,
            &failure,
            0,
            "w",
        );
        let text = message.headers.get_str(ERROR_MESSAGE).unwrap();
        assert!(text.len() <= MAX_MESSAGE + '…'.len_utf8());
        assert_eq!(message.headers.get(ATTEMPT), Some(&HeaderValue::Int(1)));
        assert!(!message.message_id.is_empty());
    }
}
