//! `--mode usn-poll` (the Active Directory mode) against a real OpenLDAP, as far as a machine
//! without a domain controller allows: slapd carries AD's `objectGUID` (binary, AD's byte order),
//! `userAccountControl` and `isDeleted` attributes (test schema in ldap/slapd.conf), OpenLDAP's
//! `entryCSN` stands in for `uSNChanged` as the watermark, and a delete is made the way AD makes
//! a tombstone: the entry moves to `cn=Deleted Objects` and gets `isDeleted: TRUE`.

mod harness;
mod ldap;
mod watching;

use std::time::Duration;

use ldap::*;
use moss_producer::watch::{DisabledRule, LdapWatchSettings, PollSettings, WatchMode};
use watching::*;

const DELETED: &str = "cn=Deleted Objects,dc=example,dc=org";

/// An AD-like user: inetOrgPerson with a binary objectGUID and a userAccountControl.
fn ad_user_ldif(uid: &str, guid: &uuid::Uuid, control: u32, mail: &[&str]) -> String {
    let mut ldif = user_ldif(uid, uid, "Test", mail);
    ldif.truncate(ldif.len() - 1);
    ldif.push_str(&format!(
        "objectClass: mossTestAdObject\nobjectGUID:: {}\nuserAccountControl: {control}\n\n",
        base64(&guid.to_bytes_le())
    ));
    ldif
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn poll_settings(slapd: &Slapd, system: &System) -> LdapWatchSettings {
    let mut settings = watch_settings(
        slapd.url(),
        &system.watch_store,
        system.producer.ingest_addr(),
    );
    settings.mapping.disabled = DisabledRule {
        attribute: "userAccountControl".to_owned(),
        value: None,
    };
    settings.mode = WatchMode::UsnPoll(PollSettings {
        subject_attribute: "objectGUID".to_owned(),
        watermark_attribute: "entryCSN".to_owned(),
        interval: Duration::from_millis(300),
        deleted_base: Some(DELETED.to_owned()),
    });
    settings
}

/// Makes `uid` a tombstone as AD does: moved under cn=Deleted Objects, isDeleted TRUE.
fn tombstone(slapd: &Slapd, uid: &str) {
    slapd.modify(&format!(
        "dn: {}\nchangetype: modrdn\nnewrdn: uid={uid}\ndeleteoldrdn: 0\nnewsuperior: {DELETED}\n\ndn: uid={uid},{DELETED}\nchangetype: modify\nadd: isDeleted\nisDeleted: TRUE\n\n",
        user_dn(uid)
    ));
}

#[tokio::test]
async fn polling_maps_object_guid_account_control_and_tombstones_and_resumes_from_its_watermark() {
    let mut slapd = Slapd::start();
    slapd.apply(
        "ldapadd",
        &format!("dn: {DELETED}\nobjectClass: applicationProcess\ncn: Deleted Objects\n"),
    );
    let (ana, bob, carol, staff) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    slapd.apply(
        "ldapadd",
        &ad_user_ldif("ana", &ana, 512, &["ana@example.org"]),
    );
    slapd.apply("ldapadd", &ad_user_ldif("bob", &bob, 512, &[]));
    slapd.apply(
        "ldapadd",
        &format!(
            "dn: cn=staff,ou=groups,{BASE}\nobjectClass: groupOfNames\nobjectClass: mossTestAdObject\nobjectGUID:: {}\ncn: staff\nmember: {}\n",
            base64(&staff.to_bytes_le()),
            user_dn("ana")
        ),
    );
    let (ana, bob, carol, staff) = (
        ana.to_string(),
        bob.to_string(),
        carol.to_string(),
        staff.to_string(),
    );
    let system = system().await;
    let watcher = Watcher::start_with(poll_settings(&slapd, &system));

    // The first pass reads everything; the subject is the objectGUID as Windows shows it.
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
    assert_eq!(
        of_type(&first, "group.added")[0]["data"]["members"],
        serde_json::json!([ana])
    );

    // userAccountControl 514 (ACCOUNTDISABLE), a new address, a new member.
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n\ndn: {}\nchangetype: modify\nadd: mail\nmail: bob@example.org\n\ndn: cn=staff,ou=groups,{BASE}\nchangetype: modify\nadd: member\nmember: {}\n\n",
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

    // A tombstone removes; the directory going away mid-watch removes nothing.
    tombstone(&slapd, "bob");
    let third = system.rabbit.receive(1, Duration::from_secs(20)).await;
    assert_eq!(summary(&third), expected(&[("user.removed", &bob)]));
    slapd.kill();
    let during = system.rabbit.receive(1, Duration::from_secs(2)).await;
    assert!(
        during.is_empty(),
        "nothing while the directory is away: {during:?}"
    );
    slapd.resume();
    watcher.stop().await;

    // Changes while the watcher is stopped come after a restart, and nothing older again.
    slapd.apply(
        "ldapadd",
        &ad_user_ldif("carol", &carol.parse().unwrap(), 514, &[]),
    );
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 512\n\n",
        user_dn("ana")
    ));
    {
        let store = moss_store::Store::open(&system.watch_store).unwrap();
        let watermark = store.cursor("ldap").unwrap().get("watermark").unwrap();
        let watermark = String::from_utf8(watermark.expect("the watermark is kept")).unwrap();
        assert!(
            watermark.contains('#'),
            "an entryCSN watermark: {watermark}"
        );
    }
    let watcher = Watcher::start_with(poll_settings(&slapd, &system));
    let resumed = system.rabbit.receive(3, Duration::from_secs(20)).await;
    assert_eq!(
        summary(&resumed),
        expected(&[
            ("user.added", &carol),
            ("user.deactivated", &carol),
            ("user.reactivated", &ana),
        ])
    );
    // One more pass's worth of time: a replay would show here.
    let quiet = system.rabbit.receive(1, Duration::from_secs(2)).await;
    assert!(quiet.is_empty(), "nothing sent again: {quiet:?}");
    watcher.stop().await;
    system.finish().await;
}
