//! The outbox stores one entry per group commit (all the events the ingest stored under one
//! flush): the relay removes a group only when every event in it is confirmed, a partly confirmed
//! group is sent again whole (after a restart too), entries of earlier versions (one event each)
//! still drain, and order per subject holds across groups.

mod harness;

use std::time::Duration;

use harness::*;
use moss_schemas::Subject;
use serde_json::{Value, json};

fn partition(subject: &str) -> u16 {
    Subject::parse(subject).unwrap().partition(PARTITIONS)
}

async fn depth(rabbit: &TestBroker, partition: u16) -> u32 {
    rabbit
        .broker
        .queue_depth(&rabbit.topology.partition_queue(partition))
        .await
        .expect("depth")
        .ready
}

#[tokio::test]
async fn a_partly_confirmed_group_survives_a_restart_and_is_resent_whole() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let rabbit = TestBroker::connect(&topology).await;
    let (producer, _) = start(settings(&store_path(&dir), AMQP_URL, &topology, &sealing)).await;
    eventually("the relay to connect", Duration::from_secs(20), || async {
        readyz(&producer).await["broker"] == "connected"
    })
    .await;

    // Two subjects in different partitions; the second one's queue disappears, so RabbitMQ
    // returns its event (unroutable) while it confirms the first one's.
    let routed = subject();
    let unroutable = loop {
        let candidate = subject();
        if partition(&candidate) != partition(&routed) {
            break candidate;
        }
    };
    let gone = topology.partition_queue(partition(&unroutable));
    moss_broker::baseline::delete_queue(AMQP_URL, &gone)
        .await
        .unwrap();
    let first = user_added(&routed, 1);
    let second = user_added(&unroutable, 1);
    let (status, body) = post(
        producer.ingest_addr(),
        moss_producer::BATCH_CONTENT_TYPE,
        serde_json::to_vec(&json!([first, second])).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    eventually(
        "the routable event to be confirmed",
        Duration::from_secs(20),
        || async { depth(&rabbit, partition(&routed)).await >= 1 },
    )
    .await;
    assert_eq!(
        readyz(&producer).await["outbox_backlog"],
        2,
        "the group stays whole in the outbox while one of its events is unconfirmed"
    );
    producer.shutdown().await;
    let before_restart = depth(&rabbit, partition(&routed)).await;

    // The queue is back; a new producer on the same outbox sends the whole group again.
    rabbit.broker.declare(&topology).await.unwrap();
    let (producer, _) = start(settings(&store_path(&dir), AMQP_URL, &topology, &sealing)).await;
    eventually(
        "the group to be confirmed whole and removed",
        Duration::from_secs(30),
        || async { readyz(&producer).await["outbox_backlog"] == 0 },
    )
    .await;
    let routed_copies = depth(&rabbit, partition(&routed)).await;
    assert!(
        routed_copies > before_restart,
        "the already confirmed event is sent again with its group ({routed_copies} copies, {before_restart} before the restart)"
    );
    let received = rabbit
        .receive(routed_copies as usize + 1, Duration::from_secs(20))
        .await;
    let of = |event: &Value| {
        received
            .iter()
            .filter(|r| r.message_id == event["id"].as_str().unwrap())
            .count()
    };
    assert_eq!(of(&second), 1, "the unconfirmed event arrives");
    assert_eq!(
        of(&first),
        routed_copies as usize,
        "every copy carries the event's own id (workers deduplicate on it)"
    );
    producer.shutdown().await;
    rabbit.cleanup().await;
}

/// A version-1 binary record (one event per outbox entry), as producers before group entries
/// wrote it: see producer/src/record.rs.
fn binary_v1(event: &Value, routing_key: &str) -> Vec<u8> {
    let mut out = vec![0x01];
    for field in [
        event["id"].as_str().unwrap(),
        routing_key,
        event["type"].as_str().unwrap(),
    ] {
        out.push(u8::try_from(field.len()).unwrap());
        out.extend_from_slice(field.as_bytes());
    }
    let subject = event["subject"].as_str().unwrap();
    out.extend_from_slice(&u16::try_from(subject.len()).unwrap().to_le_bytes());
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(&serde_json::to_vec(event).unwrap());
    out
}

/// The JSON record of the first producer versions.
fn json_v0(event: &Value, routing_key: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "message_id": event["id"],
        "routing_key": routing_key,
        "event_type": event["type"],
        "subject": event["subject"],
        "body": serde_json::to_string(event).unwrap(),
    }))
    .unwrap()
}

