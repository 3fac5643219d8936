//! `moss aliases` run as the binary against the real RabbitMQ, with the emulator as the tenant
//! and the producer and a worker in this process: an address is added to and removed from a
//! user's mailbox (named by online id or by subject); an address on a domain the tenant does not
//! accept, one that belongs to someone else, and the primary address are refused before
//! anything is published.

use std::time::Duration;

mod admin;
mod support;

use admin::*;
use support::System;

fn addresses(system: &System, upn: &str) -> Vec<String> {
    system.emulator.user(upn).expect("the user exists")["proxyAddresses"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|address| address.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_are_added_and_removed_and_bad_ones_refused_before_publishing() {
    let system = System::spawn().await;
    let users = add_users(&system, &["dora", "emil"]).await;
    let (dora, emil) = (&users[0], &users[1]);
    let domain = system.emulator.tenant().default_domain;
    let alias = format!("d.sales@{domain}");

    // Added, named by online id.
    let before = settled(&system);
    let plan = moss_ok(&system, &["aliases", "add", &dora.upn, &alias, "--yes"]);
    assert!(
        plan.contains(&format!("plan: add {alias} to the mailbox of {}", dora.upn)),
        "{plan}"
    );
    assert!(
        plan.contains("published moss.user.alias_added.v1"),
        "{plan}"
    );
    wait_for(&system, "the alias is on the mailbox", |system| {
        addresses(system, &dora.upn).contains(&format!("smtp:{alias}"))
    })
    .await;
    // The tenant shows the alias as soon as the emulator applied the write; the worker counts
    // the event a moment later, once it has recorded and acknowledged it.
    wait_for(&system, "the worker settled the event", |system| {
        settled(system) > before
    })
    .await;
    // Asking again changes nothing and publishes nothing.
    let stdout = moss_ok(&system, &["aliases", "add", &dora.subject, &alias, "--yes"]);
    assert!(stdout.contains("already has"), "{stdout}");

    // A domain the tenant does not accept: refused by name, nothing published; once the
    // tenant accepts it, the same command works.
    let before = settled(&system);
    let other = "dora@branch-office.example";
    let error = moss_refused(&system, &["aliases", "add", &dora.upn, other, "--yes"]);
    assert!(
        error.contains("the domain branch-office.example is not an accepted domain of the tenant"),
        "{error}"
    );
    let error = moss_refused(&system, &["aliases", "remove", &dora.upn, other, "--yes"]);
    assert!(error.contains("not an accepted domain"), "{error}");
    // Someone else's address, the primary address, a malformed one, an unknown user.
    let error = moss_refused(&system, &["aliases", "add", &dora.upn, &emil.upn, "--yes"]);
    assert!(
        error.contains(&format!("already belongs to the mailbox of {}", emil.upn)),
        "{error}"
    );
    let error = moss_refused(
        &system,
        &["aliases", "remove", &dora.subject, &dora.upn, "--yes"],
    );
    assert!(error.contains("is the primary address"), "{error}");
    let error = moss_refused(
        &system,
        &["aliases", "add", &dora.upn, "not-an-address", "--yes"],
    );
    assert!(error.contains("ADDRESS \"not-an-address\""), "{error}");
    let error = moss_refused(
        &system,
        &[
            "aliases",
            "add",
            &format!("nobody@{domain}"),
            &format!("x@{domain}"),
            "--yes",
        ],
    );
    assert!(error.contains("no online account"), "{error}");
    let error = moss_refused(
        &system,
        &["aliases", "add", &dora.upn, &format!("y@{domain}")],
    );
    assert!(error.contains("pass --yes"), "{error}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        settled(&system),
        before,
        "a refused command published nothing"
    );
    assert!(
        !addresses(&system, &dora.upn)
            .iter()
            .any(|address| address.contains("branch-office")),
    );

    system.emulator.add_domain("branch-office.example").unwrap();
    moss_ok(&system, &["aliases", "add", &dora.subject, other, "--yes"]);
    wait_for(&system, "the branch alias is on the mailbox", |system| {
        addresses(system, &dora.upn).contains(&format!("smtp:{other}"))
    })
    .await;

    // Removed, named by subject; the other alias and the primary stay.
    let plan = moss_ok(
        &system,
        &["aliases", "remove", &dora.subject, &alias, "--yes"],
    );
    assert!(
        plan.contains("published moss.user.alias_removed.v1"),
        "{plan}"
    );
    wait_for(&system, "the alias is gone", |system| {
        !addresses(system, &dora.upn).contains(&format!("smtp:{alias}"))
    })
    .await;
    let left = addresses(&system, &dora.upn);
    assert!(left.contains(&format!("SMTP:{}", dora.upn)), "{left:?}");
    assert!(left.contains(&format!("smtp:{other}")), "{left:?}");
    let stdout = moss_ok(&system, &["aliases", "remove", &dora.upn, &alias, "--yes"]);
    assert!(stdout.contains("does not have"), "{stdout}");

    assert_eq!(system.worker().counters().dead_lettered, 0);

    // A user without a licence gets no mailbox: the plan says the worker will wait for one, and
    // the worker, finding no licence to wait on, dead-letters the event at once with the reason.
    let fynn = uuid::Uuid::new_v4().to_string();
    let fynn_upn = format!("fynn@{domain}");
    system
        .post(&support::event(
            &fynn,
            "moss.user.added.v1",
            10,
            serde_json::json!({
                "account_name": "fynn",
                "display_name": "User fynn",
                "online_account": {"upn": fynn_upn, "usage_location": "DE", "licenses": []},
            }),
        ))
        .await;
    wait_for(&system, "fynn's account exists", |system| {
        system.emulator.user(&fynn_upn).is_some()
    })
    .await;
    let plan = moss_ok(
        &system,
        &[
            "aliases",
            "add",
            &fynn_upn,
            &format!("f.x@{domain}"),
            "--yes",
        ],
    );
    assert!(plan.contains("not there yet"), "{plan}");
    support::dead_count_becomes(&system.broker, &system.topology, 1, Duration::from_secs(15)).await;
    let (code, stdout, stderr) = support::moss(&system.topology, &["dlq", "list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("NoMailbox"), "{stdout}");
    assert!(stdout.contains("holds no licence"), "{stdout}");
    system.finish().await;
}
