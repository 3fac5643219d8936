//! What the producer keeps in its outbox for each accepted event: the wire body (passwords already
//! sealed) and where it goes. Partition and routing are fixed at accept time, so a resend after a
//! crash goes exactly where the first attempt went.

use serde::{Deserialize, Serialize};

/// One outbox entry, serialised as JSON into the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct OutboxRecord {
    /// The CloudEvent id; also the AMQP message id, which the workers dedupe on.
    pub(crate) message_id: String,
    /// `p{n}`: the partition of the event's subject.
    pub(crate) routing_key: String,
    /// The CloudEvents `type`, kept for metrics and logs without re-decoding the body.
    pub(crate) event_type: String,
    /// The directory object the event is about.
    pub(crate) subject: String,
    /// The structured-mode CloudEvent JSON exactly as it is published.
    pub(crate) body: String,
}

impl OutboxRecord {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<OutboxRecord, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
