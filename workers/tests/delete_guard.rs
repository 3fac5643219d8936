//! The mass-delete guard end to end (producer, RabbitMQ, worker, emulator): removals beyond the
//! threshold are held as dead letters until approved; a purged blocking letter's quarantine is
//! released by a control message.

mod support;

use std::time::Duration;

use moss_broker::{Delivery, Headers};
use moss_workers::{DeleteGuardSettings, ReleaseQuarantine};
use serde_json::json;
use support::{System, added, eventually, is_deleted, new_subject};

fn guard(removals: u32) -> DeleteGuardSettings {
    DeleteGuardSettings {
        removals,
        deactivations: 100,
        window: Duration::from_secs(600),
        percent_of_mapped: None,
    }
}

/// Adds `count` users and waits until they are applied; returns (subject, local part).
async fn add_users(system: &mut System, count: usize) -> Vec<(String, String)> {
    let mut users = Vec::new();
    for _ in 0..count {
        let subject = new_subject();
        let local = format!("dg-{}", &new_subject()[..8]);
        let event = system.event(
            &subject,
            "moss.user.added.v1",
            added(system, &local, "First-Passw0rd!"),
        );
        system.post(&event).await;
        users.push((subject, local));
    }
    let expected = count as u64;
    eventually(Duration::from_secs(15), "the users are created", || {
        system.worker().counters().applied >= expected
    })
    .await;
    users
}

/// Republishes a dead letter as `moss deletes approve` does.
async fn replay(system: &System, letter: &Delivery, approved: bool) {
    let id = letter.message_id.clone().unwrap();
    let mut headers = Headers::new()
        .with_text(moss_workers::REPLAY_OF, id.clone())
        .with_int(moss_workers::ATTEMPT, 2);
    if approved {
        headers = headers.with_text(moss_workers::DELETE_APPROVED, "true");
    }
    let partition = letter
        .headers
        .get_str(moss_workers::ORIGINAL_ROUTING_KEY)
        .unwrap()[1..]
        .parse()
        .unwrap();
    system
        .publish_raw(partition, &id, &letter.body, headers)
        .await;
}

