//! `moss producer` SIGKILLed while events are between its 202 and RabbitMQ's confirm loses none:
//! the outbox is flushed before the 202, and the next run relays what the killed one had not.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

struct Producer {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_producer(
    data: &std::path::Path,
    prefix: &str,
    amqp_url: &str,
    public_key: &str,
) -> Producer {
    spawn_producer_limited(data, prefix, amqp_url, public_key, None)
}

/// With `file_size_blocks`, the producer runs under `ulimit -f` (SIGXFSZ ignored), so writes past
/// that size fail as they would on a full disk.
fn spawn_producer_limited(
    data: &std::path::Path,
    prefix: &str,
    amqp_url: &str,
    public_key: &str,
    file_size_blocks: Option<u64>,
) -> Producer {
    let port = free_port();
    let mut command = match file_size_blocks {
        None => {
            let mut moss = Command::new(env!("CARGO_BIN_EXE_moss"));
            moss.arg("producer");
            moss
        }
        Some(blocks) => {
            let mut shell = Command::new("bash");
            shell
                .arg("-c")
                .arg(format!(
                    "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" producer"
                ))
                .arg(env!("CARGO_BIN_EXE_moss"));
            shell
        }
    };
    let child = command
        .env("MOSS_DATA_DIR", data)
        .env("MOSS_TOPOLOGY_PREFIX", prefix)
        .env("MOSS_PARTITIONS", "4")
        .env("MOSS_AMQP_URL", amqp_url)
        .env("MOSS_INGEST_ADDR", format!("127.0.0.1:{port}"))
        .env("MOSS_METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("MOSS_SEAL_PUBLIC_KEY", public_key)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moss producer starts");
    Producer { child, port }
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the producer did not come up");
}

fn event(subject: &str, sequence: u64) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": "moss-crash-test",
        "type": "moss.user.reactivated.v1",
        "subject": subject,
        "time": "2026-11-28T10:00:00Z",
        "sequence": sequence.to_string(),
        "data": {}
    })
}

/// Sends events until `stop_after` were accepted or the producer stops answering; returns the accepted ids.
async fn publish_until_killed(
    client: &reqwest::Client,
    port: u16,
    subjects: &[String],
    from: u64,
    count: u64,
) -> Vec<String> {
    let mut accepted = Vec::new();
    for sequence in from..from + count {
        let subject = &subjects[(sequence as usize) % subjects.len()];
        let sent = client
            .post(format!("http://127.0.0.1:{port}/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .body(serde_json::to_vec(&event(subject, sequence)).unwrap())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().as_u16() == 202 => {
                let body: Value = response.json().await.unwrap();
                accepted.push(body["accepted"][0].as_str().unwrap().to_owned());
            }
            Ok(response) => panic!("unexpected status {}", response.status()),
            Err(_) => break, // killed mid-request: that event was never answered 202
        }
    }
    accepted
}

