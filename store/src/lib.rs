//! moss-store: durable local state on sled (outbox, ledger, per-user versions, mapping).
//!
//! The only crate that names sled. It stores bytes and small records; it never knows RabbitMQ or Microsoft.
