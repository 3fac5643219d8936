//! The chaos run (issue 9): many users' lifecycles flow through a real `moss producer` and two
//! real `moss worker` processes while, at seeded random moments, a worker or the producer is
//! SIGKILLed and restarted and RabbitMQ's app is stopped and started, and the emulator fails 20 %
//! of requests (429, 500/503, dropped connections, commit-then-fail). At the end the emulator's
//! final state and its write log are compared with what the lifecycles lead to: nothing lost,
//! no effect duplicated, no user's events applied out of order, and the dead-letter queue holds
//! exactly the events made to fail for good (creates on a domain the tenant does not have).
//!
//! RabbitMQ here is a private node started for the run (its own name, ports, data and cookie in
//! a temporary folder) so that stopping its app never touches the shared broker other tests use.
//!
//! The short form runs in CI; the full form is the same test with more events:
//!
//! ```sh
//! MOSS_CHAOS_EVENTS=20000 cargo test -p moss --test chaos -- --nocapture
//! MOSS_CHAOS_SEED=1234 cargo test -p moss --test chaos -- --nocapture   # replay a schedule
//! ```

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use moss_broker::{Broker, Topology, TopologyPrefix};
use moss_emulator::{AfterCommit, Emulator, FaultAction, FaultPlan};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

const PARTITIONS: u16 = 8;
/// Worker processes, unless MOSS_CHAOS_WORKERS says otherwise.
const WORKERS: usize = 2;
/// Events in the short (CI) form.
const SHORT_EVENTS: usize = 400;
/// Users per cohort: a cohort's lifecycles are posted step by step, one cohort after another.
const COHORT: usize = 50;
/// Events posted per ingest request.
const BATCH: usize = 25;
/// How far the poster may run ahead of the tenant, in events.
const AHEAD: usize = 300;
const THROTTLED: &str = "429 Too Many Requests (Retry-After: 1)";

// ---------------------------------------------------------------------------------------------
// A private RabbitMQ node

/// A RabbitMQ node of the test's own, stopped (and killed if need be) when dropped.
struct PrivateRabbit {
    dir: tempfile::TempDir,
    node: String,
    port: u16,
    ctl: PathBuf,
}

/// The RabbitMQ scripts: Debian's `/usr/sbin` wrappers switch to the `rabbitmq` user, which
/// could not use the test's folder, so the real scripts are used where they are.
fn rabbit_script(name: &str) -> PathBuf {
    let packaged = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if packaged.exists() {
        packaged
    } else {
        PathBuf::from(name)
    }
}

