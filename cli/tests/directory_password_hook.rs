//! The OpenLDAP password hook exactly as docs/DIRECTORY.md prints it: the script is taken from
//! the document, run against a real slapd with the real `moss` binary on its PATH, and the new
//! password must end up both in the directory (a bind with it succeeds) and on the emulated
//! tenant's account that the directory watcher created, without ever being printed.

#[path = "../../producer/tests/ldap/mod.rs"]
mod ldap;
mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use ldap::*;
use moss_producer::watch::{LdapWatchSettings, OnlineAccountPolicy, run_ldap};
use secrecy::SecretString;
use support::*;
use tokio_util::sync::CancellationToken;

/// The `sh` block of docs/DIRECTORY.md that starts with the moss-ldappasswd header.
fn documented_script() -> String {
    let doc = include_str!("../../docs/DIRECTORY.md");
    let start = doc
        .find("```sh\n#!/bin/sh\n# moss-ldappasswd")
        .expect("docs/DIRECTORY.md has the moss-ldappasswd script");
    let body = &doc[start + "```sh\n".len()..];
    body[..body.find("```").expect("the script block ends")].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_openldap_password_script_changes_the_password_in_the_directory_and_online()
{
    let slapd = Slapd::start();
    slapd.apply("ldapadd", &user_ldif("ana", "Ana", "Silva", &[]));
    let system = System::spawn().await;
    let tenant = system.emulator.tenant();
    let domain = tenant.default_domain.clone();
    let ingest = system.producer.as_ref().unwrap().ingest_addr();
    let dir = tempfile::tempdir().unwrap();

    // The watcher makes ana's online account.
    let mut watch = LdapWatchSettings::new(
        slapd.url(),
        BASE.to_owned(),
        ADMIN_DN.to_owned(),
        SecretString::from(ADMIN_PASSWORD.to_owned()),
        dir.path().join("watch-ldap"),
        format!("http://{ingest}"),
    );
    watch.mapping.online_account = Some(OnlineAccountPolicy {
        domain: moss_schemas::DomainName::parse(&domain).unwrap(),
        usage_location: moss_schemas::UsageLocation::parse("DE").unwrap(),
        licenses: vec![
            moss_schemas::SkuPartNumber::parse(&tenant.skus[0].sku_part_number).unwrap(),
        ],
    });
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(run_ldap(watch, stop.clone()));
    let upn = format!("ana@{domain}");
    eventually(
        Duration::from_secs(30),
        "ana's online account exists",
        || system.emulator.user(&upn).is_some(),
    )
    .await;

    // The script, as documented, with `moss` on its PATH.
    let script = dir.path().join("moss-ldappasswd");
    std::fs::write(&script, documented_script()).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_moss"), bin.join("moss")).unwrap();
    let admin_password_file = dir.path().join("ldap-admin-password");
    std::fs::write(&admin_password_file, ADMIN_PASSWORD).unwrap();
    let password = "Correct-Horse-7-Battery";
    let mut child = Command::new(&script)
        .arg("ana")
        .env("LDAP_URL", slapd.url())
        .env("LDAP_ADMIN_DN", ADMIN_DN)
        .env("LDAP_ADMIN_PASSWORD_FILE", &admin_password_file)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("MOSS_INGEST_ADDR", ingest.to_string())
        .env_remove("MOSS_SEAL_PUBLIC_KEY")
        .env_remove("MOSS_SEAL_PUBLIC_KEY_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "the script failed: {stdout} {stderr}"
    );
    assert!(
        !stdout.contains(password) && !stderr.contains(password),
        "the password is never printed"
    );

    // In the directory: ana binds with the new password.
    let whoami = Command::new("ldapwhoami")
        .args([
            "-x",
            "-H",
            &slapd.url(),
            "-D",
            &user_dn("ana"),
            "-w",
            password,
        ])
        .output()
        .unwrap();
    assert!(whoami.status.success(), "ana binds with the new password");
    // Online: the worker set the same password on ana's account.
    eventually(Duration::from_secs(30), "ana's new password online", || {
        system.emulator.password_matches(&upn, password) == Some(true)
    })
    .await;

    stop.cancel();
    watcher.await.unwrap().expect("the watcher stops cleanly");
    system.finish().await;
}
