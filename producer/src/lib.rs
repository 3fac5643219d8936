//! moss-producer: ingest from the directory (HTTP, one-shot publish), validation, sealing, outbox relay.
//!
//! It never calls Microsoft.
