//! The tenant misbehaving: outages, lost replies after a commit, random 5xx, throttling and
//! duplicate deliveries. Each compares the emulator's final state and its log of writes with
//! what the events ask for.

mod support;

use std::time::Duration;

use moss_emulator::{AfterCommit, FaultAction, FaultPlan, ThrottlingSettings};
use moss_workers::CircuitState;
use support::{System, added, assert_lifecycles, eventually, new_subject, post_lifecycles};

fn applied(system: &System) -> usize {
    let counters = system.worker().counters();
    (counters.applied + counters.already_applied) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_outage_dead_letters_nothing_and_drains_afterwards() {
    let mut system = System::spawn().await;
    let outage = system.emulator.install_fault(FaultPlan {
        method: None,
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
    let mut locals = Vec::new();
    for _ in 0..8 {
        let local = format!("out-{}", &new_subject()[..6]);
        let data = added(&system, &local, "First-Passw0rd!");
        let event = system.event(&new_subject(), "moss.user.added.v1", data);
        system.post(&event).await;
        locals.push(local);
    }
    eventually(Duration::from_secs(15), "the circuit opens", || {
        system.worker().circuit_state() != CircuitState::Closed
    })
    .await;
    assert_eq!(applied(&system), 0);
    system.emulator.remove_fault(outage);
    eventually(Duration::from_secs(20), "the backlog drains", || {
        applied(&system) >= locals.len()
    })
    .await;
    assert_eq!(system.worker().circuit_state(), CircuitState::Closed);
    for local in &locals {
        assert!(system.user(&system.upn(local)).is_some());
    }
    assert_eq!(system.worker().counters().dead_lettered, 0);
    assert_eq!(system.dead_letter_count().await, 0);
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_replies_after_commits_and_duplicate_deliveries_still_apply_each_event_once() {
    let mut system = System::spawn().await;
    for (method, path) in [
        ("POST", "/v1.0/users"),
        ("PATCH", "/v1.0/users/*"),
        ("POST", "/v1.0/users/*/assignLicense"),
    ] {
        system.emulator.install_fault(FaultPlan {
            method: Some(method.into()),
            path: path.into(),
            cmdlet: None,
            action: FaultAction::CommitThenFail {
                then: AfterCommit::Status {
                    status: 503,
                    retry_after: None,
                },
            },
            count: None,
            probability: Some(0.3),
        });
    }
    let (users, total) = post_lifecycles(&mut system, 8, 2).await;
    eventually(Duration::from_secs(25), "every event is applied", || {
        applied(&system) >= total
    })
    .await;
    assert_lifecycles(&system, &users);
    let counters = system.worker().counters();
    assert!(counters.duplicates >= 1, "{counters:?}");
    assert_eq!(counters.dead_lettered, 0);
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_random_server_errors_change_nothing_in_the_end() {
    let mut system = System::spawn().await;
    system.emulator.install_fault(FaultPlan {
        method: None,
        path: "/v1.0/**".into(),
        cmdlet: None,
        action: FaultAction::Status {
            status: 500,
            retry_after: None,
            body: None,
        },
        count: None,
        probability: Some(0.2),
    });
    let (users, total) = post_lifecycles(&mut system, 10, 1).await;
    eventually(Duration::from_secs(25), "every event is applied", || {
        applied(&system) >= total
    })
    .await;
    assert_lifecycles(&system, &users);
    assert_eq!(system.worker().counters().dead_lettered, 0);
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_obeyed_and_the_write_rate_adapts_without_a_storm_of_429s() {
    let mut system = System::spawn().await;
    system.emulator.set_throttling(ThrottlingSettings {
        enabled: true,
        // 8 writes per 2 s: the worker starts at 20/s and must find about 4/s.
        write_limit: 8,
        write_window_secs: 2,
        ..ThrottlingSettings::default()
    });
    let initial_rate = system.worker().write_rate();
    let (users, total) = post_lifecycles(&mut system, 8, 1).await;
    eventually(Duration::from_secs(28), "every event is applied", || {
        applied(&system) >= total
    })
    .await;
    assert_lifecycles(&system, &users);
    let requests = system.emulator.requests();
    let throttled = requests
        .iter()
        .filter(|request| request.status == Some(429))
        .count();
    let writes = requests
        .iter()
        .filter(|request| request.write && request.committed)
        .count();
    assert!(throttled >= 1, "the test should have met the limit");
    assert!(
        throttled * 4 <= writes,
        "{throttled} throttled answers for {writes} writes is a storm"
    );
    assert!(system.worker().write_rate() < initial_rate);
    assert_eq!(system.worker().counters().dead_lettered, 0);
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_secret_pauses_the_worker_and_shutdown_hands_the_backlog_back_intact() {
    let mut system = System::spawn_without_worker().await;
    system
        .start_worker(|settings| {
            settings.online.client_secret = secrecy::SecretString::from("not-the-secret");
        })
        .await;
    let mut locals = Vec::new();
    for _ in 0..3 {
        let local = format!("cfg-{}", &new_subject()[..6]);
        let data = added(&system, &local, "First-Passw0rd!");
        let event = system.event(&new_subject(), "moss.user.added.v1", data);
        system.post(&event).await;
        locals.push(local);
    }
    eventually(
        Duration::from_secs(15),
        "the circuit opens for configuration",
        || {
            matches!(
                system.worker().circuit_state(),
                CircuitState::Open {
                    cause: moss_workers::FailureClass::Configuration
                } | CircuitState::Probing {
                    cause: moss_workers::FailureClass::Configuration
                }
            )
        },
    )
    .await;
    system.stop_worker().await;
    assert_eq!(system.dead_letter_count().await, 0);
    assert!(system.emulator.state().users.is_empty());

    // The operator fixes the secret; the same store, the same queues.
    system.start_worker(|_| {}).await;
    eventually(Duration::from_secs(15), "the backlog drains", || {
        applied(&system) >= locals.len()
    })
    .await;
    for local in &locals {
        assert!(system.user(&system.upn(local)).is_some());
    }
    assert_eq!(system.worker().counters().dead_lettered, 0);
    system.finish().await;
}