/// Posts events until the producer answers 503 a few times; returns the ids it answered 202 for.
async fn publish_until_full(client: &reqwest::Client, port: u16) -> (Vec<String>, usize) {
    let mut accepted = Vec::new();
    let mut refused = 0;
    for sequence in 1..=50_000u64 {
        let mut body = event(&uuid::Uuid::new_v4().to_string(), sequence);
        body["type"] = json!("moss.user.deactivated.v1");
        body["data"] = json!({ "reason": "x".repeat(200) });
        let response = client
            .post(format!("http://127.0.0.1:{port}/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .expect("the producer keeps answering when its disk is full");
        match response.status().as_u16() {
            202 => {
                let answer: Value = response.json().await.unwrap();
                accepted.push(answer["accepted"][0].as_str().unwrap().to_owned());
            }
            503 => {
                let problem: Value = response.json().await.unwrap();
                assert_eq!(problem["type"], "https://moss.dev/problems/not-stored");
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
            status => panic!("unexpected status {status}"),
        }
    }
    (accepted, refused)
}

fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_killed_between_202_and_confirm_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let prefix = format!("moss-test-{}", uuid::Uuid::new_v4().simple());
    let pair = moss_schemas::generate_key_pair();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let subjects: Vec<String> = (0..8).map(|_| uuid::Uuid::new_v4().to_string()).collect();

    // Run 1: RabbitMQ unreachable (a port nobody listens on), so every accepted event is still
    // waiting for its confirm when the producer is SIGKILLed.
    let dead_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let mut producer = spawn_producer(data.path(), &prefix, &dead_url, &pair.public);
    wait_ready(&client, producer.port).await;
    let mut accepted = publish_until_killed(&client, producer.port, &subjects, 1, 50).await;
    assert_eq!(accepted.len(), 50);
    producer.child.kill().unwrap();
    producer.child.wait().unwrap();

    // Runs 2..: the real broker; each run is SIGKILLed at a random moment while events flow.
    let mut next_sequence = 51;
    for round in 0..5u64 {
        let mut producer = spawn_producer(data.path(), &prefix, AMQP_URL, &pair.public);
        wait_ready(&client, producer.port).await;
        let port = producer.port;
        let killer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30 + (round * 37) % 120)).await;
            producer.child.kill().unwrap();
            producer.child.wait().unwrap();
        });
        let more = publish_until_killed(&client, port, &subjects, next_sequence, 200).await;
        next_sequence += 200;
        killer.await.unwrap();
        accepted.extend(more);
    }

    // A last clean run relays whatever the killed ones left.
    let mut producer = spawn_producer(data.path(), &prefix, AMQP_URL, &pair.public);
    wait_ready(&client, producer.port).await;

    let queues: Vec<String> = (0..4).map(|n| format!("{prefix}.events.p{n}")).collect();
    let until = Instant::now() + Duration::from_secs(60);
    let mut total = 0;
    while Instant::now() < until {
        let listing = rabbitmqctl(&["list_queues", "-q", "name", "messages"]);
        total = listing
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .filter(|(name, _)| queues.iter().any(|queue| queue == name))
            .map(|(_, count)| count.trim().parse::<usize>().unwrap_or(0))
            .sum();
        if total >= accepted.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        total >= accepted.len(),
        "only {total} of {} accepted events reached RabbitMQ",
        accepted.len()
    );

    // Every accepted id is among the queued messages (duplicates carry the same id).
    let broker = moss_broker::Broker::connect(AMQP_URL, "moss-crash-test")
        .await
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    for queue in &queues {
        let mut consumer = broker.consume(queue, 500, "").await.unwrap();
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
        {
            seen.insert(delivery.message_id.clone().unwrap_or_default());
            delivery.ack().await.unwrap();
        }
        consumer.shutdown().await.unwrap();
    }
    let lost: Vec<&String> = accepted.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} accepted events were lost: {lost:?}",
        lost.len()
    );

    producer.child.kill().unwrap();
    producer.child.wait().unwrap();
    let prefix_topology =
        moss_broker::Topology::new(moss_broker::TopologyPrefix::parse(&prefix).unwrap(), 4)
            .unwrap();
    broker.delete_topology(&prefix_topology).await.unwrap();
    broker.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_answered_503_and_every_202_survives() {
    let data = tempfile::tempdir().unwrap();
    let prefix = format!("moss-test-{}", uuid::Uuid::new_v4().simple());
    let pair = moss_schemas::generate_key_pair();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // RabbitMQ unreachable, files limited to 3 MB: the outbox fills up and cannot grow.
    let dead_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let mut producer =
        spawn_producer_limited(data.path(), &prefix, &dead_url, &pair.public, Some(3000));
    wait_ready(&client, producer.port).await;
    let (accepted, refused) = publish_until_full(&client, producer.port).await;
    assert_eq!(refused, 5, "a full disk is a 503, never a silent drop");
    assert!(
        accepted.len() > 100,
        "the outbox took events until it was full"
    );
    producer.child.kill().unwrap();
    producer.child.wait().unwrap();

    // Room again, and RabbitMQ: every event answered 202 is relayed.
    let mut producer = spawn_producer(data.path(), &prefix, AMQP_URL, &pair.public);
    wait_ready(&client, producer.port).await;
    let broker = moss_broker::Broker::connect(AMQP_URL, "moss-disk-full-test")
        .await
        .unwrap();
    let topology =
        moss_broker::Topology::new(moss_broker::TopologyPrefix::parse(&prefix).unwrap(), 4)
            .unwrap();
    broker.declare(&topology).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    let until = Instant::now() + Duration::from_secs(60);
    for n in (0..4).cycle() {
        if accepted.iter().all(|id| seen.contains(id)) || Instant::now() > until {
            break;
        }
        let mut consumer = broker
            .consume(&format!("{prefix}.events.p{n}"), 500, "")
            .await
            .unwrap();
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_millis(300), consumer.next()).await
        {
            seen.insert(delivery.message_id.clone().unwrap_or_default());
            delivery.ack().await.unwrap();
        }
        consumer.shutdown().await.unwrap();
    }
    let lost = accepted.iter().filter(|id| !seen.contains(*id)).count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} events answered 202 were lost",
        accepted.len()
    );

    producer.child.kill().unwrap();
    producer.child.wait().unwrap();
    broker.delete_topology(&topology).await.unwrap();
    broker.close().await.unwrap();
}
