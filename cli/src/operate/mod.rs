//! What the operator commands (`moss status`, `moss dlq`) share: reading the dead queue without
//! losing a letter, selecting letters by the operator's filters, the optional RabbitMQ management
//! API, the services' `/metrics`, and progress reporting.
//!
//! It works from RabbitMQ and HTTP only. It never opens a service's sled database: a running
//! worker or producer holds the lock, and an operator command must never take it from them.

pub(crate) mod connection;
pub(crate) mod dead_letters;
pub(crate) mod management;
pub(crate) mod metrics;
pub(crate) mod progress;
pub(crate) mod selection;
