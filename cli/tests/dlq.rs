//! `moss dlq` run as the binary against the real RabbitMQ: end to end with the emulator, the
//! producer and a worker in this process (events that fail for good are listed with their
//! reason, and once the cause is fixed a replay applies them in order, once each), and the
//! operator's mistakes, each one sentence, a failure, and nothing changed.

use std::time::Duration;

use moss_broker::{Broker, Headers, OutgoingMessage, Persistence, Topology};
use serde_json::{Value, json};

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_fail_for_good_are_listed_and_after_the_fix_a_replay_applies_them_in_order_once_each()
 {
    let system = System::spawn().await;
    let tenant = system.emulator.tenant();
    let good_domain = tenant.default_domain.clone();
    let sku = tenant.skus[0].sku_part_number.clone();
    let later_domain = format!(
        "later-{}.example",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );

    // Two users on a domain the tenant does not know yet: their creates fail for good, and
    // their password changes wait behind them (quarantine). A third user goes through.
    let mut users = Vec::new();
    for name in ["ana", "bo"] {
        let subject = uuid::Uuid::new_v4().to_string();
        let upn = format!("{name}-{}@{later_domain}", &subject[..6]);
        let added = event(
            &subject,
            "moss.user.added.v1",
            10,
            json!({
                "account_name": name,
                "display_name": format!("User {name}"),
                "online_account": {"upn": upn, "usage_location": "DE", "licenses": [sku]},
                "initial_password": {"clear": "First-Passw0rd!"},
            }),
        );
        system.post(&added).await;
        users.push((subject, upn, added));
    }
    let other_subject = uuid::Uuid::new_v4().to_string();
    let other_upn = format!("cy-{}@{good_domain}", &other_subject[..6]);
    system
        .post(&event(
            &other_subject,
            "moss.user.added.v1",
            10,
            json!({"account_name": "cy", "display_name": "User cy",
                   "online_account": {"upn": other_upn, "usage_location": "DE", "licenses": [sku]}}),
        ))
        .await;
    dead_count_becomes(&system.broker, &system.topology, 2, Duration::from_secs(15)).await;
    let mut changes = Vec::new();
    for (subject, _, _) in &users {
        let change = event(
            subject,
            "moss.user.password_changed.v1",
            11,
            json!({"password": {"clear": "Second-Passw0rd!"}}),
        );
        system.post(&change).await;
        changes.push(change);
    }
    dead_count_becomes(&system.broker, &system.topology, 4, Duration::from_secs(15)).await;
    assert!(
        system.emulator.user(&other_upn).is_some(),
        "another user is not held up"
    );

    // Listed, with their reason.
    let (code, stdout, stderr) = moss(&system.topology, &["dlq", "list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["schema"], "moss.dlq.list.v1");
    let letters = listed["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 4);
    for (_, upn, added) in &users {
        let letter = letters
            .iter()
            .find(|letter| letter["id"] == added["id"])
            .expect("the create is listed");
        assert_eq!(letter["error"]["class"], "permanent");
        assert_eq!(letter["error"]["status"], 400);
        assert!(
            letter["error"]["message"]
                .as_str()
                .unwrap()
                .contains("domain"),
            "{letter}"
        );
        assert_eq!(letter["upn"], upn.as_str());
        assert_eq!(letter["type"], "moss.user.added.v1");
    }
    let quarantined = letters
        .iter()
        .filter(|letter| letter["error"]["class"] == "quarantined")
        .count();
    assert_eq!(quarantined, 2);
    let (code, table, _) = moss(&system.topology, &["dlq", "list", "--class", "permanent"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("permanent") && table.contains("domain"),
        "{table}"
    );
    assert!(table.contains("2 dead letters"), "{table}");

    // Shown with the password redacted.
    let ana_create = users[0].2["id"].as_str().unwrap();
    let (code, shown, _) = moss(&system.topology, &["dlq", "show", ana_create]);
    assert_eq!(code, 0);
    assert!(
        shown.contains("[redacted]") && !shown.contains("First-Passw0rd!"),
        "{shown}"
    );
    assert!(
        shown.contains("permanent") && shown.contains("400"),
        "{shown}"
    );

    // A dry run changes nothing and says what would happen.
    let (code, dry, stderr) = moss(&system.topology, &["dlq", "replay", "--all", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(dry.contains("would replay 4 dead letters"), "{dry}");
    assert!(dry.contains("nothing was changed"), "{dry}");
    dead_count_becomes(&system.broker, &system.topology, 4, Duration::from_secs(5)).await;

    // Fix the cause, replay everything: each user is created, then gets the newer password.
    system.emulator.add_domain(&later_domain).unwrap();
    let (code, replayed, stderr) = moss(&system.topology, &["dlq", "replay", "--all"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(replayed.contains("replayed 4 dead letters"), "{replayed}");
    for (_, upn, _) in &users {
        eventually(
            Duration::from_secs(15),
            "the replay applies the create and then the password",
            || system.emulator.password_matches(upn, "Second-Passw0rd!") == Some(true),
        )
        .await;
    }
    eventually(
        Duration::from_secs(10),
        "every replayed event is applied",
        || system.worker().counters().applied >= 5,
    )
    .await;
    assert_eq!(dead_count(&system.broker, &system.topology).await, 0);
    // Once each: one successful create per user, no second account.
    let creates = system
        .emulator
        .writes()
        .into_iter()
        .filter(|request| {
            request.method == "POST" && request.path == "/v1.0/users" && request.status == Some(201)
        })
        .count();
    assert_eq!(creates, 3);
    let counters = system.worker().counters();
    assert_eq!(counters.applied, 5, "{counters:?}");

    // Nothing left: replaying again is a mistake, said in one sentence.
    let (code, _, stderr) = moss(&system.topology, &["dlq", "replay", "--all"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("the dead queue is empty"), "{stderr}");
    system.finish().await;
}

/// An installation with no worker: dead letters put there by hand.
struct DeadQueueOnly {
    broker: Broker,
    topology: Topology,
}

impl DeadQueueOnly {
    async fn declare() -> DeadQueueOnly {
        let topology = new_topology();
        let broker = Broker::connect(AMQP_URL, "moss-cli-dlq-test")
            .await
            .expect("RabbitMQ runs");
        broker.declare(&topology).await.unwrap();
        DeadQueueOnly { broker, topology }
    }

    /// A dead letter as a worker writes it, for `subject` at `sequence`.
    async fn dead_letter(
        &self,
        id: &str,
        subject: &str,
        sequence: u64,
        class: &str,
        dead_at: &str,
    ) {
        let body = json!({
            "specversion": "1.0", "id": id, "source": "test", "type": "moss.user.password_changed.v1",
            "subject": subject, "sequence": sequence.to_string(), "time": dead_at,
            "data": {"password": "age-sealed-bytes"},
        });
        let headers = Headers::new()
            .with_text(moss_workers::ERROR_CLASS, class)
            .with_text(moss_workers::ERROR_CODE, "Request_ResourceNotFound")
            .with_int(moss_workers::ERROR_STATUS, 404)
            .with_text(moss_workers::ERROR_MESSAGE, "the user does not exist")
            .with_text(moss_workers::REQUEST_ID, format!("req-{id}"))
            .with_text(moss_workers::DEAD_AT, dead_at)
            .with_text(moss_workers::DEAD_BY, "worker-a")
            .with_int(moss_workers::ATTEMPTS, 3)
            .with_int(moss_workers::ATTEMPT, 1)
            .with_text(moss_workers::SUBJECT, subject)
            .with_text(moss_workers::EVENT_TYPE, "moss.user.password_changed.v1")
            .with_text(moss_workers::ORIGINAL_ROUTING_KEY, "p0");
        self.publish(
            self.topology.dead_exchange(),
            id,
            serde_json::to_vec(&body).unwrap(),
            headers,
        )
        .await;
    }

    async fn publish(&self, exchange: String, id: &str, body: Vec<u8>, headers: Headers) {
        let publisher = self.broker.publisher().await.unwrap();
        publisher
            .publish(OutgoingMessage {
                exchange,
                routing_key: "p0".into(),
                message_id: id.to_owned(),
                body,
                content_type: "application/cloudevents+json".into(),
                headers,
                persistence: Persistence::Persistent,
            })
            .await
            .unwrap();
        publisher.close().await.unwrap();
    }

    async fn finish(self) {
        let _ = self.broker.delete_topology(&self.topology).await;
        let _ = self.broker.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_keeps_ids_and_each_subjects_order_and_show_lists_every_attempt() {
    let installation = DeadQueueOnly::declare().await;
    let subject = "3f0c2a7e-1d2b-4c5d-8e9f-0a1b2c3d4e5f";
    let other = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d";
    // Written out of order on purpose: the queue's order is not the replay's.
    installation
        .dead_letter(
            "e-late",
            subject,
            7,
            "quarantined",
            "2026-01-01T10:00:02.000Z",
        )
        .await;
    installation
        .dead_letter("e-other", other, 3, "permanent", "2026-01-01T10:00:01.000Z")
        .await;
    installation
        .dead_letter(
            "e-early",
            subject,
            5,
            "permanent",
            "2026-01-01T10:00:00.000Z",
        )
        .await;
    let (code, stdout, stderr) = moss(
        &installation.topology,
        &["dlq", "replay", "--all", "--json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["replayed"], 3);
    dead_count_becomes(
        &installation.broker,
        &installation.topology,
        0,
        Duration::from_secs(5),
    )
    .await;

    // Read back what the partitions received, in order, with the same ids.
    let mut received = Vec::new();
    for partition in 0..PARTITIONS {
        let queue = installation.topology.partition_queue(partition);
        if installation.broker.queue_depth(&queue).await.unwrap().ready == 0 {
            continue;
        }
        let mut consumer = installation.broker.consume(&queue, 10, "").await.unwrap();
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
        {
            delivery.ack().await.unwrap();
            received.push(delivery);
        }
        consumer.shutdown().await.unwrap();
    }
    assert_eq!(received.len(), 3);
    let of_subject: Vec<&str> = received
        .iter()
        .filter(|delivery| delivery.headers.get_str(moss_workers::REPLAY_OF) != Some("e-other"))
        .map(|delivery| delivery.message_id.as_deref().unwrap())
        .collect();
    assert_eq!(
        of_subject,
        vec!["e-early", "e-late"],
        "a subject's events replay oldest first"
    );
    let early = received
        .iter()
        .find(|delivery| delivery.message_id.as_deref() == Some("e-early"))
        .unwrap();
    assert_eq!(
        early.headers.get_str(moss_workers::REPLAY_OF),
        Some("e-early")
    );
    assert_eq!(early.headers.get_i64(moss_workers::ATTEMPT), Some(2));
    assert_eq!(early.headers.get_str(moss_workers::ERROR_CLASS), None);
    assert!(early.headers.get_str("moss-replayed-at").is_some());
    let routing_key = &early.routing_key;
    let expected_partition = moss_schemas::Subject::parse(subject)
        .unwrap()
        .partition(PARTITIONS);
    assert_eq!(routing_key, &format!("p{expected_partition}"));

    // It fails again: the worker keeps our headers and writes new diagnostics. `show` then
    // lists both attempts.
    let mut headers = Headers::new();
    for (name, value) in early.headers.iter() {
        headers.insert(name, value.clone());
    }
    let headers = headers
        .with_text(moss_workers::ERROR_CLASS, "conflict")
        .with_text(moss_workers::ERROR_CODE, "ObjectConflict")
        .with_text(
            moss_workers::ERROR_MESSAGE,
            "the name is held by another object",
        )
        .with_text(moss_workers::DEAD_AT, "2026-01-01T11:00:00.000Z");
    installation
        .publish(
            installation.topology.dead_exchange(),
            "e-early",
            early.body.clone(),
            headers,
        )
        .await;
    let (code, shown, stderr) = moss(
        &installation.topology,
        &["dlq", "show", "e-early", "--json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let history = shown["letter"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["attempt"], 1);
    assert_eq!(history[0]["error"]["class"], "permanent");
    assert_eq!(history[0]["error"]["request_id"], "req-e-early");
    assert_eq!(shown["letter"]["attempt"], 2);
    assert_eq!(shown["letter"]["error"]["class"], "conflict");
    assert_eq!(shown["letter"]["replay_of"], "e-early");
    assert_eq!(shown["event"]["data"]["password"], "[redacted]");
    installation.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_mistakes_are_one_sentence_a_failure_and_change_nothing() {
    let installation = DeadQueueOnly::declare().await;
    let subject = "3f0c2a7e-1d2b-4c5d-8e9f-0a1b2c3d4e5f";
    installation
        .dead_letter("e-1", subject, 1, "permanent", "2026-01-01T10:00:00.000Z")
        .await;
    installation
        .dead_letter("e-2", subject, 2, "quarantined", "2026-01-01T10:00:01.000Z")
        .await;
    let topology = &installation.topology;
    let mistakes: [(&[&str], &str); 7] = [
        (&["dlq", "show", "nope"], "no dead letter has the id nope"),
        (&["dlq", "replay", "nope"], "no dead letter has the id nope"),
        (
            &["dlq", "replay", "--class", "conflict"],
            "no dead letter matches error class conflict",
        ),
        (
            &["dlq", "list", "--type", "group.added"],
            "no dead letter matches type group.added",
        ),
        (&["dlq", "replay"], "say which dead letters to replay"),
        (&["dlq", "purge", "--all"], "pass --yes"),
        (&["dlq", "list", "--since", "yesterday"], "--since must be"),
    ];
    for (args, expected) in mistakes {
        let (code, _, stderr) = moss(topology, args);
        assert_ne!(code, 0, "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        dead_count_becomes(&installation.broker, topology, 2, Duration::from_secs(5)).await;
    }
    // The replay of a quarantined event alone says it will be dead-lettered again.
    let (code, dry, _) = moss(topology, &["dlq", "replay", "e-2", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(dry.contains("not in this replay"), "{dry}");
    assert!(dry.contains("an older event of this subject (e-1"), "{dry}");

    let (code, stdout, stderr) = moss(topology, &["dlq", "purge", "e-1", "--yes"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("purged 1 dead letters"), "{stdout}");
    dead_count_becomes(&installation.broker, topology, 1, Duration::from_secs(5)).await;
    let (_, listed, _) = moss(topology, &["dlq", "list", "--json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["letters"][0]["id"], "e-2");
    installation.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_thousands_reports_progress_in_plain_lines_when_not_on_a_terminal() {
    let installation = DeadQueueOnly::declare().await;
    let count = 2_500_usize;
    let publisher = installation.broker.publisher().await.unwrap();
    let messages: Vec<OutgoingMessage> = (0..count)
        .map(|index| {
            let subject = uuid::Uuid::new_v4().to_string();
            let id = format!("bulk-{index:05}");
            let body = json!({
                "specversion": "1.0", "id": id, "source": "test", "type": "moss.user.reactivated.v1",
                "subject": subject, "sequence": "1", "time": "2026-01-01T10:00:00Z", "data": {},
            });
            OutgoingMessage {
                exchange: installation.topology.dead_exchange(),
                routing_key: "p0".into(),
                message_id: id,
                body: serde_json::to_vec(&body).unwrap(),
                content_type: "application/cloudevents+json".into(),
                headers: Headers::new()
                    .with_text(moss_workers::ERROR_CLASS, "transient")
                    .with_text(moss_workers::SUBJECT, subject)
                    .with_text(
                        moss_workers::DEAD_AT,
                        format!("2026-01-01T10:{:02}:{:02}.000Z", index / 60 % 60, index % 60),
                    ),
                persistence: Persistence::Persistent,
            }
        })
        .collect();
    for result in publisher.publish_batch(messages).await {
        result.unwrap();
    }
    publisher.close().await.unwrap();
    dead_count_becomes(
        &installation.broker,
        &installation.topology,
        u32::try_from(count).unwrap(),
        Duration::from_secs(10),
    )
    .await;

    let (code, stdout, stderr) = moss(
        &installation.topology,
        &["dlq", "replay", "--class", "transient"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("replayed {count} dead letters")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("replayed 250 of {count}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("replayed {count} of {count}")),
        "{stderr}"
    );
    assert!(!stderr.contains('\r'), "no bar drawn off a terminal");
    dead_count_becomes(
        &installation.broker,
        &installation.topology,
        0,
        Duration::from_secs(5),
    )
    .await;
    let mut in_partitions = 0;
    for queue in installation.topology.partition_queues() {
        in_partitions += installation.broker.queue_depth(&queue).await.unwrap().ready;
    }
    assert_eq!(in_partitions, u32::try_from(count).unwrap());
    installation.finish().await;
}
