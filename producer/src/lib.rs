//! moss-producer: how the directory hands changes to moss. The HTTP ingest (and `moss publish`,
//! which speaks to it) validates every event against the contract, seals clear passwords, stores
//! the events in a sled outbox with one flush and only then answers `202`; a relay moves the
//! outbox to RabbitMQ with publisher confirms, partitioned by subject.
//!
//! It never calls Microsoft and never decides what an event does to the tenant.

mod ingest;
mod metrics;
mod problem;
mod record;
mod relay;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use moss_broker::Topology;
use moss_schemas::SealingKey;
use moss_store::Store;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use ingest::{BATCH_CONTENT_TYPE, SINGLE_CONTENT_TYPE};
pub use problem::{Problem, ProblemViolation};
pub use relay::RelaySettings;

/// Largest ingest body by default: 1 MiB holds a batch of well over a thousand events.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Everything the producer needs, checked before it starts.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// Where the producer's sled database lives (`<data dir>/producer`).
    pub store_path: PathBuf,
    /// The ingest listener (`MOSS_INGEST_ADDR`); port 0 picks a free port.
    pub ingest_addr: SocketAddr,
    /// A separate listener for `/metrics` (`MOSS_METRICS_ADDR`), if wanted; the ingest serves it too.
    pub metrics_addr: Option<SocketAddr>,
    /// The bearer token the ingest requires; mandatory when the ingest is not on loopback.
    pub ingest_token: Option<SecretString>,
    /// The workers' public key: clear passwords are sealed to it on arrival.
    pub sealing_key: SealingKey,
    /// Number of partition queues; must match the workers.
    pub partitions: u16,
    /// Largest request body accepted; larger ones get `413`.
    pub max_body_bytes: usize,
    /// The relay's connection to RabbitMQ.
    pub relay: RelaySettings,
}

impl ProducerSettings {
    /// Settings with the documented defaults for everything but the essentials.
    pub fn new(
        store_path: PathBuf,
        amqp_url: String,
        topology: Topology,
        sealing_key: SealingKey,
    ) -> ProducerSettings {
        ProducerSettings {
            store_path,
            ingest_addr: SocketAddr::from(([127, 0, 0, 1], 8480)),
            metrics_addr: None,
            ingest_token: None,
            sealing_key,
            partitions: topology.partitions(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            relay: RelaySettings {
                amqp_url,
                topology,
                batch_size: 1000,
                max_reconnect_delay: Duration::from_secs(5),
            },
        }
    }
}

/// Why the producer could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The outbox could not be opened.
    #[error("could not open the producer's outbox at {path}")]
    Store {
        /// The database folder.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: moss_store::StoreError,
    },
    /// A listener could not be bound.
    #[error("could not listen on {addr}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The ingest would listen off loopback without a token.
    #[error(
        "the ingest listens on {addr}, which is not loopback, and no ingest token is set; set MOSS_INGEST_TOKEN (or MOSS_INGEST_TOKEN_FILE)"
    )]
    TokenRequired {
        /// The non-loopback address.
        addr: SocketAddr,
    },
    /// The partition count in the settings and the topology disagree.
    #[error("the ingest partitions ({ingest}) and the topology's ({topology}) differ")]
    PartitionMismatch {
        /// What the ingest would hash to.
        ingest: u16,
        /// What the topology declares.
        topology: u16,
    },
}

/// A producer running in this process.
#[derive(Debug)]
pub struct RunningProducer {
    ingest_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    store: Store,
}

impl RunningProducer {
    /// Where the ingest listens (the real port when port 0 was asked for).
    pub fn ingest_addr(&self) -> SocketAddr {
        self.ingest_addr
    }

    /// Where the separate metrics listener is, if one was asked for.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops taking requests, lets the relay finish the batch in flight, and flushes the outbox.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the producer has stopped (after its shutdown token was cancelled).
    pub async fn wait(self) {
        for task in self.tasks {
            let _ = task.await;
        }
        if let Err(error) = self.store.flush() {
            tracing::error!(error = %error, "final outbox flush failed");
        }
    }
}

