//! Online accounts assigned and unassigned, aliases and distribution groups, end to end.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{System, added, eventually, new_subject};

fn settled(system: &System) -> u64 {
    let counters = system.worker().counters();
    counters.applied + counters.already_applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_account_is_assigned_unassigned_and_assigned_again_to_the_same_user() {
    let mut system = System::spawn().await;
    let subject = new_subject();
    let local = format!("assign-{}", &new_subject()[..6]);
    let upn = system.upn(&local);
    let plain = system.event(
        &subject,
        "moss.user.added.v1",
        json!({"account_name": local, "display_name": "No Account Yet"}),
    );
    let account = json!({"upn": upn, "usage_location": "FR", "licenses": [system.sku]});
    let assigned = system.event(&subject, "moss.online_account.assigned.v1", account.clone());
    for event in [&plain, &assigned] {
        system.post(event).await;
    }
    eventually(Duration::from_secs(15), "the account is assigned", || {
        settled(&system) >= 2
    })
    .await;
    let user = system.user(&upn).expect("the account was created");
    let object_id = user["id"].clone();
    assert_eq!(user["accountEnabled"], true);
    assert_eq!(user["usageLocation"], "FR");
    assert_eq!(user["onPremisesImmutableId"], subject.as_str());
    assert_eq!(user["assignedLicenses"].as_array().map(Vec::len), Some(1));

    let unassigned = system.event(&subject, "moss.online_account.unassigned.v1", json!({}));
    system.post(&unassigned).await;
    eventually(Duration::from_secs(10), "the account is unassigned", || {
        settled(&system) >= 3
    })
    .await;
    let user = system.user(&upn).unwrap();
    assert_eq!(user["accountEnabled"], false);
    assert_eq!(user["assignedLicenses"].as_array().map(Vec::len), Some(0));

    let again = system.event(&subject, "moss.online_account.assigned.v1", account);
    system.post(&again).await;
    eventually(
        Duration::from_secs(10),
        "the account is assigned again",
        || settled(&system) >= 4,
    )
    .await;
    let user = system.user(&upn).unwrap();
    assert_eq!(
        user["id"], object_id,
        "the same online account is linked again"
    );
    assert_eq!(user["accountEnabled"], true);
    assert_eq!(system.emulator.state().users.len(), 1);
    assert_eq!(system.worker().counters().dead_lettered, 0);
    system.finish().await;
}

fn group_named<'a>(groups: &'a [Value], name: &str) -> Option<&'a Value> {
    groups.iter().find(|group| group["displayName"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_and_distribution_groups_follow_their_events() {
    let mut system = System::spawn().await;
    let (first, second) = (new_subject(), new_subject());
    let first_local = format!("ga-{}", &new_subject()[..6]);
    let second_local = format!("gb-{}", &new_subject()[..6]);
    let first_added = system.event(
        &first,
        "moss.user.added.v1",
        added(&system, &first_local, "First-Passw0rd!"),
    );
    let second_added = system.event(
        &second,
        "moss.user.added.v1",
        added(&system, &second_local, "First-Passw0rd!"),
    );
    system.post(&first_added).await;
    system.post(&second_added).await;
    eventually(Duration::from_secs(10), "both users exist", || {
        settled(&system) >= 2
    })
    .await;

    let alias = format!("alias-{}@{}", &new_subject()[..6], system.domain);
    let alias_added = system.event(
        &first,
        "moss.user.alias_added.v1",
        json!({"address": alias}),
    );
    system.post(&alias_added).await;
    let first_upn = system.upn(&first_local);
    eventually(
        Duration::from_secs(20),
        "the alias is on the mailbox",
        || {
            system.user(&first_upn).is_some_and(|user| {
                user["proxyAddresses"].as_array().is_some_and(|addresses| {
                    addresses.iter().any(|address| {
                        address
                            .as_str()
                            .is_some_and(|text| text.eq_ignore_ascii_case(&format!("smtp:{alias}")))
                    })
                })
            })
        },
    )
    .await;

    let group = new_subject();
    let name = format!("grp-{}", &new_subject()[..6]);
    let group_added = system.event(
        &group,
        "moss.group.added.v1",
        json!({
            "name": name,
            "alias": name.replace('-', ""),
            "allow_external_senders": true,
            "members": [first],
        }),
    );
    system.post(&group_added).await;
    let first_id = system.user(&first_upn).unwrap()["id"].clone();
    eventually(
        Duration::from_secs(15),
        "the group exists with its member",
        || {
            group_named(&system.emulator.state().groups, &name).is_some_and(|group| {
                group["members"]
                    .as_array()
                    .is_some_and(|members| members.contains(&first_id))
            })
        },
    )
    .await;
    let state = system.emulator.state();
    let created = group_named(&state.groups, &name).unwrap();
    assert_eq!(
        created["_exchange"]["requireSenderAuthenticationEnabled"],
        false
    );

    let changed = system.event(
        &group,
        "moss.group.members_changed.v1",
        json!({"add": [second], "remove": [first]}),
    );
    system.post(&changed).await;
    let second_id = system.user(&system.upn(&second_local)).unwrap()["id"].clone();
    eventually(Duration::from_secs(10), "the membership changed", || {
        group_named(&system.emulator.state().groups, &name)
            .is_some_and(|group| group["members"].as_array() == Some(&vec![second_id.clone()]))
    })
    .await;

    let alias_removed = system.event(
        &first,
        "moss.user.alias_removed.v1",
        json!({"address": alias}),
    );
    let group_removed = system.event(&group, "moss.group.removed.v1", json!({}));
    system.post(&alias_removed).await;
    system.post(&group_removed).await;
    eventually(
        Duration::from_secs(10),
        "the group and the alias are gone",
        || {
            let state = system.emulator.state();
            let alias_gone = system.user(&first_upn).is_some_and(|user| {
                !user["proxyAddresses"]
                    .to_string()
                    .to_ascii_lowercase()
                    .contains(&alias.to_ascii_lowercase())
            });
            group_named(&state.groups, &name).is_none() && alias_gone
        },
    )
    .await;
    assert_eq!(system.worker().counters().dead_lettered, 0);
    system.finish().await;
}
