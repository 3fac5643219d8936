//! moss-broker: everything moss says to RabbitMQ (topology, confirmed publishing, consuming).
//!
//! The only crate that names lapin; its public API speaks moss's words ([`Topology`],
//! [`OutgoingMessage`], [`Delivery`]) and never exposes a lapin type. It never knows what an
//! event means: bodies are bytes, ids are strings.
//!
//! What it guarantees and why:
//! - [`Broker::declare`] is idempotent and reports a queue declared with other arguments as
//!   [`BrokerError::TopologyMismatch`] instead of a bare channel error.
//! - Partition queues dead-letter at least once (`x-dead-letter-strategy=at-least-once` with
//!   `x-overflow=reject-publish`, without which RabbitMQ silently falls back to at most once).
//! - [`Publisher`] publishes mandatory with confirms; a returned (unroutable) message is
//!   [`PublishError::Returned`], never a success, and every publish has a time limit.
//! - [`Consumer`] uses per-consumer prefetch only and shuts down channel-first.

pub mod baseline;
mod broker;
mod consumer;
mod error;
mod message;
mod publisher;
mod tls;
mod topology;

pub use broker::{Broker, CONNECTION_POLL, DEFAULT_CONNECT_TIMEOUT, QueueDepth};
pub use consumer::{ChannelProbe, ConsumeError, Consumer, Delivery, SettleError};
pub use error::{AmqpError, BrokerError, redact_url};
pub use message::{HeaderValue, Headers, OutgoingMessage, Persistence};
pub use publisher::{DEFAULT_CONFIRM_TIMEOUT, PublishError, Publisher, SentBatch};
pub use tls::{trust_amqp_ca_file, trust_amqp_ca_pem};
pub use topology::{
    DEFAULT_DELIVERY_LIMIT, DEFAULT_PARTITION_MAX_LENGTH, MAX_PARTITIONS, Topology, TopologyPrefix,
};
