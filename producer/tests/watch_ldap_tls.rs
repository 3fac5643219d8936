//! The LDAP watcher over TLS: a slapd started by the test with a CA and a server certificate
//! made in the test (rcgen), an ldaps:// listener, StartTLS on ldap://, and simple binds refused
//! without TLS — so a watcher that sees anything at all saw it over TLS, trusting the CA file.

mod harness;
mod ldap;
mod watching;

use std::time::Duration;

use ldap::*;
use moss_producer::watch::{LdapTls, WatchError, run_ldap};
use tokio_util::sync::CancellationToken;
use watching::*;

#[tokio::test]
async fn the_watcher_follows_the_directory_over_ldaps_and_over_starttls_trusting_the_ca_file() {
    let pki = TestPki::new("ldap");
    let slapd = Slapd::start_tls(&pki);
    // The directory refuses a bind in clear, so the watcher cannot get anything without TLS.
    let clear = std::process::Command::new("ldapwhoami")
        .args([
            "-x",
            "-H",
            &slapd.url(),
            "-D",
            ADMIN_DN,
            "-w",
            ADMIN_PASSWORD,
        ])
        .output()
        .unwrap();
    assert!(
        !clear.status.success(),
        "a bind in clear must be refused: {}",
        String::from_utf8_lossy(&clear.stdout)
    );
    slapd.apply("ldapadd", &user_ldif("ana", "Ana", "Silva", &[]));
    let ana = slapd.entry_uuid(&user_dn("ana"));
    let system = system().await;

    // ldaps://, trusting only the test CA.
    let mut settings = watch_settings(
        slapd.ldaps_url(),
        &system.watch_store,
        system.producer.ingest_addr(),
    );
    settings.tls = LdapTls {
        starttls: false,
        ca_file: Some(slapd.ca_file().to_path_buf()),
    };
    let watcher = Watcher::start_with(settings);
    let first = system.rabbit.receive(1, Duration::from_secs(20)).await;
    assert_eq!(summary(&first), expected(&[("user.added", &ana)]));
    assert!(
        first[0].body["source"]
            .as_str()
            .unwrap()
            .starts_with("moss-watch/ldaps://127.0.0.1:")
    );
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: mail\nmail: ana@example.org\n\n",
        user_dn("ana")
    ));
    let second = system.rabbit.receive(1, Duration::from_secs(20)).await;
    assert_eq!(summary(&second), expected(&[("user.alias_added", &ana)]));
    watcher.stop().await;

    // StartTLS on ldap://, same cursor: it resumes from its cookie, so only the new user comes.
    slapd.apply("ldapadd", &user_ldif("bob", "Bob", "Jones", &[]));
    let bob = slapd.entry_uuid(&user_dn("bob"));
    let mut settings = watch_settings(
        slapd.url(),
        &system.watch_store,
        system.producer.ingest_addr(),
    );
    settings.tls = LdapTls {
        starttls: true,
        ca_file: Some(slapd.ca_file().to_path_buf()),
    };
    let watcher = Watcher::start_with(settings);
    let third = system.rabbit.receive(1, Duration::from_secs(20)).await;
    assert_eq!(summary(&third), expected(&[("user.added", &bob)]));
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n\n",
        user_dn("bob")
    ));
    let fourth = system.rabbit.receive(1, Duration::from_secs(20)).await;
    assert_eq!(summary(&fourth), expected(&[("user.deactivated", &bob)]));
    watcher.stop().await;
    system.finish().await;
}

#[tokio::test]
async fn a_directory_certificate_from_another_ca_stops_the_watcher_with_a_plain_reason() {
    let pki = TestPki::new("ldap");
    let slapd = Slapd::start_tls(&pki);
    slapd.apply("ldapadd", &user_ldif("ana", "Ana", "Silva", &[]));
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("other-ca.pem");
    std::fs::write(&stranger, TestPki::new("other").ca_pem).unwrap();
    // No producer is needed: the watcher must stop before it has anything to send.
    let unused_ingest: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (url, starttls) in [(slapd.ldaps_url(), false), (slapd.url(), true)] {
        let mut settings = watch_settings(url.clone(), &dir.path().join("watch"), unused_ingest);
        settings.tls = LdapTls {
            starttls,
            ca_file: Some(stranger.clone()),
        };
        let outcome = tokio::time::timeout(
            Duration::from_secs(20),
            run_ldap(settings, CancellationToken::new()),
        )
        .await
        .unwrap_or_else(|_| {
            panic!("{url} (starttls {starttls}): the watcher kept retrying instead of stopping")
        });
        let error = outcome.expect_err("an untrusted certificate stops the watcher");
        assert!(
            matches!(error, WatchError::Certificate { .. }),
            "{url}: {error:?}"
        );
        let text = error.to_string();
        assert!(text.contains("MOSS_LDAP_CA_FILE"), "{text}");
        assert!(!text.contains(ADMIN_PASSWORD), "{text}");
    }
}
