//! `moss worker` SIGKILLed at random moments while it applies user lifecycles, and restarted on
//! the same data folder each time, still applies every event once in effect: each user ends in
//! exactly its expected state, no account is created twice (a create after a crash adopts the
//! account by its anchor), no user's `accountEnabled` ever flips backwards, and nothing is
//! dead-lettered.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moss_broker::{Broker, Topology, TopologyPrefix};
use moss_emulator::Emulator;
use moss_producer::ProducerSettings;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const PARTITIONS: u16 = 4;
const USERS: usize = 45;
const KILLS: usize = 3;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A number in `0..bound`, different on every run.
fn random_below(bound: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % bound as u128) as usize
}

/// Deletes the test's queues and exchanges when the test ends, also when it panics.
struct TopologyCleanup(Option<Topology>);

impl Drop for TopologyCleanup {
    fn drop(&mut self) {
        let Some(topology) = self.0.take() else {
            return;
        };
        // Drop cannot await; a small runtime on its own thread does the deletion.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(broker) = Broker::connect(AMQP_URL, "moss-worker-crash-cleanup").await {
                    let _ = broker.delete_topology(&topology).await;
                    let _ = broker.close().await;
                }
            });
        })
        .join();
    }
}

/// A `moss worker` child, SIGKILLed when dropped so a failing test leaves no process behind.
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Everything a `moss worker` child is started with; every restart uses the same.
struct WorkerLaunch {
    data_dir: PathBuf,
    key_file: PathBuf,
    log_file: PathBuf,
    prefix: String,
    base_url: String,
    tenant_id: String,
    client_id: String,
    client_secret: String,
}

impl WorkerLaunch {
    fn spawn(&self) -> WorkerProcess {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_moss"))
            .arg("worker")
            .env("MOSS_AMQP_URL", AMQP_URL)
            .env("MOSS_TOPOLOGY_PREFIX", &self.prefix)
            .env("MOSS_PARTITIONS", PARTITIONS.to_string())
            .env("MOSS_DATA_DIR", &self.data_dir)
            .env("MOSS_TENANT_ID", &self.tenant_id)
            .env("MOSS_CLIENT_ID", &self.client_id)
            .env("MOSS_CLIENT_SECRET", &self.client_secret)
            .env("MOSS_GRAPH_URL", &self.base_url)
            .env("MOSS_LOGIN_URL", &self.base_url)
            .env("MOSS_EXCHANGE_URL", &self.base_url)
            .env("MOSS_SEAL_PRIVATE_KEY_FILE", &self.key_file)
            .env("MOSS_METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("MOSS_WORKER_NAME", "moss-crash-test-worker")
            .env("RUST_LOG", "warn,lapin=off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("moss worker starts");
        WorkerProcess(child)
    }

    /// The end of the workers' stderr so far, for a failure message.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn write_private_key(dir: &Path, key: &str) -> PathBuf {
    let path = dir.join("moss-seal.key");
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    writeln!(file, "{key}").unwrap();
    path
}

/// Messages in the partition queues, ready and unacknowledged (RabbitMQ's `messages`).
fn messages_in(queues: &[String]) -> usize {
    let output = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "name", "messages"])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(name, _)| queues.iter().any(|queue| queue == name))
        .map(|(_, count)| count.trim().parse::<usize>().unwrap_or(0))
        .sum()
}

/// One user's lifecycle, and what it must end as.
struct Lifecycle {
    subject: String,
    upn: String,
    last_password: String,
    removed: bool,
}

fn event(subject: &str, event_type: &str, sequence: u64, data: Value) -> Value {
    let mut event = json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": "moss-producer/crash-test",
        "type": event_type,
        "subject": subject,
        "time": chrono::Utc::now().to_rfc3339(),
        "sequence": sequence.to_string(),
    });
    event["data"] = data;
    event
}

