//! A worker stopped while a user's event waits to retry, with the user's later events waiting
//! behind it, gives them all back in order: nothing is nacked (a nack puts a delivery behind
//! the same subject's later deliveries the worker already holds, which is how chaos seed
//! 874904 lost deactivations); the channel's close returns them in the order delivered, and
//! the next worker applies them in that order. (The earlier code passes this one too: its
//! running job happened to nack before the waiting ones. The seed's own path, a lane drained
//! while a later delivery was still in flight, has no deterministic test yet.)

mod support;

use std::time::Duration;

use moss_emulator::{FaultAction, FaultPlan};
use moss_workers::RetrySettings;
use serde_json::json;
use support::{System, added, eventually, new_subject};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_mid_retry_gives_a_users_events_back_in_order() {
    // A long retry wait, so that the worker stops while the password change sits in it.
    let mut system = System::spawn_with(|settings| {
        settings.retry = RetrySettings {
            first_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(30),
            max_attempts: 4,
            budget: Duration::from_secs(600),
        };
    })
    .await;
    let subject = new_subject();
    let local = format!("handback-{}", &subject[..6]);
    let upn = system.upn(&local);
    let added_event = {
        let data = added(&system, &local, "First-Passw0rd!");
        system.event(&subject, "moss.user.added.v1", data)
    };
    system.post(&added_event).await;
    eventually(Duration::from_secs(30), "the user is created", || {
        system.worker().counters().applied >= 1
    })
    .await;

    // The password change fails (503s) and waits 30 s to try again; the deactivation and
    // reactivation arrive meanwhile and wait behind it in the user's lane.
    let outage = system.emulator.install_fault(FaultPlan {
        method: Some("PATCH".into()),
        path: "/v1.0/**".into(),
        cmdlet: None,
        action: FaultAction::Status {
            status: 503,
            retry_after: None,
            body: None,
        },
        count: None,
        probability: None,
    });
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
    for event in [&password_event, &deactivated_event, &reactivated_event] {
        system.post(event).await;
    }
    eventually(
        Duration::from_secs(30),
        "the password change waits to retry with the other two behind it",
        || {
            let counters = system.worker().counters();
            counters.retries >= 1 && counters.received >= 4
        },
    )
    .await;

    // Stop it there, and start it again with the tenant healthy.
    system.stop_worker().await;
    system.emulator.remove_fault(outage);
    system.start_worker(|_| {}).await;
    eventually(
        Duration::from_secs(30),
        "the restarted worker settles the three events",
        || {
            let counters = system.worker().counters();
            counters.applied + counters.already_applied + counters.stale >= 3
        },
    )
    .await;
    let counters = system.worker().counters();
    assert_eq!(
        counters.stale, 0,
        "no event of the user came back out of order"
    );
    assert_eq!(
        system.emulator.password_matches(&upn, "Second-Passw0rd!"),
        Some(true),
        "the password change applied"
    );
    let user = system.user(&upn).expect("the user exists");
    assert_eq!(user["accountEnabled"], true, "reactivated last");
    assert_eq!(system.dead_letter_count().await, 0);
    system.finish().await;
}
