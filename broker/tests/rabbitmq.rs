//! moss-broker against the real RabbitMQ (MOSS_AMQP_URL, default the local broker).
//! Every test declares its own topology under a unique prefix and deletes it at the end.

use std::time::Duration;

use moss_broker::{
    Broker, BrokerError, Consumer, Delivery, HeaderValue, Headers, OutgoingMessage, Persistence,
    PublishError, Topology, TopologyPrefix,
};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(20);

fn amqp_url() -> String {
    std::env::var("MOSS_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn unique_prefix() -> TopologyPrefix {
    TopologyPrefix::parse(&format!("moss-test-{}", uuid::Uuid::new_v4().simple()))
        .expect("a valid prefix")
}

async fn connect() -> Broker {
    Broker::connect(&amqp_url(), "moss-broker-tests")
        .await
        .expect("RabbitMQ is running (rabbitmq-server -detached && rabbitmqctl await_startup)")
}

/// A topology that deletes itself when the test ends, passed or failed, so a failing test
/// leaves no queues behind on the shared broker.
struct TestTopology(Topology);

impl std::ops::Deref for TestTopology {
    type Target = Topology;
    fn deref(&self) -> &Topology {
        &self.0
    }
}

impl Drop for TestTopology {
    fn drop(&mut self) {
        let topology = self.0.clone();
        // Drop cannot await; a thread with its own runtime can, even inside the test's runtime.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let broker = Broker::connect(&amqp_url(), "moss-broker-tests-cleanup").await?;
                broker.delete_topology(&topology).await?;
                broker.close().await
            })
        })
        .join();
        if !std::thread::panicking() {
            deleted
                .expect("cleanup thread")
                .expect("delete the test topology");
        }
    }
}

async fn declared_topology(broker: &Broker, topology: Topology) -> TestTopology {
    let topology = TestTopology(topology);
    broker.declare(&topology).await.expect("declare");
    topology
}

async fn declared(broker: &Broker, partitions: u16) -> TestTopology {
    declared_topology(
        broker,
        Topology::new(unique_prefix(), partitions).expect("topology"),
    )
    .await
}

fn event(topology: &Topology, partition: u16, id: &str) -> OutgoingMessage {
    OutgoingMessage {
        exchange: topology.events_exchange(),
        routing_key: topology.partition_routing_key(partition),
        message_id: id.to_owned(),
        body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        content_type: "application/cloudevents+json".to_owned(),
        headers: Headers::new(),
        persistence: Persistence::Persistent,
    }
}

async fn next_delivery(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(DEADLINE, consumer.next())
        .await
        .expect("a delivery before the deadline")
        .expect("the consumer is still running")
        .expect("no channel error")
}

