//! moss-tests: end-to-end scenarios over a real RabbitMQ and the in-process emulator, and the
//! benchmarks that compare moss with plain lapin in the same run (docs/PERFORMANCE.md).
//!
//! [`TestSystem`] is the shared setup: the emulator and the real producer on port 0, under a
//! unique topology prefix on the RabbitMQ at `MOSS_AMQP_URL`, with the producer's sled outbox in
//! a temporary folder. It knows nothing of moss's internals: it speaks to the producer over its
//! HTTP ingest and to RabbitMQ through moss-broker, as an operator would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use moss_broker::{Broker, Topology, TopologyPrefix};
use moss_emulator::Emulator;
use moss_producer::{ProducerSettings, RunningProducer};
use moss_schemas::{KeyPair, SealingKey};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The RabbitMQ used when `MOSS_AMQP_URL` is not set.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The partition count of a [`TestSystem`] unless told otherwise: the `moss` CLI's default.
pub const DEFAULT_PARTITIONS: u16 = 8;

/// `MOSS_AMQP_URL`, or [`DEFAULT_AMQP_URL`].
#[must_use]
pub fn amqp_url() -> String {
    std::env::var("MOSS_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// A topology prefix no other test or run uses: `moss-test-<uuid>`.
#[must_use]
pub fn unique_prefix() -> TopologyPrefix {
    let prefix = format!("moss-test-{}", uuid::Uuid::new_v4().simple());
    TopologyPrefix::parse(&prefix).unwrap_or_default()
}

/// A `moss.user.added.v1` event for `subject` with an online account under `domain`: the
/// event moss mostly carries, at its usual size (about 500 bytes).
#[must_use]
pub fn user_added(subject: &str, sequence: u64, domain: &str, license: &str) -> Value {
    let account = format!("u{}", &subject.replace('-', "")[..12]);
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": "moss-tests/bench",
        "type": "moss.user.added.v1",
        "subject": subject,
        "time": "2026-11-28T10:00:00Z",
        "sequence": sequence.to_string(),
        "data": {
            "account_name": account,
            "display_name": format!("Bench User {account}"),
            "given_name": "Bench",
            "surname": format!("User {account}"),
            "online_account": {
                "upn": format!("{account}@{domain}"),
                "usage_location": "NL",
                "licenses": [license]
            }
        }
    })
}

/// Producer settings for tests: ingest on 127.0.0.1 port 0, the outbox at `store_path`, RabbitMQ
/// at [`amqp_url`], sealing to `keys`' public half.
pub fn producer_settings(
    store_path: PathBuf,
    topology: &Topology,
    keys: &KeyPair,
) -> anyhow::Result<ProducerSettings> {
    let mut settings = ProducerSettings::new(
        store_path,
        amqp_url(),
        topology.clone(),
        SealingKey::parse(&keys.public)?,
    );
    settings.ingest_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    Ok(settings)
}

/// Messages ready in all partition queues of `topology` together.
pub async fn queued(broker: &Broker, topology: &Topology) -> anyhow::Result<u64> {
    let mut total = 0;
    for queue in topology.partition_queues() {
        total += u64::from(broker.queue_depth(&queue).await?.ready);
    }
    Ok(total)
}

