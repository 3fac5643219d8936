//! A partition taken over by another worker: the standby learns what the active worker applied
//! (from its own outcome queue) before it admits anything, so redeliveries and producer
//! duplicates of events the old owner applied are duplicates or stale there, never re-applied.

mod support;

use std::time::Duration;

use moss_workers::RunningWorker;
use serde_json::json;
use support::{System, added, event_with_sequence, new_subject};
use tokio_util::sync::CancellationToken;

/// Waits until every partition queue has `consumers` (active) consumers.
async fn wait_for_consumers(system: &System, consumers: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for partition in 0..support::PARTITIONS {
        let queue = system.topology.partition_queue(partition);
        loop {
            let depth = system.broker.queue_depth(&queue).await.unwrap();
            if depth.consumers >= consumers {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{queue} has {} consumers, expected {consumers}",
                depth.consumers
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start(system: &mut System, name: &str) -> RunningWorker {
    let settings = system.worker_settings(system.dir.path().join(name), name);
    let worker = moss_workers::start(settings, CancellationToken::new())
        .await
        .expect("worker starts");
    system.note_outcome_queue(worker.outcome_queue());
    worker
}

fn writes_about(system: &System, account_id: &str) -> usize {
    system
        .emulator
        .writes()
        .iter()
        .filter(|request| request.path.contains(account_id))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_taking_over_treats_the_old_owners_events_as_done_and_applies_only_newer_ones() {
    let mut system = System::spawn_without_worker().await;
    // Worker A subscribes first, so single active consumer makes it the active one everywhere;
    // worker B waits on standby.
    let worker_a = start(&mut system, "worker-a").await;
    wait_for_consumers(&system, 1).await;
    let worker_b = start(&mut system, "worker-b").await;
    // A single-active-consumer queue counts only its active consumer: give B's consumers a
    // moment to register behind A's (the assertion on B's `received` below checks the roles).
    tokio::time::sleep(Duration::from_secs(2)).await;

    let subject = new_subject();
    let local = format!("takeover-{}", &subject[..6]);
    let upn = system.upn(&local);
    let added_event = {
        let data = added(&system, &local, "First-Passw0rd!");
        system.event(&subject, "moss.user.added.v1", data)
    };
    let password_event = system.event(
        &subject,
        "moss.user.password_changed.v1",
        json!({"password": {"clear": "Second-Passw0rd!"}}),
    );
    let deactivated_event = system.event(
        &subject,
        "moss.user.deactivated.v1",
        json!({"reason": "left the company"}),
    );
    let reactivated_event = system.event(&subject, "moss.user.reactivated.v1", json!({}));
    for event in [
        &added_event,
        &password_event,
        &deactivated_event,
        &reactivated_event,
    ] {
        system.post(event).await;
    }
    wait_until("worker A applies the four events", || {
        worker_a.counters().applied + worker_a.counters().already_applied >= 4
    })
    .await;
    let user = system.user(&upn).expect("the user exists");
    assert_eq!(user["accountEnabled"], true, "reactivated last");
    assert_eq!(worker_b.counters().received, 0, "B was on standby");

    // A stops (its partitions move to B); then the earlier events come again, as redeliveries
    // and a producer's duplicates would, plus an older event under a new id.
    worker_a.shutdown().await.expect("worker A stops");
    let account_id = user["id"].as_str().unwrap().to_owned();
    let writes_before = writes_about(&system, &account_id);
    let older_under_new_id = event_with_sequence(
        &subject,
        "moss.user.deactivated.v1",
        json!({"reason": "re-emitted"}),
        deactivated_event["sequence"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    );
    for event in [
        &added_event,
        &password_event,
        &deactivated_event,
        &older_under_new_id,
    ] {
        system.post(event).await;
    }
    wait_until("worker B settles the four old events", || {
        let counters = worker_b.counters();
        counters.duplicates + counters.stale >= 4
    })
    .await;
    let counters = worker_b.counters();
    assert_eq!(
        counters.duplicates, 3,
        "the old owner's events are known to B"
    );
    assert_eq!(counters.stale, 1, "an older sequence is stale on B");
    assert_eq!(counters.applied + counters.already_applied, 0);
    assert_eq!(counters.dead_lettered, 0);
    let user = system.user(&upn).expect("the user exists");
    assert_eq!(
        user["accountEnabled"], true,
        "the tenant did not go back to deactivated"
    );
    assert_eq!(
        system.emulator.password_matches(&upn, "Second-Passw0rd!"),
        Some(true)
    );
    assert_eq!(
        writes_about(&system, &account_id),
        writes_before,
        "B wrote nothing for the old events"
    );

    // A newer event is B's to apply.
    let removed_event = system.event(&subject, "moss.user.removed.v1", json!({}));
    system.post(&removed_event).await;
    wait_until("worker B applies the removal", || {
        worker_b.counters().applied >= 1
    })
    .await;
    let user = system.user(&upn).expect("a removed user is soft-deleted");
    assert!(support::is_deleted(&user), "removed by B");
    assert_eq!(system.dead_letter_count().await, 0);

    worker_b.shutdown().await.expect("worker B stops");
    system.finish().await;
}