/// Polls until the queue has `expected` ready messages, then returns what it has.
async fn ready_when(broker: &Broker, queue: &str, expected: u32) -> u32 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ready = broker.queue_depth(queue).await.expect("queue depth").ready;
        if ready == expected || Instant::now() > deadline {
            return ready;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn clean_up(broker: &Broker, topology: TestTopology) {
    drop(topology);
    broker.close().await.expect("close");
}

#[tokio::test]
async fn declaring_the_topology_twice_is_idempotent() {
    let broker = connect().await;
    let topology = declared(&broker, 4).await;
    broker
        .declare(&topology)
        .await
        .expect("second declare changes nothing");
    for queue in topology.partition_queues() {
        let depth = broker
            .queue_depth(&queue)
            .await
            .expect("partition queue exists");
        assert_eq!((depth.ready, depth.consumers), (0, 0));
    }
    broker
        .queue_depth(&topology.dead_queue())
        .await
        .expect("dead queue exists");
    clean_up(&broker, topology).await;
}

#[tokio::test]
async fn a_queue_declared_with_other_arguments_is_a_mismatch_naming_the_queue_and_argument() {
    let broker = connect().await;
    let topology = declared(&broker, 2).await;

    let other_limit = topology.0.clone().with_delivery_limit(3).expect("limit");
    match broker.declare(&other_limit).await {
        Err(BrokerError::TopologyMismatch { object, detail }) => {
            assert_eq!(object, topology.partition_queue(0));
            assert!(detail.contains("x-delivery-limit"), "{detail}");
        }
        other => panic!("expected a topology mismatch, got {other:?}"),
    }
    let unbounded = topology
        .0
        .clone()
        .with_partition_max_length(None)
        .expect("unbounded");
    match broker.declare(&unbounded).await {
        Err(BrokerError::TopologyMismatch { object, detail }) => {
            assert_eq!(object, topology.partition_queue(0));
            assert!(detail.contains("x-max-length"), "{detail}");
        }
        other => panic!("expected a topology mismatch, got {other:?}"),
    }
    // The mismatch closed only a short-lived channel: the connection still works.
    broker
        .declare(&topology)
        .await
        .expect("the original still declares");
    clean_up(&broker, topology).await;
}

#[tokio::test]
async fn an_unroutable_mandatory_publish_is_returned_not_a_success() {
    let broker = connect().await;
    let topology = declared(&broker, 2).await;
    let publisher = broker.publisher().await.expect("publisher");

    // Partition 7 does not exist in a 2-partition topology: nothing is bound for "p7".
    match publisher.publish(event(&topology, 7, "lost")).await {
        Err(PublishError::Returned {
            reply_code,
            reply_text,
        }) => {
            assert_eq!(reply_code, 312);
            assert_eq!(reply_text, "NO_ROUTE");
        }
        other => panic!("expected Returned, got {other:?}"),
    }
    publisher
        .publish(event(&topology, 1, "routed"))
        .await
        .expect("a routable publish is confirmed");
    assert_eq!(
        ready_when(&broker, &topology.partition_queue(1), 1).await,
        1
    );
    clean_up(&broker, topology).await;
}

#[tokio::test]
async fn a_published_message_arrives_in_its_partition_queue_with_its_id_and_headers() {
    let broker = connect().await;
    let topology = declared(&broker, 3).await;
    let publisher = broker.publisher().await.expect("publisher");
    let mut message = event(&topology, 2, "event-1");
    message.headers = Headers::new()
        .with_text("moss-replay-of", "event-0")
        .with_int("moss-attempt", 3);
    message.headers.insert("moss-flag", HeaderValue::Bool(true));
    publisher.publish(message.clone()).await.expect("publish");

    let mut consumer = broker
        .consume(&topology.partition_queue(2), 10, "test-consumer")
        .await
        .expect("consume");
    let delivery = next_delivery(&mut consumer).await;
    assert_eq!(delivery.body, message.body);
    assert_eq!(delivery.message_id.as_deref(), Some("event-1"));
    assert_eq!(
        delivery.content_type.as_deref(),
        Some("application/cloudevents+json")
    );
    assert_eq!(delivery.headers.get_str("moss-replay-of"), Some("event-0"));
    assert_eq!(delivery.headers.get_i64("moss-attempt"), Some(3));
    assert_eq!(delivery.headers.get_bool("moss-flag"), Some(true));
    assert_eq!(delivery.routing_key, "p2");
    assert_eq!(delivery.exchange, topology.events_exchange());
    assert!(!delivery.redelivered);
    assert_eq!(delivery.delivery_count, 0);
    delivery.ack().await.expect("ack");
    assert!(matches!(
        delivery.ack().await,
        Err(moss_broker::SettleError::NotSettled)
    ));
    for other in [0, 1] {
        let depth = broker
            .queue_depth(&topology.partition_queue(other))
            .await
            .expect("depth");
        assert_eq!(depth.ready, 0, "partition {other} got a message for p2");
    }
    consumer.shutdown().await.expect("shutdown");
    clean_up(&broker, topology).await;
}

#[tokio::test]
async fn a_rejected_delivery_lands_in_the_dead_queue() {
    let broker = connect().await;
    let topology = declared(&broker, 1).await;
    let publisher = broker.publisher().await.expect("publisher");
    publisher
        .publish(event(&topology, 0, "poison"))
        .await
        .expect("publish");

    let mut consumer = broker
        .consume(&topology.partition_queue(0), 10, "")
        .await
        .expect("consume");
    next_delivery(&mut consumer)
        .await
        .reject_to_dead_letter()
        .await
        .expect("reject");
    consumer.shutdown().await.expect("shutdown");

    let mut dead = broker
        .consume(&topology.dead_queue(), 10, "dead-reader")
        .await
        .expect("consume dead");
    let letter = next_delivery(&mut dead).await;
    assert_eq!(letter.message_id.as_deref(), Some("poison"));
    assert_eq!(
        letter.headers.get_str("x-first-death-reason"),
        Some("rejected")
    );
    assert_eq!(
        letter.headers.get_str("x-first-death-queue"),
        Some(topology.partition_queue(0).as_str())
    );
    letter.ack().await.expect("ack");
    dead.shutdown().await.expect("shutdown");
    clean_up(&broker, topology).await;
}

#[tokio::test]
async fn a_message_requeued_past_the_delivery_limit_is_dead_lettered() {
    let broker = connect().await;
    let topology = declared_topology(
        &broker,
        Topology::new(unique_prefix(), 1)
            .expect("topology")
            .with_delivery_limit(2)
            .expect("limit"),
    )
    .await;
    let publisher = broker.publisher().await.expect("publisher");
    publisher
        .publish(event(&topology, 0, "crashes-its-consumer"))
        .await
        .expect("publish");

    let mut consumer = broker
        .consume(&topology.partition_queue(0), 1, "")
        .await
        .expect("consume");
    let mut counts = Vec::new();
    for _ in 0..3 {
        let delivery = next_delivery(&mut consumer).await;
        counts.push(delivery.delivery_count);
        delivery.nack_requeue().await.expect("nack");
    }
    assert_eq!(counts, [0, 1, 2]);
    let mut dead = broker
        .consume(&topology.dead_queue(), 1, "")
        .await
        .expect("consume dead");
    let letter = next_delivery(&mut dead).await;
    assert_eq!(letter.message_id.as_deref(), Some("crashes-its-consumer"));
    assert_eq!(
        letter.headers.get_str("x-first-death-reason"),
        Some("delivery_limit")
    );
    letter.ack().await.expect("ack");
    consumer.shutdown().await.expect("shutdown");
    dead.shutdown().await.expect("shutdown");
    clean_up(&broker, topology).await;
}

#[tokio::test]
async fn a_pipelined_batch_of_a_thousand_is_all_confirmed() {
    let broker = connect().await;
    let topology = declared(&broker, 4).await;
    let publisher = broker.publisher().await.expect("publisher");
    let batch: Vec<OutgoingMessage> = (0..1000u16)
        .map(|n| event(&topology, n % 4, &format!("event-{n}")))
        .collect();
    let results = publisher.publish_batch(batch).await;
    assert_eq!(results.len(), 1000);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for queue in topology.partition_queues() {
        assert_eq!(ready_when(&broker, &queue, 250).await, 250, "{queue}");
    }
    clean_up(&broker, topology).await;
}

/// `send_batch` starts every publish before it awaits any: the order on the wire must still be
/// the batch's order, batch after batch, on a multi-threaded runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_sent_back_to_back_arrive_in_their_order() {
    const BATCHES: usize = 4;
    const PER_BATCH: usize = 1500;
    let broker = connect().await;
    let topology = declared(&broker, 1).await;
    let publisher = broker.publisher().await.expect("publisher");
    let mut sent = Vec::new();
    for batch in 0..BATCHES {
        let messages = (0..PER_BATCH)
            .map(|n| event(&topology, 0, &format!("event-{}", batch * PER_BATCH + n)))
            .collect();
        sent.push(publisher.send_batch(messages).await);
    }
    for batch in sent {
        let results = batch.confirmed(&publisher).await;
        assert!(results.iter().all(Result::is_ok), "every publish confirmed");
    }
    let mut consumer = broker
        .consume(&topology.partition_queue(0), 500, "")
        .await
        .expect("consume");
    for expected in 0..BATCHES * PER_BATCH {
        let delivery = next_delivery(&mut consumer).await;
        assert_eq!(
            delivery.message_id.as_deref(),
            Some(format!("event-{expected}").as_str()),
            "message {expected} out of order"
        );
        delivery.ack().await.expect("ack");
    }
    consumer.shutdown().await.expect("shutdown");
    clean_up(&broker, topology).await;
}

