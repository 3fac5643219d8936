//! The end-to-end harness for worker tests: a real RabbitMQ under a unique topology prefix,
//! the emulator in-process on port 0, the real producer in front, and a worker behind.

#![allow(dead_code, unreachable_pub)] // reason: each test binary uses a different part of it

use std::path::PathBuf;
use std::time::Duration;

use moss_broker::{
    Broker, Delivery, Headers, OutgoingMessage, Persistence, Topology, TopologyPrefix,
};
use moss_emulator::Emulator;
use moss_online::{OnlineConfig, RetryPolicy};
use moss_producer::{ProducerSettings, RunningProducer};
use moss_schemas::{KeyPair, generate_key_pair};
use moss_workers::{CircuitSettings, RetrySettings, RunningWorker, WorkerSettings};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const PARTITIONS: u16 = 4;

/// Everything one test runs against.
pub struct System {
    pub emulator: Emulator,
    pub topology: Topology,
    pub producer: Option<RunningProducer>,
    pub worker: Option<RunningWorker>,
    pub keys: KeyPair,
    pub broker: Broker,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub domain: String,
    pub sku: String,
    /// Workers' own outcome queues (they outlive a worker by design), deleted by `finish`.
    pub outcome_queues: Vec<String>,
    sequence: u64,
    cleanup: TopologyCleanup,
}

/// Deletes the test's queues and exchanges when the test ends, also when it panics.
struct TopologyCleanup(Option<Topology>);

impl Drop for TopologyCleanup {
    fn drop(&mut self) {
        let Some(topology) = self.0.take() else {
            return;
        };
        // Drop cannot await; a small runtime on its own thread does the deletion.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(broker) = Broker::connect(AMQP_URL, "moss-workers-test-cleanup").await {
                    let _ = broker.delete_topology(&topology).await;
                    let _ = broker.close().await;
                }
            });
        })
        .join();
    }
}

/// Short retries, so that tests stay fast; the production defaults are minutes.
pub fn fast_online(emulator: &Emulator) -> OnlineConfig {
    let tenant = emulator.tenant();
    let mut config = OnlineConfig::new(
        tenant.tenant_id.to_string(),
        tenant.client_id.to_string(),
        SecretString::from(tenant.client_secret.clone()),
    )
    .with_single_base_url(&emulator.base_url());
    config.retry = RetryPolicy {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        max_retries: 3,
        total_budget: Duration::from_secs(5),
        max_retry_after: Duration::from_secs(5),
        replication_retries: 3,
        replication_delay: Duration::from_millis(100),
    };
    config
}

impl System {
    pub async fn spawn() -> System {
        System::spawn_with(|_| {}).await
    }

    /// A system with no worker yet (start one with [`System::start_worker`]).
    pub async fn spawn_without_worker() -> System {
        let mut system = System::spawn_with(|_| {}).await;
        system.stop_worker().await;
        system
    }

    /// A system whose worker settings `adjust` may change before it starts.
    pub async fn spawn_with(adjust: impl FnOnce(&mut WorkerSettings)) -> System {
        let emulator = Emulator::start_for_tests().await.expect("emulator starts");
        let prefix = format!("moss-test-{}", uuid::Uuid::new_v4().simple());
        let topology = Topology::new(TopologyPrefix::parse(&prefix).unwrap(), PARTITIONS).unwrap();
        let broker = Broker::connect(AMQP_URL, "moss-workers-test")
            .await
            .expect("RabbitMQ runs");
        broker.declare(&topology).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let keys = generate_key_pair();
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
        let domain = tenant.default_domain.clone();
        let sku = tenant.skus[0].sku_part_number.clone();
        let mut system = System {
            emulator,
            topology: topology.clone(),
            producer: Some(producer),
            worker: None,
            keys,
            broker,
            http: reqwest::Client::new(),
            dir,
            domain,
            sku,
            outcome_queues: Vec::new(),
            sequence: 1,
            cleanup: TopologyCleanup(Some(topology.clone())),
        };
        system.start_worker(adjust).await;
        system
    }

    pub fn worker_path(&self) -> PathBuf {
        self.dir.path().join("worker")
    }

