//! Issue 7's done-when for the mass-delete guard, end to end: 600 removals in one window, through
//! the producer, the real RabbitMQ and a worker whose guard holds removals past 500, delete 500
//! online accounts and hold 100, until `moss deletes approve --all` (the real binary) lets them
//! through; then every account is deleted, each once.

use std::time::Duration;

use moss_online::{
    AccountState, Anchor, DisplayName, MailNickname, NewPassword, NewUser, OnlineClient,
    OnlineConfig, PasswordChange, UsageLocation, UserPrincipalName,
};
use secrecy::SecretString;
use serde_json::{Value, json};

mod support;

use support::*;

const USERS: usize = 600;
const THRESHOLD: u32 = 500;

/// Users that moss manages, made straight in the tenant (with moss's anchor) so that the test
/// spends its time on the removals.
async fn seed_users(system: &System) -> Vec<(String, String)> {
    let tenant = system.emulator.tenant();
    let config = OnlineConfig::new(
        tenant.tenant_id.to_string(),
        tenant.client_id.to_string(),
        SecretString::from(tenant.client_secret.clone()),
    )
    .with_single_base_url(&system.emulator.base_url());
    let online = OnlineClient::new(config).unwrap();
    let mut users = Vec::with_capacity(USERS);
    for n in 0..USERS {
        let subject = uuid::Uuid::new_v4().to_string();
        let name = format!("gone{n}");
        let upn = format!("{name}@{}", tenant.default_domain);
        let new = NewUser {
            user_principal_name: UserPrincipalName::parse(&upn).unwrap(),
            display_name: DisplayName::parse(&format!("Gone {n}")).unwrap(),
            mail_nickname: MailNickname::parse(&name).unwrap(),
            given_name: None,
            surname: None,
            usage_location: UsageLocation::parse("DE").unwrap(),
            password: NewPassword {
                password: SecretString::from("First-Passw0rd!".to_owned()),
                change: PasswordChange::RequiredAtNextSignIn,
            },
            account_state: AccountState::Enabled,
            anchor: Anchor::parse(&subject).unwrap(),
        };
        online.create_user(&new).await.expect("the user is created");
        users.push((subject, upn));
    }
    users
}

fn deleted(system: &System) -> usize {
    system
        .emulator
        .state()
        .users
        .iter()
        .filter(|user| user["_emulator"]["deleted"].as_bool() == Some(true))
        .count()
}

/// Posts events to the producer's ingest as batches.
async fn post_batch(system: &System, events: &[Value]) {
    let addr = system.producer.as_ref().unwrap().ingest_addr();
    let response = system
        .http
        .post(format!("http://{addr}/v1/events"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(serde_json::to_vec(events).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_removals_in_one_window_are_held_at_five_hundred_until_approved() {
    let system = System::spawn_with_delete_threshold(THRESHOLD).await;
    let users = seed_users(&system).await;
    let removals: Vec<Value> = users
        .iter()
        .map(|(subject, _)| event(subject, "moss.user.removed.v1", 20, json!({})))
        .collect();
    for chunk in removals.chunks(100) {
        post_batch(&system, chunk).await;
    }

    let held = USERS as u32 - THRESHOLD;
    dead_count_becomes(
        &system.broker,
        &system.topology,
        held,
        Duration::from_secs(45),
    )
    .await;
    eventually(Duration::from_secs(30), "500 removals apply", || {
        system.worker().counters().applied >= u64::from(THRESHOLD)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        deleted(&system),
        THRESHOLD as usize,
        "held at the threshold"
    );

    let (code, stdout, stderr) = moss(&system.topology, &["deletes", "pending", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let pending: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(pending["held"], held);

    let (code, stdout, stderr) = moss(&system.topology, &["deletes", "approve", "--all"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("approved {held} held deletes")),
        "{stdout}"
    );
    eventually(Duration::from_secs(30), "every account is deleted", || {
        deleted(&system) == USERS
    })
    .await;
    dead_count_becomes(&system.broker, &system.topology, 0, Duration::from_secs(10)).await;
    let counters = system.worker().counters();
    assert_eq!(counters.applied, USERS as u64, "each removal applied once");
    system.finish().await;
}
