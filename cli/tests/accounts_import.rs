//! `moss accounts import` into a configured directory and `moss accounts bulk-create
//! --from-directory`, run as the binary against a real slapd (the producer tests' helper) and
//! the emulator, with the producer and a worker in this process over the real RabbitMQ:
//! imported users appear in the directory (searched back), their temporary password binds, a
//! rerun adds nothing, a failing add is named and nothing of it is kept; bulk-create proposes
//! accounts for the watched users that have none while the watcher runs, and a rerun creates
//! nothing more.

#[path = "../../producer/tests/ldap/mod.rs"]
mod ldap;
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ldap::*;
use moss_emulator::{Seed, UserSeed};
use moss_producer::watch::{LdapWatchSettings, run_ldap};
use secrecy::SecretString;
use support::*;
use tokio_util::sync::CancellationToken;

/// Runs `moss` against the system's tenant and producer, with the directory configured as the
/// watcher's `MOSS_LDAP_*` settings.
fn moss_with_directory(
    system: &System,
    slapd: &Slapd,
    password_file: &Path,
    args: &[&str],
) -> (i32, String, String) {
    moss_with(system, &slapd.url(), password_file, &[], args)
}

/// [`moss_with_directory`] at `url`, with more environment (`MOSS_LDAP_CA_FILE`, …).
fn moss_with(
    system: &System,
    url: &str,
    password_file: &Path,
    environment: &[(&str, &str)],
    args: &[&str],
) -> (i32, String, String) {
    let tenant = system.emulator.tenant();
    let output = Command::new(env!("CARGO_BIN_EXE_moss"))
        .args(args)
        .envs(environment.iter().copied())
        .env("MOSS_TENANT_ID", tenant.tenant_id.to_string())
        .env("MOSS_CLIENT_ID", tenant.client_id.to_string())
        .env("MOSS_CLIENT_SECRET", &tenant.client_secret)
        .env("MOSS_GRAPH_URL", system.emulator.base_url())
        .env("MOSS_LOGIN_URL", system.emulator.base_url())
        .env("MOSS_EXCHANGE_URL", system.emulator.base_url())
        .env(
            "MOSS_INGEST_ADDR",
            system.producer.as_ref().unwrap().ingest_addr().to_string(),
        )
        .env("MOSS_LDAP_URL", url)
        .env("MOSS_LDAP_BASE", BASE)
        .env("MOSS_LDAP_BIND_DN", ADMIN_DN)
        .env("MOSS_LDAP_PASSWORD_FILE", password_file)
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

/// `ldapsearch -LLL` of `dn` as the administrator: attribute → values (base64 values decoded).
fn read_entry(slapd: &Slapd, dn: &str) -> Option<HashMap<String, Vec<String>>> {
    use base64::Engine as _;
    let output = Command::new("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &slapd.url()])
        .args(["-D", ADMIN_DN, "-w", ADMIN_PASSWORD])
        .args(["-s", "base", "-b", dn, "(objectClass=*)", "*", "entryUUID"])
        .output()
        .expect("ldapsearch runs");
    if !output.status.success() {
        return None;
    }
    let mut attributes: HashMap<String, Vec<String>> = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let (name, value) = if let Some((name, encoded)) = line.split_once(":: ") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            (name, String::from_utf8(bytes).unwrap())
        } else if let Some((name, value)) = line.split_once(": ") {
            (name, value.to_owned())
        } else {
            continue;
        };
        attributes.entry(name.to_owned()).or_default().push(value);
    }
    Some(attributes)
}

/// Whether a simple bind as `dn` with `password` succeeds (`ldapwhoami`).
fn binds(slapd: &Slapd, dn: &str, password: &str) -> bool {
    Command::new("ldapwhoami")
        .args(["-x", "-H", &slapd.url(), "-D", dn, "-w", password])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ldapwhoami runs")
        .success()
}

