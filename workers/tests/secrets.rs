//! No password in clear anywhere moss keeps or sends things: the partition queues, the dead
//! letters, the sled files of producer and worker, and the logs (captured here at debug level).

mod support;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moss_schemas::{SealedSecret, SealingKey, generate_key_pair};
use secrecy::SecretString;
use serde_json::json;
use support::{System, added, eventually, new_subject};

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

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|window| window == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_appears_in_clear_in_queues_dead_letters_sled_files_or_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut system = System::spawn_without_worker().await;
    let first = format!("Clear-{}-A1!", uuid::Uuid::new_v4().simple());
    let second = format!("Clear-{}-B2!", uuid::Uuid::new_v4().simple());
    let unopenable = format!("Clear-{}-C3!", uuid::Uuid::new_v4().simple());
    let subject = new_subject();
    let local = format!("secret-{}", &new_subject()[..6]);
    let create = system.event(
        &subject,
        "moss.user.added.v1",
        added(&system, &local, &first),
    );
    system.post(&create).await;
    let change = system.event(
        &subject,
        "moss.user.password_changed.v1",
        json!({"password": {"clear": second}}),
    );
    system.post(&change).await;
    // A password sealed to some other key: the worker cannot open it.
    let stranger = SealingKey::parse(&generate_key_pair().public).unwrap();
    let sealed = SealedSecret::seal(&SecretString::from(unopenable.as_str()), &stranger).unwrap();
    let other = new_subject();
    let other_local = format!("other-{}", &new_subject()[..6]);
    let mut other_added = added(&system, &other_local, "x");
    other_added["initial_password"] = json!(sealed.to_wire_string());
    let wrong_key = system.event(&other, "moss.user.added.v1", other_added);
    system.post(&wrong_key).await;

    // What RabbitMQ holds before any worker runs, once the producer has relayed all three.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut ready = 0;
        for partition in 0..system.topology.partitions() {
            let queue = system.topology.partition_queue(partition);
            ready += system.broker.queue_depth(&queue).await.unwrap().ready;
        }
        if ready == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the producer relays the events"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut queued = 0;
    let mut bodies = Vec::new();
    for partition in 0..system.topology.partitions() {
        let queue = system.topology.partition_queue(partition);
        let depth = system.broker.queue_depth(&queue).await.unwrap().ready as usize;
        if depth == 0 {
            continue;
        }
        // Read without settling, then close the channel: RabbitMQ returns the deliveries in
        // their order. Nacking them one by one could requeue a user's events out of order, and
        // a password change ahead of its user's creation would leave the creation stale.
        let mut consumer = system.broker.consume(&queue, 100, "").await.unwrap();
        let mut held = Vec::new();
        for _ in 0..depth {
            let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            bodies.push(delivery.body.clone());
            held.push(delivery);
            queued += 1;
        }
        consumer.shutdown().await.unwrap();
        drop(held);
    }
    assert_eq!(queued, 3);

    system.start_worker(|_| {}).await;
    let upn = system.upn(&local);
    eventually(
        Duration::from_secs(45),
        "both passwords are applied and the third dead-lettered",
        || {
            system.emulator.password_matches(&upn, &second) == Some(true)
                && system.worker().counters().dead_lettered >= 1
        },
    )
    .await;
    let letters = system.take_dead_letters(1, Duration::from_secs(5)).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].headers.get_str(moss_workers::ERROR_CLASS),
        Some("sealed_secret")
    );
    system.stop_worker().await;
    let producer_dir = system.dir.path().to_owned();

    for password in [&first, &second, &unopenable] {
        for body in &bodies {
            assert!(
                !String::from_utf8_lossy(body).contains(password.as_str()),
                "a queued message holds a clear password"
            );
        }
        for letter in &letters {
            assert!(!String::from_utf8_lossy(&letter.body).contains(password.as_str()));
            for (_, value) in letter.headers.iter() {
                assert!(
                    !format!("{value:?}").contains(password.as_str()),
                    "a dead-letter header holds a clear password"
                );
            }
        }
        assert_eq!(
            files_containing(&producer_dir, password.as_bytes()),
            Vec::<String>::new()
        );
        let captured = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        assert!(
            !captured.contains(password.as_str()),
            "the logs hold a clear password"
        );
        assert!(
            captured.contains("event dead-lettered"),
            "the logs were captured"
        );
    }
    system.finish().await;
}

