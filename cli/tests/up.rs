//! `moss up` as the README tells a newcomer to use it: one command, then `moss publish`, and the
//! user appears, licensed, in the emulated tenant; Ctrl-C (SIGINT) stops it cleanly.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moss_up_then_moss_publish_puts_a_licensed_user_in_the_emulated_tenant() {
    let data = tempfile::tempdir().unwrap();
    let prefix = format!("moss-test-{}", uuid::Uuid::new_v4().simple());
    let (ingest, emulator) = (free_port(), free_port());
    let env = |command: &mut Command| {
        command
            .env("MOSS_DATA_DIR", data.path())
            .env("MOSS_TOPOLOGY_PREFIX", &prefix)
            .env("MOSS_INGEST_ADDR", format!("127.0.0.1:{ingest}"))
            .env("MOSS_METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            .env(
                "MOSS_WORKER_METRICS_ADDR",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("MOSS_EMULATOR_LISTEN", format!("127.0.0.1:{emulator}"))
            .env("RUST_LOG", "warn");
    };
    let mut up = Command::new(env!("CARGO_BIN_EXE_moss"));
    up.arg("up").stdout(Stdio::null()).stderr(Stdio::null());
    env(&mut up);
    let mut up = up.spawn().expect("moss up starts");

    let http = reqwest::Client::new();
    let state_url = format!("http://127.0.0.1:{emulator}/_emulator/state");
    let until = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("http://127.0.0.1:{ingest}/readyz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < until, "moss up did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let subject = uuid::Uuid::new_v4().to_string();
    let mut publish = Command::new(env!("CARGO_BIN_EXE_moss"));
    publish.args([
        "publish",
        "user-added",
        "--subject",
        &subject,
        "--account-name",
        "ana",
        "--display-name",
        "Ana Silva",
        "--upn",
        "ana@contoso.onmicrosoft.com",
        "--usage-location",
        "PT",
        "--license",
        "ENTERPRISEPACK",
    ]);
    env(&mut publish);
    let published = publish.output().unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );

    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let state: Value = http
            .get(&state_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ana = state["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|user| user["userPrincipalName"] == "ana@contoso.onmicrosoft.com")
            .cloned();
        if let Some(ana) = ana {
            assert_eq!(
                ana["onPremisesImmutableId"],
                subject.as_str(),
                "our anchor on the user"
            );
            if ana["assignedLicenses"]
                .as_array()
                .is_some_and(|licences| licences.len() == 1)
            {
                break;
            }
        }
        assert!(
            Instant::now() < until,
            "the user did not appear licensed: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Ctrl-C stops it cleanly (exit 0) and promptly.
    let interrupted = Command::new("kill")
        .args(["-INT", &up.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "moss up did not stop on Ctrl-C");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "moss up exited with {status}");

    let broker =
        moss_broker::Broker::connect("amqp://guest:guest@127.0.0.1:5672/%2f", "moss-up-test")
            .await
            .unwrap();
    let topology =
        moss_broker::Topology::new(moss_broker::TopologyPrefix::parse(&prefix).unwrap(), 8)
            .unwrap();
    broker.delete_topology(&topology).await.unwrap();
    broker.close().await.unwrap();
}