fn deleted_count(system: &System, users: &[(String, String)]) -> usize {
    users
        .iter()
        .filter(|(_, local)| {
            system
                .user(&system.upn(local))
                .is_some_and(|user| is_deleted(&user))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_beyond_the_threshold_are_held_until_an_operator_approves_them() {
    let mut system = System::spawn_with(|settings| settings.delete_guard = guard(5)).await;
    let users = add_users(&mut system, 8).await;
    let mut removals = Vec::new();
    for (subject, _) in &users {
        let event = system.event(subject, "moss.user.removed.v1", json!({}));
        system.post(&event).await;
        removals.push(event["id"].as_str().unwrap().to_owned());
    }
    eventually(
        Duration::from_secs(15),
        "five removals apply and three are held",
        || {
            let counters = system.worker().counters();
            counters.applied >= 13 && counters.dead_lettered >= 3
        },
    )
    .await;
    assert_eq!(deleted_count(&system, &users), 5);
    let counters = system.worker().counters();
    assert_eq!((counters.applied, counters.dead_lettered), (13, 3));

    let mut letters = system.take_dead_letters(3, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 3);
    for letter in &letters {
        assert_eq!(
            letter.headers.get_str(moss_workers::ERROR_CLASS),
            Some("held")
        );
        assert_eq!(
            letter.headers.get_str(moss_workers::ERROR_CODE),
            Some("DeleteThresholdReached")
        );
        assert!(removals.contains(letter.message_id.as_ref().unwrap()));
    }
    letters.sort_by_key(|letter| {
        letter
            .headers
            .get_str(moss_workers::DEAD_AT)
            .unwrap_or_default()
            .to_owned()
    });

    // A plain replay is still over the threshold: held again, nothing deleted.
    replay(&system, &letters[0], false).await;
    eventually(
        Duration::from_secs(10),
        "the plain replay is held again",
        || system.worker().counters().dead_lettered >= 4,
    )
    .await;
    assert_eq!(deleted_count(&system, &users), 5);
    let again = system.take_dead_letters(1, Duration::from_secs(10)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].headers.get_str(moss_workers::ERROR_CLASS),
        Some("held")
    );
    letters[0] = again.into_iter().next().unwrap();

    // Approved, in order: each applies once, over the threshold.
    for letter in &letters {
        replay(&system, letter, true).await;
    }
    eventually(
        Duration::from_secs(15),
        "the approved removals apply",
        || deleted_count(&system, &users) == 8,
    )
    .await;
    eventually(Duration::from_secs(5), "the counters settle", || {
        system.worker().counters().applied == 16
    })
    .await;
    assert_eq!(system.worker().counters().dead_lettered, 4);
    assert_eq!(system.dead_letter_count().await, 0);
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_held_removal_and_releasing_its_quarantine_lets_the_user_go_on() {
    let mut system = System::spawn_with(|settings| settings.delete_guard = guard(1)).await;
    let users = add_users(&mut system, 2).await;
    let (first, _) = &users[0];
    let (kept, kept_local) = &users[1];
    let removal = system.event(first, "moss.user.removed.v1", json!({}));
    system.post(&removal).await;
    eventually(Duration::from_secs(10), "the first removal applies", || {
        system.worker().counters().applied >= 3
    })
    .await;
    let held = system.event(kept, "moss.user.removed.v1", json!({}));
    system.post(&held).await;
    let behind = system.event(
        kept,
        "moss.user.password_changed.v1",
        json!({"password": {"clear": "Second-Passw0rd!"}}),
    );
    system.post(&behind).await;
    eventually(
        Duration::from_secs(10),
        "the second removal is held and the user's next event waits behind it",
        || system.worker().counters().quarantined >= 1,
    )
    .await;

    // Reject, as `moss deletes reject` does: purge both letters, then release the quarantine.
    let letters = system.take_dead_letters(2, Duration::from_secs(10)).await;
    let classes: Vec<_> = letters
        .iter()
        .map(|letter| letter.headers.get_str(moss_workers::ERROR_CLASS).unwrap())
        .collect();
    assert_eq!(classes, ["held", "quarantined"]);
    // A release naming another event leaves the quarantine alone.
    let publisher = system.broker.publisher().await.unwrap();
    let wrong = ReleaseQuarantine {
        subject: moss_schemas::Subject::parse(kept).unwrap(),
        blocking_event_id: behind["id"].as_str().unwrap().to_owned(),
    };
    publisher
        .publish(wrong.message(&system.topology))
        .await
        .unwrap();
    let still = system.event(
        kept,
        "moss.user.password_changed.v1",
        json!({"password": {"clear": "Third-Passw0rd!"}}),
    );
    system.post(&still).await;
    eventually(
        Duration::from_secs(10),
        "the user stays quarantined",
        || system.worker().counters().quarantined >= 2,
    )
    .await;
    let release = ReleaseQuarantine {
        subject: moss_schemas::Subject::parse(kept).unwrap(),
        blocking_event_id: held["id"].as_str().unwrap().to_owned(),
    };
    publisher
        .publish(release.message(&system.topology))
        .await
        .unwrap();
    let _ = publisher.close().await;
    let after = system.event(
        kept,
        "moss.user.password_changed.v1",
        json!({"password": {"clear": "Fourth-Passw0rd!"}}),
    );
    system.post(&after).await;
    let upn = system.upn(kept_local);
    eventually(
        Duration::from_secs(10),
        "the user's later event applies",
        || system.emulator.password_matches(&upn, "Fourth-Passw0rd!") == Some(true),
    )
    .await;
    assert!(!is_deleted(&system.user(&upn).unwrap()));
    assert_eq!(system.worker().counters().quarantined, 2);
    system.finish().await;
}