#[tokio::test]
async fn a_batch_reports_the_unroutable_and_invalid_messages_in_their_places() {
    let broker = connect().await;
    let topology = declared(&broker, 1).await;
    let publisher = broker.publisher().await.expect("publisher");
    let mut no_id = event(&topology, 0, "x");
    no_id.message_id = String::new();
    let results = publisher
        .publish_batch(vec![
            event(&topology, 0, "a"),
            event(&topology, 5, "b"),
            no_id,
            event(&topology, 0, "c"),
        ])
        .await;
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(PublishError::Returned { .. })));
    assert!(matches!(
        results[2],
        Err(PublishError::InvalidMessage {
            field: "message id",
            ..
        })
    ));
    assert!(results[3].is_ok());
    assert_eq!(
        ready_when(&broker, &topology.partition_queue(0), 2).await,
        2
    );
    clean_up(&broker, topology).await;
}

#[tokio::test]
async fn the_publisher_reopens_its_channel_after_the_broker_closed_it() {
    let broker = connect().await;
    let topology = declared(&broker, 1).await;
    let publisher = broker.publisher().await.expect("publisher");
    let mut to_nowhere = event(&topology, 0, "nowhere");
    to_nowhere.exchange = format!("{}.no-such-exchange", topology.prefix());
    // Publishing to a missing exchange makes RabbitMQ close the channel (404).
    match publisher.publish(to_nowhere).await {
        Err(PublishError::Channel(error)) => assert_eq!(error.reply_code(), Some(404)),
        other => panic!("expected a channel error, got {other:?}"),
    }
    publisher
        .publish(event(&topology, 0, "after"))
        .await
        .expect("the next publish uses a new channel");
    assert_eq!(
        ready_when(&broker, &topology.partition_queue(0), 1).await,
        1
    );
    clean_up(&broker, topology).await;
}

