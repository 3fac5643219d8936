//! The relay through broker outages: the ingest keeps accepting while RabbitMQ cannot be reached,
//! and everything accepted is delivered, in order per subject, once it can.

mod harness;

use std::time::Duration;

use harness::*;
use serde_json::json;

#[tokio::test]
async fn events_accepted_while_the_broker_is_unreachable_are_delivered_in_order_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let rabbit = TestBroker::connect(&topology).await;
    let proxy = BrokerProxy::start().await;
    let (producer, _) = start(settings(
        &store_path(&dir),
        &proxy.url(),
        &topology,
        &sealing,
    ))
    .await;

    let who = subject();
    let (status, _) = post_event(producer.ingest_addr(), &user_added(&who, 1)).await;
    assert_eq!(status, 202);
    eventually(
        "the first event to be relayed",
        Duration::from_secs(20),
        || async { rabbit.ready().await == 1 },
    )
    .await;

    proxy.down().await;
    for sequence in 2..=30 {
        let (status, body) = post_event(producer.ingest_addr(), &user_added(&who, sequence)).await;
        assert_eq!(
            status, 202,
            "the ingest keeps accepting while RabbitMQ is away: {body}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready = readyz(&producer).await;
    assert_eq!(ready["broker"], "reconnecting");
    assert_eq!(
        ready["outbox_backlog"], 29,
        "the outage is a backlog in the outbox"
    );

    // A producer restarted during the outage counts what its outbox holds, in /readyz and in
    // the backlog gauge of /metrics.
    producer.shutdown().await;
    let mut settings = settings(&store_path(&dir), &proxy.url(), &topology, &sealing);
    settings.metrics_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let (producer, _) = start(settings).await;
    let ready = readyz(&producer).await;
    assert_eq!(ready["outbox_backlog"], 29, "counted at start: {ready}");
    let metrics_addr = producer.metrics_addr().expect("a metrics listener");
    let backlog_gauge = || async move {
        reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix("moss_producer_outbox_backlog "))
            .map(str::to_owned)
    };
    assert_eq!(backlog_gauge().await.as_deref(), Some("29"));

    proxy.up().await;
    let received = rabbit.receive(30, Duration::from_secs(40)).await;
    let sequences: Vec<u64> = received
        .iter()
        .map(|r| r.body["sequence"].as_str().unwrap().parse().unwrap())
        .collect();
    let mut distinct = sequences.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        (1..=30).collect::<Vec<_>>(),
        "all delivered, in order"
    );
    eventually(
        "the backlog gauge to come down to 0 as the relay removes what was confirmed",
        Duration::from_secs(20),
        || async { backlog_gauge().await.as_deref() == Some("0") },
    )
    .await;
    producer.shutdown().await;
    rabbit.cleanup().await;
}

#[tokio::test]
async fn an_outbox_left_by_a_stopped_producer_is_relayed_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let rabbit = TestBroker::connect(&topology).await;

    // First run: RabbitMQ unreachable (nothing listens on the proxy's port any more).
    let (_proxy, producer) = start_while_broker_down(&dir, &topology, &sealing).await;
    let who = subject();
    let mut ids = Vec::new();
    for sequence in 1..=10 {
        let event = user_added(&who, sequence);
        let (status, _) = post_event(producer.ingest_addr(), &event).await;
        assert_eq!(status, 202);
        ids.push(event["id"].clone());
    }
    producer.shutdown().await;

    // Second run on the same data, RabbitMQ reachable.
    let (producer, _) = start(settings(&store_path(&dir), AMQP_URL, &topology, &sealing)).await;
    let received = rabbit.receive(10, Duration::from_secs(20)).await;
    let got: Vec<serde_json::Value> = received.iter().map(|r| json!(r.message_id)).collect();
    assert_eq!(got, ids, "the same events, same ids, same order");
    producer.shutdown().await;
    rabbit.cleanup().await;
}
