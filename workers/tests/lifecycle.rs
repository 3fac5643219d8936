//! End to end through the producer, RabbitMQ, the worker and the emulator: lifecycles,
//! dedupe, stale events, bad input, dead letters and quarantine.

mod support;

use std::time::Duration;

use moss_broker::Headers;
use moss_emulator::{FaultAction, FaultPlan};
use serde_json::json;
use support::{System, eventually, is_deleted, new_subject};

fn added(system: &System, local: &str, password: &str) -> serde_json::Value {
    json!({
        "account_name": local,
        "display_name": format!("User {local}"),
        "given_name": "Test",
        "surname": local,
        "online_account": {"upn": system.upn(local), "usage_location": "DE", "licenses": [system.sku]},
        "initial_password": {"clear": password},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycles_of_many_users_end_in_exactly_the_expected_tenant_state() {
    let mut system = System::spawn().await;
    let users: Vec<(String, String, usize)> = (0..10)
        .map(|index| {
            (
                new_subject(),
                format!("life{index}-{}", &new_subject()[..6]),
                index % 5 + 1,
            )
        })
        .collect();
    // Interleave the users' events, so lanes of one partition run side by side.
    for step in 0..5 {
        for (subject, local, steps) in &users {
            if step >= *steps {
                continue;
            }
            let event = match step {
                0 => system.event(
                    subject,
                    "moss.user.added.v1",
                    added(&system, local, "First-Passw0rd!"),
                ),
                1 => system.event(
                    subject,
                    "moss.user.password_changed.v1",
                    json!({"password": {"clear": "Second-Passw0rd!"}}),
                ),
                2 => system.event(
                    subject,
                    "moss.user.deactivated.v1",
                    json!({"reason": "left the company"}),
                ),
                3 => system.event(subject, "moss.user.reactivated.v1", json!({})),
                _ => system.event(subject, "moss.user.removed.v1", json!({})),
            };
            system.post(&event).await;
        }
    }
    let total: usize = users.iter().map(|(_, _, steps)| steps).sum();
    eventually(Duration::from_secs(25), "every event is applied", || {
        let counters = system.worker().counters();
        (counters.applied + counters.already_applied) as usize >= total
    })
    .await;
    for (_, local, steps) in &users {
        let upn = system.upn(local);
        let user = system.user(&upn).unwrap_or_else(|| panic!("{upn} exists"));
        match steps {
            1 => {
                assert_eq!(user["accountEnabled"], true);
                assert_eq!(
                    system.emulator.password_matches(&upn, "First-Passw0rd!"),
                    Some(true)
                );
                assert_eq!(user["usageLocation"], "DE");
                assert_eq!(user["assignedLicenses"].as_array().map(Vec::len), Some(1));
            }
            2 => {
                assert_eq!(user["accountEnabled"], true);
                assert_eq!(
                    system.emulator.password_matches(&upn, "Second-Passw0rd!"),
                    Some(true)
                );
            }
            3 => assert_eq!(user["accountEnabled"], false, "{upn} is deactivated"),
            4 => assert_eq!(user["accountEnabled"], true, "{upn} is reactivated"),
            _ => assert!(is_deleted(&user), "{upn} is removed"),
        }
    }
    // Exactly one create per user.
    let creates = system
        .emulator
        .writes()
        .iter()
        .filter(|request| {
            request.method == "POST" && request.path == "/v1.0/users" && request.committed
        })
        .count();
    assert_eq!(creates, users.len());
    assert_eq!(system.worker().counters().dead_lettered, 0);
    eventually(
        Duration::from_secs(10),
        "every outcome event is published",
        || system.worker().counters().outcomes_published as usize >= total,
    )
    .await;
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_is_applied_once_and_an_older_event_is_recognised_as_stale() {
    let mut system = System::spawn().await;
    let subject = new_subject();
    let local = format!("dup-{}", &new_subject()[..6]);
    let create = system.event(
        &subject,
        "moss.user.added.v1",
        added(&system, &local, "First-Passw0rd!"),
    );
    let older = system.event(
        &subject,
        "moss.user.deactivated.v1",
        json!({"reason": "old news"}),
    );
    let newer = system.event(&subject, "moss.user.reactivated.v1", json!({}));
    system.post(&create).await;
    system.post(&create).await;
    system.post(&newer).await;
    eventually(
        Duration::from_secs(15),
        "create and reactivate are applied",
        || {
            let counters = system.worker().counters();
            counters.applied + counters.already_applied >= 2 && counters.duplicates >= 1
        },
    )
    .await;
    system.post(&older).await;
    eventually(Duration::from_secs(10), "the older event is stale", || {
        system.worker().counters().stale >= 1
    })
    .await;
    let user = system.user(&system.upn(&local)).unwrap();
    assert_eq!(
        user["accountEnabled"], true,
        "the stale deactivation was not applied"
    );
    let counters = system.worker().counters();
    assert_eq!(counters.duplicates, 1);
    assert_eq!(counters.dead_lettered, 0);
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_does_not_decode_is_dead_lettered_at_once_and_the_worker_carries_on() {
    let mut system = System::spawn().await;
    system
        .publish_raw(
            0,
            "not-an-event",
            br#"{"specversion":"1.0","type":"moss.user.nonsense.v1"}"#,
            Headers::new(),
        )
        .await;
    let subject = new_subject();
    let local = format!("after-{}", &new_subject()[..6]);
    let event = system.event(
        &subject,
        "moss.user.added.v1",
        added(&system, &local, "First-Passw0rd!"),
    );
    system.post(&event).await;
    let letters = system.take_dead_letters(1, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.message_id.as_deref(), Some("not-an-event"));
    assert_eq!(
        letter.headers.get_str(moss_workers::ERROR_CLASS),
        Some("invalid")
    );
    assert_eq!(letter.headers.get_i64(moss_workers::ATTEMPTS), Some(0));
    let reason = letter.headers.get_str(moss_workers::ERROR_MESSAGE).unwrap();
    assert!(
        reason.contains("/type") || reason.contains("type"),
        "{reason}"
    );
    eventually(Duration::from_secs(10), "the next event is applied", || {
        system.worker().counters().applied >= 1
    })
    .await;
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_quarantines_only_its_user_and_a_replay_restores_the_order() {
    let mut system = System::spawn().await;
    // The first create is refused for good (400), once.
    system.emulator.install_fault(FaultPlan {
        method: Some("POST".into()),
        path: "/v1.0/users".into(),
        cmdlet: None,
        action: FaultAction::Status {
            status: 400,
            retry_after: None,
            body: Some(json!({"error": {"code": "Request_BadRequest", "message": "Property usageLocation is invalid."}})),
        },
        count: Some(1),
        probability: None,
    });
    let failing = new_subject();
    let failing_local = format!("fail-{}", &new_subject()[..6]);
    let create = system.event(
        &failing,
        "moss.user.added.v1",
        added(&system, &failing_local, "First-Passw0rd!"),
    );
    system.post(&create).await;
    eventually(
        Duration::from_secs(10),
        "the create is dead-lettered",
        || system.worker().counters().dead_lettered >= 1,
    )
    .await;
    let behind = system.event(
        &failing,
        "moss.user.password_changed.v1",
        json!({"password": {"clear": "Second-Passw0rd!"}}),
    );
    system.post(&behind).await;
    // Another user of any partition goes on.
    let other = new_subject();
    let other_local = format!("other-{}", &new_subject()[..6]);
    let other_event = system.event(
        &other,
        "moss.user.added.v1",
        added(&system, &other_local, "First-Passw0rd!"),
    );
    system.post(&other_event).await;
    eventually(
        Duration::from_secs(10),
        "the other user is applied and the later event quarantined",
        || {
            let counters = system.worker().counters();
            counters.applied >= 1 && counters.quarantined >= 1
        },
    )
    .await;
    assert!(system.user(&system.upn(&other_local)).is_some());
    assert!(system.user(&system.upn(&failing_local)).is_none());

    let letters = system.take_dead_letters(2, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 2);
    let first = &letters[0];
    assert_eq!(first.message_id.as_deref(), create["id"].as_str());
    assert_eq!(
        first.headers.get_str(moss_workers::ERROR_CLASS),
        Some("permanent")
    );
    assert_eq!(first.headers.get_i64(moss_workers::ERROR_STATUS), Some(400));
    assert_eq!(
        first.headers.get_str(moss_workers::ERROR_CODE),
        Some("Request_BadRequest")
    );
    assert!(first.headers.get_str(moss_workers::REQUEST_ID).is_some());
    assert_eq!(
        first.headers.get_str(moss_workers::SUBJECT),
        Some(failing.as_str())
    );
    assert_eq!(
        first.headers.get_str(moss_workers::EVENT_TYPE),
        Some("moss.user.added.v1")
    );
    let second = &letters[1];
    assert_eq!(
        second.headers.get_str(moss_workers::ERROR_CLASS),
        Some("quarantined")
    );
    assert!(!String::from_utf8_lossy(&first.body).contains("First-Passw0rd!"));

    // Replay both, in order, as `moss dlq replay` does: same body and id, moss-replay-of set.
    for letter in &letters {
        let id = letter.message_id.clone().unwrap();
        let headers = Headers::new()
            .with_text(moss_workers::REPLAY_OF, id.clone())
            .with_int(moss_workers::ATTEMPT, 2);
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
    let upn = system.upn(&failing_local);
    eventually(
        Duration::from_secs(15),
        "the replay applies the user and then the password",
        || system.emulator.password_matches(&upn, "Second-Passw0rd!") == Some(true),
    )
    .await;
    system.finish().await;
}
