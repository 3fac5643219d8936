//! The worker's `/metrics` (Prometheus text), served by `moss worker` and `moss up`: what it has
//! done (from its counters), its circuit, its adaptive write rate, and the tenant's free seats
//! per SKU (read once a minute, 3 resource units, so `moss status` can show them).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use moss_workers::{CircuitState, CounterSnapshot, OutcomeKind, RunningWorker, SETTLE_BUCKETS};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

/// What the endpoint shows: a copy refreshed every second from the running worker.
#[derive(Debug, Default)]
struct View {
    counters: CounterSnapshot,
    circuit: Option<CircuitState>,
    write_rate: f64,
    free_seats: Vec<(String, i64)>,
    awaiting_licence: usize,
}

/// Serves `/metrics` for `worker` until it stops, then returns the worker's own result.
pub(crate) async fn serve_while_running(
    worker: RunningWorker,
    addr: SocketAddr,
    online: moss_online::OnlineConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("could not serve the worker's metrics on {addr} (MOSS_METRICS_ADDR)")
    })?;
    let view = Arc::new(RwLock::new(View::default()));
    let router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::clone(&view));
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await;
    });
    let seats_view = Arc::clone(&view);
    let seats_shutdown = shutdown.clone();
    let seats =
        tokio::spawn(async move { refresh_free_seats(seats_view, online, seats_shutdown).await });

    loop {
        {
            let mut current = view.write().await;
            current.counters = worker.counters();
            current.circuit = Some(worker.circuit_state());
            current.write_rate = worker.write_rate();
            current.awaiting_licence = worker.awaiting_licence();
        }
        if worker.is_finished() {
            // It stopped on its own (a failure): stop serving and report it.
            shutdown.cancel();
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    let result = worker
        .wait()
        .await
        .context("the worker stopped with an error");
    seats.abort();
    let _ = server.await;
    result
}

async fn refresh_free_seats(
    view: Arc<RwLock<View>>,
    online: moss_online::OnlineConfig,
    shutdown: CancellationToken,
) {
    let Ok(client) = moss_online::OnlineClient::new(online) else {
        return;
    };
    loop {
        match client.refresh_subscribed_skus().await {
            Ok(skus) => {
                view.write().await.free_seats = skus
                    .iter()
                    .map(|sku| {
                        let name = sku
                            .sku_part_number
                            .clone()
                            .unwrap_or_else(|| sku.sku_id.0.to_string());
                        (name, sku.available_units())
                    })
                    .collect();
            }
            Err(error) => tracing::debug!(error = %error, "free seats not refreshed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

async fn metrics(State(view): State<Arc<RwLock<View>>>) -> impl IntoResponse {
    let view = view.read().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&view),
    )
}

fn render(view: &View) -> String {
    let mut text = String::new();
    let counters = &view.counters;
    let mut counter = |name: &str, help: &str, value: u64| {
        text.push_str(&format!("# HELP moss_worker_{name} {help}\n# TYPE moss_worker_{name} counter\nmoss_worker_{name} {value}\n"));
    };
    counter(
        "events_received_total",
        "Deliveries taken from the partition queues",
        counters.received,
    );
    counter(
        "events_applied_total",
        "Events applied to the tenant",
        counters.applied,
    );
    counter(
        "events_already_applied_total",
        "Events found already in effect in the tenant",
        counters.already_applied,
    );
    counter(
        "events_duplicate_total",
        "Redeliveries of events the ledger already had",
        counters.duplicates,
    );
    counter(
        "events_stale_total",
        "Events older than their subject's applied sequence",
        counters.stale,
    );
    counter(
        "events_dead_lettered_total",
        "Events dead-lettered, quarantined ones included",
        counters.dead_lettered,
    );
    counter(
        "events_quarantined_total",
        "Events dead-lettered behind an earlier one of the same subject",
        counters.quarantined,
    );
    counter(
        "retries_total",
        "Attempts that ended in a retry",
        counters.retries,
    );
    counter(
        "events_handed_back_total",
        "Deliveries handed back to RabbitMQ",
        counters.handed_back,
    );
    counter(
        "outcomes_published_total",
        "Outcome events confirmed by RabbitMQ",
        counters.outcomes_published,
    );

    counter(
        "throttled_total",
        "Replies of the tenant that throttled (429, or 503 with Retry-After)",
        counters.throttled,
    );
    text.push_str("# HELP moss_worker_events_total Settled events by event type and outcome\n");
    text.push_str("# TYPE moss_worker_events_total counter\n");
    for (event_type, outcome, count) in counters.events_by_type() {
        let outcome = outcome_label(outcome);
        text.push_str(&format!(
            "moss_worker_events_total{{type=\"{event_type}\",outcome=\"{outcome}\"}} {count}\n"
        ));
    }
    text.push_str("# HELP moss_worker_settle_duration_seconds Time from a delivery's arrival to its settlement (ack or dead letter)\n");
    text.push_str("# TYPE moss_worker_settle_duration_seconds histogram\n");
    for (bound, below) in SETTLE_BUCKETS.iter().zip(counters.settle_buckets) {
        text.push_str(&format!(
            "moss_worker_settle_duration_seconds_bucket{{le=\"{bound}\"}} {below}\n"
        ));
    }
    text.push_str(&format!(
        "moss_worker_settle_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nmoss_worker_settle_duration_seconds_sum {sum}\nmoss_worker_settle_duration_seconds_count {count}\n",
        count = counters.settle_count,
        sum = counters.settle_sum_micros as f64 / 1e6,
    ));
    text.push_str("# HELP moss_worker_outcome_backlog Outcome events waiting in the worker's outbox at the relay's last read (at most one batch, 256)\n");
    text.push_str(&format!(
        "# TYPE moss_worker_outcome_backlog gauge\nmoss_worker_outcome_backlog {}\n",
        counters.outcome_backlog
    ));

    text.push_str("# HELP moss_worker_circuit_state 1 on the current state; cause is the failure class that opened it\n");
    text.push_str("# TYPE moss_worker_circuit_state gauge\n");
    let (current, cause) = match view.circuit {
        None | Some(CircuitState::Closed) => ("closed", String::new()),
        Some(CircuitState::Open { cause }) => ("open", cause.to_string()),
        Some(CircuitState::Probing { cause }) => ("probing", cause.to_string()),
    };
    for state in ["closed", "open", "probing"] {
        let value = u8::from(state == current);
        text.push_str(&format!(
            "moss_worker_circuit_state{{state=\"{state}\",cause=\"{cause}\"}} {value}\n"
        ));
    }
    text.push_str("# HELP moss_worker_write_rate The adaptive write rate, writes per second\n");
    text.push_str(&format!(
        "# TYPE moss_worker_write_rate gauge\nmoss_worker_write_rate {}\n",
        view.write_rate
    ));
    text.push_str(&format!(
        "# HELP moss_worker_awaiting_licence Users whose online account awaits a free licence seat\n# TYPE moss_worker_awaiting_licence gauge\nmoss_worker_awaiting_licence {}\n",
        view.awaiting_licence
    ));
    text.push_str(
        "# HELP moss_worker_free_seats Free licence seats per SKU, as last read from the tenant\n",
    );
    text.push_str("# TYPE moss_worker_free_seats gauge\n");
    for (sku, free) in &view.free_seats {
        let sku = sku.replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!("moss_worker_free_seats{{sku=\"{sku}\"}} {free}\n"));
    }
    text
}

fn outcome_label(kind: OutcomeKind) -> &'static str {
    match kind {
        OutcomeKind::Applied => "applied",
        OutcomeKind::AlreadyApplied => "already_applied",
        OutcomeKind::Stale => "stale",
        OutcomeKind::DeadLettered => "dead_lettered",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_the_current_circuit_state_and_each_sku() {
        let mut events = CounterSnapshot::default().events;
        events[0][0] = 7;
        let mut settle_buckets = [0; SETTLE_BUCKETS.len()];
        for (below, bound) in settle_buckets.iter_mut().zip(SETTLE_BUCKETS) {
            *below = if bound < 0.5 { 1 } else { 3 };
        }
        let first_type = moss_schemas::EventType::ALL[0];
        let view = View {
            counters: CounterSnapshot {
                applied: 7,
                throttled: 4,
                outcome_backlog: 2,
                events,
                settle_buckets,
                settle_sum_micros: 1_500_000,
                settle_count: 3,
                ..CounterSnapshot::default()
            },
            circuit: Some(CircuitState::Closed),
            write_rate: 12.5,
            free_seats: vec![("ENTERPRISEPACK".to_owned(), 3)],
            awaiting_licence: 5,
        };
        let text = render(&view);
        assert!(text.contains("moss_worker_awaiting_licence 5\n"));
        assert!(text.contains("moss_worker_events_applied_total 7\n"));
        assert!(text.contains("moss_worker_circuit_state{state=\"closed\",cause=\"\"} 1\n"));
        assert!(text.contains("moss_worker_circuit_state{state=\"open\",cause=\"\"} 0\n"));
        assert!(text.contains("moss_worker_free_seats{sku=\"ENTERPRISEPACK\"} 3\n"));
        assert!(text.contains("moss_worker_write_rate 12.5\n"));
        assert!(text.contains("moss_worker_throttled_total 4\n"));
        assert!(text.contains("moss_worker_outcome_backlog 2\n"));
        assert!(text.contains(&format!(
            "moss_worker_events_total{{type=\"{first_type}\",outcome=\"applied\"}} 7\n"
        )));
        assert!(text.contains(&format!(
            "moss_worker_events_total{{type=\"{first_type}\",outcome=\"dead_lettered\"}} 0\n"
        )));
        assert!(text.contains("moss_worker_settle_duration_seconds_bucket{le=\"0.25\"} 1\n"));
        assert!(text.contains("moss_worker_settle_duration_seconds_bucket{le=\"1\"} 3\n"));
        assert!(text.contains("moss_worker_settle_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("moss_worker_settle_duration_seconds_sum 1.5\n"));
        assert!(text.contains("moss_worker_settle_duration_seconds_count 3\n"));
    }
}