/// A port outside the kernel's ephemeral range (32768+), so no client socket holds it, free
/// on loopback and on all interfaces.
fn free_low_port() -> u16 {
    loop {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        if port == 25_672 {
            continue; // the shared node's distribution port
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    }
}

impl PrivateRabbit {
    fn start() -> PrivateRabbit {
        let dir = tempfile::Builder::new()
            .prefix("moss-chaos-rabbit")
            .tempdir()
            .unwrap();
        let path = dir.path().to_owned();
        std::fs::write(path.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(path.join("rabbitmq.conf"), "").unwrap();
        std::fs::write(path.join("rabbitmq-env.conf"), "").unwrap();
        let mut cookie = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o400)
            .open(path.join(".erlang.cookie"))
            .unwrap();
        write!(cookie, "MOSSCHAOS{}", uuid::Uuid::new_v4().simple()).unwrap();
        drop(cookie);
        let port = free_low_port();
        let mut dist = free_low_port();
        while dist == port {
            dist = free_low_port();
        }
        let node = format!(
            "moss-chaos-{}@localhost",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let rabbit = PrivateRabbit {
            dir,
            node,
            port,
            ctl: rabbit_script("rabbitmqctl"),
        };
        let status = rabbit
            .env(Command::new(rabbit_script("rabbitmq-server")))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", path.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", path.join("log"))
            .env("RABBITMQ_PID_FILE", path.join("rabbit.pid"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                path.join("enabled_plugins"),
            )
            .env("RABBITMQ_CONFIG_FILE", path.join("rabbitmq"))
            .env("RABBITMQ_CONF_ENV_FILE", path.join("rabbitmq-env.conf"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", path.join("plugins-expand"))
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .arg("-detached")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("rabbitmq-server runs (is RabbitMQ installed?)");
        assert!(
            status.success(),
            "rabbitmq-server -detached failed: {status}"
        );
        // The node registers with epmd a moment after -detached returns; await_startup fails
        // at once until then.
        let until = Instant::now() + Duration::from_secs(90);
        loop {
            if rabbit.ctl(&["await_startup", "--timeout", "30"]).is_ok() {
                break;
            }
            assert!(
                Instant::now() < until,
                "the private RabbitMQ node {} did not start; its log:\n{}",
                rabbit.node,
                rabbit.log_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        rabbit
    }

    /// HOME (and so the cookie) is the node's own folder for the server and every rabbitmqctl.
    fn env(&self, mut command: Command) -> Command {
        command
            .env("HOME", self.dir.path())
            .env("RABBITMQ_NODENAME", &self.node)
            .current_dir(self.dir.path());
        command
    }

    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let output = self
            .env(Command::new(&self.ctl))
            .arg("-n")
            .arg(&self.node)
            .arg("-q")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("rabbitmqctl did not run: {error}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "rabbitmqctl {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Messages (ready and unacknowledged) in these queues; `None` while the app is down.
    fn messages_in(&self, queues: &[String]) -> Option<usize> {
        let listing = self.ctl(&["list_queues", "name", "messages"]).ok()?;
        Some(
            listing
                .lines()
                .filter_map(|line| line.split_once('\t'))
                .filter(|(name, _)| queues.iter().any(|queue| queue == name))
                .map(|(_, count)| count.trim().parse::<usize>().unwrap_or(0))
                .sum(),
        )
    }

    fn log_tail(&self) -> String {
        let file = self
            .dir
            .path()
            .join("log")
            .join(format!("{}.log", self.node));
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        // If stop did not answer, the pid file names the node's process.
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("rabbit.pid"))
            && let Ok(pid) = pid.trim().parse::<u32>()
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// moss processes

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `moss` child, SIGKILLed when dropped so a failing test leaves no process behind.
struct MossProcess(Child);

impl MossProcess {
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for MossProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How to start the moss processes; every restart uses the same settings and data folders.
struct Launch {
    dir: PathBuf,
    amqp_url: String,
    prefix: String,
    ingest_port: u16,
    public_key: String,
    key_file: PathBuf,
    base_url: String,
    tenant_id: String,
    client_id: String,
    client_secret: String,
}

impl Launch {
    fn log_file(&self, name: &str) -> std::fs::File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap()
    }

    fn common(&self, command: &mut Command) {
        command
            .env("MOSS_AMQP_URL", &self.amqp_url)
            .env("MOSS_TOPOLOGY_PREFIX", &self.prefix)
            .env("MOSS_PARTITIONS", PARTITIONS.to_string())
            .env("MOSS_METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            // MOSS_CHAOS_RUST_LOG: the moss processes' log filter, to follow a seed in detail
            // (for example "warn,moss_workers=info,lapin=off").
            .env(
                "RUST_LOG",
                std::env::var("MOSS_CHAOS_RUST_LOG").unwrap_or_else(|_| "warn,lapin=off".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
    }

    fn producer(&self) -> MossProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_moss"));
        command.arg("producer");
        self.common(&mut command);
        let child = command
            .env("MOSS_DATA_DIR", self.dir.join("producer"))
            .env(
                "MOSS_INGEST_ADDR",
                format!("127.0.0.1:{}", self.ingest_port),
            )
            .env("MOSS_SEAL_PUBLIC_KEY", &self.public_key)
            .stderr(self.log_file("producer"))
            .spawn()
            .expect("moss producer starts");
        MossProcess(child)
    }

    fn worker(&self, index: usize) -> MossProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_moss"));
        command.arg("worker");
        self.common(&mut command);
        let child = command
            .env("MOSS_DATA_DIR", self.dir.join(format!("worker{index}")))
            .env("MOSS_WORKER_NAME", format!("moss-chaos-worker{index}"))
            .env("MOSS_TENANT_ID", &self.tenant_id)
            .env("MOSS_CLIENT_ID", &self.client_id)
            .env("MOSS_CLIENT_SECRET", &self.client_secret)
            .env("MOSS_GRAPH_URL", &self.base_url)
            .env("MOSS_LOGIN_URL", &self.base_url)
            .env("MOSS_EXCHANGE_URL", &self.base_url)
            .env("MOSS_SEAL_PRIVATE_KEY_FILE", &self.key_file)
            // Thousands of removals are the run's subject, not the mass-delete guard's.
            .env("MOSS_DELETE_THRESHOLD", "1000000")
            .env("MOSS_DEACTIVATE_THRESHOLD", "1000000")
            .stderr(self.log_file(&format!("worker{index}")))
            .spawn()
            .expect("moss worker starts");
        MossProcess(child)
    }

    fn log_tail(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(6)..].join("\n")
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for index in 0..worker_count() {
            let text = std::fs::read_to_string(self.dir.join(format!("worker{index}.log")))
                .unwrap_or_default();
            for line in text.lines().filter(|line| line.contains("dead-lettered")) {
                all.push_str(&format!("worker{index}: {line}\n"));
            }
        }
        for name in ["producer", "worker0", "worker1"] {
            all.push_str(&format!("--- {name}:\n{}\n", self.log_tail(name)));
        }
        all
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

// ---------------------------------------------------------------------------------------------
// The lifecycles

/// One user's lifecycle and what it must end as.
struct Lifecycle {
    subject: String,
    upn: String,
    /// Created on a domain the tenant does not have: its one event fails for good.
    doomed: bool,
    removed: bool,
    passwords: [String; 3],
}

/// All events, in the order they are posted: cohort by cohort, each cohort step by step, so
/// lifecycles start and finish all through the run and each user's events are in order.
fn lifecycle_events(users: &[Lifecycle], sku: &str) -> Vec<Value> {
    let mut events = Vec::new();
    for cohort in users.chunks(COHORT) {
        for step in 0..6 {
            for user in cohort {
                let sequence = step as u64 + 1;
                let (event_type, data) = match step {
                    0 => (
                        "moss.user.added.v1",
                        json!({
                            "account_name": user.upn.split('@').next().unwrap(),
                            "display_name": format!("Chaos {}", &user.subject[..8]),
                            "given_name": "Chaos",
                            "surname": &user.subject[..8],
                            "online_account": {"upn": user.upn, "usage_location": "DE", "licenses": [sku]},
                            "initial_password": {"clear": user.passwords[0]},
                        }),
                    ),
                    _ if user.doomed => continue,
                    1 => (
                        "moss.user.password_changed.v1",
                        json!({"password": {"clear": user.passwords[1]}}),
                    ),
                    2 => ("moss.user.deactivated.v1", json!({"reason": "chaos"})),
                    3 => ("moss.user.reactivated.v1", json!({})),
                    4 => (
                        "moss.user.password_changed.v1",
                        json!({"password": {"clear": user.passwords[2]}}),
                    ),
                    _ if user.removed => ("moss.user.removed.v1", json!({})),
                    _ => continue,
                };
                events.push(support::event(&user.subject, event_type, sequence, data));
            }
        }
    }
    events
}

// ---------------------------------------------------------------------------------------------
// What the emulator saw

/// One logged request, kept from the emulator's bounded log as the run goes.
#[derive(Clone)]
struct Seen {
    method: String,
    /// Percent-decoded, lower case.
    path: String,
    status: Option<u16>,
    write: bool,
    committed: bool,
    fault: Option<String>,
}

#[derive(Default)]
struct RequestTrail {
    last_seq: u64,
    requests: Vec<Seen>,
    /// Entries that fell off the emulator's log before they were read.
    missed: u64,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && index + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[index + 1..index + 3], 16)
        {
            out.push(byte);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).to_lowercase()
}

impl RequestTrail {
    fn poll(&mut self, emulator: &Emulator) {
        for entry in emulator.requests() {
            if entry.seq <= self.last_seq {
                continue;
            }
            if entry.seq > self.last_seq + 1 {
                self.missed += entry.seq - self.last_seq - 1;
            }
            self.last_seq = entry.seq;
            self.requests.push(Seen {
                method: entry.method,
                path: percent_decode(&entry.path),
                status: entry.status,
                write: entry.write,
                committed: entry.committed,
                fault: entry.fault,
            });
        }
    }

    fn committed_writes(&self) -> usize {
        self.requests.iter().filter(|seen| seen.committed).count()
    }
}

/// Each user's (deleted, accountEnabled) as sampled over the run, repeats collapsed, by UPN.
#[derive(Default)]
struct History(HashMap<String, Vec<(bool, bool)>>);

impl History {
    fn sample(&mut self, users: &[Value]) {
        for user in users {
            let Some(upn) = user["userPrincipalName"].as_str() else {
                continue;
            };
            let now = (
                user["_emulator"]["deleted"].as_bool() == Some(true),
                user["accountEnabled"].as_bool() == Some(true),
            );
            let seen = self.0.entry(upn.to_ascii_lowercase()).or_default();
            if seen.last() != Some(&now) {
                seen.push(now);
            }
        }
    }
}

/// Whether a sampled history could come from the lifecycle in order: enabled, disabled,
/// enabled, then deleted, each step possibly unseen, never a step back.
fn in_order(seen: &[(bool, bool)]) -> bool {
    // Positions in the lifecycle: 0 enabled (new), 1 disabled, 2 enabled again, 3 deleted.
    let mut position = 0;
    for (index, (deleted, enabled)) in seen.iter().enumerate() {
        let next = match (deleted, enabled) {
            (true, _) => 3,
            (false, false) => 1,
            (false, true) if index == 0 => 0,
            (false, true) => 2,
        };
        if next < position {
            return false;
        }
        position = next;
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Chaos

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Chaos {
    /// The next 10 to 40 requests, within 2 to 5 s, are answered 429 with `Retry-After: 1`, as
    /// Graph throttles: in bursts. (A steady 5 % of 429s would hold moss's AIMD write pacer at its floor of
    /// about 2 writes/s, which is the pacer doing its job, not a reliability question.)
    ThrottleBurst,
    KillWorker,
    KillProducer,
    BounceRabbit,
}

/// What comes back after a chaos action, when its time comes.
enum Restart {
    Worker(usize),
    Producer,
    RabbitApp,
}

fn worker_count() -> usize {
    env_number("MOSS_CHAOS_WORKERS").map_or(WORKERS, |n| n.max(1) as usize)
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.trim().parse().ok())
}

/// 20 % of requests fail, split as the plans' names say (429s come in bursts, see
/// [`Chaos::ThrottleBurst`]). The emulator tries plans in order and
/// the first that triggers wins, so each plan's chance is taken of what the ones before left.
fn install_faults(emulator: &Emulator) -> Vec<(&'static str, f64)> {
    let status = |status| FaultAction::Status {
        status,
        retry_after: None,
        body: None,
    };
    let mix: Vec<(&'static str, f64, FaultAction)> = vec![
        ("500 Internal Server Error", 0.04, status(500)),
        ("503 Service Unavailable", 0.04, status(503)),
        ("connection dropped unanswered", 0.04, FaultAction::Drop),
        (
            "commit, then 504",
            0.04,
            FaultAction::CommitThenFail {
                then: AfterCommit::Status {
                    status: 504,
                    retry_after: None,
                },
            },
        ),
        (
            "commit, then connection dropped",
            0.04,
            FaultAction::CommitThenFail {
                then: AfterCommit::Drop,
            },
        ),
    ];
    let mut left = 1.0;
    let mut shares = Vec::new();
    for (name, share, action) in mix {
        emulator.install_fault(FaultPlan {
            method: None,
            path: "**".into(),
            cmdlet: None,
            action,
            count: None,
            probability: Some(share / left),
        });
        left -= share;
        shares.push((name, share));
    }
    shares
}

/// Which injected fault a logged request carries, in the words of `install_faults`.
fn fault_name(seen: &Seen) -> Option<&'static str> {
    match (seen.fault.as_deref()?, seen.status) {
        ("status", Some(429)) => Some(THROTTLED),
        ("status", Some(500)) => Some("500 Internal Server Error"),
        ("status", Some(503)) => Some("503 Service Unavailable"),
        ("drop", _) => Some("connection dropped unanswered"),
        ("commit_then_fail", _) => Some("commit, then 504"),
        ("commit_then_drop", _) => Some("commit, then connection dropped"),
        _ => None,
    }
}

/// Posts every event in order, in batches, never more than `AHEAD` events past the tenant;
/// a batch that was not answered 202 (the producer was killed, or is starting) is posted
/// again, whole, with the same ids.
async fn post_all(
    events: Vec<Value>,
    ingest_port: u16,
    committed: Arc<AtomicUsize>,
    reposts: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut posted = 0;
    for batch in events.chunks(BATCH) {
        while posted > committed.load(Ordering::Relaxed) + AHEAD {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let body = serde_json::to_vec(batch).unwrap();
        loop {
            let sent = client
                .post(format!("http://127.0.0.1:{ingest_port}/v1/events"))
                .header("content-type", "application/cloudevents-batch+json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().as_u16() == 202 => break,
                Ok(response) if response.status().is_client_error() => {
                    panic!(
                        "the ingest refused a batch: {} {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    );
                }
                _ => {
                    reposts.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        posted += batch.len();
    }
    done.store(true, Ordering::Relaxed);
}

/// Reads every letter in the dead queue: the event ids, and how often each is there.
async fn dead_letter_ids(broker: &Broker, topology: &Topology) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    let mut consumer = broker
        .consume(&topology.dead_queue(), 500, "moss-chaos-dlq-reader")
        .await
        .unwrap();
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
    {
        *ids.entry(delivery.message_id.clone().unwrap_or_default())
            .or_insert(0) += 1;
        delivery.ack().await.unwrap();
    }
    consumer.shutdown().await.unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycles_survive_kills_broker_restarts_and_a_faulty_tenant() {
    let started = Instant::now();
    let target_events = env_number("MOSS_CHAOS_EVENTS").unwrap_or(SHORT_EVENTS as u64) as usize;
    let full = target_events > SHORT_EVENTS;
    let seed = env_number("MOSS_CHAOS_SEED")
        .unwrap_or_else(|| (uuid::Uuid::new_v4().as_u128() % 1_000_000) as u64);
    eprintln!(
        "chaos: seed {seed} ({target_events} events); MOSS_CHAOS_SEED={seed} replays the schedule"
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start)
        .await
        .unwrap();
    let emulator = Emulator::start_for_tests().await.expect("emulator starts");
    let prefix = format!("moss-test-{}", uuid::Uuid::new_v4().simple());
    let topology = Topology::new(TopologyPrefix::parse(&prefix).unwrap(), PARTITIONS).unwrap();
    {
        let broker = Broker::connect(&rabbit.url(), "moss-chaos-setup")
            .await
            .expect("the private RabbitMQ node answers");
        broker.declare(&topology).await.unwrap();
        let _ = broker.close().await;
    }

    // The users: one in 50 is created on a domain the tenant does not have (fails for good),
    // one in 3 of the others is removed at the end of its lifecycle.
    let tenant = emulator.tenant();
    let sku = tenant.skus[0].sku_part_number.clone();
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
    let mut users = Vec::new();
    let mut planned = 0;
    while planned < target_events {
        let index = users.len();
        let doomed = index % 50 == 49;
        let removed = !doomed && rng.random_bool(1.0 / 3.0);
        let domain = if doomed {
            format!("not-ours-{run}.example")
        } else {
            tenant.default_domain.clone()
        };
        users.push(Lifecycle {
            subject: uuid::Uuid::new_v4().to_string(),
            upn: format!("chaos{index}-{run}@{domain}"),
            doomed,
            removed,
            passwords: [0, 1, 2].map(|n| format!("Chaos-{n}-Passw0rd-{index}!")),
        });
        planned += if doomed {
            1
        } else if removed {
            6
        } else {
            5
        };
    }
    emulator.set_sku_units(&sku, 1_000_000).unwrap();
    let events = lifecycle_events(&users, &sku);
    let doomed_ids: HashSet<String> = events
        .iter()
        .filter(|event| {
            users
                .iter()
                .any(|user| user.doomed && event["subject"] == user.subject.as_str())
        })
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    let fault_shares = install_faults(&emulator);

    let dir = tempfile::tempdir().unwrap();
    // MOSS_CHAOS_KEEP=1 keeps the processes' logs and data folders after the run.
    let kept = std::env::var_os("MOSS_CHAOS_KEEP").is_some();
    if kept {
        eprintln!("chaos: logs and data kept in {}", dir.path().display());
    }
    let keys = moss_schemas::generate_key_pair();
    let launch = Launch {
        dir: dir.path().to_owned(),
        amqp_url: rabbit.url(),
        prefix: prefix.clone(),
        ingest_port: free_port(),
        public_key: keys.public.clone(),
        key_file: write_private_key(dir.path(), keys.private.expose_secret()),
        base_url: emulator.base_url(),
        tenant_id: tenant.tenant_id.to_string(),
        client_id: tenant.client_id.to_string(),
        client_secret: tenant.client_secret.clone(),
    };

    let mut producer = Some(launch.producer());
    let mut workers: Vec<Option<MossProcess>> = (0..worker_count())
        .map(|i| Some(launch.worker(i)))
        .collect();

    let committed = Arc::new(AtomicUsize::new(0));
    let reposts = Arc::new(AtomicUsize::new(0));
    let posted_all = Arc::new(AtomicBool::new(false));
    let poster = tokio::spawn(post_all(
        events.clone(),
        launch.ingest_port,
        committed.clone(),
        reposts.clone(),
        posted_all.clone(),
    ));

    // The schedule: a seeded deck of chaos kinds, dealt at seeded intervals while work remains.
    // MOSS_CHAOS_GAP_MS: the mean time between two chaos actions.
    let gap = env_number("MOSS_CHAOS_GAP_MS").unwrap_or(if full { 15_000 } else { 6_000 });
    let (gap_min, gap_max) = (gap / 2, gap * 3 / 2);
    let mut deck: Vec<Chaos> = Vec::new();
    let mut next_chaos = Instant::now() + Duration::from_millis(rng.random_range(gap_min..gap_max));
    let mut pending: Vec<(Instant, Restart)> = Vec::new();
    let mut chaos_done: BTreeMap<String, usize> = BTreeMap::new();
    let mut own_exits = 0;
    let mut rabbit_down = false;
    // Installed 429 bursts and when each ends at the latest (see Chaos::ThrottleBurst).
    let mut bursts: Vec<(Instant, u64)> = Vec::new();

    let mut trail = RequestTrail::default();
    let mut history = History::default();
    let mut last_poll = Instant::now();
    let deadline_secs = env_number("MOSS_CHAOS_DEADLINE_SECS").unwrap_or(if full {
        300 + target_events as u64 / 3
    } else {
        // A liveness bound, not a speed goal: chaos is dealt as long as work remains, so a run
        // slowed by a loaded machine also meets more kills. Passing runs settled in 95–210 s
        // when run alone and in 361 s once inside `.ci/run`; a hang still ends here.
        900
    });
    let deadline = started + Duration::from_secs(deadline_secs);
    let partition_queues = topology.partition_queues();
    let expected_dead = doomed_ids.len();
    let mut settled_since: Option<Instant> = None;
    let mut reached: HashSet<usize> = HashSet::new();
    // Set when the deadline passes: the verdict is still taken and printed, then the test fails.
    let mut unsettled: Option<String> = None;
    loop {
        let now = Instant::now();
        bursts.retain(|&(until, id)| {
            if now < until {
                return true;
            }
            emulator.remove_fault(id);
            false
        });
        if now > deadline {
            poster.abort();
            // Whatever is still down comes back, so the verdict can read the dead queue.
            if rabbit_down {
                let _ = tokio::task::block_in_place(|| rabbit.ctl(&["start_app"]));
            }
            trail.poll(&emulator);
            let state = emulator.state();
            let by_upn: HashMap<String, &Value> = state
                .users
                .iter()
                .filter_map(|user| {
                    Some((
                        user["userPrincipalName"].as_str()?.to_ascii_lowercase(),
                        user,
                    ))
                })
                .collect();
            for (index, user) in users
                .iter()
                .enumerate()
                .filter(|(i, _)| !reached.contains(i))
                .take(5)
            {
                let online = by_upn.get(&user.upn.to_ascii_lowercase());
                let id = online
                    .and_then(|o| o["id"].as_str())
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                eprintln!(
                    "chaos: unsettled user {index} {} removed={} subject={} online={}",
                    user.upn,
                    user.removed,
                    user.subject,
                    online.map(|o| o.to_string()).unwrap_or_default()
                );
                for seen in trail.requests.iter().filter(|seen| {
                    seen.write && !id.is_empty() && seen.path.contains(&id)
                        || seen.path.contains(&user.upn.to_ascii_lowercase())
                }) {
                    eprintln!(
                        "    {} {} {:?} committed={} fault={:?}",
                        seen.method, seen.path, seen.status, seen.committed, seen.fault
                    );
                }
            }
            unsettled = Some(format!(
                "the run did not settle within {deadline_secs} s (seed {seed}, {} committed writes seen, chaos {chaos_done:?}); the processes said:\n{}",
                trail.committed_writes(),
                launch.logs()
            ));
            break;
        }
        let state = emulator.state();
        history.sample(&state.users);
        if now.duration_since(last_poll) > Duration::from_secs(1) {
            trail.poll(&emulator);
            committed.store(trail.committed_writes(), Ordering::Relaxed);
            last_poll = now;
        }

        // Restarts that are due.
        let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(at, _)| *at <= now);
        pending = later;
        for (_, what) in due {
            match what {
                Restart::Worker(index) => workers[index] = Some(launch.worker(index)),
                Restart::Producer => producer = Some(launch.producer()),
                Restart::RabbitApp => {
                    let result = tokio::task::block_in_place(|| rabbit.ctl(&["start_app"]));
                    result.expect("the private node's app starts again");
                    rabbit_down = false;
                }
            }
        }
        // A moss process that stopped by itself is noted and started again.
        for (index, slot) in workers.iter_mut().enumerate() {
            if let Some(worker) = slot
                && let Some(status) = worker.0.try_wait().unwrap()
            {
                own_exits += 1;
                eprintln!("chaos: worker{index} exited by itself ({status}); starting it again");
                *slot = Some(launch.worker(index));
            }
        }
        if let Some(running) = producer.as_mut()
            && let Some(status) = running.0.try_wait().unwrap()
        {
            own_exits += 1;
            eprintln!("chaos: the producer exited by itself ({status}); starting it again");
            producer = Some(launch.producer());
        }

        if reached.len() < users.len() {
            let by_upn: HashMap<String, &Value> = state
                .users
                .iter()
                .filter_map(|user| {
                    Some((
                        user["userPrincipalName"].as_str()?.to_ascii_lowercase(),
                        user,
                    ))
                })
                .collect();
            for (index, user) in users.iter().enumerate() {
                if !reached.contains(&index)
                    && final_state_reached(
                        &emulator,
                        user,
                        by_upn.get(&user.upn.to_ascii_lowercase()).copied(),
                    )
                {
                    reached.insert(index);
                }
            }
        }
        let settled_users = reached.len() == users.len();
        let work_left = !posted_all.load(Ordering::Relaxed) || !settled_users;
        // Every kind of chaos at least once, even when the work is done early.
        let chaos_wanted = work_left || chaos_done.len() < 4;
        if chaos_wanted && pending.is_empty() && now >= next_chaos {
            if deck.is_empty() {
                deck = vec![
                    Chaos::KillWorker,
                    Chaos::KillWorker,
                    Chaos::KillProducer,
                    Chaos::BounceRabbit,
                    Chaos::ThrottleBurst,
                ];
                for index in (1..deck.len()).rev() {
                    deck.swap(index, rng.random_range(0..=index));
                }
            }
            let chaos = deck.pop().unwrap();
            match chaos {
                Chaos::KillWorker => {
                    let index = rng.random_range(0..workers.len());
                    if let Some(worker) = workers[index].take() {
                        worker.kill();
                    }
                    let back = now + Duration::from_millis(rng.random_range(200..2_000));
                    pending.push((back, Restart::Worker(index)));
                    *chaos_done
                        .entry("worker SIGKILLed and restarted".into())
                        .or_default() += 1;
                }
                Chaos::ThrottleBurst => {
                    let count = rng.random_range(10..40);
                    let id = emulator.install_fault(FaultPlan {
                        method: None,
                        path: "**".into(),
                        cmdlet: None,
                        action: FaultAction::Status {
                            status: 429,
                            retry_after: Some("1".into()),
                            body: None,
                        },
                        count: Some(count),
                        probability: None,
                    });
                    // A burst also ends with time (2–5 s, longer for more requests), as
                    // Microsoft's throttling window does. Counted in requests alone, a burst near
                    // the end of a run, when one event is left, answered that event 429 for
                    // minutes (CI, seed 646127). No extra random draw, so seeds replay as before.
                    let until =
                        Instant::now() + Duration::from_millis(1_000 + 100 * u64::from(count));
                    bursts.push((until, id));
                    *chaos_done.entry("burst of 429s".into()).or_default() += 1;
                }
                Chaos::KillProducer => {
                    if let Some(running) = producer.take() {
                        running.kill();
                    }
                    let back = now + Duration::from_millis(rng.random_range(200..1_500));
                    pending.push((back, Restart::Producer));
                    *chaos_done
                        .entry("producer SIGKILLed and restarted".into())
                        .or_default() += 1;
                }
                Chaos::BounceRabbit => {
                    let result = tokio::task::block_in_place(|| rabbit.ctl(&["stop_app"]));
                    result.expect("the private node's app stops");
                    rabbit_down = true;
                    let back =
                        Instant::now() + Duration::from_millis(rng.random_range(1_000..5_000));
                    pending.push((back, Restart::RabbitApp));
                    *chaos_done
                        .entry("RabbitMQ app stopped and started".into())
                        .or_default() += 1;
                }
            }
            next_chaos = Instant::now() + Duration::from_millis(rng.random_range(gap_min..gap_max));
        }

        // Settled: everything posted, every user as its lifecycle ends, the partition queues
        // empty and the dead queue as deep as the doomed events, for two seconds running.
        let settled = !chaos_wanted
            && pending.is_empty()
            && !rabbit_down
            && tokio::task::block_in_place(|| {
                rabbit.messages_in(&partition_queues) == Some(0)
                    && rabbit.messages_in(&[topology.dead_queue()]) == Some(expected_dead)
            });
        match (settled, settled_since) {
            (true, None) => settled_since = Some(now),
            (true, Some(since)) if now.duration_since(since) > Duration::from_secs(2) => break,
            (true, Some(_)) => {}
            (false, _) => settled_since = None,
        }
        tokio::time::sleep(Duration::from_millis(if full { 250 } else { 100 })).await;
    }
    if unsettled.is_none() {
        poster.await.unwrap();
    }
    history.sample(&emulator.state().users);
    trail.poll(&emulator);
    let settle_secs = started.elapsed().as_secs_f64();

    // ---- The verdict, from the emulator's state and write log.
    let state = emulator.state();
    let by_upn: HashMap<String, Vec<&Value>> =
        state.users.iter().fold(HashMap::new(), |mut map, user| {
            if let Some(upn) = user["userPrincipalName"].as_str() {
                map.entry(upn.to_ascii_lowercase()).or_default().push(user);
            }
            map
        });
    // Committed writes per user, in log order, by the key in their path (id or UPN).
    let mut writes_by_key: HashMap<String, Vec<&Seen>> = HashMap::new();
    let mut creates = 0;
    for seen in trail.requests.iter().filter(|seen| seen.committed) {
        if seen.method == "POST" && seen.path == "/v1.0/users" {
            creates += 1;
            continue;
        }
        if let Some(rest) = seen.path.strip_prefix("/v1.0/users/") {
            let key = rest.split('/').next().unwrap_or_default().to_owned();
            writes_by_key.entry(key).or_default().push(seen);
        }
    }

    let mut lost: Vec<String> = Vec::new();
    let mut duplicated: Vec<String> = Vec::new();
    let mut misordered: Vec<String> = Vec::new();
    let mut living_users = 0;
    for user in users.iter().filter(|user| !user.doomed) {
        let upn = user.upn.to_ascii_lowercase();
        let objects = by_upn.get(&upn).cloned().unwrap_or_default();
        if objects.len() > 1 {
            duplicated.push(format!("{upn}: {} accounts", objects.len()));
        }
        let Some(online) = objects.first() else {
            lost.push(format!("{upn}: never created"));
            continue;
        };
        let deleted = online["_emulator"]["deleted"].as_bool() == Some(true);
        let id = online["id"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut writes: Vec<&Seen> = Vec::new();
        for key in [&id, &upn] {
            writes.extend(writes_by_key.get(key.as_str()).into_iter().flatten());
        }
        let revokes = writes
            .iter()
            .filter(|seen| seen.path.ends_with("/revokesigninsessions"))
            .count();
        if revokes == 0 {
            lost.push(format!(
                "{upn}: deactivated never applied (no sign-in revoke)"
            ));
        }
        let deletes = writes.iter().filter(|seen| seen.method == "DELETE").count();
        if deletes > 1 {
            duplicated.push(format!("{upn}: deleted {deletes} times"));
        }
        if user.removed {
            if !deleted {
                lost.push(format!("{upn}: removed never applied"));
            }
        } else {
            living_users += 1;
            if deleted {
                misordered.push(format!("{upn}: deleted though never removed"));
                continue;
            }
            if online["accountEnabled"] != true {
                misordered.push(format!(
                    "{upn}: disabled at the end (reactivated applied before deactivated, or lost)"
                ));
            }
            let licences = online["assignedLicenses"].as_array().map_or(0, Vec::len);
            if licences != 1 {
                lost.push(format!("{upn}: {licences} licences, not 1"));
            }
            match (0..3)
                .rev()
                .find(|n| emulator.password_matches(&upn, &user.passwords[*n]) == Some(true))
            {
                Some(2) => {}
                Some(1) => {
                    misordered.push(format!("{upn}: the first password change applied last"))
                }
                Some(_) => lost.push(format!("{upn}: password changes lost")),
                None => lost.push(format!("{upn}: a password nobody set")),
            }
        }
        let seen = history.0.get(&upn).cloned().unwrap_or_default();
        if !in_order(&seen) {
            let trace: Vec<String> = writes
                .iter()
                .map(|w| format!("{} {} {:?} {:?}", w.method, w.path, w.status, w.fault))
                .collect();
            misordered.push(format!(
                "{upn}: went {seen:?} (deleted, enabled); committed writes: {trace:?}"
            ));
        }
    }
    let created = users.iter().filter(|user| !user.doomed).count();
    if creates > created {
        duplicated.push(format!("{creates} committed creates for {created} users"));
    }
    if state.users.len() > created {
        duplicated.push(format!(
            "{} accounts for {created} users",
            state.users.len()
        ));
    }
    for user in users.iter().filter(|user| user.doomed) {
        if by_upn.contains_key(&user.upn.to_ascii_lowercase()) {
            lost.push(format!(
                "{}: created though its domain is not the tenant's",
                user.upn
            ));
        }
    }

    let broker = Broker::connect(&rabbit.url(), "moss-chaos-verdict")
        .await
        .unwrap();
    let dead = dead_letter_ids(&broker, &topology).await;
    let _ = broker.close().await;
    let dead_ids: HashSet<String> = dead.keys().cloned().collect();
    let unexpected_dead: Vec<&String> = dead_ids.difference(&doomed_ids).collect();
    let missing_dead: Vec<&String> = doomed_ids.difference(&dead_ids).collect();
    let twice_dead = dead.values().filter(|count| **count > 1).count();

    // ---- The figures.
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    for seen in &trail.requests {
        if let Some(name) = fault_name(seen) {
            *faults.entry(name).or_default() += 1;
        }
    }
    let answered = trail.requests.len();
    let injected: usize = faults.values().sum();
    let writes_total = trail.requests.iter().filter(|seen| seen.write).count();
    let mut report = String::new();
    report.push_str(&format!(
        "chaos report (seed {seed}): {} events for {} users ({} removed, {} doomed), {} partitions, {} workers, settled in {settle_secs:.1} s\n",
        events.len(),
        users.len(),
        users.iter().filter(|user| user.removed).count(),
        expected_dead,
        PARTITIONS,
        worker_count(),
    ));
    report.push_str(&format!(
        "  requests to the tenant: {answered} ({writes_total} writes, {} committed); faults injected: {injected} ({:.1} %)\n",
        trail.committed_writes(),
        100.0 * injected as f64 / answered.max(1) as f64
    ));
    for (name, share) in &fault_shares {
        report.push_str(&format!(
            "    {name:<40} planned {:>4.1} %  injected {}\n",
            share * 100.0,
            faults.get(name).copied().unwrap_or(0)
        ));
    }
    report.push_str(&format!(
        "    {THROTTLED:<40} in bursts        injected {}\n",
        faults.get(THROTTLED).copied().unwrap_or(0)
    ));
    for (name, count) in &chaos_done {
        report.push_str(&format!("  {name}: {count}\n"));
    }
    report.push_str(&format!(
        "  ingest batches posted again after no 202: {}; moss processes that exited by themselves: {own_exits}; log entries missed: {}\n",
        reposts.load(Ordering::Relaxed),
        trail.missed
    ));
    report.push_str(&format!(
        "  lost {}  duplicated {}  misordered {}  | dead letters {} (expected {expected_dead}, unexpected {}, missing {}, twice {twice_dead}) | living users checked {living_users}\n",
        lost.len(),
        duplicated.len(),
        misordered.len(),
        dead_ids.len(),
        unexpected_dead.len(),
        missing_dead.len(),
    ));
    eprintln!("{report}");

    drop(producer);
    drop(workers);
    emulator.shutdown().await;
    if kept {
        let _ = dir.keep();
    }

    if let Some(why) = &unsettled {
        panic!(
            "{why}\n{report}\nlost: {lost:#?}\nmisordered: {misordered:#?}\nduplicated: {duplicated:#?}"
        );
    }
    assert_eq!(
        trail.missed, 0,
        "the emulator's log overflowed before it was read"
    );
    assert!(lost.is_empty(), "lost: {lost:#?}\n{report}");
    assert!(
        duplicated.is_empty(),
        "duplicated: {duplicated:#?}\n{report}"
    );
    assert!(
        misordered.is_empty(),
        "misordered: {misordered:#?}\n{report}"
    );
    assert!(
        unexpected_dead.is_empty() && missing_dead.is_empty() && twice_dead == 0,
        "the dead queue holds {unexpected_dead:?} it should not and misses {missing_dead:?}\n{report}"
    );
    assert!(
        chaos_done.len() == 4,
        "every kind of chaos happened at least once: {chaos_done:?}"
    );
    assert!(
        injected * 100 >= answered * 15,
        "about 20 % of requests failed ({injected} of {answered})"
    );
    drop(rabbit);
}

/// Whether `user` already is what its lifecycle leads to (used to know when the run is done).
fn final_state_reached(emulator: &Emulator, user: &Lifecycle, online: Option<&Value>) -> bool {
    if user.doomed {
        return true;
    }
    let Some(online) = online else {
        return false;
    };
    let deleted = online["_emulator"]["deleted"].as_bool() == Some(true);
    if user.removed {
        return deleted;
    }
    !deleted
        && online["accountEnabled"] == true
        && emulator.password_matches(&user.upn, &user.passwords[2]) == Some(true)
}
