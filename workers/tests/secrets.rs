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
        let mut consumer = system.broker.consume(&queue, 100, "").await.unwrap();
        for _ in 0..depth {
            let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            bodies.push(delivery.body.clone());
            delivery.nack_requeue().await.unwrap();
            queued += 1;
        }
        consumer.shutdown().await.unwrap();
    }
    assert_eq!(queued, 3);

    system.start_worker(|_| {}).await;
    let upn = system.upn(&local);
    eventually(
        Duration::from_secs(15),
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