/// Polls every `every` until at least `count` messages are ready in the partition queues of
/// `topology`, failing after `deadline`; returns when the count was first seen.
pub async fn wait_until_queued(
    broker: &Broker,
    topology: &Topology,
    count: u64,
    every: Duration,
    deadline: Duration,
) -> anyhow::Result<Instant> {
    let until = Instant::now() + deadline;
    loop {
        let seen = queued(broker, topology).await?;
        if seen >= count {
            return Ok(Instant::now());
        }
        if Instant::now() >= until {
            bail!("only {seen} of {count} events reached the queues within {deadline:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// What a [`TestSystem`] is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSystemOptions {
    /// Partition queues of the topology.
    pub partitions: u16,
}

impl Default for TestSystemOptions {
    fn default() -> TestSystemOptions {
        TestSystemOptions {
            partitions: DEFAULT_PARTITIONS,
        }
    }
}

/// The emulator and the producer over a real RabbitMQ, isolated by a unique topology prefix, a
/// temporary folder and port 0. Call [`TestSystem::shutdown`] at the end: it stops the producer
/// and the emulator and deletes the topology.
#[derive(Debug)]
pub struct TestSystem {
    /// The in-process Microsoft Online Services emulator.
    pub emulator: Emulator,
    /// The exchanges and queues this system uses (declared by [`TestSystem::spawn`]).
    pub topology: Topology,
    /// The producer's and workers' key pair (the producer seals to its public half).
    pub keys: KeyPair,
    /// A connection for inspecting the queues.
    pub broker: Broker,
    /// The HTTP client the helpers post with.
    pub http: reqwest::Client,
    /// Holds the producer's sled database; removed when the system is dropped.
    pub dir: tempfile::TempDir,
    producer: Option<RunningProducer>,
    ingest_addr: SocketAddr,
    shutdown: CancellationToken,
}

impl TestSystem {
    /// A system with [`TestSystemOptions::default`].
    pub async fn spawn() -> anyhow::Result<TestSystem> {
        TestSystem::spawn_with(TestSystemOptions::default()).await
    }

    /// Starts the emulator, declares a fresh topology and starts the producer on port 0.
    pub async fn spawn_with(options: TestSystemOptions) -> anyhow::Result<TestSystem> {
        let url = amqp_url();
        let emulator = Emulator::start_for_tests()
            .await
            .context("the emulator starts")?;
        let topology = Topology::new(unique_prefix(), options.partitions)?;
        let broker = Broker::connect(&url, "moss-tests")
            .await
            .context("RabbitMQ answers at MOSS_AMQP_URL")?;
        broker.declare(&topology).await?;
        let dir = tempfile::tempdir()?;
        let keys = moss_schemas::generate_key_pair();
        let settings = producer_settings(dir.path().join("producer"), &topology, &keys)?;
        let shutdown = CancellationToken::new();
        let producer = moss_producer::start(settings, shutdown.clone())
            .await
            .context("the producer starts")?;
        Ok(TestSystem {
            emulator,
            topology,
            keys,
            broker,
            http: reqwest::Client::new(),
            dir,
            ingest_addr: producer.ingest_addr(),
            producer: Some(producer),
            shutdown,
        })
    }

    /// The ingest's `POST /v1/events` URL.
    #[must_use]
    pub fn ingest_url(&self) -> String {
        format!("http://{}/v1/events", self.ingest_addr)
    }

    /// The producer's `/metrics` URL.
    #[must_use]
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.ingest_addr)
    }

    /// The emulator's default domain, for UPNs it accepts.
    #[must_use]
    pub fn domain(&self) -> String {
        self.emulator.tenant().default_domain
    }

    /// A licence (SKU part number) the emulator's tenant has.
    #[must_use]
    pub fn license(&self) -> String {
        self.emulator
            .tenant()
            .skus
            .first()
            .map(|sku| sku.sku_part_number.clone())
            .unwrap_or_default()
    }

    /// A `moss.user.added.v1` event for a new random subject that this system's tenant accepts.
    #[must_use]
    pub fn new_user_event(&self) -> Value {
        let subject = uuid::Uuid::new_v4().to_string();
        user_added(&subject, 1, &self.domain(), &self.license())
    }

    /// Posts one event; returns the HTTP status (202 when stored).
    pub async fn post_event(&self, event: &Value) -> anyhow::Result<u16> {
        self.post(
            moss_producer::SINGLE_CONTENT_TYPE,
            serde_json::to_vec(event)?,
        )
        .await
    }

    /// Posts a batch of events in one request; returns the HTTP status (202 when all stored).
    pub async fn post_batch(&self, events: &[Value]) -> anyhow::Result<u16> {
        self.post(
            moss_producer::BATCH_CONTENT_TYPE,
            serde_json::to_vec(events)?,
        )
        .await
    }

    async fn post(&self, content_type: &str, body: Vec<u8>) -> anyhow::Result<u16> {
        let response = self
            .http
            .post(self.ingest_url())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .context("the ingest answers")?;
        Ok(response.status().as_u16())
    }

    /// Messages ready in all partition queues together.
    pub async fn queued(&self) -> anyhow::Result<u64> {
        queued(&self.broker, &self.topology).await
    }

    /// Polls every `every` until at least `count` messages are ready in the partition queues,
    /// failing after `deadline`; returns when the count was first seen.
    pub async fn wait_until_queued(
        &self,
        count: u64,
        every: Duration,
        deadline: Duration,
    ) -> anyhow::Result<Instant> {
        wait_until_queued(&self.broker, &self.topology, count, every, deadline).await
    }

    /// Stops the producer (flushing its outbox), deletes the topology with its messages, closes
    /// the connection and stops the emulator.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(producer) = self.producer.take() {
            producer.wait().await;
        }
        let deleted = self.broker.delete_topology(&self.topology).await;
        self.broker.close().await?;
        self.emulator.shutdown().await;
        deleted?;
        Ok(())
    }
}
