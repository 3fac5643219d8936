//! Infrastructure failures of a worker. Event failures are not errors: they are
//! [`crate::Outcome`] values, settled as dead letters or retries.

/// Why a worker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A setting is unusable.
    #[error("invalid worker setting {field}: {reason}")]
    InvalidSetting {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The worker's database could not be opened or written.
    #[error("the worker's local store failed")]
    Store(#[from] moss_store::StoreError),
    /// RabbitMQ could not be reached or refused the topology.
    #[error("RabbitMQ failed for the worker")]
    Broker(#[from] moss_broker::BrokerError),
    /// The online client could not be configured.
    #[error("the online client cannot be configured")]
    Online(#[from] moss_online::OnlineError),
    /// A worker task ended abnormally.
    #[error("a worker task failed: {0}")]
    Task(String),
}