    pub async fn start_worker(&mut self, adjust: impl FnOnce(&mut WorkerSettings)) {
        let opening_key = moss_schemas::OpeningKey::parse(&self.keys.private)
            .expect("the key pair's own opening key parses");
        let mut settings = WorkerSettings::new(
            AMQP_URL,
            self.topology.clone(),
            self.worker_path(),
            fast_online(&self.emulator),
            opening_key,
        );
        settings.worker_name = "moss-test-worker".into();
        settings.retry = RetrySettings {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: 4,
            budget: Duration::from_secs(60),
        };
        settings.circuit = CircuitSettings {
            failure_threshold: 3,
            first_probe_after: Duration::from_millis(300),
            max_probe_interval: Duration::from_secs(2),
        };
        settings.shutdown_grace = Duration::from_secs(5);
        adjust(&mut settings);
        let worker = moss_workers::start(settings, CancellationToken::new())
            .await
            .expect("worker starts");
        self.note_outcome_queue(worker.outcome_queue());
        self.worker = Some(worker);
    }

    /// The worker settings `start_worker` uses, for a worker whose store is at `path`.
    pub fn worker_settings(&self, path: PathBuf, name: &str) -> WorkerSettings {
        let opening_key = moss_schemas::OpeningKey::parse(&self.keys.private)
            .expect("the key pair's own opening key parses");
        let mut settings = WorkerSettings::new(
            AMQP_URL,
            self.topology.clone(),
            path,
            fast_online(&self.emulator),
            opening_key,
        );
        settings.worker_name = name.into();
        settings.retry = RetrySettings {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: 4,
            budget: Duration::from_secs(60),
        };
        settings.shutdown_grace = Duration::from_secs(5);
        settings
    }

    /// Remembers a worker's own outcome queue so that `finish` deletes it.
    pub fn note_outcome_queue(&mut self, queue: &str) {
        if !self.outcome_queues.iter().any(|known| known == queue) {
            self.outcome_queues.push(queue.to_owned());
        }
    }

    pub async fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.shutdown().await.expect("worker stops cleanly");
        }
    }

    pub fn worker(&self) -> &RunningWorker {
        self.worker.as_ref().expect("worker running")
    }

    pub fn upn(&self, local: &str) -> String {
        format!("{local}@{}", self.domain)
    }

    /// The next sequence number (increasing across the test).
    pub fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// A CloudEvent for ingest.
    pub fn event(&mut self, subject: &str, event_type: &str, data: Value) -> Value {
        let sequence = self.next_sequence();
        event_with_sequence(subject, event_type, data, sequence)
    }

    /// POSTs one event to the producer's ingest; panics unless it is accepted.
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
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status.as_u16(), 202, "ingest refused the event: {body}");
    }

    /// Publishes raw bytes straight to a partition, as a misbehaving producer would.
    pub async fn publish_raw(
        &self,
        partition: u16,
        message_id: &str,
        body: &[u8],
        headers: Headers,
    ) {
        let publisher = self.broker.publisher().await.unwrap();
        publisher
            .publish(OutgoingMessage {
                exchange: self.topology.events_exchange(),
                routing_key: self.topology.partition_routing_key(partition),
                message_id: message_id.to_owned(),
                body: body.to_vec(),
                content_type: "application/cloudevents+json".into(),
                headers,
                persistence: Persistence::Persistent,
            })
            .await
            .unwrap();
    }

    /// Takes every dead letter now in `{prefix}.dead` (acknowledging them).
    pub async fn take_dead_letters(&self, expected: usize, deadline: Duration) -> Vec<Delivery> {
        let mut consumer = self
            .broker
            .consume(&self.topology.dead_queue(), 200, "")
            .await
            .unwrap();
        let mut letters = Vec::new();
        let until = tokio::time::Instant::now() + deadline;
        while letters.len() < expected {
            match tokio::time::timeout_at(until, consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    delivery.ack().await.unwrap();
                    letters.push(delivery);
                }
                _ => break,
            }
        }
        consumer.shutdown().await.unwrap();
        letters
    }

    /// The number of messages waiting in the dead queue.
    pub async fn dead_letter_count(&self) -> u32 {
        self.broker
            .queue_depth(&self.topology.dead_queue())
            .await
            .unwrap()
            .ready
    }

    /// A user of the emulator by UPN (active or soft-deleted).
    pub fn user(&self, upn: &str) -> Option<Value> {
        self.emulator.user(upn)
    }

    /// Stops everything and deletes the topology.
    pub async fn finish(mut self) {
        self.stop_worker().await;
        if let Some(producer) = self.producer.take() {
            producer.shutdown().await;
        }
        if self.broker.delete_topology(&self.topology).await.is_ok() {
            self.cleanup.0 = None;
        }
        for queue in &self.outcome_queues {
            if let Err(error) = moss_broker::baseline::delete_queue(AMQP_URL, queue).await {
                eprintln!("cannot delete the worker's outcome queue {queue}: {error}");
            }
        }
        let _ = self.broker.close().await;
        self.emulator.shutdown().await;
    }
}

