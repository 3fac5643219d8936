//! Logs and metrics of one event: every JSON log line written while the worker handles it,
//! the online client's per-attempt lines with the Graph request-id among them, carries the
//! event id and subject; its settlement shows in the per-type counts and the settle histogram.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moss_schemas::EventType;
use moss_workers::OutcomeKind;
use serde_json::Value;
use support::{System, added, eventually, new_subject};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).expect("each log line is one JSON object"))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_line_with_the_graph_request_id_also_names_the_event_and_its_subject() {
    let logs = Captured::default();
    let writer = logs.clone();
    // The same JSON layout as `moss --log-format json` (cli/src/logging.rs).
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .init();

    let mut system = System::spawn().await;
    let subject = new_subject();
    let local = format!("logs-{}", &new_subject()[..6]);
    let event = system.event(
        &subject,
        "moss.user.added.v1",
        added(&system, &local, "Log-Fields-1!"),
    );
    let event_id = event["id"].as_str().unwrap().to_owned();
    system.post(&event).await;
    eventually(Duration::from_secs(15), "the user is applied", || {
        system.worker().counters().applied >= 1
    })
    .await;

    let counters = system.worker().counters();
    let applied_users = counters
        .events_by_type()
        .find(|(event_type, outcome, _)| {
            *event_type == EventType::UserAdded && *outcome == OutcomeKind::Applied
        })
        .map(|(_, _, count)| count);
    assert_eq!(applied_users, Some(1));
    assert!(counters.settle_count >= 1, "the settlement was timed");
    assert_eq!(
        counters.settle_buckets.last().copied(),
        Some(counters.settle_count),
        "a quick settlement falls under the largest bucket"
    );
    system.finish().await;

    let lines = logs.lines();
    let with_request_id: Vec<&Value> = lines
        .iter()
        .filter(|line| line["request_id"].as_str().is_some_and(|id| !id.is_empty()))
        .collect();
    assert!(
        !with_request_id.is_empty(),
        "the online client logs each attempt with the Graph request-id"
    );
    let of_this_event: Vec<&&Value> = with_request_id
        .iter()
        .filter(|line| line["span"]["event_id"].as_str() == Some(event_id.as_str()))
        .collect();
    assert!(
        !of_this_event.is_empty(),
        "no line with a request-id names event {event_id}: {with_request_id:?}"
    );
    for line in of_this_event {
        assert_eq!(line["span"]["subject"].as_str(), Some(subject.as_str()));
        assert_eq!(line["span"]["type"].as_str(), Some("moss.user.added.v1"));
    }
}