#[tokio::test]
async fn consumer_shutdown_leaves_no_acked_message_requeued() {
    let broker = connect().await;
    let topology = declared(&broker, 1).await;
    let queue = topology.partition_queue(0);
    let publisher = broker.publisher().await.expect("publisher");
    let results = publisher
        .publish_batch(
            (0..600)
                .map(|n| event(&topology, 0, &format!("event-{n}")))
                .collect(),
        )
        .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(ready_when(&broker, &queue, 600).await, 600);

    // A second connection, closed right after, as a worker process would at shutdown.
    let worker = connect().await;
    let mut consumer = worker
        .consume(&queue, 200, "worker")
        .await
        .expect("consume");
    let mut acks = tokio::task::JoinSet::new();
    for _ in 0..400 {
        let delivery = next_delivery(&mut consumer).await;
        // Acks pipelined from many tasks, as a worker with handlers in flight sends them.
        acks.spawn(async move { delivery.ack().await });
    }
    consumer.cancel().await.expect("cancel");
    while let Some(ack) = acks.join_next().await {
        ack.expect("ack task").expect("ack");
    }
    // Drain what was prefetched after the cancel without settling it: it must be requeued.
    let mut unsettled = Vec::new();
    while let Some(delivery) = tokio::time::timeout(DEADLINE, consumer.next())
        .await
        .expect("the stream ends after a cancel")
    {
        unsettled.push(delivery.expect("no channel error"));
    }
    consumer.close().await.expect("close the channel first");
    drop(unsettled);
    worker.close().await.expect("then the connection");

    assert_eq!(
        ready_when(&broker, &queue, 200).await,
        200,
        "acked messages came back, or unsettled ones were lost"
    );
    clean_up(&broker, topology).await;
}

#[tokio::test]
async fn consuming_a_missing_queue_says_which_queue() {
    let broker = connect().await;
    let missing = format!("{}.events.p0", unique_prefix());
    match broker.consume(&missing, 10, "").await {
        Err(BrokerError::QueueNotFound { queue }) => assert_eq!(queue, missing),
        other => panic!("expected QueueNotFound, got {other:?}"),
    }
    match broker.queue_depth(&missing).await {
        Err(BrokerError::QueueNotFound { queue }) => assert_eq!(queue, missing),
        other => panic!("expected QueueNotFound, got {other:?}"),
    }
    assert!(matches!(
        broker.consume(&missing, 0, "").await,
        Err(BrokerError::InvalidArgument {
            field: "prefetch",
            ..
        })
    ));
    broker.close().await.expect("close");
}

#[tokio::test]
async fn a_failed_connect_never_shows_the_password() {
    let result = Broker::connect_with_timeout(
        "amqp://guest:hunter2-secret@127.0.0.1:1/%2f",
        "moss-broker-tests",
        Duration::from_secs(3),
    )
    .await;
    let error = result.expect_err("nothing listens on port 1");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert!(shown.contains("guest:***@127.0.0.1:1"), "{shown}");
}