/// The events of every lifecycle, interleaved across users so every partition has work.
fn lifecycle_events(users: &[Lifecycle], sku: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut sequence = 0u64;
    for step in 0..6 {
        for (index, user) in users.iter().enumerate() {
            sequence += 1;
            let (event_type, data) = match step {
                0 => (
                    "moss.user.added.v1",
                    json!({
                        "account_name": format!("crash{index}"),
                        "display_name": format!("Crash User {index}"),
                        "given_name": "Crash",
                        "surname": format!("User{index}"),
                        "online_account": {"upn": user.upn, "usage_location": "DE", "licenses": [sku]},
                        "initial_password": {"clear": "First-Passw0rd!"},
                    }),
                ),
                1 => (
                    "moss.user.password_changed.v1",
                    json!({"password": {"clear": format!("Second-Passw0rd-{index}!")}}),
                ),
                2 => (
                    "moss.user.deactivated.v1",
                    json!({"reason": "left the company"}),
                ),
                3 => ("moss.user.reactivated.v1", json!({})),
                4 => (
                    "moss.user.password_changed.v1",
                    json!({"password": {"clear": user.last_password}}),
                ),
                _ if user.removed => ("moss.user.removed.v1", json!({})),
                _ => continue,
            };
            events.push(event(&user.subject, event_type, sequence, data));
        }
    }
    events
}

fn is_deleted(user: &Value) -> bool {
    user["_emulator"]["deleted"].as_bool() == Some(true)
}

/// Whether `user` is exactly what its lifecycle leads to.
fn in_final_state(emulator: &Emulator, user: &Lifecycle) -> bool {
    let Some(online) = emulator.user(&user.upn) else {
        return false;
    };
    if user.removed {
        return is_deleted(&online);
    }
    !is_deleted(&online)
        && online["accountEnabled"] == true
        && online["assignedLicenses"].as_array().map(Vec::len) == Some(1)
        && emulator.password_matches(&user.upn, &user.last_password) == Some(true)
}

/// Each user's `accountEnabled` as seen over the run, consecutive repeats collapsed.
#[derive(Default)]
struct EnabledHistory(HashMap<String, Vec<bool>>);

impl EnabledHistory {
    fn sample(&mut self, emulator: &Emulator) {
        for user in emulator.state().users {
            if is_deleted(&user) {
                continue;
            }
            let (Some(upn), Some(enabled)) = (
                user["userPrincipalName"].as_str(),
                user["accountEnabled"].as_bool(),
            ) else {
                continue;
            };
            let seen = self.0.entry(upn.to_ascii_lowercase()).or_default();
            if seen.last() != Some(&enabled) {
                seen.push(enabled);
            }
        }
    }
}

