//! Control messages: operator instructions that travel through a subject's partition, so that
//! the worker handles them in the subject's lane, in order with its events. They are told apart
//! from events before decoding, by content type and the `moss-control` header.
//!
//! The one control so far releases a quarantine whose blocking dead letter an operator purged
//! (`moss dlq purge`, `moss deletes reject`): without it the subject's later events would be
//! dead-lettered as `quarantined` for ever, since only the replay of the blocking event lifts it.

use moss_broker::{Delivery, Headers, OutgoingMessage, Persistence, Topology};
use moss_schemas::Subject;
use serde::{Deserialize, Serialize};

/// The AMQP content type of a control message.
pub const CONTROL_CONTENT_TYPE: &str = "application/vnd.moss.control+json";
/// `moss-control`: which control it is.
pub const CONTROL: &str = "moss-control";
/// The `moss-control` value of [`ReleaseQuarantine`].
pub const RELEASE_QUARANTINE: &str = "release-quarantine";

/// Lift `subject`'s quarantine, if `blocking_event_id` is still what blocks it (a newer
/// quarantine, behind another event, stays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseQuarantine {
    /// The subject.
    pub subject: Subject,
    /// The purged dead letter's event id.
    pub blocking_event_id: String,
}

impl ReleaseQuarantine {
    /// The message to publish (with confirm) to the events exchange, routed to the subject's
    /// partition as the producer routes its events.
    pub fn message(&self, topology: &Topology) -> OutgoingMessage {
        OutgoingMessage {
            exchange: topology.events_exchange(),
            routing_key: topology
                .partition_routing_key(self.subject.partition(topology.partitions())),
            message_id: uuid::Uuid::new_v4().to_string(),
            body: serde_json::to_vec(self).unwrap_or_default(),
            content_type: CONTROL_CONTENT_TYPE.to_owned(),
            headers: Headers::new().with_text(CONTROL, RELEASE_QUARANTINE),
            persistence: Persistence::Persistent,
        }
    }
}

/// A control message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// See [`ReleaseQuarantine`].
    Release(ReleaseQuarantine),
}

/// Whether `delivery` is a control message rather than an event.
pub(crate) fn is_control(delivery: &Delivery) -> bool {
    delivery.content_type.as_deref() == Some(CONTROL_CONTENT_TYPE)
        || delivery.headers.get(CONTROL).is_some()
}

/// Reads a control message; the error says what is wrong, for its dead letter.
pub(crate) fn decode(delivery: &Delivery) -> Result<Control, String> {
    match delivery.headers.get_str(CONTROL) {
        Some(RELEASE_QUARANTINE) => serde_json::from_slice(&delivery.body)
            .map(Control::Release)
            .map_err(|error| {
                format!("a {RELEASE_QUARANTINE} control message does not decode: {error}")
            }),
        Some(other) => Err(format!("unknown control message `{other}` in {CONTROL}")),
        None => Err(format!("a control message without the {CONTROL} header")),
    }
}
