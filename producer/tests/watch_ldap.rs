//! The LDAP watcher against a real OpenLDAP (slapd with syncprov, started by the test) and the
//! real RabbitMQ: directory changes made with ldapmodify arrive as the right events, a restarted
//! watcher resumes from its cookie without re-sending, and a directory that vanishes mid-watch
//! removes nothing; with a worker and the emulator behind, the tenant ends in the right state.

mod harness;
mod ldap;
mod watching;

use std::path::Path;
use std::time::Duration;

use harness::*;
use ldap::*;
use moss_producer::watch::{LdapWatchSettings, run_ldap};
use secrecy::SecretString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use watching::*;

#[tokio::test]
async fn directory_changes_made_with_ldapmodify_arrive_as_the_right_events() {
    let slapd = Slapd::start();
    slapd.apply(
        "ldapadd",
        &user_ldif("ana", "Ana", "Silva", &["ana@example.org"]),
    );
    slapd.apply("ldapadd", &user_ldif("bob", "Bob", "Jones", &[]));
    slapd.apply(
        "ldapadd",
        &format!("dn: cn=staff,ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: staff\ndescription: Everyone\nmember: {}\n", user_dn("ana")),
    );
    let ana = slapd.entry_uuid(&user_dn("ana"));
    let bob = slapd.entry_uuid(&user_dn("bob"));
    let staff = slapd.entry_uuid(&format!("cn=staff,ou=groups,{BASE}"));
    let system = system().await;
    let watcher = Watcher::start(&slapd, &system.watch_store, system.producer.ingest_addr());

    let first = system.rabbit.receive(4, Duration::from_secs(20)).await;
    assert_eq!(
        summary(&first),
        expected(&[
            ("user.added", &ana),
            ("user.alias_added", &ana),
            ("user.added", &bob),
            ("group.added", &staff),
        ])
    );
    let added_ana = of_type(&first, "user.added")
        .into_iter()
        .find(|body| body["subject"] == ana.as_str())
        .unwrap();
    assert_eq!(added_ana["data"]["account_name"], "ana");
    assert_eq!(added_ana["data"]["display_name"], "Ana Silva");
    assert_eq!(added_ana["data"]["surname"], "Silva");
    assert!(
        added_ana["source"]
            .as_str()
            .unwrap()
            .starts_with("moss-watch/ldap://127.0.0.1:")
    );
    let group = of_type(&first, "group.added")[0];
    assert_eq!(group["data"]["name"], "staff");
    assert_eq!(group["data"]["members"], serde_json::json!([ana]));

    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n\ndn: {}\nchangetype: modify\nadd: mail\nmail: bob@example.org\n\ndn: cn=staff,ou=groups,{BASE}\nchangetype: modify\nadd: member\nmember: {}\n\n",
        user_dn("ana"),
        user_dn("bob"),
        user_dn("bob"),
    ));
    let second = system.rabbit.receive(3, Duration::from_secs(20)).await;
    assert_eq!(
        summary(&second),
        expected(&[
            ("user.deactivated", &ana),
            ("user.alias_added", &bob),
            ("group.members_changed", &staff),
        ])
    );
    let change = of_type(&second, "group.members_changed")[0];
    assert_eq!(change["data"]["add"], serde_json::json!([bob]));
    let deactivated = of_type(&second, "user.deactivated")[0];
    let added_sequence: u64 = added_ana["sequence"].as_str().unwrap().parse().unwrap();
    let later_sequence: u64 = deactivated["sequence"].as_str().unwrap().parse().unwrap();
    assert!(
        later_sequence > added_sequence,
        "a later change has a higher sequence"
    );

    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\ndelete: employeeType\n\ndn: {}\nchangetype: delete\n\n",
        user_dn("ana"),
        user_dn("bob"),
    ));
    let third = system.rabbit.receive(2, Duration::from_secs(20)).await;
    assert_eq!(
        summary(&third),
        expected(&[("user.reactivated", &ana), ("user.removed", &bob)])
    );

    // A group may name a member before the member exists: it joins when it appears.
    slapd.apply(
        "ldapadd",
        &format!(
            "dn: cn=late,ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: late\nmember: {}\n",
            user_dn("erin")
        ),
    );
    let late = slapd.entry_uuid(&format!("cn=late,ou=groups,{BASE}"));
    let fourth = system.rabbit.receive(1, Duration::from_secs(20)).await;
    assert_eq!(summary(&fourth), expected(&[("group.added", &late)]));
    assert_eq!(fourth[0].body["data"]["members"], serde_json::json!([]));
    slapd.apply("ldapadd", &user_ldif("erin", "Erin", "Walsh", &[]));
    let erin = slapd.entry_uuid(&user_dn("erin"));
    let fifth = system.rabbit.receive(2, Duration::from_secs(20)).await;
    assert_eq!(
        summary(&fifth),
        expected(&[("user.added", &erin), ("group.members_changed", &late)])
    );
    let joined = of_type(&fifth, "group.members_changed")[0];
    assert_eq!(joined["data"]["add"], serde_json::json!([erin]));

    watcher.stop().await;
    system.finish().await;
}

