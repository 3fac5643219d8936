//! What the producer's tests share: a producer on port 0 over the real RabbitMQ under a unique
//! topology prefix, a reader for its partition queues, and a TCP proxy that plays a broker outage.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part of the harness

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moss_broker::{Broker, Topology, TopologyPrefix};
use moss_producer::{ProducerSettings, RunningProducer};
use moss_schemas::{OpeningKey, SealingKey};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const PARTITIONS: u16 = 4;

/// A unique topology for one test, deleted by [`TestBroker::cleanup`].
pub fn unique_topology() -> Topology {
    let prefix =
        TopologyPrefix::parse(&format!("moss-test-{}", uuid::Uuid::new_v4().simple())).unwrap();
    Topology::new(prefix, PARTITIONS).unwrap()
}

pub fn key_pair() -> (SealingKey, OpeningKey) {
    let pair = moss_schemas::generate_key_pair();
    (
        SealingKey::parse(&pair.public).unwrap(),
        OpeningKey::parse(&pair.private).unwrap(),
    )
}

pub fn settings(
    store: &Path,
    amqp_url: &str,
    topology: &Topology,
    key: &SealingKey,
) -> ProducerSettings {
    let mut settings = ProducerSettings::new(
        store.to_path_buf(),
        amqp_url.to_owned(),
        topology.clone(),
        key.clone(),
    );
    settings.ingest_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    settings
}

/// The producer's `/readyz` body.
pub async fn readyz(producer: &RunningProducer) -> serde_json::Value {
    reqwest::get(format!("http://{}/readyz", producer.ingest_addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Starts a producer. A test that wrote to the outbox itself (or stopped an earlier producer on
/// it) dropped its store a moment ago, and sled's background threads let go of the directory's
/// lock a little after the last handle: a restart in another process never sees that, a start
/// in the same process may, and waits for it here.
pub async fn start(settings: ProducerSettings) -> (RunningProducer, CancellationToken) {
    let token = CancellationToken::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match moss_producer::start(settings.clone(), token.clone()).await {
            Err(moss_producer::ProducerError::Store {
                source: moss_store::StoreError::Locked { .. },
                ..
            }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            started => return (started.expect("producer starts"), token),
        }
    }
}

/// A producer on a fresh outbox in `dir` whose RabbitMQ is away: it goes through a
/// [`BrokerProxy`] that is down until the test calls `proxy.up()`.
pub async fn start_while_broker_down(
    dir: &tempfile::TempDir,
    topology: &Topology,
    sealing: &SealingKey,
) -> (BrokerProxy, RunningProducer) {
    let proxy = BrokerProxy::start().await;
    proxy.down().await;
    let (producer, _) = start(settings(&store_path(dir), &proxy.url(), topology, sealing)).await;
    (proxy, producer)
}

pub fn store_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("producer")
}

/// A user-added event for `subject` with `sequence`.
pub fn user_added(subject: &str, sequence: u64) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": "moss-test",
        "type": "moss.user.added.v1",
        "subject": subject,
        "time": "2026-11-28T10:00:00Z",
        "sequence": sequence.to_string(),
        "data": { "account_name": "ana", "display_name": "Ana Silva" }
    })
}

/// A password-changed event carrying a clear password for the ingest to seal.
pub fn password_changed_clear(subject: &str, sequence: u64, password: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": "moss-test",
        "type": "moss.user.password_changed.v1",
        "subject": subject,
        "time": "2026-11-28T10:00:00Z",
        "sequence": sequence.to_string(),
        "data": { "password": { "clear": password } }
    })
}