#[tokio::test]
async fn an_outbox_of_single_event_records_from_an_earlier_version_drains_after_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let rabbit = TestBroker::connect(&topology).await;

    let who = subject();
    let key = format!("p{}", partition(&who));
    let old: Vec<Value> = (1..=3).map(|sequence| user_added(&who, sequence)).collect();
    {
        let store = moss_store::Store::open(&store_path(&dir)).unwrap();
        let outbox = store.outbox("events").unwrap();
        outbox.append(&binary_v1(&old[0], &key)).unwrap();
        outbox.append(&json_v0(&old[1], &key)).unwrap();
        outbox.append(&binary_v1(&old[2], &key)).unwrap();
    }

    let (producer, _) = start(settings(&store_path(&dir), AMQP_URL, &topology, &sealing)).await;
    let new = user_added(&who, 4);
    let (status, body) = post_event(producer.ingest_addr(), &new).await;
    assert_eq!(status, 202, "{body}");

    let received = rabbit.receive(4, Duration::from_secs(20)).await;
    let ids: Vec<&str> = received.iter().map(|r| r.message_id.as_str()).collect();
    let expected: Vec<&str> = old
        .iter()
        .chain([&new])
        .map(|event| event["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids, expected,
        "the old entries first, in order, then the new"
    );
    assert!(
        received.iter().all(|r| r.partition == partition(&who)),
        "each where its record said"
    );
    assert_eq!(received[1].body, old[1], "a JSON record's body exactly");
    eventually("the outbox to empty", Duration::from_secs(20), || async {
        readyz(&producer).await["outbox_backlog"] == 0
    })
    .await;
    producer.shutdown().await;
    rabbit.cleanup().await;
}

/// Each subject's client posts batches one after another (the next once the previous got its
/// `202`), the clients at once, so every group commit mixes subjects.
async fn post_sequences(
    producer: &moss_producer::RunningProducer,
    subjects: &[String],
    sequences: std::ops::RangeInclusive<u64>,
) {
    let addr = producer.ingest_addr();
    let mut clients = Vec::new();
    for who in subjects {
        let who = who.clone();
        let sequences = sequences.clone();
        clients.push(tokio::spawn(async move {
            let all: Vec<u64> = sequences.collect();
            for chunk in all.chunks(3) {
                let batch: Vec<Value> = chunk.iter().map(|&s| user_added(&who, s)).collect();
                let (status, body) = post(
                    addr,
                    moss_producer::BATCH_CONTENT_TYPE,
                    serde_json::to_vec(&batch).unwrap(),
                )
                .await;
                assert_eq!(status, 202, "{body}");
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
}

#[tokio::test]
async fn order_per_subject_holds_across_groups_read_back_from_the_outbox_and_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let rabbit = TestBroker::connect(&topology).await;
    let (proxy, producer) = start_while_broker_down(&dir, &topology, &sealing).await;
    let subjects: Vec<String> = (0..6).map(|_| subject()).collect();

    // Stored while RabbitMQ is away: the relay reads these groups back from the outbox.
    post_sequences(&producer, &subjects, 1..=30).await;
    assert_eq!(readyz(&producer).await["outbox_backlog"], 6 * 30);
    proxy.up().await;
    // Stored while it relays: handed over in memory once the scan reached the tail.
    post_sequences(&producer, &subjects, 31..=60).await;

    let received = rabbit.receive(6 * 60, Duration::from_secs(40)).await;
    for who in &subjects {
        let mut sequences: Vec<u64> = received
            .iter()
            .filter(|r| r.body["subject"] == json!(who))
            .map(|r| r.body["sequence"].as_str().unwrap().parse().unwrap())
            .collect();
        sequences.dedup();
        assert_eq!(
            sequences,
            (1..=60).collect::<Vec<_>>(),
            "every event of {who}, in the order it was accepted"
        );
    }
    producer.shutdown().await;
    rabbit.cleanup().await;
}

#[tokio::test]
async fn group_entries_stay_inside_the_durable_log_never_in_unsynced_blob_files() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let rabbit = TestBroker::connect(&topology).await;
    // RabbitMQ away: the outbox fills (many leaves, many consolidations), then drains.
    let (proxy, producer) = start_while_broker_down(&dir, &topology, &sealing).await;
    let subjects: Vec<String> = (0..4).map(|_| subject()).collect();
    let mut clients = Vec::new();
    for who in subjects {
        let addr = producer.ingest_addr();
        clients.push(tokio::spawn(async move {
            for first in (1..=500_u64).step_by(100) {
                let batch: Vec<Value> = (first..first + 100).map(|s| user_added(&who, s)).collect();
                let (status, body) = post(
                    addr,
                    moss_producer::BATCH_CONTENT_TYPE,
                    serde_json::to_vec(&batch).unwrap(),
                )
                .await;
                assert_eq!(status, 202, "{body}");
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    proxy.up().await;
    eventually("the outbox to drain", Duration::from_secs(40), || async {
        readyz(&producer).await["outbox_backlog"] == 0
    })
    .await;
    producer.shutdown().await;

    // sled 0.34 writes records over ~128 KiB to files under blobs/ and never fsyncs them.
    let blobs: Vec<_> = std::fs::read_dir(store_path(&dir).join("blobs"))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        blobs.is_empty(),
        "the outbox wrote {} blob files (sled does not fsync them): {blobs:?}",
        blobs.len()
    );
    rabbit.cleanup().await;
}
