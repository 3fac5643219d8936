//! The relay: outbox → RabbitMQ with publisher confirms. An entry leaves the outbox only after
//! RabbitMQ confirmed it (acked and not returned); anything else is resent. While RabbitMQ is
//! away the relay reconnects with backoff and the ingest keeps accepting into the outbox, so a
//! broker outage is a backlog, never a loss.
//!
//! Groups: one outbox entry holds the events one group commit of the ingest stored together
//! (`record.rs`), so sled writes and removes one value per group, not one per event. The relay
//! removes an entry only once RabbitMQ confirmed *every* event in it; an entry with any event
//! unconfirmed stays and is later sent again whole, including the events that were confirmed
//! (duplicates carry the same event id, which the workers deduplicate on). A crash with a group
//! partly confirmed therefore resends the whole group after restart.
//!
//! A sliding window: whole groups go out in chunks of at least `batch_size` events (fewer only at
//! the tail), and up to [`WINDOW_CHUNKS`] chunks are on the wire at once (on one channel, so
//! order holds). When the oldest chunk's confirms are in, its groups are removed from the outbox
//! and the next chunk is sent; RabbitMQ always has work while the relay reads and removes. The
//! next chunk is read on its own task while the current one goes out ([`ReadAhead`]), and
//! removals run on a blocking thread while the pump goes on ([`Removals`]).
//!
//! Where the entries come from: the outbox is the truth, but reading back what the ingest has
//! just written costs a tree walk and a decode per entry. So the ingest's group-commit writer
//! also hands every group it has flushed to the relay in memory ([`Handoff`]), in id order. The
//! relay reads the outbox (a *scan*) after it starts, after any failure and whenever the handoff
//! overflowed; once a scan reaches the outbox's tail it takes from the handoff (*live*), skipping
//! what the scan already sent. Nothing the handoff misses is lost: an entry is in the outbox
//! before it is offered, and a dropped offer sends the relay back to scanning.
//!
//! Order: entries are published in id (append) order on one channel, so a subject's events
//! reach their partition queue in the order they were accepted. If a publish fails in the middle
//! of the window, later events of the same subject may already be queued when the failed one is
//! resent; workers recognise the resent one by its `sequence` as stale (the later event carries
//! the newer desired state), so the end state still holds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moss_broker::{
    Broker, Headers, OutgoingMessage, Persistence, PublishError, Publisher, SentBatch, Topology,
};
use moss_store::{Outbox, OutboxEntry, OutboxId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::{ProducerMetrics, ReasonLabel};
use crate::record::parse_entry;

/// How many chunks of `batch_size` entries may await their confirms at once.
pub(crate) const WINDOW_CHUNKS: usize = 4;

/// Most events (and bytes of bodies) the handoff holds before it stops taking more and the
/// relay goes back to reading the outbox: a broker outage must not grow memory without bound.
const HANDOFF_MAX_ENTRIES: usize = 100_000;
const HANDOFF_MAX_BYTES: usize = 64 * 1024 * 1024;

/// How the relay talks to RabbitMQ. Its `Debug` hides the URL's password.
#[derive(Clone)]
pub struct RelaySettings {
    /// The broker URL (`MOSS_AMQP_URL`).
    pub amqp_url: String,
    /// The exchange and queue names.
    pub topology: Topology,
    /// How many outbox entries are read, published and removed together (a chunk); up to
    /// [`WINDOW_CHUNKS`] chunks await their confirms at once.
    pub batch_size: usize,
    /// Longest wait between reconnect attempts while RabbitMQ is away.
    pub max_reconnect_delay: Duration,
}

impl std::fmt::Debug for RelaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySettings")
            .field("amqp_url", &moss_broker::redact_url(&self.amqp_url))
            .field("topology", &self.topology)
            .field("batch_size", &self.batch_size)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .finish()
    }
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

/// An event ready to publish: what goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ready {
    pub(crate) message_id: String,
    pub(crate) routing_key: String,
    pub(crate) body: Vec<u8>,
}

/// One outbox entry: a group of events, in the order they were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    /// Where the group sits in the outbox; it is removed once every event is confirmed.
    pub(crate) id: OutboxId,
    pub(crate) events: Vec<Ready>,
}

impl Group {
    fn body_bytes(&self) -> usize {
        self.events.iter().map(|event| event.body.len()).sum()
    }
}

/// Groups the ingest has stored and flushed, handed to the relay in memory, in id order. Only
/// the ingest's single group-commit writer offers, so the order is the outbox's.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    state: Mutex<HandoffState>,
}

