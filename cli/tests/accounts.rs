//! `moss accounts` and `moss licenses` run as the binary against the emulator, with the
//! producer and a worker in this process over the real RabbitMQ: bulk-create of 1,000 users
//! with 900 seats (900 licensed, 100 awaiting a licence, all licensed once seats are added),
//! bad input refused before anything is published, assign / unassign (a freed seat goes to a
//! user awaiting one), import into LDIF with a 0600 temporary-password file, and the licence
//! table.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use moss_emulator::{Seed, UserSeed};
use moss_workers::PacingSettings;
use serde_json::Value;
use sha1::{Digest, Sha1};

mod support;

use support::*;

const ENTERPRISEPACK_ID: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";
const EMS_ID: &str = "efccb6f7-5641-4e0e-bd10-b4976e1bf68e";

/// Runs `moss` against the system's tenant (the emulator) and producer.
fn accounts(system: &System, args: &[&str]) -> (i32, String, String) {
    let tenant = system.emulator.tenant();
    let output = Command::new(env!("CARGO_BIN_EXE_moss"))
        .args(args)
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

/// A worker fast enough for a thousand users, looking for free seats every half second.
fn quick(settings: &mut moss_workers::WorkerSettings) {
    settings.pacing = PacingSettings {
        initial_rate: 400.0,
        min_rate: 50.0,
        max_rate: 800.0,
        ..PacingSettings::default()
    };
    settings.licence_recheck = Duration::from_millis(500);
}

fn holds(user: &Value, sku: &str) -> bool {
    user["assignedLicenses"]
        .as_array()
        .is_some_and(|licences| licences.iter().any(|l| l["skuId"] == sku))
}

/// Users (not deleted) holding `sku`.
fn licensed(system: &System, sku: &str) -> usize {
    system
        .emulator
        .state()
        .users
        .iter()
        .filter(|user| user["_emulator"]["deleted"] != true && holds(user, sku))
        .count()
}

fn online_users(system: &System) -> usize {
    system.emulator.state().users.len()
}

fn write_csv(dir: &std::path::Path, count: usize) -> std::path::PathBuf {
    let mut text = String::from("objectGUID,sAMAccountName,displayName\n");
    for n in 0..count {
        text.push_str(&format!(
            "{},user{n:04},\"User {n:04}, Contoso\"\n",
            uuid::Uuid::new_v4()
        ));
    }
    let path = dir.join("users.csv");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_create_of_a_thousand_users_with_900_seats_parks_100_until_seats_are_added() {
    let system = System::spawn_tuned(quick).await;
    system
        .emulator
        .set_sku_units("ENTERPRISEPACK", 900)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path(), 1000);
    let csv = csv.to_str().unwrap();
    let plan = [
        "accounts",
        "bulk-create",
        "--input",
        csv,
        "--license",
        "enterprisepack",
        "--usage-location",
        "DE",
    ];

    // Without a terminal and without --yes it shows the plan and refuses.
    let (code, stdout, stderr) = accounts(&system, &plan);
    assert_ne!(code, 0);
    assert!(stderr.contains("pass --yes"), "{stderr}");
    assert!(stdout.contains("creates            1000"), "{stdout}");
    assert!(
        stdout.contains("domain             contoso.com"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1000 seats needed, 900 free of 900: 100 users will await a licence"),
        "{stdout}"
    );
    assert_eq!(online_users(&system), 0, "nothing is published unconfirmed");

    let mut confirmed = plan.to_vec();
    confirmed.push("--yes");
    let (code, stdout, stderr) = accounts(&system, &confirmed);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("published 1000 events"), "{stdout}");
    eventually(Duration::from_secs(50), "every account is created", || {
        system.worker().counters().applied >= 1000
    })
    .await;
    assert_eq!(online_users(&system), 1000);
    assert_eq!(licensed(&system, ENTERPRISEPACK_ID), 900);
    assert_eq!(system.worker().awaiting_licence(), 100);
    assert_eq!(system.worker().counters().dead_lettered, 0);
    let user = system.emulator.user("user0001@contoso.com").unwrap();
    assert_eq!(user["usageLocation"], "DE");

    // A second run finds every user online already and publishes nothing.
    let (code, stdout, stderr) = accounts(&system, &confirmed);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("already online     1000"), "{stdout}");
    assert!(stdout.contains("nothing to create"), "{stdout}");

    system
        .emulator
        .set_sku_units("ENTERPRISEPACK", 1000)
        .unwrap();
    eventually(Duration::from_secs(20), "the 100 get their licence", || {
        system.worker().awaiting_licence() == 0
    })
    .await;
    assert_eq!(licensed(&system, ENTERPRISEPACK_ID), 1000);
    assert_eq!(system.worker().licences_resumed(), 100);

    let (code, stdout, stderr) = accounts(&system, &["licenses", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let table: Value = serde_json::from_str(&stdout).unwrap();
    let pack = table["skus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|sku| sku["sku_part_number"] == "ENTERPRISEPACK")
        .unwrap();
    assert_eq!(pack["bought"], 1000);
    assert_eq!(pack["used"], 1000);
    assert_eq!(pack["free"], 0);
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_its_line_before_anything_is_published() {
    let system = System::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let good = write_csv(dir.path(), 3);
    let good = good.to_str().unwrap();

    let (code, _, stderr) = accounts(
        &system,
        &[
            "accounts",
            "bulk-create",
            "--input",
            good,
            "--license",
            "NOSUCHSKU",
            "--usage-location",
            "DE",
            "--yes",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("--license NOSUCHSKU: the tenant has no subscription for this SKU; its SKUs are: ENTERPRISEPACK, EMS, EXCHANGESTANDARD"),
        "{stderr}"
    );

    let (code, _, stderr) = accounts(
        &system,
        &[
            "accounts",
            "bulk-create",
            "--input",
            good,
            "--license",
            "EMS",
            "--domain",
            "fabrikam.com",
            "--usage-location",
            "DE",
            "--yes",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr
            .contains("--domain fabrikam.com: the tenant has not accepted (verified) this domain"),
        "{stderr}"
    );

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "subject,account_name,usage_location\n{},ana,DE\nnot-a-guid,ben,DE\n{},,DE\n{},cleo,Germany\n{},dan\n",
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4()
        ),
    )
    .unwrap();
    let (code, _, stderr) = accounts(
        &system,
        &[
            "accounts",
            "bulk-create",
            "--input",
            bad.to_str().unwrap(),
            "--license",
            "EMS",
            "--yes",
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("line 3: subject:"), "{stderr}");
    assert!(
        stderr.contains("line 4: account_name: is missing"),
        "{stderr}"
    );
    assert!(stderr.contains("line 5: usage_location:"), "{stderr}");
    assert!(
        stderr.contains("line 6: the row has 2 fields where the header has 3"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was published"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(system.worker().counters().received, 0);
    assert_eq!(online_users(&system), 0);
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_and_unassign_keep_the_link_and_a_freed_seat_goes_to_a_user_awaiting_one() {
    let system = System::spawn_tuned(quick).await;
    system.emulator.set_sku_units("EMS", 1).unwrap();
    let ana = uuid::Uuid::new_v4().to_string();
    let ben = uuid::Uuid::new_v4().to_string();

    let (code, stdout, stderr) = accounts(
        &system,
        &[
            "accounts",
            "assign",
            "--subject",
            &ana,
            "--new",
            "ana@contoso.com",
            "--license",
            "EMS",
            "--usage-location",
            "NL",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("assigning the new online account ana@contoso.com"),
        "{stdout}"
    );
    eventually(Duration::from_secs(15), "ana is licensed", || {
        system
            .emulator
            .user("ana@contoso.com")
            .is_some_and(|user| holds(&user, EMS_ID))
    })
    .await;

    // The only seat is taken: ben's new account waits for one.
    let (code, stdout, stderr) = accounts(
        &system,
        &[
            "accounts",
            "assign",
            "--subject",
            &ben,
            "--new",
            "ben@contoso.com",
            "--license",
            "EMS",
            "--usage-location",
            "NL",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("EMS: no seat is free; ben@contoso.com will await a licence"),
        "{stdout}"
    );
    eventually(Duration::from_secs(15), "ben awaits a licence", || {
        system.worker().awaiting_licence() == 1
    })
    .await;
    assert!(system.emulator.user("ben@contoso.com").is_some());

    // Mistakes are one sentence each.
    let (code, _, stderr) = accounts(
        &system,
        &[
            "accounts",
            "assign",
            "--subject",
            &uuid::Uuid::new_v4().to_string(),
            "--new",
            "ana@contoso.com",
            "--usage-location",
            "NL",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("exists already; link it with --existing ana@contoso.com"),
        "{stderr}"
    );
    let (code, _, stderr) = accounts(
        &system,
        &[
            "accounts",
            "assign",
            "--subject",
            &uuid::Uuid::new_v4().to_string(),
            "--existing",
            "ana@contoso.com",
            "--usage-location",
            "NL",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("linked to another directory user"),
        "{stderr}"
    );
    let (code, _, stderr) = accounts(
        &system,
        &[
            "accounts",
            "assign",
            "--subject",
            &uuid::Uuid::new_v4().to_string(),
            "--new",
            "cleo@fabrikam.com",
            "--usage-location",
            "NL",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("the tenant has not accepted the domain fabrikam.com"),
        "{stderr}"
    );
    let (code, _, stderr) = accounts(&system, &["accounts", "unassign", "--subject", &ana]);
    assert_ne!(code, 0);
    assert!(stderr.contains("pass --yes"), "{stderr}");

    // Unassigning ana frees her seat; ben gets it without waiting for the periodic look.
    let (code, stdout, stderr) = accounts(
        &system,
        &["accounts", "unassign", "--subject", &ana, "--yes"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("licences freed (EMS)"), "{stdout}");
    eventually(Duration::from_secs(15), "ben holds the freed seat", || {
        system
            .emulator
            .user("ben@contoso.com")
            .is_some_and(|user| holds(&user, EMS_ID))
    })
    .await;
    assert_eq!(system.worker().awaiting_licence(), 0);
    let ana_online = system.emulator.user("ana@contoso.com").unwrap();
    assert!(!holds(&ana_online, EMS_ID));
    assert_eq!(ana_online["accountEnabled"], false);
    assert_eq!(
        ana_online["onPremisesImmutableId"],
        ana.as_str(),
        "the link is kept"
    );

    // Assigning the existing account again links the same one; no seat, so she awaits.
    let (code, stdout, stderr) = accounts(
        &system,
        &[
            "accounts",
            "assign",
            "--subject",
            &ana,
            "--existing",
            "ana@contoso.com",
            "--license",
            "EMS",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("assigning the existing online account"),
        "{stdout}"
    );
    eventually(
        Duration::from_secs(15),
        "ana awaits again, signed in",
        || {
            system.worker().awaiting_licence() == 1
                && system
                    .emulator
                    .user("ana@contoso.com")
                    .is_some_and(|user| user["accountEnabled"] == true)
        },
    )
    .await;
    system.emulator.set_sku_units("EMS", 2).unwrap();
    eventually(Duration::from_secs(15), "ana is licensed again", || {
        system
            .emulator
            .user("ana@contoso.com")
            .is_some_and(|user| holds(&user, EMS_ID))
    })
    .await;
    assert_eq!(licensed(&system, EMS_ID), 2);
    assert_eq!(system.worker().counters().dead_lettered, 0);
    system.finish().await;
}

/// LDIF content records: (dn, [(attribute, value)]), with folding and base64 undone.
fn parse_ldif(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut logical: Vec<String> = Vec::new();
    for raw in text.lines() {
        match raw.strip_prefix(' ') {
            Some(rest) => logical.last_mut().unwrap().push_str(rest),
            None => logical.push(raw.to_owned()),
        }
    }
    let mut entries = Vec::new();
    for line in logical {
        if line.is_empty() || line.starts_with('#') || line.starts_with("version:") {
            continue;
        }
        let (name, value) = match line.split_once(":: ") {
            Some((name, encoded)) => (
                name.to_owned(),
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .unwrap(),
                )
                .unwrap(),
            ),
            None => {
                let (name, value) = line.split_once(": ").expect("attribute: value");
                (name.to_owned(), value.to_owned())
            }
        };
        if name == "dn" {
            entries.push((value, Vec::new()));
        } else {
            entries.last_mut().unwrap().1.push((name, value));
        }
    }
    entries
}

fn ssha_matches(stored: &str, password: &str) -> bool {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(stored.strip_prefix("{SSHA}").unwrap())
        .unwrap();
    let (digest, salt) = bytes.split_at(20);
    let mut hasher = Sha1::new();
    hasher.update(password.as_bytes());
    hasher.update(salt);
    hasher.finalize().as_slice() == digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_writes_ldif_for_unlinked_online_accounts_and_a_0600_password_file() {
    let mut seed = Seed::for_tests();
    for (upn, display) in [
        ("zoe@contoso.com", "Zoë Ångström"),
        ("li.wei@contoso.com", "Li Wei"),
    ] {
        seed.users.push(UserSeed {
            user_principal_name: upn.to_owned(),
            display_name: display.to_owned(),
            mail_nickname: None,
            usage_location: Some("NL".to_owned()),
            account_enabled: true,
            employee_id: None,
            licenses: vec!["EMS".to_owned()],
        });
    }
    let system = System::spawn_seeded(seed, quick).await;
    // One account a directory user is linked to already: not imported.
    let linked = uuid::Uuid::new_v4().to_string();
    let (code, _, stderr) = accounts(
        &system,
        &[
            "accounts",
            "assign",
            "--subject",
            &linked,
            "--new",
            "linked@contoso.com",
            "--usage-location",
            "NL",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    eventually(Duration::from_secs(15), "the linked account exists", || {
        system.emulator.user("linked@contoso.com").is_some()
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let ldif_path = dir.path().join("import.ldif");
    let passwords_path = dir.path().join("passwords.txt");
    let args = [
        "accounts",
        "import",
        "--base-dn",
        "ou=people,dc=example,dc=org",
        "--ldif",
        ldif_path.to_str().unwrap(),
        "--passwords",
        passwords_path.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = accounts(&system, &args);
    assert_ne!(code, 0, "no terminal, no --yes");
    assert!(stderr.contains("pass --yes"), "{stderr}");
    assert!(
        stdout.contains("2 online accounts have no directory user"),
        "{stdout}"
    );
    assert!(stdout.contains("li.wei@contoso.com"), "{stdout}");
    assert!(!stdout.contains("linked@contoso.com"), "{stdout}");
    assert!(!ldif_path.exists() && !passwords_path.exists());

    let mut confirmed = args.to_vec();
    confirmed.push("--yes");
    let (code, stdout, stderr) = accounts(&system, &confirmed);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote 2 entries"), "{stdout}");

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&passwords_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let passwords = std::fs::read_to_string(&passwords_path).unwrap();
    let lines: Vec<Vec<&str>> = passwords
        .lines()
        .map(|line| line.split('\t').collect())
        .collect();
    assert_eq!(lines.len(), 2, "{passwords}");

    let text = std::fs::read_to_string(&ldif_path).unwrap();
    assert!(text.starts_with("version: 1\n"));
    assert!(text.lines().all(|line| line.chars().count() <= 76));
    let entries = parse_ldif(&text);
    assert_eq!(entries.len(), 2);
    for (dn, attributes) in &entries {
        let get = |name: &str| -> Vec<&str> {
            attributes
                .iter()
                .filter(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
                .collect()
        };
        let uid = get("uid")[0];
        assert_eq!(dn, &format!("uid={uid},ou=people,dc=example,dc=org"));
        assert!(get("objectClass").contains(&"inetOrgPerson"));
        assert_eq!(get("sn").len(), 1);
        let mail = get("mail")[0];
        let line = lines
            .iter()
            .find(|line| line[0] == uid)
            .expect("a password line per user");
        assert_eq!(line[1], mail);
        assert!(line[2].len() >= 16);
        assert!(ssha_matches(get("userPassword")[0], line[2]));
        assert!(
            !text.contains(line[2]),
            "the LDIF never holds a clear password"
        );
        if uid == "zoe" {
            assert_eq!(get("cn")[0], "Zoë Ångström");
        }
    }
    // An existing file is never overwritten.
    let (code, _, stderr) = accounts(&system, &confirmed);
    assert_ne!(code, 0);
    assert!(stderr.contains("the file exists already"), "{stderr}");
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_licence_table_shows_bought_used_and_free_per_sku() {
    let system = System::spawn().await;
    system
        .emulator
        .set_sku_units("EXCHANGESTANDARD", 7)
        .unwrap();
    let (code, stdout, stderr) = accounts(&system, &["licenses"]);
    assert_eq!(code, 0, "{stderr}");
    let header = stdout.lines().next().unwrap();
    for column in ["SKU", "BOUGHT", "USED", "FREE"] {
        assert!(header.contains(column), "{stdout}");
    }
    let row = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("EXCHANGESTANDARD"))
        .expect("a row per SKU");
    let figures: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&figures[1..4], ["7", "0", "7"], "{row}");
    assert!(stdout.contains("ENTERPRISEPACK") && stdout.contains("EMS"));
    system.finish().await;
}