fn committed_writes(emulator: &Emulator) -> usize {
    emulator
        .writes()
        .iter()
        .filter(|request| request.committed)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_and_restarted_applies_every_event_once_in_effect() {
    let started = Instant::now();
    let emulator = Emulator::start_for_tests().await.expect("emulator starts");
    let prefix = format!("moss-test-{}", uuid::Uuid::new_v4().simple());
    let topology = Topology::new(TopologyPrefix::parse(&prefix).unwrap(), PARTITIONS).unwrap();
    let broker = Broker::connect(AMQP_URL, "moss-worker-crash-test")
        .await
        .expect("RabbitMQ runs");
    let mut cleanup = TopologyCleanup(Some(topology.clone()));
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
    let launch = WorkerLaunch {
        data_dir: dir.path().join("data"),
        key_file: write_private_key(dir.path(), keys.private.expose_secret()),
        log_file: dir.path().join("worker.log"),
        prefix: prefix.clone(),
        base_url: emulator.base_url(),
        tenant_id: tenant.tenant_id.to_string(),
        client_id: tenant.client_id.to_string(),
        client_secret: tenant.client_secret.clone(),
    };
    let run = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let users: Vec<Lifecycle> = (0..USERS)
        .map(|index| Lifecycle {
            subject: uuid::Uuid::new_v4().to_string(),
            upn: format!("crash{index}-{run}@{}", tenant.default_domain),
            last_password: format!("Third-Passw0rd-{index}!"),
            removed: index % 3 == 0,
        })
        .collect();
    let sku = &tenant.skus[0].sku_part_number;
    // A seat for everyone: running out of seats is another test's subject.
    emulator.set_sku_units(sku, 1000).unwrap();
    let events = lifecycle_events(&users, sku);

    // Every event waits in the partition queues before the first worker starts, so the worker
    // is busy from its first moment to its last.
    let http = reqwest::Client::new();
    for event in &events {
        let response = http
            .post(format!("http://{}/v1/events", producer.ingest_addr()))
            .header("content-type", "application/cloudevents+json")
            .body(serde_json::to_vec(event).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202, "ingest takes the event");
    }

    // Kill after a random number of committed writes, each a fresh stretch into the run (a
    // lifecycle makes about six writes per user).
    let expected_writes = USERS * 6;
    let stretch = expected_writes / (KILLS + 2);
    let mut kill_at = Vec::new();
    let mut at = 0;
    for _ in 0..KILLS {
        at += stretch / 2 + random_below(stretch);
        kill_at.push(at);
    }

    let mut history = EnabledHistory::default();
    let mut worker = launch.spawn();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(50);
    let queues = topology.partition_queues();
    loop {
        assert!(
            Instant::now() < deadline,
            "the lifecycles were not applied in time ({kills} kills); the worker said:\n{}",
            launch.log()
        );
        history.sample(&emulator);
        if kills < KILLS && committed_writes(&emulator) >= kill_at[kills] {
            drop(worker); // SIGKILL, whatever it was doing
            kills += 1;
            worker = launch.spawn();
            continue;
        }
        if let Some(status) = worker.0.try_wait().unwrap() {
            panic!(
                "moss worker exited on its own ({status}); it said:\n{}",
                launch.log()
            );
        }
        if users.iter().all(|user| in_final_state(&emulator, user)) && messages_in(&queues) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    history.sample(&emulator);
    assert_eq!(
        kills, KILLS,
        "the worker was killed {kills} times, not {KILLS}; the run had fewer writes than planned"
    );

    // Every user exactly as its lifecycle leads to.
    for user in &users {
        let online = emulator
            .user(&user.upn)
            .unwrap_or_else(|| panic!("{} exists", user.upn));
        assert_eq!(
            is_deleted(&online),
            user.removed,
            "{} is removed only if its lifecycle removed it",
            user.upn
        );
        if !user.removed {
            assert_eq!(
                online["accountEnabled"], true,
                "{} is reactivated",
                user.upn
            );
            assert_eq!(
                online["assignedLicenses"].as_array().map(Vec::len),
                Some(1),
                "{} holds its licence",
                user.upn
            );
            assert_eq!(
                emulator.password_matches(&user.upn, &user.last_password),
                Some(true),
                "{} has the last password set",
                user.upn
            );
        }
    }

    // From the write log: one committed create per user; a create replayed after a crash
    // adopted the account instead of creating a second one.
    let writes = emulator.writes();
    let creates = writes
        .iter()
        .filter(|request| {
            request.method == "POST" && request.path == "/v1.0/users" && request.committed
        })
        .count();
    assert_eq!(creates, USERS, "exactly one committed create per user");
    assert_eq!(
        emulator.state().users.len(),
        USERS,
        "no second account was created"
    );

    // Never backwards: enabled, disabled, enabled again at most, in that order.
    for user in &users {
        let seen = history
            .0
            .get(&user.upn.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default();
        assert!(
            seen.len() <= 3 && seen.first().is_none_or(|first| *first),
            "{}'s accountEnabled went {seen:?}, a replayed event flipped it backwards",
            user.upn
        );
    }

    let dead = broker.queue_depth(&topology.dead_queue()).await.unwrap();
    assert_eq!(dead.ready, 0, "nothing was dead-lettered");

    drop(worker);
    producer.shutdown().await;
    if broker.delete_topology(&topology).await.is_ok() {
        cleanup.0 = None;
    }
    let _ = broker.close().await;
    emulator.shutdown().await;
    eprintln!(
        "{} events for {USERS} users, {kills} kills, {} committed writes, {:.1} s",
        events.len(),
        writes.iter().filter(|request| request.committed).count(),
        started.elapsed().as_secs_f64()
    );
}