#[derive(Debug, Default)]
struct HandoffState {
    groups: VecDeque<Group>,
    /// Events and bytes of bodies in `groups`.
    events: usize,
    bytes: usize,
    /// An offer was dropped (the handoff was full): the relay must read the outbox.
    overflowed: bool,
}

/// What [`Handoff::take`] found.
enum Taken {
    Groups(Vec<Group>),
    /// Entries were dropped since the last take; the outbox holds them.
    Overflowed,
}

impl Handoff {
    /// Hands over groups that are in the outbox and flushed, in id order.
    pub(crate) fn offer(&self, groups: impl IntoIterator<Item = Group>) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.overflowed {
            return;
        }
        for group in groups {
            let bytes = group.body_bytes();
            if state.events + group.events.len() > HANDOFF_MAX_ENTRIES
                || state.bytes + bytes > HANDOFF_MAX_BYTES
            {
                // The relay is far behind (RabbitMQ away): drop everything and let it scan.
                state.groups = VecDeque::new();
                state.events = 0;
                state.bytes = 0;
                state.overflowed = true;
                return;
            }
            state.events += group.events.len();
            state.bytes += bytes;
            state.groups.push_back(group);
        }
    }

    /// Whole groups, at least `limit` events of them unless fewer are waiting.
    fn take(&self, limit: usize) -> Taken {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.overflowed {
            state.overflowed = false;
            return Taken::Overflowed;
        }
        let mut taken = Vec::new();
        let mut events = 0;
        while events < limit {
            let Some(group) = state.groups.pop_front() else {
                break;
            };
            events += group.events.len();
            state.events -= group.events.len();
            state.bytes -= group.body_bytes();
            taken.push(group);
        }
        Taken::Groups(taken)
    }
}

/// Outbox entries read per scan step; a scan reads steps until it has a chunk's worth of events.
const SCAN_STEP: usize = 32;

/// Where the relay's next groups come from: the outbox (scan) until it reaches the tail, then
/// the handoff (live). `cursor` is the id of the last group put on the wire.
struct Feed {
    outbox: Outbox,
    handoff: Arc<Handoff>,
    cursor: Option<OutboxId>,
    live: bool,
}

impl Feed {
    /// A feed that starts at the outbox's head.
    fn new(outbox: Outbox, handoff: Arc<Handoff>) -> Feed {
        Feed {
            outbox,
            handoff,
            cursor: None,
            live: false,
        }
    }

    /// Starts over from the outbox's head: what was not confirmed is sent again, in order.
    fn restart(&mut self) {
        self.cursor = None;
        self.live = false;
    }

    /// Whole groups after the cursor, in id order, about `limit` events of them (at least one
    /// group); none when there is nothing to send.
    async fn next(&mut self, limit: usize) -> Result<Vec<Group>, moss_store::StoreError> {
        loop {
            if !self.live {
                let mut groups = Vec::new();
                let mut events = 0;
                while !self.live && events < limit {
                    let entries = read_outbox(&self.outbox, self.cursor, SCAN_STEP).await?;
                    // Fewer than asked: the scan reached the tail; what is appended from now on
                    // is offered to the handoff too.
                    self.live = entries.len() < SCAN_STEP;
                    if let Some(last) = entries.last() {
                        // Past unreadable entries too: they stay in the outbox, logged.
                        self.cursor = Some(last.id);
                    }
                    for group in decode(entries) {
                        events += group.events.len();
                        groups.push(group);
                    }
                }
                if !groups.is_empty() {
                    return Ok(groups);
                }
            }
            match self.handoff.take(limit) {
                Taken::Overflowed => self.live = false,
                Taken::Groups(taken) => {
                    let taken_any = !taken.is_empty();
                    let cursor = self.cursor;
                    let fresh: Vec<Group> = taken
                        .into_iter()
                        .filter(|group| cursor.is_none_or(|cursor| group.id > cursor))
                        .collect();
                    if let Some(last) = fresh.last() {
                        self.cursor = Some(last.id);
                        return Ok(fresh);
                    }
                    if !taken_any {
                        return Ok(Vec::new());
                    }
                    // Only entries the scan had already sent: look again.
                }
            }
        }
    }
}

/// A read of the feed running on its own task, handing the feed back with what it read.
type Reading = tokio::task::JoinHandle<(Feed, Result<Vec<Group>, moss_store::StoreError>)>;

