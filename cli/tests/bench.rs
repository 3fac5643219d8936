//! `moss bench --quick --json` run as the binary against the real RabbitMQ: the report has the
//! documented shape, its counts add up (every event has exactly one outcome, the budget share is
//! what the writes and the budget say), and the bench leaves no topology behind. No figure is
//! asserted against a goal: timings belong to the bench's table, not to a test.

use std::process::Command;

use moss_broker::{Broker, Topology, TopologyPrefix};
use serde_json::Value;

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn number(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("the report has no number at {pointer}: {report:#}"))
}

fn count(report: &Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("the report has no count at {pointer}: {report:#}"))
}

fn outcomes_total(report: &Value, pointer: &str) -> u64 {
    [
        "applied",
        "already_applied",
        "stale",
        "dead_lettered",
        "missing",
    ]
    .iter()
    .map(|kind| count(report, &format!("{pointer}/{kind}")))
    .sum()
}

#[tokio::test]
async fn a_quick_bench_reports_every_measure_and_its_counts_add_up() {
    let output = Command::new(env!("CARGO_BIN_EXE_moss"))
        .args(["bench", "--quick", "--json", "--events", "1000"])
        .env("MOSS_AMQP_URL", AMQP_URL)
        .env_remove("MOSS_CONFIG")
        .output()
        .expect("moss runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "moss bench failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stdout is not JSON ({error}); stderr: {stderr}"));
    assert_eq!(report["schema"], "moss.bench.v1");
    assert_eq!(report["quick"], true);

    // The raw ceiling moved every message it published.
    assert_eq!(count(&report, "/raw_ceiling/published"), 1000);
    assert_eq!(count(&report, "/raw_ceiling/acked"), 1000);
    assert!(number(&report, "/raw_ceiling/events_per_second") > 0.0);

    // moss applied every event once: one outcome each, all applied, none missing.
    let events = count(&report, "/moss_unthrottled/events");
    assert_eq!(events, 1000);
    assert_eq!(
        outcomes_total(&report, "/moss_unthrottled/outcomes"),
        events
    );
    assert_eq!(count(&report, "/moss_unthrottled/outcomes/applied"), events);
    assert!(
        count(&report, "/moss_unthrottled/http_writes") >= events,
        "each user added is at least one write"
    );
    let ratio = number(&report, "/moss_unthrottled/ratio_to_raw");
    let expected = number(&report, "/moss_unthrottled/events_per_second")
        / number(&report, "/raw_ceiling/events_per_second");
    assert!((ratio - expected).abs() < 1e-9 * expected.max(1.0));

    // Latency: rate × seconds events, each with an outcome, percentiles in order.
    let latency_events = count(&report, "/latency/events");
    assert_eq!(latency_events, 100 * 5);
    assert_eq!(outcomes_total(&report, "/latency/outcomes"), latency_events);
    assert_eq!(count(&report, "/latency/outcomes/applied"), latency_events);
    let (p50, p95, p99, max) = (
        number(&report, "/latency/p50_ms"),
        number(&report, "/latency/p95_ms"),
        number(&report, "/latency/p99_ms"),
        number(&report, "/latency/max_ms"),
    );
    assert!(0.0 <= p50 && p50 <= p95 && p95 <= p99 && p99 <= max);

    // Under the budget: the shares are what the counts say.
    let requests = count(&report, "/throttled/requests");
    let throttled = count(&report, "/throttled/throttled");
    let writes = count(&report, "/throttled/writes_applied");
    assert!(
        requests > 0,
        "the shipped worker made requests in the window"
    );
    assert!(writes + throttled + count(&report, "/throttled/other_non_2xx") <= requests);
    let budget = number(&report, "/throttled/budget_writes");
    let seconds = number(&report, "/throttled/seconds");
    assert!(
        (budget - 20.0 * seconds).abs() < 1e-6,
        "the default budget refills 20 writes/s"
    );
    assert!((number(&report, "/throttled/budget_share") - writes as f64 / budget).abs() < 1e-9);
    assert!(
        (number(&report, "/throttled/throttled_share") - throttled as f64 / requests as f64).abs()
            < 1e-9
    );
    assert!(
        count(&report, "/throttled/drain/writes") >= 3000,
        "the 3000-write burst was drained before the window"
    );
    assert_eq!(report["throttled"]["backlog_ran_dry"], false);

    // Memory was read from both worker processes.
    assert!(number(&report, "/memory/unthrottled_worker_peak_mb") > 1.0);
    assert!(number(&report, "/memory/throttled_worker_peak_mb") > 1.0);

    // Five goals, each judged from its measured figure.
    let goals = report["goals"].as_array().expect("goals");
    assert_eq!(goals.len(), 5);
    for goal in goals {
        assert!(
            goal["met"].is_boolean() && goal["measured"].is_number() && goal["name"].is_string()
        );
    }
    assert_eq!(
        goals[0]["met"].as_bool(),
        Some(ratio >= 0.5),
        "the ratio goal follows the ratio"
    );

    // The topology is gone.
    let prefix = report["topology_prefix"].as_str().expect("topology_prefix");
    assert!(prefix.starts_with("moss-bench-"));
    let topology = Topology::new(TopologyPrefix::parse(prefix).unwrap(), 8).unwrap();
    let broker = Broker::connect(AMQP_URL, "moss-cli-bench-test")
        .await
        .unwrap();
    for queue in topology.partition_queues() {
        assert!(
            broker.queue_depth(&queue).await.is_err(),
            "{queue} was left behind"
        );
    }
    let _ = broker.close().await;
    // Nor any other queue of the bench's, such as the workers' own outcome queues, which the
    // topology does not list: asked of the broker itself.
    let listed = Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name"])
        .output()
        .expect("rabbitmqctl runs beside the local RabbitMQ");
    assert!(listed.status.success(), "rabbitmqctl list_queues failed");
    let left: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    assert_eq!(left, Vec::<String>::new(), "queues left behind");
}

#[test]
fn a_bad_rabbitmq_url_is_one_sentence_and_a_failure() {
    let output = Command::new(env!("CARGO_BIN_EXE_moss"))
        .args(["bench", "--quick"])
        .env("MOSS_AMQP_URL", "http://127.0.0.1:5672")
        .env_remove("MOSS_CONFIG")
        .output()
        .expect("moss runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "moss: MOSS_AMQP_URL must start with amqp:// or amqps://"
    );
}
