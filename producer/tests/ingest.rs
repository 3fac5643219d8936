//! The HTTP ingest against the real RabbitMQ: what is accepted arrives, in order per subject, in
//! the subject's partition; what is refused is refused whole, with every violation named.

mod harness;

use std::time::Duration;

use harness::*;
use moss_schemas::{Envelope, Subject};
use serde_json::{Value, json};

#[tokio::test]
async fn accepted_events_arrive_in_their_subjects_partition_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let rabbit = TestBroker::connect(&topology).await;
    let (producer, _) = start(settings(&store_path(&dir), AMQP_URL, &topology, &sealing)).await;

    let subjects: Vec<String> = (0..6).map(|_| subject()).collect();
    let mut sent = Vec::new();
    for sequence in 1..=5u64 {
        for subject in &subjects {
            let event = user_added(subject, sequence);
            let (status, body) = post_event(producer.ingest_addr(), &event).await;
            assert_eq!(status, 202, "{body}");
            assert_eq!(body["accepted"], json!([event["id"]]));
            sent.push(event);
        }
    }

    let received = rabbit.receive(sent.len(), Duration::from_secs(20)).await;
    assert_eq!(
        received.len(),
        sent.len(),
        "every accepted event reaches RabbitMQ"
    );
    for subject in &subjects {
        let expected_partition = Subject::parse(subject).unwrap().partition(PARTITIONS);
        let of_subject: Vec<&Received> = received
            .iter()
            .filter(|r| r.body["subject"] == json!(subject))
            .collect();
        assert_eq!(of_subject.len(), 5);
        assert!(
            of_subject.iter().all(|r| r.partition == expected_partition),
            "one partition per subject"
        );
        let sequences: Vec<&str> = of_subject
            .iter()
            .map(|r| r.body["sequence"].as_str().unwrap())
            .collect();
        assert_eq!(
            sequences,
            ["1", "2", "3", "4", "5"],
            "order per subject holds end to end"
        );
        assert!(
            of_subject
                .iter()
                .all(|r| r.message_id == r.body["id"].as_str().unwrap()),
            "message id = event id"
        );
    }
    producer.shutdown().await;
    rabbit.cleanup().await;
}

#[tokio::test]
async fn a_batch_is_accepted_whole_and_a_clear_password_is_sealed_before_it_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, opening) = key_pair();
    let rabbit = TestBroker::connect(&topology).await;
    let (producer, _) = start(settings(&store_path(&dir), AMQP_URL, &topology, &sealing)).await;

    let who = subject();
    let password = "Correct-Horse-Battery-9";
    let batch = json!([
        user_added(&who, 1),
        password_changed_clear(&who, 2, password)
    ]);
    let (status, body) = post(
        producer.ingest_addr(),
        moss_producer::BATCH_CONTENT_TYPE,
        serde_json::to_vec(&batch).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"].as_array().unwrap().len(), 2);

    let received = rabbit.receive(2, Duration::from_secs(20)).await;
    assert_eq!(received.len(), 2);
    let wire = serde_json::to_string(&received[1].body).unwrap();
    assert!(
        !wire.contains(password),
        "the password is not in clear on the queue"
    );
    let event = Envelope::from_json_slice(wire.as_bytes()).expect("a valid event on the wire");
    let moss_schemas::EventData::UserPasswordChanged(changed) = event.data else {
        panic!("password event")
    };
    use secrecy::ExposeSecret;
    assert_eq!(
        changed.password.open(&opening).unwrap().expose_secret(),
        password,
        "the worker's key opens it"
    );

    producer.shutdown().await;
    // Nor in the producer's sled files.
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !contains(&bytes, password.as_bytes()),
            "{} holds the clear password",
            entry.display()
        );
    }
    rabbit.cleanup().await;
}

#[tokio::test]
async fn an_invalid_event_is_refused_with_every_violation_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let rabbit = TestBroker::connect(&topology).await;
    let (producer, _) = start(settings(&store_path(&dir), AMQP_URL, &topology, &sealing)).await;

    let mut bad = user_added("not-a-guid", 1);
    bad["data"]["account_name"] = json!("");
    bad.as_object_mut().unwrap().remove("sequence");
    let (status, body) = post_event(producer.ingest_addr(), &bad).await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "https://moss.dev/problems/invalid-event");
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert!(pointers.contains(&"/subject"), "{body}");
    assert!(pointers.contains(&"/sequence"), "{body}");
    assert!(pointers.contains(&"/data/account_name"), "{body}");

    // A batch with one bad event is refused whole: the good one is not stored either.
    let good = user_added(&subject(), 1);
    let mut unknown = user_added(&subject(), 1);
    unknown["type"] = json!("moss.user.teleported.v1");
    let (status, body) = post(
        producer.ingest_addr(),
        moss_producer::BATCH_CONTENT_TYPE,
        serde_json::to_vec(&json!([good, unknown])).unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["pointer"] == "/1/type"),
        "{body}"
    );

    // A clear password where a sealed one belongs.
    let mut clear = password_changed_clear(&subject(), 1, "x");
    clear["data"]["password"] = json!("Plain-Text-Password-1");
    let (status, body) = post_event(producer.ingest_addr(), &clear).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        !body.to_string().contains("Plain-Text-Password-1"),
        "the refusal does not echo the password"
    );

    // Malformed JSON.
    let (status, body) = post(
        producer.ingest_addr(),
        moss_producer::SINGLE_CONTENT_TYPE,
        b"{\"specversion\":".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // Wrong content type.
    let (status, _) = post(producer.ingest_addr(), "text/plain", b"hello".to_vec()).await;
    assert_eq!(status, 415);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rabbit.ready().await, 0, "nothing refused reached RabbitMQ");
    let ready: Value = reqwest::get(format!("http://{}/readyz", producer.ingest_addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["outbox_backlog"], 0);
    producer.shutdown().await;
    rabbit.cleanup().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let mut settings = settings(&store_path(&dir), AMQP_URL, &topology, &sealing);
    settings.max_body_bytes = 2048;
    let (producer, _) = start(settings).await;
    let batch: Vec<Value> = (0..40).map(|n| user_added(&subject(), n + 1)).collect();
    let (status, body) = post(
        producer.ingest_addr(),
        moss_producer::BATCH_CONTENT_TYPE,
        serde_json::to_vec(&batch).unwrap(),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["type"], "https://moss.dev/problems/too-large");
    producer.shutdown().await;
    let rabbit = TestBroker::connect(&topology).await;
    rabbit.cleanup().await;
}

#[tokio::test]
async fn off_loopback_the_ingest_needs_a_token_and_refuses_requests_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let mut open_settings = settings(&store_path(&dir), AMQP_URL, &topology, &sealing);
    open_settings.ingest_addr = "0.0.0.0:0".parse().unwrap();
    let refused = moss_producer::start(
        open_settings.clone(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    assert!(matches!(
        refused,
        Err(moss_producer::ProducerError::TokenRequired { .. })
    ));

    open_settings.ingest_token = Some(secret("ingest-token-for-tests"));
    let (producer, _) = start(open_settings).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], producer.ingest_addr().port()));
    let event = user_added(&subject(), 1);
    let (status, _) = post_event(addr, &event).await;
    assert_eq!(status, 401);
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/events"))
        .header("content-type", moss_producer::SINGLE_CONTENT_TYPE)
        .bearer_auth("ingest-token-for-tests")
        .body(serde_json::to_vec(&event).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    producer.shutdown().await;
    let rabbit = TestBroker::connect(&topology).await;
    rabbit.cleanup().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path))
        } else {
            files.push(path)
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
