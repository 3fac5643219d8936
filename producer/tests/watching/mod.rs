//! What the watcher's tests share: a producer over the real RabbitMQ under a topology of the
//! test's own, the watcher running in the test, and summaries of what arrived.

#![allow(dead_code, unreachable_pub)] // each test uses a different part

use std::path::{Path, PathBuf};
use std::time::Duration;

use moss_producer::watch::{DisabledRule, LdapWatchSettings, WatchError, run_ldap};
use secrecy::SecretString;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::harness::*;
use crate::ldap::*;

pub struct Watcher {
    pub stop: CancellationToken,
    pub task: JoinHandle<Result<(), WatchError>>,
}

/// The watcher's settings for `slapd` at `url`, as the tests use them: `employeeType: disabled`
/// marks a disabled user, reconnects are quick.
pub fn watch_settings(
    url: String,
    store: &Path,
    ingest: std::net::SocketAddr,
) -> LdapWatchSettings {
    let mut settings = LdapWatchSettings::new(
        url,
        BASE.to_owned(),
        ADMIN_DN.to_owned(),
        SecretString::from(ADMIN_PASSWORD.to_owned()),
        store.to_path_buf(),
        format!("http://{ingest}"),
    );
    settings.mapping.disabled = DisabledRule {
        attribute: "employeeType".to_owned(),
        value: Some("disabled".to_owned()),
    };
    settings.max_reconnect_delay = Duration::from_millis(300);
    settings
}

impl Watcher {
    pub fn start(slapd: &Slapd, store: &Path, ingest: std::net::SocketAddr) -> Watcher {
        Watcher::start_with(watch_settings(slapd.url(), store, ingest))
    }

    pub fn start_with(settings: LdapWatchSettings) -> Watcher {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_ldap(settings, stop.clone()));
        Watcher { stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("the watcher task ends")
            .expect("the watcher stops cleanly");
    }
}

/// `(type, subject)` of each event, sorted, for comparing without caring about partition order.
pub fn summary(received: &[Received]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = received
        .iter()
        .map(|message| {
            (
                message.body["type"].as_str().unwrap().to_owned(),
                message.body["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

pub fn expected(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(kind, subject)| (format!("moss.{kind}.v1"), (*subject).to_owned()))
        .collect();
    pairs.sort();
    pairs
}

pub fn of_type<'a>(received: &'a [Received], kind: &str) -> Vec<&'a Value> {
    received
        .iter()
        .map(|message| &message.body)
        .filter(|body| body["type"] == format!("moss.{kind}.v1"))
        .collect()
}

pub struct System {
    pub _dir: tempfile::TempDir,
    pub watch_store: PathBuf,
    pub rabbit: TestBroker,
    pub producer: moss_producer::RunningProducer,
}

pub async fn system() -> System {
    let dir = tempfile::tempdir().unwrap();
    let topology = unique_topology();
    let (sealing, _) = key_pair();
    let rabbit = TestBroker::connect(&topology).await;
    let (producer, _) = start(settings(&store_path(&dir), AMQP_URL, &topology, &sealing)).await;
    System {
        watch_store: dir.path().join("watch-ldap"),
        _dir: dir,
        rabbit,
        producer,
    }
}

impl System {
    pub async fn finish(self) {
        assert_eq!(
            self.rabbit.ready().await,
            0,
            "no event beyond those expected"
        );
        self.producer.shutdown().await;
        self.rabbit.cleanup().await;
    }
}