#[tokio::test]
async fn a_restarted_watcher_resumes_from_its_cookie_without_sending_old_changes_again() {
    let slapd = Slapd::start();
    slapd.apply("ldapadd", &user_ldif("ana", "Ana", "Silva", &[]));
    slapd.apply("ldapadd", &user_ldif("dave", "Dave", "Okafor", &[]));
    let ana = slapd.entry_uuid(&user_dn("ana"));
    let dave = slapd.entry_uuid(&user_dn("dave"));
    let system = system().await;
    let watcher = Watcher::start(&slapd, &system.watch_store, system.producer.ingest_addr());
    let first = system.rabbit.receive(2, Duration::from_secs(20)).await;
    assert_eq!(
        summary(&first),
        expected(&[("user.added", &ana), ("user.added", &dave)])
    );
    watcher.stop().await;
    {
        let store = moss_store::Store::open(&system.watch_store).unwrap();
        let cookie = store.cursor("ldap").unwrap().get("cookie").unwrap();
        let cookie = String::from_utf8(cookie.expect("the cookie is kept")).unwrap();
        assert!(cookie.contains("csn="), "a syncprov cookie: {cookie}");
    }

    // Changes while the watcher is away.
    slapd.apply("ldapadd", &user_ldif("carol", "Carol", "Reyes", &[]));
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: mail\nmail: ana@example.org\n\n",
        user_dn("ana")
    ));
    slapd.modify(&format!("dn: {}\nchangetype: delete\n\n", user_dn("dave")));
    let carol = slapd.entry_uuid(&user_dn("carol"));

    let watcher = Watcher::start(&slapd, &system.watch_store, system.producer.ingest_addr());
    let resumed = system.rabbit.receive(3, Duration::from_secs(20)).await;
    assert_eq!(
        summary(&resumed),
        expected(&[
            ("user.added", &carol),
            ("user.alias_added", &ana),
            ("user.removed", &dave),
        ])
    );
    // A change after the restart comes next; anything re-sent would have come before it.
    slapd.modify(&format!("dn: {}\nchangetype: delete\n\n", user_dn("carol")));
    let after = system.rabbit.receive(1, Duration::from_secs(20)).await;
    assert_eq!(summary(&after), expected(&[("user.removed", &carol)]));

    watcher.stop().await;
    system.finish().await;
}

#[tokio::test]
async fn a_directory_that_stops_mid_watch_removes_nothing() {
    let mut slapd = Slapd::start();
    slapd.apply("ldapadd", &user_ldif("ana", "Ana", "Silva", &[]));
    slapd.apply("ldapadd", &user_ldif("bob", "Bob", "Jones", &[]));
    let ana = slapd.entry_uuid(&user_dn("ana"));
    let bob = slapd.entry_uuid(&user_dn("bob"));
    let system = system().await;
    let watcher = Watcher::start(&slapd, &system.watch_store, system.producer.ingest_addr());
    let first = system.rabbit.receive(2, Duration::from_secs(20)).await;
    assert_eq!(
        summary(&first),
        expected(&[("user.added", &ana), ("user.added", &bob)])
    );

    slapd.kill();
    // The watcher now fails to reconnect for a while; it must not read that as deletes.
    let during = system.rabbit.receive(1, Duration::from_secs(2)).await;
    assert!(
        during.is_empty(),
        "nothing while the directory is away: {during:?}"
    );
    slapd.resume();
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: mail\nmail: bob@example.org\n\n",
        user_dn("bob")
    ));
    let after = system.rabbit.receive(1, Duration::from_secs(20)).await;
    assert_eq!(summary(&after), expected(&[("user.alias_added", &bob)]));

    watcher.stop().await;
    system.finish().await;
}

/// A worker on the emulated tenant behind the producer.
async fn worker(
    emulator: &moss_emulator::Emulator,
    topology: &moss_broker::Topology,
    store: &Path,
    opening: moss_schemas::OpeningKey,
) -> moss_workers::RunningWorker {
    let tenant = emulator.tenant();
    let mut online = moss_online::OnlineConfig::new(
        tenant.tenant_id.to_string(),
        tenant.client_id.to_string(),
        SecretString::from(tenant.client_secret.clone()),
    )
    .with_single_base_url(&emulator.base_url());
    online.retry.max_delay = Duration::from_millis(400);
    let mut settings =
        moss_workers::WorkerSettings::new(AMQP_URL, topology.clone(), store, online, opening);
    settings.worker_name = "moss-watch-test-worker".into();
    settings.shutdown_grace = Duration::from_secs(5);
    moss_workers::start(settings, CancellationToken::new())
        .await
        .expect("worker starts")
}

