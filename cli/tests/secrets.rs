//! Secrets, through the real `moss` binary: the client secret read from
//! `MOSS_CLIENT_SECRET_FILE` is used and never printed (not in `--help`, the logs at trace
//! level, `moss dlq`, nor the data folder), clear passwords never reach the worker's logs,
//! the data folder or what `moss dlq list/show` print, and the data folder is created 0700.

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use moss_broker::{Broker, Topology};
use moss_emulator::Emulator;
use moss_producer::ProducerSettings;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use support::{AMQP_URL, PARTITIONS, dead_count_becomes, event, eventually, moss, new_topology};
use tokio_util::sync::CancellationToken;

/// A `moss worker` child, killed when dropped so a failing test leaves no process behind.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Deletes the test's topology however the test ends.
struct Cleanup(Topology);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let topology = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(broker) = Broker::connect(AMQP_URL, "moss-secrets-cleanup").await {
                    let _ = broker.delete_topology(&topology).await;
                    let _ = broker.close().await;
                }
            });
        })
        .join();
    }
}

fn private_file(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
        {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_secret_from_a_file_and_clear_passwords_are_never_printed_and_the_data_dir_is_0700()
 {
    let emulator = Emulator::start_for_tests().await.expect("emulator starts");
    let topology = new_topology();
    let _cleanup = Cleanup(topology.clone());
    let broker = Broker::connect(AMQP_URL, "moss-secrets-test")
        .await
        .unwrap();
    broker.declare(&topology).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = moss_schemas::generate_key_pair();
    let mut producer_settings = ProducerSettings::new(
        dir.path().join("producer"),
        AMQP_URL.to_owned(),
        topology.clone(),
        moss_schemas::SealingKey::parse(&keys.public).unwrap(),
    );
    producer_settings.ingest_addr = "127.0.0.1:0".parse().unwrap();
    let producer = moss_producer::start(producer_settings, CancellationToken::new())
        .await
        .expect("producer starts");

    let tenant = emulator.tenant();
    let secret = tenant.client_secret.clone();
    let secret_file = dir.path().join("client-secret");
    private_file(&secret_file, &format!("{secret}\n"));
    let key_file = dir.path().join("moss-seal.key");
    private_file(&key_file, keys.private.expose_secret());
    let data_dir = dir.path().join("data").join("moss");
    let log_file = dir.path().join("worker.log");
    let base_url = emulator.base_url();
    let worker_command = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_moss"));
        command
            .args(args)
            .env("MOSS_AMQP_URL", AMQP_URL)
            .env("MOSS_TOPOLOGY_PREFIX", topology.prefix().as_str())
            .env("MOSS_PARTITIONS", PARTITIONS.to_string())
            .env("MOSS_DATA_DIR", &data_dir)
            .env("MOSS_TENANT_ID", tenant.tenant_id.to_string())
            .env("MOSS_CLIENT_ID", tenant.client_id.to_string())
            .env("MOSS_CLIENT_SECRET_FILE", &secret_file)
            .env_remove("MOSS_CLIENT_SECRET")
            .env("MOSS_GRAPH_URL", &base_url)
            .env("MOSS_LOGIN_URL", &base_url)
            .env("MOSS_EXCHANGE_URL", &base_url)
            .env("MOSS_SEAL_PRIVATE_KEY_FILE", &key_file)
            .env("MOSS_METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            .stdin(Stdio::null());
        command
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_file)
        .unwrap();
    let worker = Worker(
        worker_command(&["worker"])
            .env("RUST_LOG", "trace")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("moss worker starts"),
    );

    // One user applied with two passwords; another, on a domain the tenant lacks, dead-lettered
    // with its password.
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let first = format!("First-{run}-Pw1!");
    let second = format!("Second-{run}-Pw2!");
    let dead = format!("Dead-{run}-Pw3!");
    let sku = tenant.skus[0].sku_part_number.clone();
    let subject = uuid::Uuid::new_v4().to_string();
    let upn = format!("sec-{run}@{}", tenant.default_domain);
    let lost_subject = uuid::Uuid::new_v4().to_string();
    let http = reqwest::Client::new();
    let events = [
        event(
            &subject,
            "moss.user.added.v1",
            1,
            json!({"account_name": format!("sec{run}"), "display_name": "Sec Ret",
                   "online_account": {"upn": upn, "usage_location": "DE", "licenses": [sku]},
                   "initial_password": {"clear": first}}),
        ),
        event(
            &subject,
            "moss.user.password_changed.v1",
            2,
            json!({"password": {"clear": second}}),
        ),
        event(
            &lost_subject,
            "moss.user.added.v1",
            1,
            json!({"account_name": format!("lost{run}"), "display_name": "Lost",
                   "online_account": {"upn": format!("lost-{run}@nowhere-{run}.example"),
                                      "usage_location": "DE", "licenses": [sku]},
                   "initial_password": {"clear": dead}}),
        ),
    ];
    for event in &events {
        let response = http
            .post(format!("http://{}/v1/events", producer.ingest_addr()))
            .header("content-type", "application/cloudevents+json")
            .body(serde_json::to_vec(event).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
    }
    eventually(
        Duration::from_secs(30),
        "the worker (with the secret from the file) applies the second password",
        || emulator.password_matches(&upn, &second) == Some(true),
    )
    .await;
    dead_count_becomes(&broker, &topology, 1, Duration::from_secs(20)).await;

    // What an operator sees.
    let dead_id = events[2]["id"].as_str().unwrap();
    let mut printed = String::new();
    for args in [
        vec!["dlq", "list", "--json"],
        vec!["dlq", "list"],
        vec!["dlq", "show", dead_id],
        vec!["dlq", "show", dead_id, "--json"],
    ] {
        let (code, stdout, stderr) = moss(&topology, &args);
        assert_eq!(code, 0, "moss {args:?}: {stderr}");
        printed.push_str(&stdout);
        printed.push_str(&stderr);
    }
    assert!(
        printed.contains(dead_id),
        "the dead letter is shown: {printed}"
    );
    let shown: Value =
        serde_json::from_str(&moss(&topology, &["dlq", "show", dead_id, "--json"]).1)
            .expect("dlq show --json prints JSON");
    assert!(!shown.to_string().is_empty());
    // `--help` names the settings, never a value.
    let help = worker_command(&["worker", "--help"])
        .env("MOSS_CLIENT_SECRET", &secret)
        .output()
        .unwrap();
    assert!(help.status.success());
    printed.push_str(&String::from_utf8_lossy(&help.stdout));
    assert!(String::from_utf8_lossy(&help.stdout).contains("MOSS_CLIENT_SECRET_FILE"));

    // Stop the worker and read everything it wrote.
    let pid = worker.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let mut worker = worker;
    for _ in 0..100 {
        if worker.0.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = String::from_utf8_lossy(&std::fs::read(&log_file).unwrap()).into_owned();
    assert!(
        logs.contains("TRACE"),
        "the logs were captured at trace level"
    );
    for (what, value) in [
        ("the client secret", &secret),
        ("the first password", &first),
        ("the second password", &second),
        ("the dead-lettered password", &dead),
    ] {
        assert!(
            !logs.contains(value.as_str()),
            "the worker's logs hold {what}"
        );
        assert!(
            !printed.contains(value.as_str()),
            "moss printed {what}:\n{printed}"
        );
        assert_eq!(
            files_containing(&data_dir, value),
            Vec::<PathBuf>::new(),
            "the data folder holds {what} in clear"
        );
    }

    // The data folder (and its parent, made on the way) exists, private to its owner.
    let mode = std::fs::metadata(&data_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data folder is {mode:o}, not 700");

    // An empty secret file is one sentence naming the setting, and no worker starts.
    let empty = dir.path().join("empty-secret");
    private_file(&empty, "\n# nothing\n");
    let refused = worker_command(&["worker"])
        .env("MOSS_CLIENT_SECRET_FILE", &empty)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("MOSS_CLIENT_SECRET_FILE") && said.contains("empty"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");

    producer.shutdown().await;
    broker.delete_topology(&topology).await.unwrap();
    broker.close().await.unwrap();
    emulator.shutdown().await;
}