/// The feed with one read running ahead of the pump: while the pump puts a chunk on the wire,
/// the next chunk is read from the outbox (or taken from the handoff) and decoded on another
/// thread, so the one task that publishes never waits for sled.
struct ReadAhead {
    idle: Option<Feed>,
    running: Option<Reading>,
    limit: usize,
    outbox: Outbox,
    handoff: Arc<Handoff>,
}

impl ReadAhead {
    fn new(outbox: Outbox, handoff: Arc<Handoff>, limit: usize) -> ReadAhead {
        ReadAhead {
            idle: Some(Feed::new(outbox.clone(), Arc::clone(&handoff))),
            running: None,
            limit,
            outbox,
            handoff,
        }
    }

    /// The feed back, with the result of the read that ran ahead if one did.
    async fn join(&mut self) -> (Feed, Option<Result<Vec<Group>, moss_store::StoreError>>) {
        if let Some(reading) = self.running.take() {
            match reading.await {
                Ok((feed, read)) => return (feed, Some(read)),
                Err(error) => {
                    // Nothing is lost: a feed that starts at the head sends again what was not
                    // confirmed.
                    tracing::error!(error = %error, "the relay's outbox read failed; reading again from the outbox's head");
                    return (
                        Feed::new(self.outbox.clone(), Arc::clone(&self.handoff)),
                        None,
                    );
                }
            }
        }
        let feed = self
            .idle
            .take()
            .unwrap_or_else(|| Feed::new(self.outbox.clone(), Arc::clone(&self.handoff)));
        (feed, None)
    }

    /// The next chunk (see [`Feed::next`]). What the read ahead found is used when it found
    /// something; when it found nothing, the feed is asked again now, since groups may have
    /// been handed over since. After a chunk, the following read starts at once.
    async fn next(&mut self) -> Result<Vec<Group>, moss_store::StoreError> {
        let (mut feed, ahead) = self.join().await;
        let read = match ahead {
            Some(Ok(groups)) if !groups.is_empty() => Ok(groups),
            Some(Err(error)) => Err(error),
            Some(Ok(_)) | None => feed.next(self.limit).await,
        };
        if matches!(&read, Ok(groups) if !groups.is_empty()) {
            let limit = self.limit;
            self.running = Some(tokio::spawn(async move {
                let read = feed.next(limit).await;
                (feed, read)
            }));
        } else {
            self.idle = Some(feed);
        }
        read
    }

    /// Drops what was read ahead; the next chunk starts at the outbox's head.
    async fn restart(&mut self) {
        let (mut feed, _) = self.join().await;
        feed.restart();
        self.idle = Some(feed);
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some(reading) = self.running.take() {
            reading.abort();
        }
    }
}

/// Removals of confirmed groups from the outbox, one sled batch at a time on a blocking thread
/// while the pump goes on publishing. Each waits for the one before it.
#[derive(Default)]
struct Removals {
    last: Option<tokio::task::JoinHandle<()>>,
}

impl Removals {
    async fn start(
        &mut self,
        outbox: &Outbox,
        metrics: &Arc<ProducerMetrics>,
        confirmed: Vec<OutboxId>,
        events: u64,
    ) {
        self.finish().await;
        let outbox = outbox.clone();
        let metrics = Arc::clone(metrics);
        self.last = Some(tokio::task::spawn_blocking(move || {
            match outbox.remove_all(&confirmed) {
                Ok(()) => {
                    metrics.relayed.inc_by(events);
                    metrics
                        .outbox_backlog
                        .dec_by(i64::try_from(events).unwrap_or(i64::MAX));
                }
                Err(error) => {
                    tracing::error!(error = %error, "confirmed events could not be removed from the outbox; they will be sent again");
                }
            }
        }));
    }

    /// Waits until every removal started has ended: before the relay reads the outbox from
    /// its head again (so that it does not resend what was confirmed) and before it stops.
    async fn finish(&mut self) {
        if let Some(removal) = self.last.take()
            && let Err(error) = removal.await
        {
            tracing::error!(error = %error, "confirmed events could not be removed from the outbox; they will be sent again");
        }
    }
}

async fn read_outbox(
    outbox: &Outbox,
    after: Option<OutboxId>,
    limit: usize,
) -> Result<Vec<OutboxEntry>, moss_store::StoreError> {
    let outbox = outbox.clone();
    tokio::task::spawn_blocking(move || outbox.pending(after, limit))
        .await
        .unwrap_or_else(|_| Ok(Vec::new()))
}