async fn tenant_eventually(
    emulator: &moss_emulator::Emulator,
    upn: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) {
    eventually(what, Duration::from_secs(25), || async {
        emulator.user(upn).is_some_and(|user| check(&user))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_changes_reach_the_emulated_tenant_through_the_workers() {
    let emulator = moss_emulator::Emulator::start_for_tests()
        .await
        .expect("emulator starts");
    let tenant = emulator.tenant();
    let domain = tenant.default_domain.clone();
    let sku = tenant.skus[0].sku_part_number.clone();
    let slapd = Slapd::start();
    slapd.apply(
        "ldapadd",
        &user_ldif("ana", "Ana", "Silva", &[&format!("ana.silva@{domain}")]),
    );

    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, opening) = key_pair();
    let rabbit = TestBroker::connect(&topology).await;
    let (producer, _) = start(settings(&store_path(&dir), AMQP_URL, &topology, &sealing)).await;
    let running_worker = worker(&emulator, &topology, &dir.path().join("worker"), opening).await;

    let mut watch = LdapWatchSettings::new(
        slapd.url(),
        BASE.to_owned(),
        ADMIN_DN.to_owned(),
        SecretString::from(ADMIN_PASSWORD.to_owned()),
        dir.path().join("watch-ldap"),
        format!("http://{}", producer.ingest_addr()),
    );
    // The default disabling rule: ppolicy's pwdAccountLockedTime, present = locked.
    watch.mapping.online_account = Some(moss_producer::watch::OnlineAccountPolicy {
        domain: moss_schemas::DomainName::parse(&domain).unwrap(),
        usage_location: moss_schemas::UsageLocation::parse("DE").unwrap(),
        licenses: vec![moss_schemas::SkuPartNumber::parse(&sku).unwrap()],
    });
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(run_ldap(watch, stop.clone()));

    let upn = format!("ana@{domain}");
    tenant_eventually(&emulator, &upn, "ana's online account", |user| {
        user["accountEnabled"] == true && user["displayName"] == "Ana Silva"
    })
    .await;

    let alias = format!("smtp:ana.silva@{domain}");
    tenant_eventually(&emulator, &upn, "ana's mail alias online", |user| {
        user["proxyAddresses"].as_array().is_some_and(|addresses| {
            addresses.iter().any(|address| {
                address
                    .as_str()
                    .is_some_and(|text| text.eq_ignore_ascii_case(&alias))
            })
        })
    })
    .await;

    // A distribution group with ana in it.
    let online_id = emulator.user(&upn).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    slapd.apply(
        "ldapadd",
        &format!(
            "dn: cn=staff,ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: staff\nmember: {}\n",
            user_dn("ana")
        ),
    );
    let staff_members = || {
        emulator
            .state()
            .groups
            .into_iter()
            .find(|group| group["displayName"] == "staff")
            .map(|group| group["members"].clone())
    };
    eventually(
        "the staff group with ana in it",
        Duration::from_secs(25),
        || async { staff_members() == Some(serde_json::json!([online_id])) },
    )
    .await;

    // Membership changes: bob joins, ana leaves.
    slapd.apply("ldapadd", &user_ldif("bob", "Bob", "Jones", &[]));
    let bob_upn = format!("bob@{domain}");
    tenant_eventually(&emulator, &bob_upn, "bob's online account", |user| {
        user["accountEnabled"] == true
    })
    .await;
    let bob_id = emulator.user(&bob_upn).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    slapd.modify(&format!(
        "dn: cn=staff,ou=groups,{BASE}\nchangetype: modify\nadd: member\nmember: {}\n-\ndelete: member\nmember: {}\n\n",
        user_dn("bob"),
        user_dn("ana")
    ));
    eventually(
        "the staff group with bob instead of ana",
        Duration::from_secs(25),
        || async { staff_members() == Some(serde_json::json!([bob_id])) },
    )
    .await;
    slapd.modify(&format!(
        "dn: cn=staff,ou=groups,{BASE}\nchangetype: delete\n\n"
    ));
    eventually(
        "the staff group removed",
        Duration::from_secs(25),
        || async { staff_members().is_none() },
    )
    .await;

    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n\n",
        user_dn("ana")
    ));
    tenant_eventually(&emulator, &upn, "ana blocked from signing in", |user| {
        user["accountEnabled"] == false
    })
    .await;

    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\ndelete: pwdAccountLockedTime\n\n",
        user_dn("ana")
    ));
    tenant_eventually(&emulator, &upn, "ana allowed to sign in again", |user| {
        user["accountEnabled"] == true
    })
    .await;

    slapd.modify(&format!("dn: {}\nchangetype: delete\n\n", user_dn("ana")));
    tenant_eventually(&emulator, &upn, "ana's account soft-deleted", |user| {
        user["_emulator"]["deleted"].as_bool() == Some(true)
    })
    .await;

    stop.cancel();
    watcher.await.unwrap().expect("the watcher stops cleanly");
    running_worker.shutdown().await.expect("worker stops");
    producer.shutdown().await;
    rabbit.cleanup().await;
    emulator.shutdown().await;
}
