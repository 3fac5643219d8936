//! What the `moss aliases` and `moss groups` tests share: the real `moss` binary pointed at the
//! in-process emulator (as the tenant) and producer, and users created through the worker.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{AMQP_URL, PARTITIONS, System, event};

/// Runs `moss` against this system's tenant and producer; standard input is not a terminal.
pub fn moss(system: &System, args: &[&str]) -> (i32, String, String) {
    let tenant = system.emulator.tenant();
    let base = system.emulator.base_url();
    let output = Command::new(env!("CARGO_BIN_EXE_moss"))
        .args(args)
        .env("MOSS_AMQP_URL", AMQP_URL)
        .env("MOSS_TOPOLOGY_PREFIX", system.topology.prefix().as_str())
        .env("MOSS_PARTITIONS", PARTITIONS.to_string())
        .env("MOSS_TENANT_ID", tenant.tenant_id.to_string())
        .env("MOSS_CLIENT_ID", tenant.client_id.to_string())
        .env("MOSS_CLIENT_SECRET", &tenant.client_secret)
        .env("MOSS_GRAPH_URL", &base)
        .env("MOSS_LOGIN_URL", &base)
        .env("MOSS_EXCHANGE_URL", &base)
        .env(
            "MOSS_INGEST_ADDR",
            system.producer.as_ref().unwrap().ingest_addr().to_string(),
        )
        .env_remove("MOSS_CLIENT_SECRET_FILE")
        .env_remove("MOSS_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("moss runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `moss` and expects success.
pub fn moss_ok(system: &System, args: &[&str]) -> String {
    let (code, stdout, stderr) = moss(system, args);
    assert_eq!(code, 0, "moss {args:?} failed: {stderr}\n{stdout}");
    stdout
}

/// Runs `moss` and expects one plain sentence on stderr and a non-zero exit, nothing published.
pub fn moss_refused(system: &System, args: &[&str]) -> String {
    let (code, stdout, stderr) = moss(system, args);
    assert_ne!(code, 0, "moss {args:?} should fail: {stdout}");
    assert!(!stdout.contains("published"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// A directory user with an online account (licensed for Exchange, so with a mailbox).
#[derive(Debug, Clone)]
pub struct TestUser {
    pub subject: String,
    pub upn: String,
}

/// Creates users through the producer and the worker and waits until each has a mailbox.
pub async fn add_users(system: &System, names: &[&str]) -> Vec<TestUser> {
    let tenant = system.emulator.tenant();
    let sku = tenant
        .skus
        .iter()
        .find(|sku| sku.exchange)
        .expect("an Exchange SKU")
        .sku_part_number
        .clone();
    let mut users = Vec::new();
    for name in names {
        let subject = uuid::Uuid::new_v4().to_string();
        let upn = format!("{name}@{}", tenant.default_domain);
        system
            .post(&event(
                &subject,
                "moss.user.added.v1",
                10,
                json!({
                    "account_name": name,
                    "display_name": format!("User {name}"),
                    "online_account": {"upn": upn, "usage_location": "DE", "licenses": [sku]},
                    "initial_password": {"clear": "First-Passw0rd!"},
                }),
            ))
            .await;
        users.push(TestUser { subject, upn });
    }
    for user in &users {
        wait_for(system, &format!("{} has a mailbox", user.upn), |system| {
            system
                .emulator
                .user(&user.upn)
                .is_some_and(|u| u["_emulator"]["mailbox"]["provisioned"].as_bool() == Some(true))
        })
        .await;
    }
    users
}

/// Polls the system until `check` holds (at most 20 s).
pub async fn wait_for(system: &System, what: &str, check: impl Fn(&System) -> bool) {
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check(system) {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Events the worker has settled so far (applied, done before, dead-lettered or stale).
pub fn settled(system: &System) -> u64 {
    let counters = system.worker().counters();
    counters.applied + counters.already_applied + counters.dead_lettered + counters.stale
}

/// The distribution group with this Exchange name, from the tenant's state.
pub fn group(system: &System, name: &str) -> Option<Value> {
    system
        .emulator
        .state()
        .groups
        .into_iter()
        .find(|group| group["_exchange"]["name"].as_str() == Some(name))
}

/// The tenant object id of a user.
pub fn user_id(system: &System, upn: &str) -> String {
    system.emulator.user(upn).expect("the user exists")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The member ids of a group, sorted.
pub fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}
