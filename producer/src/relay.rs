//! The relay: outbox → RabbitMQ with publisher confirms. An entry leaves the outbox only after
//! RabbitMQ confirmed it (acked and not returned); anything else is resent. While RabbitMQ is
//! away the relay reconnects with backoff and the ingest keeps accepting into the outbox, so a
//! broker outage is a backlog, never a loss.
//!
//! Up to two batches are on the wire at once: the next is sent while RabbitMQ confirms the one
//! before (on one channel, so order holds), which keeps the broker busy between batches.
//!
//! Order: entries are read in append order and published in that order on one channel, so a
//! subject's events reach their partition queue in the order they were accepted. If a publish
//! fails in the middle of a pipelined batch, later events of the same subject may already be
//! queued when the failed one is resent; workers recognise the resent one by its `sequence` as
//! stale (the later event carries the newer desired state), so the end state still holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use moss_broker::{
    Broker, Headers, OutgoingMessage, Persistence, PublishError, Publisher, SentBatch, Topology,
};
use moss_store::{Outbox, OutboxEntry, OutboxId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::{ProducerMetrics, ReasonLabel};
use crate::record::OutboxRecord;

/// How the relay talks to RabbitMQ.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// The broker URL (`MOSS_AMQP_URL`).
    pub amqp_url: String,
    /// The exchange and queue names.
    pub topology: Topology,
    /// How many outbox entries are published before their confirms are awaited together.
    pub batch_size: usize,
    /// Longest wait between reconnect attempts while RabbitMQ is away.
    pub max_reconnect_delay: Duration,
}

/// What the ingest can ask about the relay.
#[derive(Debug, Default)]
pub(crate) struct RelayStatus {
    connected: AtomicBool,
}

