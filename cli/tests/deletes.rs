//! `moss deletes` run as the binary against the real RabbitMQ, with the emulator, the producer
//! and a worker (its mass-delete guard set low) in this process: held removals are pending and
//! shown loudly by `moss status`; `approve` applies them, with the events waiting behind them,
//! in order and once each; `reject` drops them and the user's later events apply again.

use std::process::{Command, Stdio};
use std::time::Duration;

use moss_broker::Topology;
use serde_json::{Value, json};

mod support;

use support::*;

/// A port nothing listens on, so that `moss status` finds no metrics quickly.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn status_text(topology: &Topology) -> String {
    let port = closed_port();
    let output = Command::new(env!("CARGO_BIN_EXE_moss"))
        .args(["status"])
        .env("MOSS_AMQP_URL", AMQP_URL)
        .env("MOSS_TOPOLOGY_PREFIX", topology.prefix().as_str())
        .env("MOSS_PARTITIONS", PARTITIONS.to_string())
        .env("MOSS_MANAGEMENT_URL", format!("http://127.0.0.1:{port}"))
        .env("MOSS_WORKER_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("MOSS_PRODUCER_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .expect("moss runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Adds users `count` with sequence 10 and waits until they exist; returns (subject, UPN).
async fn add_users(system: &System, count: usize) -> Vec<(String, String)> {
    let tenant = system.emulator.tenant();
    let sku = tenant.skus[0].sku_part_number.clone();
    let mut users = Vec::new();
    for n in 0..count {
        let subject = uuid::Uuid::new_v4().to_string();
        let upn = format!("del{n}-{}@{}", &subject[..6], tenant.default_domain);
        system
            .post(&event(
                &subject,
                "moss.user.added.v1",
                10,
                json!({
                    "account_name": format!("del{n}"),
                    "display_name": format!("User {n}"),
                    "online_account": {"upn": upn, "usage_location": "DE", "licenses": [sku]},
                    "initial_password": {"clear": "First-Passw0rd!"},
                }),
            ))
            .await;
        users.push((subject, upn));
    }
    let expected = count as u64;
    eventually(Duration::from_secs(15), "the users exist", || {
        system.worker().counters().applied >= expected
    })
    .await;
    users
}

fn deleted(system: &System, users: &[(String, String)]) -> usize {
    users
        .iter()
        .filter(|(_, upn)| {
            system
                .emulator
                .user(upn)
                .is_some_and(|user| user["_emulator"]["deleted"].as_bool() == Some(true))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_removals_are_pending_shown_loudly_and_approved_in_order_once_each() {
    let system = System::spawn_with_delete_threshold(2).await;
    let users = add_users(&system, 4).await;
    let mut removals = Vec::new();
    for (subject, _) in &users {
        let removal = event(subject, "moss.user.removed.v1", 11, json!({}));
        system.post(&removal).await;
        removals.push(removal["id"].as_str().unwrap().to_owned());
    }
    dead_count_becomes(&system.broker, &system.topology, 2, Duration::from_secs(15)).await;
    eventually(Duration::from_secs(10), "two removals apply", || {
        system.worker().counters().applied >= 6
    })
    .await;
    assert_eq!(deleted(&system, &users), 2);

    let (code, stdout, stderr) = moss(&system.topology, &["deletes", "pending", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let pending: Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(pending["schema"], "moss.deletes.pending.v1");
    assert_eq!(pending["held"], 2);
    let held: Vec<String> = pending["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|letter| letter["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(held.iter().all(|id| removals.contains(id)));
    // One held user's next event waits behind its removal.
    let held_subject = pending["letters"][0]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    system
        .post(&event(
            &held_subject,
            "moss.user.password_changed.v1",
            12,
            json!({"password": {"clear": "Second-Passw0rd!"}}),
        ))
        .await;
    dead_count_becomes(&system.broker, &system.topology, 3, Duration::from_secs(10)).await;
    let status = status_text(&system.topology);
    assert!(status.contains("DELETES HELD      2"), "{status}");
    // The status held the letters unacknowledged while it read them; they come back.
    dead_count_becomes(&system.broker, &system.topology, 3, Duration::from_secs(10)).await;

    let (code, _, stderr) = moss(&system.topology, &["deletes", "approve"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("say which held deletes"), "{stderr}");
    let (code, _, stderr) = moss(&system.topology, &["deletes", "approve", "not-an-id"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("not-an-id is not a held delete"),
        "{stderr}"
    );
    dead_count_becomes(&system.broker, &system.topology, 3, Duration::from_secs(10)).await;

    let (code, stdout, stderr) = moss(&system.topology, &["deletes", "approve", "--all"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("approved 2 held deletes (3 events replayed"),
        "{stdout}"
    );
    eventually(Duration::from_secs(15), "every user is deleted", || {
        deleted(&system, &users) == 4
    })
    .await;
    // In order: the waiting event came after its removal (before it, it would be
    // dead-lettered again); once each: nothing more applied than the four adds and removals.
    eventually(Duration::from_secs(10), "the waiting event settles", || {
        let counters = system.worker().counters();
        counters.applied + counters.already_applied >= 9
    })
    .await;
    let counters = system.worker().counters();
    assert_eq!(counters.applied, 8);
    assert_eq!(counters.dead_lettered, 3);
    assert_eq!(dead_count(&system.broker, &system.topology).await, 0);
    let (code, stdout, _) = moss(&system.topology, &["deletes", "pending"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("no deletes are held"), "{stdout}");
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_removal_keeps_the_account_and_the_users_later_events_apply_again() {
    let system = System::spawn_with_delete_threshold(1).await;
    let users = add_users(&system, 2).await;
    system
        .post(&event(&users[0].0, "moss.user.removed.v1", 11, json!({})))
        .await;
    eventually(Duration::from_secs(10), "the first removal applies", || {
        deleted(&system, &users) == 1
    })
    .await;
    let (kept, kept_upn) = &users[1];
    let removal = event(kept, "moss.user.removed.v1", 11, json!({}));
    system.post(&removal).await;
    dead_count_becomes(&system.broker, &system.topology, 1, Duration::from_secs(10)).await;

    let (code, _, stderr) = moss(&system.topology, &["deletes", "reject", "--all"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("pass --yes"), "{stderr}");
    let (code, stdout, stderr) = moss(&system.topology, &["deletes", "reject", "--all", "--yes"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("rejected 1 held deletes; released the quarantine of 1 users"),
        "{stdout}"
    );
    assert_eq!(dead_count(&system.broker, &system.topology).await, 0);
    system
        .post(&event(
            kept,
            "moss.user.password_changed.v1",
            12,
            json!({"password": {"clear": "Second-Passw0rd!"}}),
        ))
        .await;
    eventually(
        Duration::from_secs(10),
        "the user's later event applies",
        || {
            system
                .emulator
                .password_matches(kept_upn, "Second-Passw0rd!")
                == Some(true)
        },
    )
    .await;
    assert_eq!(deleted(&system, &users), 1);
    assert_eq!(system.worker().counters().quarantined, 0);
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_the_letter_that_blocks_a_user_releases_its_quarantine() {
    let system = System::spawn_with_delete_threshold(1).await;
    let users = add_users(&system, 2).await;
    system
        .post(&event(&users[0].0, "moss.user.removed.v1", 11, json!({})))
        .await;
    eventually(Duration::from_secs(10), "the first removal applies", || {
        deleted(&system, &users) == 1
    })
    .await;
    let (kept, kept_upn) = &users[1];
    system
        .post(&event(kept, "moss.user.removed.v1", 11, json!({})))
        .await;
    system
        .post(&event(
            kept,
            "moss.user.password_changed.v1",
            12,
            json!({"password": {"clear": "Second-Passw0rd!"}}),
        ))
        .await;
    dead_count_becomes(&system.broker, &system.topology, 2, Duration::from_secs(10)).await;

    let (code, stdout, stderr) = moss(
        &system.topology,
        &["dlq", "purge", "--class", "held", "--yes"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("released the quarantine of 1 subjects"),
        "{stdout}"
    );
    // The waiting letter stays; the user's next event applies.
    dead_count_becomes(&system.broker, &system.topology, 1, Duration::from_secs(10)).await;
    system
        .post(&event(
            kept,
            "moss.user.password_changed.v1",
            13,
            json!({"password": {"clear": "Third-Passw0rd!"}}),
        ))
        .await;
    eventually(
        Duration::from_secs(10),
        "the user's next event applies",
        || {
            system
                .emulator
                .password_matches(kept_upn, "Third-Passw0rd!")
                == Some(true)
        },
    )
    .await;
    assert_eq!(system.worker().counters().quarantined, 1);
    system.finish().await;
}