pub fn event_with_sequence(subject: &str, event_type: &str, data: Value, sequence: u64) -> Value {
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

/// The body of a user's `moss.user.added.v1` with an online account and a clear password.
pub fn added(system: &System, local: &str, password: &str) -> Value {
    json!({
        "account_name": local,
        "display_name": format!("User {local}"),
        "given_name": "Test",
        "surname": local,
        "online_account": {"upn": system.upn(local), "usage_location": "DE", "licenses": [system.sku]},
        "initial_password": {"clear": password},
    })
}

/// Posts the full lifecycle (added, password, deactivated, reactivated, removed) cut at
/// `steps` events for each user, interleaved across users; each event `copies` times.
/// Returns the users as (subject, local part, steps) and the number of distinct events.
pub async fn post_lifecycles(
    system: &mut System,
    count: usize,
    copies: usize,
) -> (Vec<(String, String, usize)>, usize) {
    let users: Vec<(String, String, usize)> = (0..count)
        .map(|index| {
            (
                new_subject(),
                format!("u{index}-{}", &new_subject()[..6]),
                index % 5 + 1,
            )
        })
        .collect();
    for step in 0..5 {
        for (subject, local, steps) in &users {
            if step >= *steps {
                continue;
            }
            let event = match step {
                0 => {
                    let data = added(system, local, "First-Passw0rd!");
                    system.event(subject, "moss.user.added.v1", data)
                }
                1 => system.event(
                    subject,
                    "moss.user.password_changed.v1",
                    json!({"password": {"clear": "Second-Passw0rd!"}}),
                ),
                2 => system.event(
                    subject,
                    "moss.user.deactivated.v1",
                    json!({"reason": "left the company"}),
                ),
                3 => system.event(subject, "moss.user.reactivated.v1", json!({})),
                _ => system.event(subject, "moss.user.removed.v1", json!({})),
            };
            for _ in 0..copies {
                system.post(&event).await;
            }
        }
    }
    let total = users.iter().map(|(_, _, steps)| steps).sum();
    (users, total)
}

/// Asserts the tenant holds exactly what the lifecycles posted by [`post_lifecycles`] lead to,
/// with one committed create per user.
pub fn assert_lifecycles(system: &System, users: &[(String, String, usize)]) {
    for (_, local, steps) in users {
        let upn = system.upn(local);
        let user = system.user(&upn).unwrap_or_else(|| panic!("{upn} exists"));
        match steps {
            1 => {
                assert_eq!(user["accountEnabled"], true, "{upn}");
                assert_eq!(
                    system.emulator.password_matches(&upn, "First-Passw0rd!"),
                    Some(true),
                    "{upn}"
                );
                assert_eq!(
                    user["assignedLicenses"].as_array().map(Vec::len),
                    Some(1),
                    "{upn}"
                );
            }
            2 => {
                assert_eq!(user["accountEnabled"], true, "{upn}");
                assert_eq!(
                    system.emulator.password_matches(&upn, "Second-Passw0rd!"),
                    Some(true),
                    "{upn}"
                );
            }
            3 => assert_eq!(user["accountEnabled"], false, "{upn} is deactivated"),
            4 => assert_eq!(user["accountEnabled"], true, "{upn} is reactivated"),
            _ => assert!(is_deleted(&user), "{upn} is removed"),
        }
        assert!(!is_deleted(&user) || *steps == 5, "{upn} was never removed");
    }
    let creates = system
        .emulator
        .writes()
        .iter()
        .filter(|request| {
            request.method == "POST" && request.path == "/v1.0/users" && request.committed
        })
        .count();
    assert_eq!(
        creates,
        users.len(),
        "exactly one committed create per user"
    );
    let users_in_tenant = system.emulator.state().users.len();
    assert_eq!(
        users_in_tenant,
        users.len(),
        "no second account was created"
    );
}

pub fn new_subject() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Polls `check` every 100 ms until it holds or `deadline` passes.
pub async fn eventually(deadline: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the emulator's user is active, not deleted.
pub fn is_deleted(user: &Value) -> bool {
    user["_emulator"]["deleted"].as_bool() == Some(true)
}
