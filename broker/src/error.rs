use std::fmt;

use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

/// A failure reported by the AMQP client or the broker, without naming the client library
/// in our public API. Carries the broker's reply code and text when there is one.
#[derive(Clone)]
pub struct AmqpError(pub(crate) lapin::Error);

impl AmqpError {
    /// The AMQP reply code the broker sent (e.g. 406 PRECONDITION_FAILED, 404 NOT_FOUND), if any.
    #[must_use]
    pub fn reply_code(&self) -> Option<u16> {
        match self.0.kind() {
            lapin::ErrorKind::ProtocolError(error) => Some(error.get_id()),
            _ => None,
        }
    }

    /// The broker's explanation, if the broker sent one.
    #[must_use]
    pub fn reply_text(&self) -> Option<String> {
        match self.0.kind() {
            lapin::ErrorKind::ProtocolError(error) => Some(error.get_message().to_string()),
            _ => None,
        }
    }

    /// True when the connection (not just a channel) is gone or being recovered.
    #[must_use]
    pub fn is_connection_failure(&self) -> bool {
        self.0.is_io_error()
            || self.0.is_amqp_hard_error()
            || matches!(
                self.0.kind(),
                lapin::ErrorKind::InvalidConnectionState(_)
                    | lapin::ErrorKind::MissingHeartbeatError
            )
    }

    pub(crate) fn is_precondition_failed(&self) -> bool {
        matches!(self.0.kind(), lapin::ErrorKind::ProtocolError(error)
            if matches!(error.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)))
    }

    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self.0.kind(), lapin::ErrorKind::ProtocolError(error)
            if matches!(error.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
    }
}

impl From<lapin::Error> for AmqpError {
    fn from(error: lapin::Error) -> AmqpError {
        AmqpError(error)
    }
}

impl fmt::Debug for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for AmqpError {}

/// Why talking to RabbitMQ (connecting, declaring, consuming) failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The connection could not be opened. The URL is shown without its password.
    #[error("cannot connect to RabbitMQ at {url}")]
    Connect {
        /// The AMQP URL with any password replaced by `***`.
        url: String,
        /// The client's reason.
        #[source]
        source: AmqpError,
    },
    /// The connection did not open in time.
    #[error("connecting to RabbitMQ at {url} took longer than {seconds} s")]
    ConnectTimedOut {
        /// The AMQP URL with any password replaced by `***`.
        url: String,
        /// The limit that ran out.
        seconds: u64,
    },
    /// An exchange or queue exists with other settings than the ones moss declares.
    /// RabbitMQ refuses to change them (406 PRECONDITION_FAILED); delete the object or the
    /// installation's prefix, or restore the settings it was made with.
    #[error("{object} already exists with different settings: {detail}")]
    TopologyMismatch {
        /// The exchange or queue name.
        object: String,
        /// The broker's explanation (which argument differs and how).
        detail: String,
    },
    /// Declaring, binding or deleting a topology object failed for another reason.
    #[error("cannot {action} {object}")]
    Topology {
        /// What was being done ("declare the queue", "bind", "delete the exchange").
        action: &'static str,
        /// The exchange or queue name.
        object: String,
        /// The broker's or client's reason.
        #[source]
        source: AmqpError,
    },
    /// The queue does not exist (404 NOT_FOUND).
    #[error("queue {queue} does not exist; declare the topology first")]
    QueueNotFound {
        /// The queue name.
        queue: String,
    },
    /// Opening or configuring a channel failed.
    #[error("cannot {action}")]
    Channel {
        /// What was being done.
        action: &'static str,
        /// The broker's or client's reason.
        #[source]
        source: AmqpError,
    },
    /// An argument given to this crate is not acceptable.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// Which argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl BrokerError {
    pub(crate) fn channel(action: &'static str, source: lapin::Error) -> BrokerError {
        BrokerError::Channel {
            action,
            source: AmqpError(source),
        }
    }
}

/// Replaces the password of an AMQP URL with `***`, so that URLs can go into errors, logs and
/// output. The one place moss does this.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let user_info = &authority[..at];
    let user = user_info.split(':').next().unwrap_or_default();
    let redacted_user_info = if user_info.contains(':') {
        format!("{user}:***")
    } else {
        user.to_owned()
    };
    format!(
        "{}{}{}",
        &url[..scheme_end + 3],
        redacted_user_info,
        &rest[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_password_never_reaches_an_error_message() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("amqps://user:p@ss@host/vhost?heartbeat=30"),
            "amqps://user:***@host/vhost?heartbeat=30"
        );
        assert_eq!(redact_url("amqp://host:5672"), "amqp://host:5672");
        assert_eq!(redact_url("amqp://user@host"), "amqp://user@host");
    }
}