pub fn subject() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub async fn post(addr: SocketAddr, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/events"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("ingest answers");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

pub async fn post_event(addr: SocketAddr, event: &Value) -> (u16, Value) {
    post(
        addr,
        moss_producer::SINGLE_CONTENT_TYPE,
        serde_json::to_vec(event).unwrap(),
    )
    .await
}

/// Reads what reached the partition queues.
#[derive(Debug)]
pub struct TestBroker {
    pub broker: Broker,
    pub topology: Topology,
}

/// A message read off a partition queue.
#[derive(Debug, Clone)]
pub struct Received {
    pub partition: u16,
    pub message_id: String,
    pub body: Value,
}

impl TestBroker {
    pub async fn connect(topology: &Topology) -> TestBroker {
        let broker = Broker::connect(AMQP_URL, "moss-producer-test")
            .await
            .expect("RabbitMQ answers");
        broker.declare(topology).await.expect("topology declared");
        TestBroker {
            broker,
            topology: topology.clone(),
        }
    }

    /// Waits until `count` messages have arrived over all partitions, acking each, in queue order.
    pub async fn receive(&self, count: usize, deadline: Duration) -> Vec<Received> {
        let mut consumers = Vec::new();
        for partition in 0..self.topology.partitions() {
            let queue = self.topology.partition_queue(partition);
            consumers.push((
                partition,
                self.broker.consume(&queue, 500, "").await.expect("consume"),
            ));
        }
        let mut received = Vec::new();
        let until = Instant::now() + deadline;
        while received.len() < count && Instant::now() < until {
            let mut idle = true;
            for (partition, consumer) in &mut consumers {
                match tokio::time::timeout(Duration::from_millis(20), consumer.next()).await {
                    Ok(Some(Ok(delivery))) => {
                        idle = false;
                        delivery.ack().await.expect("ack");
                        received.push(Received {
                            partition: *partition,
                            message_id: delivery.message_id.clone().unwrap_or_default(),
                            body: serde_json::from_slice(&delivery.body).expect("a JSON body"),
                        });
                    }
                    Ok(Some(Err(error))) => panic!("consume failed: {error}"),
                    Ok(None) | Err(_) => {}
                }
            }
            if idle {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        for (_, consumer) in consumers {
            let _ = consumer.shutdown().await;
        }
        received
    }

    /// Messages ready in every partition queue together.
    pub async fn ready(&self) -> u64 {
        let mut total = 0;
        for partition in 0..self.topology.partitions() {
            let depth = self
                .broker
                .queue_depth(&self.topology.partition_queue(partition))
                .await
                .expect("depth");
            total += u64::from(depth.ready);
        }
        total
    }

    pub async fn cleanup(self) {
        let _ = self.broker.delete_topology(&self.topology).await;
        let _ = self.broker.close().await;
    }
}

/// The proxy's accept loop and how to stop it.
type RunningProxy = (CancellationToken, JoinHandle<()>);

/// A TCP forwarder to RabbitMQ that can be taken down (every connection cut, new ones refused)
/// and brought back on the same port: a broker outage as the producer sees it.
#[derive(Debug)]
pub struct BrokerProxy {
    pub port: u16,
    state: Arc<Mutex<Option<RunningProxy>>>,
}

impl BrokerProxy {
    pub async fn start() -> BrokerProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = BrokerProxy {
            port,
            state: Arc::new(Mutex::new(None)),
        };
        proxy.serve(listener).await;
        proxy
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    async fn serve(&self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let task_stop = stop.clone();
        let task = tokio::spawn(async move {
            let mut links = Vec::new();
            loop {
                tokio::select! {
                    () = task_stop.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        let link_stop = task_stop.clone();
                        links.push(tokio::spawn(async move {
                            let Ok(mut upstream) = TcpStream::connect("127.0.0.1:5672").await else { return };
                            let mut client = client;
                            tokio::select! {
                                () = link_stop.cancelled() => {}
                                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                            }
                        }));
                    }
                }
            }
            for link in links {
                let _ = link.await;
            }
        });
        *self.state.lock().await = Some((stop, task));
    }

    /// Cuts every connection and stops listening.
    pub async fn down(&self) {
        if let Some((stop, task)) = self.state.lock().await.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the proxy port is free again");
        self.serve(listener).await;
    }
}

pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

pub fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}
