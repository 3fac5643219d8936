//! The producer's Prometheus metrics: what was accepted, refused, relayed, and what still waits.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set for counts by event type.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TypeLabel {
    pub(crate) r#type: String,
}

/// Label set for counts by reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: String,
}

/// Every metric the producer exports, registered once.
#[derive(Debug)]
pub(crate) struct ProducerMetrics {
    registry: Registry,
    pub(crate) accepted: Family<TypeLabel, Counter>,
    pub(crate) rejected: Family<ReasonLabel, Counter>,
    pub(crate) accept_seconds: Histogram,
    pub(crate) relayed: Counter,
    pub(crate) relay_failures: Family<ReasonLabel, Counter>,
    pub(crate) outbox_backlog: Gauge,
    pub(crate) broker_connected: Gauge,
}

impl ProducerMetrics {
    pub(crate) fn new() -> Arc<ProducerMetrics> {
        let mut registry = Registry::with_prefix("moss_producer");
        let accepted = Family::<TypeLabel, Counter>::default();
        let rejected = Family::<ReasonLabel, Counter>::default();
        // 50 µs … ~1.6 s: an accept is a flushed sled write, normally around a millisecond.
        let accept_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let relayed = Counter::default();
        let relay_failures = Family::<ReasonLabel, Counter>::default();
        let outbox_backlog = Gauge::default();
        let broker_connected = Gauge::default();
        registry.register(
            "events_accepted",
            "Events stored durably and answered 202",
            accepted.clone(),
        );
        registry.register(
            "requests_rejected",
            "Ingest requests refused, by reason",
            rejected.clone(),
        );
        registry.register(
            "accept_duration_seconds",
            "Time from request to durable 202",
            accept_seconds.clone(),
        );
        registry.register(
            "events_relayed",
            "Events confirmed by RabbitMQ and removed from the outbox",
            relayed.clone(),
        );
        registry.register(
            "relay_failures",
            "Publishes not confirmed, by reason (they are resent)",
            relay_failures.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Events stored but not yet confirmed by RabbitMQ",
            outbox_backlog.clone(),
        );
        registry.register(
            "broker_connected",
            "1 while the relay holds a RabbitMQ connection",
            broker_connected.clone(),
        );
        Arc::new(ProducerMetrics {
            registry,
            accepted,
            rejected,
            accept_seconds,
            relayed,
            relay_failures,
            outbox_backlog,
            broker_connected,
        })
    }

    pub(crate) fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
