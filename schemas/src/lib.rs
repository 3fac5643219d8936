//! moss-schemas: the event contract (CloudEvents envelope, payloads, JSON Schemas, sealed secrets).
//!
//! serde only: this crate never does I/O and never names a broker, a store or Microsoft.