/// The stored entries as groups of messages. An entry this producer cannot read was written by
/// an incompatible version: it is left in place, loudly.
fn decode(entries: Vec<OutboxEntry>) -> Vec<Group> {
    let mut groups = Vec::with_capacity(entries.len());
    for entry in entries {
        match parse_entry(&entry.payload) {
            Ok(stored) => groups.push(Group {
                id: entry.id,
                events: stored
                    .iter()
                    .map(|stored| {
                        let record = stored.view();
                        Ready {
                            message_id: record.message_id.to_owned(),
                            routing_key: record.routing_key.to_owned(),
                            body: record.body.to_vec(),
                        }
                    })
                    .collect(),
            }),
            Err(error) => {
                tracing::error!(outbox_id = entry.id.get(), error = %error, "unreadable outbox entry left in place");
            }
        }
    }
    groups
}

/// A connection ready to publish.
struct Link {
    broker: Broker,
    publisher: Publisher,
}

pub(crate) struct Relay {
    pub(crate) settings: RelaySettings,
    pub(crate) outbox: Outbox,
    pub(crate) handoff: Arc<Handoff>,
    pub(crate) wakeup: Arc<Notify>,
    pub(crate) status: Arc<RelayStatus>,
    pub(crate) metrics: Arc<ProducerMetrics>,
}

/// A chunk on the wire: the groups it came from (outbox id and number of events), in order, and
/// the pending confirms of their events.
struct InFlight {
    groups: Vec<(OutboxId, usize)>,
    sent: SentBatch,
}