/// A panic message is made from `Debug` (an `unwrap` or `expect` on an error, a `{:?}` in an
/// assertion) or `Display`. Every value that holds a password, the client secret, the ingest
/// token or the private key prints it redacted, so a panic anywhere cannot spill one; checked
/// here through real panics with a hook that keeps what the default one would print.
#[test]
fn panic_messages_and_debug_output_never_hold_a_secret() {
    use moss_schemas::{Envelope, OpeningKey};

    let password = format!("Clear-{}-P4!", uuid::Uuid::new_v4().simple());
    let client_secret = format!("client-secret-{}", uuid::Uuid::new_v4().simple());
    let token = format!("ingest-token-{}", uuid::Uuid::new_v4().simple());
    let keys = generate_key_pair();
    let private = {
        use secrecy::ExposeSecret;
        keys.private.expose_secret().to_owned()
    };
    let sealing = SealingKey::parse(&keys.public).unwrap();
    let opening = OpeningKey::parse(&keys.private).unwrap();
    let subject = uuid::Uuid::new_v4().to_string();
    let body = |password_field: serde_json::Value| {
        serde_json::to_vec(&json!({
            "specversion": "1.0",
            "id": uuid::Uuid::now_v7().to_string(),
            "source": "moss-producer/test",
            "type": "moss.user.password_changed.v1",
            "subject": subject,
            "time": "2025-01-31T12:00:00Z",
            "sequence": "7",
            "data": {"password": password_field},
        }))
        .unwrap()
    };
    // Accepted at the ingest (sealed at once), and refused on the wire (a clear password where
    // only sealed ones may be): neither the event nor the error shows the password.
    let accepted =
        Envelope::from_ingest_json_slice(&body(json!({"clear": password})), &sealing).unwrap();
    let refused = Envelope::from_json_slice(&body(json!({"clear": password}))).unwrap_err();
    let misplaced = Envelope::from_ingest_json_slice(&body(json!(password)), &sealing).unwrap_err();
    let mut online = moss_online::OnlineConfig::new(
        "tenant".to_owned(),
        "client".to_owned(),
        SecretString::from(client_secret.clone()),
    );
    online.graph_url = "http://127.0.0.1:1".to_owned();
    let mut producer = moss_producer::ProducerSettings::new(
        std::env::temp_dir(),
        "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
        moss_broker::Topology::new(moss_broker::TopologyPrefix::parse("moss-x").unwrap(), 2)
            .unwrap(),
        sealing.clone(),
    );
    producer.ingest_token = Some(SecretString::from(token.clone()));
    let worker = moss_workers::WorkerSettings::new(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        moss_broker::Topology::new(moss_broker::TopologyPrefix::parse("moss-x").unwrap(), 2)
            .unwrap(),
        std::env::temp_dir(),
        online.clone(),
        opening,
    );

    let printed: Arc<Mutex<String>> = Arc::default();
    let sink = Arc::clone(&printed);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        sink.lock().unwrap().push_str(&format!("{info}\n"));
    }));
    let panics: Vec<Box<dyn FnOnce() + std::panic::UnwindSafe>> = vec![
        Box::new({
            let refused = refused.clone();
            move || {
                // As a decode would hand it back (not a literal `Err`, which clippy flags).
                std::hint::black_box(Err::<(), _>(refused)).unwrap();
            }
        }),
        Box::new({
            let misplaced = misplaced.clone();
            move || {
                std::hint::black_box(Err::<(), _>(misplaced)).expect("the event decodes");
            }
        }),
        Box::new({
            let accepted = accepted.clone();
            move || panic!("while handling {accepted:?}: {}", accepted.to_json_value())
        }),
        Box::new({
            let online = online.clone();
            move || panic!("with {online:?}")
        }),
        Box::new({
            let producer = producer.clone();
            move || panic!("with {producer:?}")
        }),
        Box::new(move || panic!("with {worker:?}")),
        Box::new(move || panic!("with {keys:?}")),
    ];
    let count = panics.len();
    for run in panics {
        assert!(std::panic::catch_unwind(run).is_err());
    }
    std::panic::set_hook(default_hook);
    let printed = printed.lock().unwrap().clone();
    assert_eq!(printed.matches("panicked at").count(), count, "{printed}");
    for secret in [&password, &client_secret, &token, &private] {
        assert!(
            !printed.contains(secret.as_str()),
            "a panic message holds a secret:\n{printed}"
        );
    }
    assert!(
        printed.contains("moss-sealed:v1:"),
        "the sealed password is shown instead"
    );
}
