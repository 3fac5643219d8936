//! What the cli's end-to-end tests share: the real `moss` binary run against a topology of the
//! test's own, and the emulator, a producer and a worker in the test process.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::process::{Command, Stdio};
use std::time::Duration;

use moss_broker::{Broker, Topology, TopologyPrefix};
use moss_emulator::Emulator;
use moss_online::{OnlineConfig, RetryPolicy};
use moss_producer::{ProducerSettings, RunningProducer};
use moss_workers::{
    CircuitSettings, DeleteGuardSettings, RetrySettings, RunningWorker, WorkerSettings,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const PARTITIONS: u16 = 4;

pub fn new_topology() -> Topology {
    let prefix = format!("moss-test-{}", uuid::Uuid::new_v4().simple());
    Topology::new(TopologyPrefix::parse(&prefix).unwrap(), PARTITIONS).unwrap()
}

/// Runs `moss` with this topology; standard input is empty (not a terminal).
pub fn moss(topology: &Topology, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_moss"))
        .args(args)
        .env("MOSS_AMQP_URL", AMQP_URL)
        .env("MOSS_TOPOLOGY_PREFIX", topology.prefix().as_str())
        .env("MOSS_PARTITIONS", PARTITIONS.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("moss runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub async fn dead_count(broker: &Broker, topology: &Topology) -> u32 {
    broker
        .queue_depth(&topology.dead_queue())
        .await
        .unwrap()
        .ready
}

/// Polls until the dead queue holds `expected` ready letters.
pub async fn dead_count_becomes(
    broker: &Broker,
    topology: &Topology,
    expected: u32,
    within: Duration,
) {
    let until = tokio::time::Instant::now() + within;
    loop {
        let ready = dead_count(broker, topology).await;
        if ready == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the dead queue holds {ready}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn event(subject: &str, event_type: &str, sequence: u64, data: Value) -> Value {
    let mut event = json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": "moss-producer/test",
        "type": event_type,
        "subject": subject,
        "time": chrono::Utc::now().to_rfc3339(),
        "sequence": sequence.to_string(),
    });
    event["data"] = data;
    event
}

/// The emulator, the producer and a worker in this process, over a topology of their own.
pub struct System {
    pub emulator: Emulator,
    pub topology: Topology,
    pub broker: Broker,
    pub producer: Option<RunningProducer>,
    pub worker: Option<RunningWorker>,
    pub http: reqwest::Client,
    pub _dir: tempfile::TempDir,
}

impl System {
    pub async fn spawn() -> System {
        System::spawn_with(None).await
    }

    /// With the worker's mass-delete guard holding removals past `removals` in ten minutes.
    pub async fn spawn_with_delete_threshold(removals: u32) -> System {
        System::spawn_with(Some(DeleteGuardSettings {
            removals,
            deactivations: 100,
            window: Duration::from_secs(600),
            percent_of_mapped: None,
        }))
        .await
    }

    async fn spawn_with(delete_guard: Option<DeleteGuardSettings>) -> System {
        System::spawn_tuned(move |settings| {
            if let Some(delete_guard) = delete_guard {
                settings.delete_guard = delete_guard;
            }
        })
        .await
    }

    /// With the worker's settings changed by `tune` (its pacing, licence recheck, …) before it starts.
    pub async fn spawn_tuned(tune: impl FnOnce(&mut WorkerSettings)) -> System {
        System::spawn_seeded(moss_emulator::Seed::for_tests(), tune).await
    }

    /// With the emulator started from `seed` and the worker's settings changed by `tune`.
    pub async fn spawn_seeded(
        seed: moss_emulator::Seed,
        tune: impl FnOnce(&mut WorkerSettings),
    ) -> System {
        let emulator = Emulator::start_for_tests_with(seed)
            .await
            .expect("emulator starts");
        let topology = new_topology();
        let broker = Broker::connect(AMQP_URL, "moss-cli-test")
            .await
            .expect("RabbitMQ runs");
        broker.declare(&topology).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let keys = moss_schemas::generate_key_pair();
        let mut producer_settings = ProducerSettings::new(
            dir.path().join("producer"),
            AMQP_URL.to_owned(),
            topology.clone(),
            moss_schemas::SealingKey::parse(&keys.public).unwrap(),
        );
        producer_settings.ingest_addr = "127.0.0.1:0".parse().unwrap();
        let producer = moss_producer::start(producer_settings, CancellationToken::new())
            .await
            .expect("producer starts");
        let tenant = emulator.tenant();
        let mut online = OnlineConfig::new(
            tenant.tenant_id.to_string(),
            tenant.client_id.to_string(),
            SecretString::from(tenant.client_secret.clone()),
        )
        .with_single_base_url(&emulator.base_url());
        online.retry = RetryPolicy {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(400),
            max_retries: 3,
            total_budget: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(5),
            replication_retries: 3,
            replication_delay: Duration::from_millis(100),
        };
        let mut settings = WorkerSettings::new(
            AMQP_URL,
            topology.clone(),
            dir.path().join("worker"),
            online,
            moss_schemas::OpeningKey::parse(&keys.private).unwrap(),
        );
        settings.worker_name = "moss-cli-test-worker".into();
        settings.retry = RetrySettings {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: 3,
            budget: Duration::from_secs(30),
        };
        settings.circuit = CircuitSettings {
            failure_threshold: 3,
            first_probe_after: Duration::from_millis(300),
            max_probe_interval: Duration::from_secs(2),
        };
        settings.shutdown_grace = Duration::from_secs(5);
        tune(&mut settings);
        let worker = moss_workers::start(settings, CancellationToken::new())
            .await
            .expect("worker starts");
        System {
            emulator,
            topology,
            broker,
            producer: Some(producer),
            worker: Some(worker),
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub async fn post(&self, event: &Value) {
        let addr = self.producer.as_ref().unwrap().ingest_addr();
        let response = self
            .http
            .post(format!("http://{addr}/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .body(serde_json::to_vec(event).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
    }

    pub fn worker(&self) -> &RunningWorker {
        self.worker.as_ref().unwrap()
    }

    pub async fn finish(mut self) {
        if let Some(worker) = self.worker.take() {
            // The worker's own outcome queue outlives it by design (7-day expiry): a test
            // deletes it, as it deletes its topology.
            let own_queue = worker.outcome_queue().to_owned();
            worker.shutdown().await.expect("worker stops cleanly");
            if let Err(error) = moss_broker::baseline::delete_queue(AMQP_URL, &own_queue).await {
                eprintln!("cannot delete the worker's outcome queue {own_queue}: {error}");
            }
        }
        if let Some(producer) = self.producer.take() {
            producer.shutdown().await;
        }
        let _ = self.broker.delete_topology(&self.topology).await;
        let _ = self.broker.close().await;
        self.emulator.shutdown().await;
    }
}
