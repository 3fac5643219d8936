//! `moss groups` run as the binary against the real RabbitMQ, with the emulator as the tenant
//! and the producer and a worker in this process: a group with a nested group and members is
//! created, its membership changes, `groups user` shows one user's memberships (through the
//! nesting too), a group that would contain itself is refused before anything is published,
//! and removal takes the group out of the tenant and out of the groups that held it.

use std::time::Duration;

use serde_json::Value;

mod admin;
mod support;

use admin::*;
use support::System;

/// Waits until the worker has settled `count` more events than `before`.
async fn settles(system: &System, before: u64, count: u64) {
    wait_for(system, "the worker settles the events", |system| {
        settled(system) >= before + count
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_groups_membership_changes_memberships_and_removal() {
    let system = System::spawn().await;
    let users = add_users(&system, &["ana", "ben", "cem"]).await;
    let (ana, ben, cem) = (&users[0], &users[1], &users[2]);
    let ana_id = user_id(&system, &ana.upn);
    let ben_id = user_id(&system, &ben.upn);
    let cem_id = user_id(&system, &cem.upn);

    // A group with one member named by subject; outside senders refused.
    let before = settled(&system);
    let plan = moss_ok(
        &system,
        &[
            "groups",
            "add",
            "Managers",
            "--alias",
            "managers",
            "--allow-external-senders",
            "false",
            "--member",
            &ana.subject,
            "--yes",
        ],
    );
    assert!(
        plan.contains("plan: create the distribution group Managers"),
        "{plan}"
    );
    assert!(plan.contains("refused (internal senders only)"), "{plan}");
    assert!(plan.contains("published moss.group.added.v1"), "{plan}");
    settles(&system, before, 1).await;
    let managers = group(&system, "Managers").expect("Managers exists");
    assert_eq!(member_ids(&managers), vec![ana_id.clone()]);
    assert_eq!(
        managers["_exchange"]["requireSenderAuthenticationEnabled"],
        true
    );
    let managers_id = managers["id"].as_str().unwrap().to_owned();

    // A group holding a user (by online id) and the first group; outside senders welcome.
    let before = settled(&system);
    moss_ok(
        &system,
        &[
            "groups",
            "add",
            "Sales",
            "--alias",
            "sales",
            "--description",
            "Everyone who sells",
            "--allow-external-senders",
            "true",
            "--member",
            &ben.upn,
            "--member",
            "Managers",
            "--yes",
        ],
    );
    settles(&system, before, 1).await;
    let sales = group(&system, "Sales").expect("Sales exists");
    let mut expected = vec![ben_id.clone(), managers_id.clone()];
    expected.sort();
    assert_eq!(member_ids(&sales), expected);
    assert_eq!(
        sales["_exchange"]["requireSenderAuthenticationEnabled"],
        false
    );
    assert_eq!(sales["description"], "Everyone who sells");
    assert_eq!(sales["mailNickname"], "sales");

    // Ana is in Managers directly and in Sales through it.
    let stdout = moss_ok(&system, &["groups", "user", &ana.upn, "--json"]);
    let memberships: Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(memberships["schema"], "moss.groups.user.v1");
    assert_eq!(memberships["subject"], ana.subject.as_str());
    let groups = memberships["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{stdout}");
    assert_eq!(groups[0]["name"], "Managers");
    assert_eq!(groups[0]["direct"], true);
    assert_eq!(groups[1]["name"], "Sales");
    assert_eq!(groups[1]["direct"], false);
    assert_eq!(groups[1]["via"], serde_json::json!(["Managers"]));
    let text = moss_ok(&system, &["groups", "user", &ana.subject]);
    assert!(text.contains("is in 2 distribution groups"), "{text}");
    assert!(text.contains("through Managers"), "{text}");

    // A group that would contain itself, directly or through nesting: refused, nothing sent.
    let before = settled(&system);
    let error = moss_refused(
        &system,
        &["groups", "members", "Managers", "--add", "Sales", "--yes"],
    );
    assert!(
        error.contains("would make Managers contain itself (Sales → Managers → Managers)"),
        "{error}"
    );
    let error = moss_refused(
        &system,
        &["groups", "members", "Sales", "--add", "sales", "--yes"],
    );
    assert!(error.contains("cannot be a member of itself"), "{error}");
    let error = moss_refused(
        &system,
        &[
            "groups",
            "add",
            "Loop",
            "--alias",
            "loop",
            "--allow-external-senders",
            "false",
            "--member",
            "loop",
            "--yes",
        ],
    );
    assert!(error.contains("cannot be a member of itself"), "{error}");
    // Other bad input, each one sentence naming what is wrong.
    let error = moss_refused(
        &system,
        &["groups", "members", "Nobody", "--add", &cem.upn, "--yes"],
    );
    assert!(error.contains("GROUP Nobody"), "{error}");
    let error = moss_refused(
        &system,
        &[
            "groups",
            "members",
            "Sales",
            "--add",
            "ghost@nowhere.example",
            "--yes",
        ],
    );
    assert!(error.contains("ghost@nowhere.example"), "{error}");
    let error = moss_refused(
        &system,
        &[
            "groups",
            "add",
            "Sales",
            "--alias",
            "sales2",
            "--allow-external-senders",
            "true",
            "--yes",
        ],
    );
    assert!(error.contains("already exists"), "{error}");
    let (code, _, stderr) = admin::moss(
        &system,
        &["groups", "add", "Quiet", "--alias", "quiet", "--yes"],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("--allow-external-senders"), "{stderr}");
    // Without --yes and without a terminal to ask on, nothing is published.
    let error = moss_refused(&system, &["groups", "members", "Sales", "--add", &cem.upn]);
    assert!(error.contains("pass --yes"), "{error}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        settled(&system),
        before,
        "a refused command published nothing"
    );
    assert!(group(&system, "Loop").is_none());

    // Membership changes: cem in, ben out; an absent member is skipped, not sent.
    let before = settled(&system);
    let plan = moss_ok(
        &system,
        &[
            "groups",
            "members",
            "Sales",
            "--add",
            &cem.subject,
            "--remove",
            &ben.upn,
            "--remove",
            &ana.upn,
            "--yes",
        ],
    );
    assert!(
        plan.contains(&format!("add     {} (user)", cem.upn)),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("remove  {} (user)", ben.upn)),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("{} (user) is not a member", ana.upn)),
        "{plan}"
    );
    settles(&system, before, 1).await;
    let sales = group(&system, "Sales").unwrap();
    let mut expected = vec![cem_id.clone(), managers_id.clone()];
    expected.sort();
    assert_eq!(member_ids(&sales), expected);
    let stdout = moss_ok(&system, &["groups", "user", &ben.upn]);
    assert!(stdout.contains("is in no distribution group"), "{stdout}");

    // Removal: Managers goes, and with it its place in Sales; Ana is in no group any more.
    let before = settled(&system);
    let plan = moss_ok(&system, &["groups", "remove", "Managers", "--yes"]);
    assert!(plan.contains("leaves      Sales"), "{plan}");
    settles(&system, before, 1).await;
    assert!(group(&system, "Managers").is_none());
    assert_eq!(member_ids(&group(&system, "Sales").unwrap()), vec![cem_id]);
    let stdout = moss_ok(&system, &["groups", "user", &ana.upn]);
    assert!(stdout.contains("is in no distribution group"), "{stdout}");

    assert_eq!(system.worker().counters().dead_lettered, 0);
    system.finish().await;
}