impl RelayStatus {
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// A connection ready to publish.
struct Link {
    broker: Broker,
    publisher: Publisher,
}

pub(crate) struct Relay {
    pub(crate) settings: RelaySettings,
    pub(crate) outbox: Outbox,
    pub(crate) wakeup: Arc<Notify>,
    pub(crate) status: Arc<RelayStatus>,
    pub(crate) metrics: Arc<ProducerMetrics>,
}

/// A batch on the wire: the outbox ids it came from, in order, and its pending confirms.
struct InFlight {
    ids: Vec<OutboxId>,
    sent: SentBatch,
}

impl Relay {
    /// Runs until `shutdown`; the batches in flight are finished (their confirms awaited) before
    /// it returns.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut reconnect_delay = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let link = match connect(&self.settings).await {
                Ok(link) => link,
                Err(error) => {
                    tracing::warn!(error = %error, retry_in_ms = reconnect_delay.as_millis() as u64, "relay cannot reach RabbitMQ; events wait in the outbox");
                    self.set_connected(false);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(reconnect_delay) => {}
                    }
                    reconnect_delay = (reconnect_delay * 2).min(self.settings.max_reconnect_delay);
                    continue;
                }
            };
            tracing::info!(backlog = self.outbox.len(), "relay connected to RabbitMQ");
            self.set_connected(true);
            reconnect_delay = Duration::from_millis(100);
            self.pump(&link, &shutdown).await;
            self.set_connected(false);
            close(link).await;
        }
        self.set_connected(false);
        tracing::info!(backlog = self.outbox.len(), "relay stopped");
    }

    /// Moves the outbox to RabbitMQ over one link, with up to two batches on the wire: while
    /// RabbitMQ confirms one, the next is read and sent (stop-and-wait would idle the broker
    /// between batches). Returns when the link is lost or on shutdown, with nothing in flight.
    async fn pump(&self, link: &Link, shutdown: &CancellationToken) {
        // The last outbox id on the wire: the next read starts after it. Reset to the start after a
        // failure, so what was not confirmed is sent again, in order.
        let mut cursor: Option<OutboxId> = None;
        let mut in_flight: Option<InFlight> = None;
        let mut retry_delay = Duration::from_millis(100);
        loop {
            let entries = if shutdown.is_cancelled() {
                Vec::new()
            } else {
                match self.read_batch(cursor).await {
                    Ok(entries) => entries,
                    Err(error) => {
                        tracing::error!(error = %error, "relay could not read the outbox");
                        Vec::new()
                    }
                }
            };
            if entries.is_empty() {
                if let Some(batch) = in_flight.take() {
                    match self.settle(link, batch).await {
                        BatchEnd::AllConfirmed => retry_delay = Duration::from_millis(100),
                        BatchEnd::SomeNotConfirmed => {
                            cursor = None;
                            self.pause(shutdown, &mut retry_delay).await;
                        }
                        BatchEnd::LinkLost => return,
                    }
                    continue;
                }
                if shutdown.is_cancelled() {
                    return;
                }
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = self.wakeup.notified() => {}
                    // The notification is a hint; the outbox is the truth (entries left by an
                    // earlier run of the producer are found this way too).
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }

            cursor = entries.last().map(|entry| entry.id);
            let (ids, messages) = self.messages(entries);
            let sent = link.publisher.send_batch(messages).await;
            let Some(previous) = in_flight.replace(InFlight { ids, sent }) else {
                continue;
            };
            match self.settle(link, previous).await {
                BatchEnd::AllConfirmed => retry_delay = Duration::from_millis(100),
                BatchEnd::SomeNotConfirmed => {
                    // Let the newer batch settle too, then start again from the outbox's head.
                    if let Some(newer) = in_flight.take()
                        && self.settle(link, newer).await == BatchEnd::LinkLost
                    {
                        return;
                    }
                    cursor = None;
                    self.pause(shutdown, &mut retry_delay).await;
                }
                BatchEnd::LinkLost => {
                    if let Some(newer) = in_flight.take() {
                        let _ = self.settle(link, newer).await;
                    }
                    return;
                }
            }
        }
    }

    async fn pause(&self, shutdown: &CancellationToken, delay: &mut Duration) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(*delay) => {}
        }
        *delay = (*delay * 2).min(self.settings.max_reconnect_delay);
    }

    fn set_connected(&self, connected: bool) {
        self.status.connected.store(connected, Ordering::Relaxed);
        self.metrics.broker_connected.set(i64::from(connected));
    }

    async fn read_batch(
        &self,
        after: Option<OutboxId>,
    ) -> Result<Vec<OutboxEntry>, moss_store::StoreError> {
        let outbox = self.outbox.clone();
        let limit = self.settings.batch_size;
        tokio::task::spawn_blocking(move || outbox.pending(after, limit))
            .await
            .unwrap_or_else(|_| Ok(Vec::new()))
    }

    /// The messages to publish for `entries`, with the ids they came from. An entry this producer
    /// cannot read was written by an incompatible version: it is left in place, loudly.
    fn messages(&self, entries: Vec<OutboxEntry>) -> (Vec<OutboxId>, Vec<OutgoingMessage>) {
        let mut ids = Vec::with_capacity(entries.len());
        let mut messages = Vec::with_capacity(entries.len());
        for entry in entries {
            match OutboxRecord::from_bytes(&entry.payload) {
                Ok(record) => {
                    ids.push(entry.id);
                    messages.push(OutgoingMessage {
                        exchange: self.settings.topology.events_exchange(),
                        routing_key: record.routing_key,
                        message_id: record.message_id,
                        body: record.body.into_bytes(),
                        content_type: moss_schemas::Envelope::CONTENT_TYPE.to_owned(),
                        headers: Headers::new(),
                        persistence: Persistence::Persistent,
                    });
                }
                Err(error) => {
                    tracing::error!(outbox_id = entry.id.get(), error = %error, "unreadable outbox entry left in place");
                }
            }
        }
        (ids, messages)
    }

    /// Waits for a batch's confirms and removes what RabbitMQ confirmed from the outbox.
    async fn settle(&self, link: &Link, batch: InFlight) -> BatchEnd {
        let results = batch.sent.confirmed(&link.publisher).await;
        let mut confirmed = Vec::with_capacity(batch.ids.len());
        let mut end = BatchEnd::AllConfirmed;
        for (id, result) in batch.ids.into_iter().zip(results) {
            match result {
                Ok(()) => confirmed.push(id),
                Err(error) => {
                    let reason = failure_reason(&error);
                    self.metrics
                        .relay_failures
                        .get_or_create(&ReasonLabel {
                            reason: reason.to_owned(),
                        })
                        .inc();
                    tracing::warn!(outbox_id = id.get(), error = %error, "publish not confirmed; it stays in the outbox and is resent");
                    let lost =
                        !link.broker.is_connected() || matches!(error, PublishError::Channel(_));
                    end = end.worse(if lost {
                        BatchEnd::LinkLost
                    } else {
                        BatchEnd::SomeNotConfirmed
                    });
                }
            }
        }
        if !confirmed.is_empty() {
            let outbox = self.outbox.clone();
            let count = confirmed.len() as u64;
            let removed = tokio::task::spawn_blocking(move || outbox.remove_all(&confirmed)).await;
            match removed {
                Ok(Ok(())) => {
                    self.metrics.relayed.inc_by(count);
                }
                Ok(Err(error)) => {
                    tracing::error!(error = %error, "confirmed events could not be removed from the outbox; they will be sent again")
                }
                Err(error) => {
                    tracing::error!(error = %error, "confirmed events could not be removed from the outbox; they will be sent again")
                }
            }
        }
        end
    }
}

/// How a published batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum BatchEnd {
    AllConfirmed,
    SomeNotConfirmed,
    LinkLost,
}

impl BatchEnd {
    fn worse(self, other: BatchEnd) -> BatchEnd {
        self.max(other)
    }
}

fn failure_reason(error: &PublishError) -> &'static str {
    match error {
        PublishError::Returned { .. } => "returned",
        PublishError::Nacked => "nacked",
        PublishError::TimedOut { .. } => "timed_out",
        PublishError::Channel(_) => "channel",
        PublishError::InvalidMessage { .. } => "invalid_message",
    }
}

/// Closes a link channel-first; a link that is already broken only needs dropping.
async fn close(link: Link) {
    let _ = link.publisher.close().await;
    let _ = link.broker.close().await;
}

async fn connect(settings: &RelaySettings) -> Result<Link, moss_broker::BrokerError> {
    let broker = Broker::connect(&settings.amqp_url, "moss-producer").await?;
    broker.declare(&settings.topology).await?;
    let publisher = broker.publisher().await?;
    Ok(Link { broker, publisher })
}