impl Relay {
    /// Runs until `shutdown`; the chunks in flight are finished (their confirms awaited) before
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
            tracing::info!(
                backlog = self.metrics.outbox_backlog.get(),
                "relay connected to RabbitMQ"
            );
            self.set_connected(true);
            reconnect_delay = Duration::from_millis(100);
            self.pump(&link, &shutdown).await;
            self.set_connected(false);
            close(link).await;
        }
        self.set_connected(false);
        tracing::info!(backlog = self.metrics.outbox_backlog.get(), "relay stopped");
    }

    /// Moves the outbox to RabbitMQ over one link with a sliding window of chunks: while
    /// RabbitMQ confirms the older chunks, newer ones are read and sent. Returns when the link
    /// is lost or on shutdown, with nothing in flight and every removal done.
    async fn pump(&self, link: &Link, shutdown: &CancellationToken) {
        let mut removals = Removals::default();
        self.pump_chunks(link, shutdown, &mut removals).await;
        removals.finish().await;
    }

    async fn pump_chunks(
        &self,
        link: &Link,
        shutdown: &CancellationToken,
        removals: &mut Removals,
    ) {
        let mut feed = ReadAhead::new(
            self.outbox.clone(),
            Arc::clone(&self.handoff),
            self.settings.batch_size.max(1),
        );
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(WINDOW_CHUNKS);
        let mut retry_delay = Duration::from_millis(100);
        loop {
            let entries = if shutdown.is_cancelled() || in_flight.len() >= WINDOW_CHUNKS {
                Vec::new()
            } else {
                match feed.next().await {
                    Ok(entries) => entries,
                    Err(error) => {
                        tracing::error!(error = %error, "relay could not read the outbox");
                        Vec::new()
                    }
                }
            };
            if entries.is_empty() {
                if let Some(oldest) = in_flight.pop_front() {
                    match self.settle(link, oldest, removals).await {
                        BatchEnd::AllConfirmed => retry_delay = Duration::from_millis(100),
                        BatchEnd::SomeNotConfirmed => {
                            // Let the newer chunks settle too, then start again from the
                            // outbox's head.
                            while let Some(newer) = in_flight.pop_front() {
                                if self.settle(link, newer, removals).await == BatchEnd::LinkLost {
                                    self.abandon(link, in_flight, removals).await;
                                    return;
                                }
                            }
                            removals.finish().await;
                            feed.restart().await;
                            self.pause(shutdown, &mut retry_delay).await;
                        }
                        BatchEnd::LinkLost => {
                            self.abandon(link, in_flight, removals).await;
                            return;
                        }
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

            let (groups, messages) = self.messages(entries);
            let sent = link.publisher.send_batch(messages).await;
            in_flight.push_back(InFlight { groups, sent });
        }
    }

    /// The link is gone: settle what is left (removing whatever was confirmed after all).
    async fn abandon(&self, link: &Link, in_flight: VecDeque<InFlight>, removals: &mut Removals) {
        for batch in in_flight {
            let _ = self.settle(link, batch, removals).await;
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

    /// The messages to publish for `groups`, in order, with the groups they came from.
    fn messages(&self, groups: Vec<Group>) -> (Vec<(OutboxId, usize)>, Vec<OutgoingMessage>) {
        let exchange = self.settings.topology.events_exchange();
        let mut ids = Vec::with_capacity(groups.len());
        let mut messages = Vec::with_capacity(groups.iter().map(|group| group.events.len()).sum());
        for group in groups {
            ids.push((group.id, group.events.len()));
            for event in group.events {
                messages.push(OutgoingMessage {
                    exchange: exchange.clone(),
                    routing_key: event.routing_key,
                    message_id: event.message_id,
                    body: event.body,
                    content_type: moss_schemas::Envelope::CONTENT_TYPE.to_owned(),
                    headers: Headers::new(),
                    persistence: Persistence::Persistent,
                });
            }
        }
        (ids, messages)
    }

    /// Waits for a chunk's confirms and starts removing from the outbox the groups whose every
    /// event RabbitMQ confirmed; a group with any event unconfirmed stays, to be sent again whole.
    async fn settle(&self, link: &Link, batch: InFlight, removals: &mut Removals) -> BatchEnd {
        let mut results = batch.sent.confirmed(&link.publisher).await.into_iter();
        let mut confirmed = Vec::with_capacity(batch.groups.len());
        let mut count = 0_u64;
        let mut end = BatchEnd::AllConfirmed;
        for (id, events) in batch.groups {
            let mut whole = true;
            for _ in 0..events {
                // A missing result (cannot happen: one per message sent) counts as unconfirmed.
                let result = results.next().unwrap_or(Err(PublishError::Nacked));
                let Err(error) = result else { continue };
                whole = false;
                let reason = failure_reason(&error);
                self.metrics
                    .relay_failures
                    .get_or_create(&ReasonLabel {
                        reason: reason.to_owned(),
                    })
                    .inc();
                tracing::warn!(outbox_id = id.get(), error = %error, "publish not confirmed; its group stays in the outbox and is resent whole");
                let lost = !link.broker.is_connected() || matches!(error, PublishError::Channel(_));
                end = end.worse(if lost {
                    BatchEnd::LinkLost
                } else {
                    BatchEnd::SomeNotConfirmed
                });
            }
            if whole {
                confirmed.push(id);
                count += events as u64;
            }
        }
        if !confirmed.is_empty() {
            removals
                .start(&self.outbox, &self.metrics, confirmed, count)
                .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(id: u64) -> Group {
        group(id, 1)
    }

    fn group(id: u64, events: usize) -> Group {
        Group {
            id: OutboxId::from_u64(id),
            events: (0..events)
                .map(|index| Ready {
                    message_id: format!("m{id}.{index}"),
                    routing_key: "p0".to_owned(),
                    body: vec![b'x'; 10],
                })
                .collect(),
        }
    }

    fn ids(taken: Taken) -> Option<Vec<u64>> {
        match taken {
            Taken::Groups(groups) => Some(groups.iter().map(|group| group.id.get()).collect()),
            Taken::Overflowed => None,
        }
    }

    #[test]
    fn the_handoff_gives_entries_in_order_in_chunks() {
        let handoff = Handoff::default();
        handoff.offer((1..=5).map(ready));
        assert_eq!(ids(handoff.take(3)), Some(vec![1, 2, 3]));
        assert_eq!(ids(handoff.take(3)), Some(vec![4, 5]));
        assert_eq!(ids(handoff.take(3)), Some(vec![]));
    }

    #[test]
    fn the_handoff_gives_whole_groups_never_part_of_one() {
        let handoff = Handoff::default();
        handoff.offer([group(1, 2), group(2, 5), group(3, 1), group(4, 1)]);
        // 3 events asked: group 2 is not split, so 7 come.
        assert_eq!(ids(handoff.take(3)), Some(vec![1, 2]));
        assert_eq!(ids(handoff.take(1)), Some(vec![3]));
        assert_eq!(ids(handoff.take(100)), Some(vec![4]));
    }

    #[test]
    fn a_full_handoff_drops_everything_and_says_so_once() {
        let handoff = Handoff::default();
        handoff.offer((1..=HANDOFF_MAX_ENTRIES as u64 + 1).map(ready));
        // Later offers are dropped too until the relay has noticed (it then reads the outbox).
        handoff.offer([ready(HANDOFF_MAX_ENTRIES as u64 + 2)]);
        assert_eq!(ids(handoff.take(10)), None);
        handoff.offer([ready(HANDOFF_MAX_ENTRIES as u64 + 3)]);
        assert_eq!(
            ids(handoff.take(10)),
            Some(vec![HANDOFF_MAX_ENTRIES as u64 + 3])
        );
    }
}