/// Starts the ingest and the relay on the current runtime; they stop when `shutdown` is cancelled.
pub async fn start(
    settings: ProducerSettings,
    shutdown: CancellationToken,
) -> Result<RunningProducer, ProducerError> {
    if settings.partitions != settings.relay.topology.partitions() {
        return Err(ProducerError::PartitionMismatch {
            ingest: settings.partitions,
            topology: settings.relay.topology.partitions(),
        });
    }
    if !settings.ingest_addr.ip().is_loopback() && settings.ingest_token.is_none() {
        return Err(ProducerError::TokenRequired {
            addr: settings.ingest_addr,
        });
    }
    let store = Store::open(&settings.store_path).map_err(|source| ProducerError::Store {
        path: settings.store_path.clone(),
        source,
    })?;
    let outbox = store
        .outbox("events")
        .map_err(|source| ProducerError::Store {
            path: settings.store_path.clone(),
            source,
        })?;
    let metrics = metrics::ProducerMetrics::new();
    if !outbox.is_empty() {
        let backlog = ingest::count_backlog(&outbox);
        metrics
            .outbox_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        tracing::info!(
            backlog,
            "outbox holds events from an earlier run; relaying them first"
        );
    }

    let wakeup = Arc::new(Notify::new());
    let status = Arc::new(relay::RelayStatus::default());
    let handoff = Arc::new(relay::Handoff::default());
    let (commits, writer) = ingest::GroupCommit::start(
        outbox.clone(),
        Arc::clone(&handoff),
        Arc::clone(&wakeup),
        metrics.outbox_backlog.clone(),
    );
    let state = Arc::new(ingest::IngestState {
        sealing_key: settings.sealing_key.clone(),
        partitions: settings.partitions,
        token: settings.ingest_token.clone(),
        max_body_bytes: settings.max_body_bytes,
        metrics: Arc::clone(&metrics),
        commits,
        relay_status: Arc::clone(&status),
    });

    let listener = TcpListener::bind(settings.ingest_addr)
        .await
        .map_err(|source| ProducerError::Listen {
            addr: settings.ingest_addr,
            source,
        })?;
    let ingest_addr = listener
        .local_addr()
        .map_err(|source| ProducerError::Listen {
            addr: settings.ingest_addr,
            source,
        })?;
    let mut tasks = Vec::new();
    tasks.push(serve(
        listener,
        ingest::router(Arc::clone(&state)),
        shutdown.clone(),
    ));

    let mut metrics_addr = None;
    if let Some(addr) = settings.metrics_addr {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ProducerError::Listen { addr, source })?;
        metrics_addr = Some(
            listener
                .local_addr()
                .map_err(|source| ProducerError::Listen { addr, source })?,
        );
        tasks.push(serve(
            listener,
            ingest::metrics_router(Arc::clone(&state)),
            shutdown.clone(),
        ));
    }

    let relay = relay::Relay {
        settings: settings.relay,
        outbox,
        handoff,
        wakeup,
        status,
        metrics,
    };
    let relay_shutdown = shutdown.clone();
    tasks.push(tokio::spawn(relay.run(relay_shutdown)));
    // The outbox writer ends once the listeners (which hold the ingest state) have stopped.
    tasks.push(writer);

    tracing::info!(%ingest_addr, "producer ingest listening");
    Ok(RunningProducer {
        ingest_addr,
        metrics_addr,
        shutdown,
        tasks,
        store,
    })
}

/// Runs the producer until `shutdown` is cancelled (the `moss producer` command).
pub async fn run(
    settings: ProducerSettings,
    shutdown: CancellationToken,
) -> Result<(), ProducerError> {
    let running = start(settings, shutdown).await?;
    running.wait().await;
    Ok(())
}

fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(error = %error, "HTTP listener failed");
        }
    })
}
