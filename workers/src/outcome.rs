//! What handling an event came to, as values: the one place that settles a delivery
//! (`settle.rs`) turns each into an ack, a wait or a dead letter.

use std::fmt;
use std::time::Duration;

use moss_online::{ErrorClass, OnlineError};

/// How a handler's attempt at an event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The tenant was changed to the event's desired state.
    Applied,
    /// The tenant already was in the desired state (an earlier attempt, a 404 on delete, a
    /// member already there, or nothing to do).
    AlreadyApplied,
    /// The subject has already moved past this event's sequence.
    Stale {
        /// The subject's last applied sequence.
        current: u64,
    },
    /// Try again after `after` (or the backoff's next step when `None`).
    Retry {
        /// What the service asked for (`Retry-After`), if anything.
        after: Option<Duration>,
        /// Why: kept for the dead letter if the retries run out.
        failure: Failure,
    },
    /// This event cannot succeed as it is.
    DeadLetter {
        /// Why, for the dead letter's headers.
        reason: Failure,
    },
}

impl Outcome {
    /// Sorts a moss-online error into an outcome (ARCHITECTURE.md, "Error classes").
    pub(crate) fn from_online(error: &OnlineError) -> Outcome {
        let failure = Failure::from_online(error);
        match error.class() {
            ErrorClass::Throttled { retry_after } => Outcome::Retry {
                after: *retry_after,
                failure,
            },
            ErrorClass::Transient | ErrorClass::OutcomeUnknown | ErrorClass::Configuration => {
                Outcome::Retry {
                    after: error.retry_after(),
                    failure,
                }
            }
            ErrorClass::AlreadyDone => Outcome::AlreadyApplied,
            ErrorClass::Conflict | ErrorClass::NoSeats | ErrorClass::Permanent { .. } => {
                Outcome::DeadLetter { reason: failure }
            }
        }
    }

    /// A permanent failure that moss itself detected (no call was made).
    pub(crate) fn refuse(code: &str, message: impl Into<String>) -> Outcome {
        Outcome::DeadLetter {
            reason: Failure::local(FailureClass::Permanent, code, message),
        }
    }
}

/// The closed set of failure classes written to `moss-error-class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The message does not decode or breaks the event schema.
    Invalid,
    /// The sealed password does not open with the workers' key.
    SealedSecret,
    /// 429 / 503 with Retry-After.
    Throttled,
    /// 5xx, timeout, connection failure.
    Transient,
    /// Bad credentials or permissions: the whole worker pauses.
    Configuration,
    /// The name is held by an object moss does not own.
    Conflict,
    /// No free licence seats.
    NoSeats,
    /// A write may or may not have happened.
    OutcomeUnknown,
    /// This event cannot succeed as it is.
    Permanent,
    /// An earlier event of the same subject is dead-lettered; this one waits behind it.
    Quarantined,
    /// The worker's own disk failed.
    Local,
    /// A removal or deactivation over the mass-delete threshold, waiting for an operator
    /// (`moss deletes approve` or `reject`).
    Held,
}

impl FailureClass {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Invalid => "invalid",
            FailureClass::SealedSecret => "sealed_secret",
            FailureClass::Throttled => "throttled",
            FailureClass::Transient => "transient",
            FailureClass::Configuration => "configuration",
            FailureClass::Conflict => "conflict",
            FailureClass::NoSeats => "no_seats",
            FailureClass::OutcomeUnknown => "outcome_unknown",
            FailureClass::Permanent => "permanent",
            FailureClass::Quarantined => "quarantined",
            FailureClass::Local => "local",
            FailureClass::Held => "held",
        }
    }

    /// Whether a failure of this class says something about the whole tenant (and so feeds
    /// the circuit) rather than about one event.
    pub fn is_tenant_wide(self) -> bool {
        matches!(
            self,
            FailureClass::Throttled | FailureClass::Transient | FailureClass::Configuration
        )
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attempt failed: what goes into the dead letter's headers and the outcome event.
/// Never holds a secret: moss-online keeps request bodies out of its errors, and decode
/// errors never quote values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The class.
    pub class: FailureClass,
    /// The HTTP status, when a reply arrived.
    pub status: Option<u16>,
    /// The service's error code, or a short name moss gives.
    pub code: String,
    /// One sentence.
    pub message: String,
    /// The server's `request-id`, for Microsoft support.
    pub request_id: Option<String>,
    /// Our `client-request-id` of the operation.
    pub client_request_id: Option<String>,
}

impl Failure {
    /// A failure moss detected itself.
    pub(crate) fn local(class: FailureClass, code: &str, message: impl Into<String>) -> Failure {
        Failure {
            class,
            status: None,
            code: code.to_owned(),
            message: message.into(),
            request_id: None,
            client_request_id: None,
        }
    }

    pub(crate) fn from_online(error: &OnlineError) -> Failure {
        let class = match error.class() {
            ErrorClass::Throttled { .. } => FailureClass::Throttled,
            ErrorClass::Transient => FailureClass::Transient,
            ErrorClass::Configuration => FailureClass::Configuration,
            ErrorClass::Conflict => FailureClass::Conflict,
            ErrorClass::NoSeats => FailureClass::NoSeats,
            ErrorClass::OutcomeUnknown => FailureClass::OutcomeUnknown,
            ErrorClass::AlreadyDone | ErrorClass::Permanent { .. } => FailureClass::Permanent,
        };
        let reply = error.reply();
        Failure {
            class,
            status: reply.map(|reply| reply.status),
            code: reply
                .map(|reply| reply.code.clone())
                .filter(|code| !code.is_empty())
                .unwrap_or_else(|| error.class().name().to_owned()),
            message: format!("{} failed: {}", error.operation(), error.detail()),
            request_id: error.request_id().map(str::to_owned),
            client_request_id: error.client_request_id().map(|id| id.to_string()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.class)?;
        if let Some(status) = self.status {
            write!(f, " HTTP {status}")?;
        }
        write!(f, " {}: {}", self.code, self.message)
    }
}
