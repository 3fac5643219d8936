//! The producer and clear passwords: whatever the request (one event, a batch, a refused event,
//! a wrong content type, a missing token), a clear password is never in the producer's logs at
//! trace level, its sled files, what it relays to RabbitMQ, or what it answers. The ingest
//! token is required exactly, and never echoed.

mod harness;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{
    AMQP_URL, TestBroker, key_pair, password_changed_clear, post, post_event, settings, start,
    store_path, subject, unique_topology, user_added,
};
use secrecy::SecretString;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_password_is_never_logged_at_trace_stored_relayed_or_echoed() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let rabbit = TestBroker::connect(&topology).await;
    let (sealing, _) = key_pair();
    let (producer, _) = start(settings(&store_path(&dir), AMQP_URL, &topology, &sealing)).await;
    let addr = producer.ingest_addr();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let passwords: Vec<String> = (1..=6).map(|n| format!("Clear-{run}-{n}!")).collect();

    // Accepted: one event, and a batch of two.
    let (status, _) = post_event(addr, &password_changed_clear(&subject(), 1, &passwords[0])).await;
    assert_eq!(status, 202);
    let batch = json!([
        password_changed_clear(&subject(), 1, &passwords[1]),
        password_changed_clear(&subject(), 1, &passwords[2]),
    ]);
    let (status, _) = post(
        addr,
        moss_producer::BATCH_CONTENT_TYPE,
        serde_json::to_vec(&batch).unwrap(),
    )
    .await;
    assert_eq!(status, 202);

    // Refused: an event with two violations, one of them next to the clear password; a clear
    // password where the schema wants none; the wrong media type.
    let mut invalid = password_changed_clear(&subject(), 1, &passwords[3]);
    invalid["sequence"] = json!("minus one");
    let (status, answer) = post_event(addr, &invalid).await;
    assert_eq!(status, 400);
    assert!(answer.to_string().contains("sequence"), "{answer}");
    let mut misplaced = user_added(&subject(), 1);
    misplaced["data"]["display_name"] = json!({"clear": passwords[4]});
    let (status, answer_misplaced) = post_event(addr, &misplaced).await;
    assert_eq!(status, 400);
    let (status, answer_type) = post(
        addr,
        "text/plain",
        serde_json::to_vec(&password_changed_clear(&subject(), 1, &passwords[5])).unwrap(),
    )
    .await;
    assert_eq!(status, 415);

    let relayed = rabbit.receive(3, Duration::from_secs(15)).await;
    assert_eq!(relayed.len(), 3, "the accepted events are relayed");
    producer.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let captured = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        captured.contains("TRACE"),
        "the logs were captured at trace level"
    );
    assert!(
        captured.contains("accepted"),
        "the ingest's own lines were captured"
    );
    for password in &passwords {
        assert!(
            !captured.contains(password.as_str()),
            "the logs hold a clear password"
        );
        for answer in [&answer, &answer_misplaced, &answer_type] {
            assert!(!answer.to_string().contains(password.as_str()), "{answer}");
        }
        for message in &relayed {
            assert!(!message.body.to_string().contains(password.as_str()));
        }
        assert_eq!(
            files_containing(&store_path(&dir), password),
            Vec::<String>::new(),
            "a sled file holds a clear password"
        );
    }
    for message in &relayed {
        let sealed = message.body["data"]["password"].as_str().unwrap();
        assert!(sealed.starts_with("moss-sealed:v1:"), "{sealed}");
    }
    rabbit.cleanup().await;
}

#[tokio::test]
async fn the_ingest_token_is_required_exactly_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let token = format!("ingest-{}", uuid::Uuid::new_v4().simple());
    let mut open = settings(&store_path(&dir), AMQP_URL, &topology, &sealing);
    open.ingest_addr = "0.0.0.0:0".parse().unwrap();

    // Off loopback without a token: the producer does not start, and says what to set.
    let refused = moss_producer::start(open.clone(), tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("MOSS_INGEST_TOKEN"), "{refused}");

    open.ingest_token = Some(SecretString::from(token.clone()));
    let (producer, _) = start(open).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], producer.ingest_addr().port()));
    let body = serde_json::to_vec(&user_added(&subject(), 1)).unwrap();
    let client = reqwest::Client::new();
    let near_misses = [
        None,
        Some(format!("Bearer {token}x")),
        Some(format!("Bearer {}", &token[..token.len() - 1])),
        Some(format!("Basic {token}")),
        Some(format!("bearer{token}")),
        Some("Bearer ".to_owned()),
        Some(token.clone()),
    ];
    for authorization in &near_misses {
        let mut request = client
            .post(format!("http://{addr}/v1/events"))
            .header("content-type", moss_producer::SINGLE_CONTENT_TYPE)
            .body(body.clone());
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{authorization:?}");
        let answer = response.text().await.unwrap();
        assert!(
            !answer.contains(&token[7..]),
            "the 401 echoes the token: {answer}"
        );
    }
    let accepted = client
        .post(format!("http://{addr}/v1/events"))
        .header("content-type", moss_producer::SINGLE_CONTENT_TYPE)
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 202);
    producer.shutdown().await;
    assert_eq!(
        files_containing(&store_path(&dir), &token),
        Vec::<String>::new(),
        "the token is stored"
    );
    TestBroker::connect(&topology).await.cleanup().await;
}