fn unlinked(upn: &str, display: &str) -> UserSeed {
    UserSeed {
        user_principal_name: upn.to_owned(),
        display_name: display.to_owned(),
        mail_nickname: None,
        usage_location: Some("NL".to_owned()),
        account_enabled: true,
        employee_id: None,
        licenses: vec!["EMS".to_owned()],
    }
}

fn admin_password_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("ldap-password");
    std::fs::write(&path, format!("{ADMIN_PASSWORD}\n")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_adds_unlinked_accounts_to_the_directory_and_a_rerun_adds_nothing() {
    let mut seed = Seed::for_tests();
    seed.users.push(unlinked("zoe@contoso.com", "Zoë Ångström"));
    seed.users.push(unlinked("li.wei@contoso.com", "Li Wei"));
    seed.users
        .push(unlinked("taken@contoso.com", "Taken Elsewhere"));
    let system = System::spawn_seeded(seed, |_| {}).await;
    let slapd = Slapd::start();
    // The user name "taken" belongs to another entry of the directory: left out, not added.
    slapd.apply(
        "ldapadd",
        &format!(
            "dn: uid=taken,ou=groups,{BASE}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: taken\ncn: Someone Else\nsn: Else\n\n"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let bind_password = admin_password_file(dir.path());
    let passwords = dir.path().join("passwords.txt");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "accounts",
            "import",
            "--base-dn",
            "ou=people,dc=example,dc=org",
            "--passwords",
            passwords.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        moss_with_directory(&system, &slapd, &bind_password, &args)
    };
    let zoe_dn = format!("uid=zoe,ou=people,{BASE}");
    let li_dn = format!("uid=li.wei,ou=people,{BASE}");

    // Without a terminal and without --yes: the preview, then a refusal; nothing written.
    let (code, stdout, stderr) = run(&[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("pass --yes"), "{stderr}");
    assert!(stdout.contains("li.wei@contoso.com"), "{stdout}");
    assert!(
        stdout.contains("taken@contoso.com: the user name taken is taken in the directory by uid=taken,ou=groups,dc=example,dc=org"),
        "{stdout}"
    );
    assert!(stdout.contains("2 to add, 0 there already"), "{stdout}");
    let (code, stdout, _) = run(&["--dry-run"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("dry run: nothing was written"), "{stdout}");
    assert!(read_entry(&slapd, &zoe_dn).is_none());
    assert!(!passwords.exists());

    // Adds the directory refuses (the parent entry does not exist) are each named with the
    // LDAP result, the command fails, and no password is kept for them.
    let (code, stdout, stderr) = moss_with_directory(
        &system,
        &slapd,
        &bind_password,
        &[
            "accounts",
            "import",
            "--base-dn",
            "ou=missing,dc=example,dc=org",
            "--passwords",
            passwords.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stdout.contains(
            "failed          uid=zoe,ou=missing,dc=example,dc=org: LDAP result 32 (noSuchObject)"
        ),
        "{stdout}"
    );
    assert!(stderr.contains("2 of 2 entries were not added"), "{stderr}");
    assert!(stderr.contains("uid=li.wei,ou=missing"), "{stderr}");
    assert!(
        !passwords.exists(),
        "no password is kept for entries not added"
    );

    // Confirmed: both added, each reported; the passwords only in the 0600 file.
    let (code, stdout, stderr) = run(&["--yes"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("added           {zoe_dn}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("added           {li_dn}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("added 2, already present 0, failed 0"),
        "{stdout}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&passwords).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let file = std::fs::read_to_string(&passwords).unwrap();
    let lines: Vec<Vec<&str>> = file.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{file}");
    for line in &lines {
        let (uid, upn, password) = (line[0], line[1], line[2]);
        assert!(password.len() >= 16);
        assert!(
            !stdout.contains(password) && !stderr.contains(password),
            "a temporary password was printed"
        );
        // Searched back: the entry as proposed, its password binds, the wrong one does not.
        let dn = format!("uid={uid},ou=people,{BASE}");
        let entry = read_entry(&slapd, &dn).expect("the imported entry is in the directory");
        assert_eq!(entry["mail"], vec![upn.to_owned()]);
        assert!(entry["objectClass"].contains(&"inetOrgPerson".to_owned()));
        assert!(entry["userPassword"][0].starts_with("{SSHA}"));
        assert!(binds(&slapd, &dn, password), "{dn} binds with its password");
        assert!(!binds(&slapd, &dn, "not-the-password"));
        // The link command names the new entry's entryUUID.
        let uuid = &entry["entryUUID"][0];
        assert!(
            stdout.contains(&format!(
                "moss accounts assign --subject {uuid} --existing {upn}"
            )),
            "{stdout}"
        );
    }
    let zoe = read_entry(&slapd, &zoe_dn).unwrap();
    assert_eq!(zoe["cn"], vec!["Zoë Ångström".to_owned()]);
    assert!(read_entry(&slapd, &format!("uid=taken,ou=people,{BASE}")).is_none());

    // A rerun finds both in the directory and adds nothing (and writes no password file).
    std::fs::rename(&passwords, dir.path().join("first-run.txt")).unwrap();
    let (code, stdout, stderr) = run(&["--yes"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("0 to add, 2 there already"), "{stdout}");
    assert!(stdout.contains("(in the directory already)"), "{stdout}");
    assert!(stdout.contains("nothing to add"), "{stdout}");
    assert!(!passwords.exists());

    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_create_from_the_directory_proposes_accounts_for_watched_users_without_one() {
    let system = System::spawn().await;
    let slapd = Slapd::start();
    for (uid, given, surname) in [
        ("ana", "Ana", "Silva"),
        ("ben", "Ben", "Okafor"),
        ("carl", "Carl", "Berg"),
        ("dora", "Dora", "Lind"),
    ] {
        slapd.apply("ldapadd", &user_ldif(uid, given, surname, &[]));
    }
    // carl is disabled in the directory: left out.
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n\n",
        user_dn("carl")
    ));
    let dir = tempfile::tempdir().unwrap();
    let bind_password = admin_password_file(dir.path());

    // The service runs as in production: the watcher follows the directory (its sled open).
    let ingest = system.producer.as_ref().unwrap().ingest_addr();
    let watch = LdapWatchSettings::new(
        slapd.url(),
        BASE.to_owned(),
        ADMIN_DN.to_owned(),
        SecretString::from(ADMIN_PASSWORD.to_owned()),
        dir.path().join("watch-ldap"),
        format!("http://{ingest}"),
    );
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(run_ldap(watch, stop.clone()));

    // dora has an online account already, linked by her entryUUID.
    let dora = slapd.entry_uuid(&user_dn("dora"));
    let (code, _, stderr) = moss_with_directory(
        &system,
        &slapd,
        &bind_password,
        &[
            "accounts",
            "assign",
            "--subject",
            &dora,
            "--new",
            "dora@contoso.com",
            "--usage-location",
            "SE",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    eventually(Duration::from_secs(20), "dora's account exists", || {
        system.emulator.user("dora@contoso.com").is_some()
    })
    .await;

    let plan = [
        "accounts",
        "bulk-create",
        "--from-directory",
        "--license",
        "ENTERPRISEPACK",
        "--usage-location",
        "DE",
    ];
    let (code, stdout, stderr) = moss_with_directory(&system, &slapd, &bind_password, &plan);
    assert_ne!(code, 0, "no terminal, no --yes");
    assert!(stderr.contains("pass --yes"), "{stderr}");
    assert!(stdout.contains("creates            2"), "{stdout}");
    assert!(stdout.contains("already online     1"), "{stdout}");
    assert!(stdout.contains("left out           1"), "{stdout}");
    assert!(stdout.contains("ana@contoso.com"), "{stdout}");
    assert!(
        stdout.contains("carl: disabled in the directory (pwdAccountLockedTime)"),
        "{stdout}"
    );
    assert!(system.emulator.user("ana@contoso.com").is_none());

    let mut confirmed = plan.to_vec();
    confirmed.push("--yes");
    let (code, stdout, stderr) = moss_with_directory(&system, &slapd, &bind_password, &confirmed);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("published 2 events"), "{stdout}");
    for uid in ["ana", "ben"] {
        let upn = format!("{uid}@contoso.com");
        let subject = slapd.entry_uuid(&user_dn(uid));
        eventually(Duration::from_secs(30), "the account exists", || {
            system.emulator.user(&upn).is_some_and(|user| {
                user["onPremisesImmutableId"]
                    .as_str()
                    .is_some_and(|anchor| anchor.eq_ignore_ascii_case(&subject))
            })
        })
        .await;
    }
    assert!(system.emulator.user("carl@contoso.com").is_none());

    // A rerun finds them online and creates nothing more.
    let (code, stdout, stderr) = moss_with_directory(&system, &slapd, &bind_password, &confirmed);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("already online     3"), "{stdout}");
    assert!(stdout.contains("nothing to create"), "{stdout}");

    // Without a directory configured, --from-directory says what to set.
    let output = Command::new(env!("CARGO_BIN_EXE_moss"))
        .args(plan)
        .env_remove("MOSS_LDAP_URL")
        .env_remove("MOSS_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no directory is configured"), "{stderr}");

    stop.cancel();
    watcher.await.unwrap().unwrap();
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_over_ldaps_and_starttls_trusts_the_ca_file_and_refuses_without_it() {
    let mut seed = Seed::for_tests();
    seed.users.push(unlinked("tess@contoso.com", "Tess Ng"));
    seed.users.push(unlinked("ulf@contoso.com", "Ulf Berg"));
    let system = System::spawn_seeded(seed, |_| {}).await;
    let pki = TestPki::new("accounts-import");
    // This slapd refuses simple binds without TLS.
    let slapd = Slapd::start_tls(&pki);
    let dir = tempfile::tempdir().unwrap();
    let bind_password = admin_password_file(dir.path());
    let ca = slapd.ca_file().to_str().unwrap().to_owned();
    let import = |passwords: &str| {
        vec![
            "accounts".to_owned(),
            "import".to_owned(),
            "--base-dn".to_owned(),
            format!("ou=people,{BASE}"),
            "--passwords".to_owned(),
            dir.path().join(passwords).to_str().unwrap().to_owned(),
            "--yes".to_owned(),
        ]
    };
    let args = import("first.txt");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // Without the CA file the system roots do not trust the test CA: refused, nothing added.
    let (code, stdout, stderr) = moss_with(&system, &slapd.ldaps_url(), &bind_password, &[], &args);
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains("certificate moss does not trust"),
        "{stderr}"
    );
    assert!(!dir.path().join("first.txt").exists());

    // ldaps:// with the CA file: both added.
    let (code, stdout, stderr) = moss_with(
        &system,
        &slapd.ldaps_url(),
        &bind_password,
        &[("MOSS_LDAP_CA_FILE", &ca)],
        &args,
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("added 2, already present 0, failed 0"),
        "{stdout}"
    );
    for uid in ["tess", "ulf"] {
        assert!(!slapd.entry_uuid(&user_dn(uid)).is_empty());
    }

    // StartTLS on ldap:// with the CA file: the rerun finds both and adds nothing.
    let args = import("second.txt");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = moss_with(
        &system,
        &slapd.url(),
        &bind_password,
        &[("MOSS_LDAP_CA_FILE", &ca), ("MOSS_LDAP_STARTTLS", "true")],
        &args,
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("0 to add, 2 there already"), "{stdout}");
    assert!(!dir.path().join("second.txt").exists());
    system.finish().await;
}
