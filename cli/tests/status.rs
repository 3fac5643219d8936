//! `moss status` run as the binary against the real RabbitMQ, under a topology prefix of its
//! own, with a known state: messages waiting in two partitions and dead letters of two classes.
//! The worker's and producer's `/metrics` are stood in for by tiny HTTP servers speaking the
//! Prometheus text format the status reads. Users awaiting a licence are read from a real
//! `moss worker` against the emulator, with one seat for two users.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moss_broker::{Broker, Headers, OutgoingMessage, Persistence, Topology, TopologyPrefix};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

mod support;

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

struct Installation {
    broker: Broker,
    topology: Topology,
}

impl Installation {
    async fn declare() -> Installation {
        let prefix = format!("moss-test-{}", uuid::Uuid::new_v4().simple());
        let topology = Topology::new(TopologyPrefix::parse(&prefix).unwrap(), 4).unwrap();
        let broker = Broker::connect(AMQP_URL, "moss-cli-status-test")
            .await
            .expect("RabbitMQ runs");
        broker.declare(&topology).await.unwrap();
        Installation { broker, topology }
    }

    async fn publish(&self, exchange: String, routing_key: String, id: &str, headers: Headers) {
        let publisher = self.broker.publisher().await.unwrap();
        publisher
            .publish(OutgoingMessage {
                exchange,
                routing_key,
                message_id: id.to_owned(),
                body: format!(r#"{{"id":"{id}","type":"moss.user.added.v1","subject":"3f0c2a7e-1d2b-4c5d-8e9f-0a1b2c3d4e5f","sequence":"1","data":{{}}}}"#)
                    .into_bytes(),
                content_type: "application/cloudevents+json".into(),
                headers,
                persistence: Persistence::Persistent,
            })
            .await
            .unwrap();
        publisher.close().await.unwrap();
    }

    async fn dead_letter(&self, id: &str, class: &str, dead_at: &str) {
        let headers = Headers::new()
            .with_text(moss_workers::ERROR_CLASS, class)
            .with_text(moss_workers::ERROR_CODE, "Request_BadRequest")
            .with_int(moss_workers::ERROR_STATUS, 400)
            .with_text(moss_workers::ERROR_MESSAGE, format!("failed: {id}"))
            .with_text(moss_workers::DEAD_AT, dead_at)
            .with_text(moss_workers::EVENT_TYPE, "moss.user.added.v1")
            .with_text(moss_workers::ORIGINAL_ROUTING_KEY, "p1");
        self.publish(self.topology.dead_exchange(), "p1".into(), id, headers)
            .await;
    }

    fn moss(
        &self,
        args: &[&str],
        worker_metrics: &str,
        producer_metrics: &str,
    ) -> (i32, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_moss"))
            .args(args)
            .env("MOSS_AMQP_URL", AMQP_URL)
            .env("MOSS_TOPOLOGY_PREFIX", self.topology.prefix().as_str())
            .env("MOSS_PARTITIONS", "4")
            .env(
                "MOSS_MANAGEMENT_URL",
                format!("http://127.0.0.1:{}", closed_port()),
            )
            .env("MOSS_WORKER_METRICS_ADDR", worker_metrics)
            .env("MOSS_PRODUCER_METRICS_ADDR", producer_metrics)
            .output()
            .expect("moss runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn dead_count_becomes(&self, expected: u32) {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ready = self
                .broker
                .queue_depth(&self.topology.dead_queue())
                .await
                .unwrap()
                .ready;
            if ready == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "the dead queue holds {ready}, not {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) {
        let _ = self.broker.delete_topology(&self.topology).await;
        let _ = self.broker.close().await;
    }
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Serves `/metrics` with the text `body(n)` for the n-th request.
async fn serve_metrics(body: impl Fn(u64) -> String + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let body = Arc::new(body);
    let count = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = Arc::clone(&body);
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let mut request = vec![0_u8; 4096];
                let _ = stream.read(&mut request).await;
                let text = body(count.fetch_add(1, Ordering::SeqCst));
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_status_reports_a_known_state_and_hands_every_dead_letter_back() {
    let installation = Installation::declare().await;
    let events = installation.topology.events_exchange();
    for id in ["a", "b", "c"] {
        installation
            .publish(events.clone(), "p0".into(), id, Headers::new())
            .await;
    }
    installation
        .publish(events.clone(), "p2".into(), "d", Headers::new())
        .await;
    installation
        .dead_letter("dead-1", "permanent", "2026-01-01T10:00:00.000Z")
        .await;
    installation
        .dead_letter("dead-3", "quarantined", "2026-01-01T10:02:00.000Z")
        .await;
    installation
        .dead_letter("dead-2", "permanent", "2026-01-01T10:01:00.000Z")
        .await;
    let worker = serve_metrics(|n| {
        format!(
            "# TYPE moss_worker_events_applied_total counter\nmoss_worker_events_applied_total {}\n\
             moss_worker_circuit_state{{state=\"closed\",cause=\"\"}} 0\n\
             moss_worker_circuit_state{{state=\"open\",cause=\"transient\"}} 1\n\
             moss_worker_free_seats{{sku=\"ENTERPRISEPACK\"}} 5\n",
            10 + 2 * n
        )
    })
    .await;
    let producer = serve_metrics(|_| "moss_producer_outbox_backlog 7\n".to_owned()).await;

    let (code, stdout, stderr) = installation.moss(&["status", "--json"], &worker, &producer);
    assert_eq!(code, 0, "{stderr}");
    let status: Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(status["schema"], "moss.status.v1");
    assert_eq!(status["prefix"], installation.topology.prefix().as_str());
    let ready: Vec<u64> = status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|partition| partition["ready"].as_u64().unwrap())
        .collect();
    assert_eq!(ready, vec![3, 0, 1, 0]);
    assert_eq!(status["partitions"][0]["consumers"], 0);
    assert_eq!(status["partitions"][0]["unacked"], Value::Null);
    assert_eq!(status["totals"]["ready"], 4);
    assert_eq!(status["totals"]["consumers"], 0);
    assert_eq!(status["totals"]["unacked"], Value::Null);
    assert_eq!(status["sources"]["amqp"]["available"], true);
    assert_eq!(status["sources"]["management"]["available"], false);
    assert_eq!(status["dead_letters"]["count"], 3);
    assert_eq!(status["dead_letters"]["counted"], 3);
    assert_eq!(status["dead_letters"]["by_class"]["permanent"], 2);
    assert_eq!(status["dead_letters"]["by_class"]["quarantined"], 1);
    assert_eq!(status["dead_letters"]["in_flight"], Value::Null);
    assert_eq!(
        status["dead_letters"]["oldest_dead_at"],
        "2026-01-01T10:00:00.000Z"
    );
    assert_eq!(
        status["dead_letters"]["newest_dead_at"],
        "2026-01-01T10:02:00.000Z"
    );
    let last: Vec<&str> = status["last_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["id"].as_str().unwrap())
        .collect();
    assert_eq!(last, vec!["dead-3", "dead-2", "dead-1"], "newest first");
    assert_eq!(status["last_errors"][0]["error_class"], "quarantined");
    assert_eq!(status["last_errors"][0]["error_status"], 400);
    assert_eq!(status["outbox_backlog"], 7);
    assert_eq!(status["circuit"]["state"], "open");
    assert_eq!(status["circuit"]["cause"], "transient");
    assert_eq!(status["free_seats"][0]["sku"], "ENTERPRISEPACK");
    assert_eq!(status["free_seats"][0]["free"], 5.0);
    let applied = status["applied_per_minute"].as_f64().expect("measured");
    assert!(
        applied > 0.0,
        "the counter grew by 2 between two readings: {applied}"
    );

    // Reading the dead queue handed every letter back.
    installation.dead_count_becomes(3).await;
    installation.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_only_a_worker_knows_are_unknown_when_no_worker_answers() {
    let installation = Installation::declare().await;
    let nobody = format!("127.0.0.1:{}", closed_port());
    let (code, stdout, stderr) = installation.moss(&["status"], &nobody, &nobody);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("unknown (worker not reachable at"),
        "{stdout}"
    );
    assert!(
        stdout.contains("unknown (producer not reachable at"),
        "{stdout}"
    );
    assert!(stdout.contains("last errors       none"), "{stdout}");
    let (code, stdout, _) = installation.moss(&["status", "--json"], &nobody, &nobody);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["applied_per_minute"], Value::Null);
    assert_eq!(status["circuit"], Value::Null);
    assert_eq!(status["free_seats"], Value::Null);
    assert_eq!(status["outbox_backlog"], Value::Null);
    assert_eq!(status["sources"]["worker_metrics"]["available"], false);
    installation.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_or_a_wrong_password_is_one_sentence_and_a_failure() {
    let installation = Installation::declare().await;
    let run = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_moss"))
            .args(["status"])
            .env("MOSS_AMQP_URL", url)
            .env(
                "MOSS_TOPOLOGY_PREFIX",
                installation.topology.prefix().as_str(),
            )
            .env("MOSS_PARTITIONS", "4")
            .output()
            .unwrap()
    };
    let down = run(&format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f",
        closed_port()
    ));
    assert!(!down.status.success());
    let text = String::from_utf8_lossy(&down.stderr);
    assert!(
        text.starts_with("moss: cannot reach RabbitMQ at amqp://guest:***@"),
        "{text}"
    );
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");

    let refused = run("amqp://guest:not-the-password@127.0.0.1:5672/%2f");
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("refused the user name or password"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");

    let wrong_prefix = Command::new(env!("CARGO_BIN_EXE_moss"))
        .args(["status"])
        .env("MOSS_AMQP_URL", AMQP_URL)
        .env(
            "MOSS_TOPOLOGY_PREFIX",
            format!("moss-nothing-{}", uuid::Uuid::new_v4().simple()),
        )
        .output()
        .unwrap();
    assert!(!wrong_prefix.status.success());
    let text = String::from_utf8_lossy(&wrong_prefix.stderr);
    assert!(
        text.contains("nothing is set up under the prefix"),
        "{text}"
    );
    installation.finish().await;
}

const EMS_ID: &str = "efccb6f7-5641-4e0e-bd10-b4976e1bf68e";

/// A `moss worker` child, killed when dropped so a failing test leaves no process behind.
struct WorkerProcess(std::process::Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `moss` with `command`, signing in to the emulator's tenant (no configuration file).
fn moss_against(emulator: &moss_emulator::Emulator, command: &str) -> Command {
    let tenant = emulator.tenant();
    let mut moss = Command::new(env!("CARGO_BIN_EXE_moss"));
    moss.arg(command)
        .env("MOSS_TENANT_ID", tenant.tenant_id.to_string())
        .env("MOSS_CLIENT_ID", tenant.client_id.to_string())
        .env("MOSS_CLIENT_SECRET", &tenant.client_secret)
        .env("MOSS_GRAPH_URL", emulator.base_url())
        .env("MOSS_LOGIN_URL", emulator.base_url())
        .env("MOSS_EXCHANGE_URL", emulator.base_url())
        .env_remove("MOSS_CONFIG")
        .stdin(std::process::Stdio::null());
    moss
}

/// Runs `moss accounts …` against the emulator's tenant, publishing through `ingest`.
fn accounts(emulator: &moss_emulator::Emulator, ingest: &str, args: &[&str]) -> (i32, String) {
    let output = moss_against(emulator, "accounts")
        .args(args)
        .env("MOSS_INGEST_ADDR", ingest)
        .output()
        .expect("moss runs");
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn holds_ems(emulator: &moss_emulator::Emulator, upn: &str) -> bool {
    emulator.user(upn).is_some_and(|user| {
        user["assignedLicenses"]
            .as_array()
            .is_some_and(|licences| licences.iter().any(|l| l["skuId"] == EMS_ID))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_parked_for_lack_of_seats_awaits_a_licence_in_status_until_a_seat_frees() {
    let installation = Installation::declare().await;
    let emulator = moss_emulator::Emulator::start_for_tests_with(moss_emulator::Seed::for_tests())
        .await
        .expect("emulator starts");
    emulator.set_sku_units("EMS", 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = moss_schemas::generate_key_pair();
    let key_file = dir.path().join("moss-seal.key");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&key_file)
            .unwrap();
        writeln!(file, "{}", keys.private.expose_secret()).unwrap();
    }
    let mut producer_settings = moss_producer::ProducerSettings::new(
        dir.path().join("producer"),
        AMQP_URL.to_owned(),
        installation.topology.clone(),
        moss_schemas::SealingKey::parse(&keys.public).unwrap(),
    );
    producer_settings.ingest_addr = "127.0.0.1:0".parse().unwrap();
    let producer = moss_producer::start(producer_settings, CancellationToken::new())
        .await
        .expect("producer starts");
    let ingest = producer.ingest_addr().to_string();
    let worker_metrics = format!("127.0.0.1:{}", closed_port());
    let log_file = dir.path().join("worker.log");
    let worker = WorkerProcess(
        moss_against(&emulator, "worker")
            .env("MOSS_AMQP_URL", AMQP_URL)
            .env(
                "MOSS_TOPOLOGY_PREFIX",
                installation.topology.prefix().as_str(),
            )
            .env("MOSS_PARTITIONS", "4")
            .env("MOSS_DATA_DIR", dir.path().join("worker"))
            .env("MOSS_SEAL_PRIVATE_KEY_FILE", &key_file)
            .env("MOSS_METRICS_ADDR", &worker_metrics)
            .env("MOSS_WORKER_NAME", "moss-status-test-worker")
            .env("RUST_LOG", "warn,lapin=off")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_file).unwrap())
            .spawn()
            .expect("moss worker starts"),
    );
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let status_json = || {
        let (code, stdout, stderr) =
            installation.moss(&["status", "--json"], &worker_metrics, &ingest);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap()
    };

    // Ana takes the only EMS seat; Ben's new account is parked until one frees.
    let assign = |subject: &str, upn: &str| {
        let (code, output) = accounts(
            &emulator,
            &ingest,
            &[
                "assign",
                "--subject",
                subject,
                "--new",
                upn,
                "--license",
                "EMS",
                "--usage-location",
                "NL",
            ],
        );
        assert_eq!(code, 0, "{output}");
    };
    let ana = uuid::Uuid::new_v4().to_string();
    let ben = uuid::Uuid::new_v4().to_string();
    assign(&ana, "ana@contoso.com");
    support::eventually(Duration::from_secs(30), "ana holds the EMS seat", || {
        holds_ems(&emulator, "ana@contoso.com")
    })
    .await;
    assign(&ben, "ben@contoso.com");
    support::eventually(
        Duration::from_secs(30),
        "moss status --json counts ben as awaiting a licence",
        || status_json()["awaiting_licence"] == 1,
    )
    .await;
    assert!(emulator.user("ben@contoso.com").is_some(), "{}", log());
    assert!(!holds_ems(&emulator, "ben@contoso.com"));
    let status = status_json();
    assert_eq!(status["sources"]["worker_metrics"]["available"], true);
    let (code, text, stderr) = installation.moss(&["status"], &worker_metrics, &ingest);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        text.contains("AWAITING LICENCE  1 users wait for a free seat (assigned by the worker once one frees; `moss licenses` shows the SKUs)"),
        "{text}"
    );

    // Unassigning ana frees her seat: ben gets it, and status no longer shows anyone waiting.
    let (code, output) = accounts(
        &emulator,
        &ingest,
        &["unassign", "--subject", &ana, "--yes"],
    );
    assert_eq!(code, 0, "{output}");
    support::eventually(Duration::from_secs(30), "ben holds the freed seat", || {
        holds_ems(&emulator, "ben@contoso.com")
    })
    .await;
    support::eventually(
        Duration::from_secs(30),
        "moss status --json counts nobody awaiting a licence",
        || status_json()["awaiting_licence"] == 0,
    )
    .await;
    let (code, text, stderr) = installation.moss(&["status"], &worker_metrics, &ingest);
    assert_eq!(code, 0, "{stderr}");
    assert!(!text.contains("AWAITING LICENCE"), "{text}");
    assert!(text.contains("free seats        "), "{text}");

    drop(worker);
    producer.shutdown().await;
    emulator.shutdown().await;
    installation.finish().await;
}
