//! The four measurements of `moss bench`, each a function of the shared [`Rig`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chrono::Utc;
use moss_broker::baseline::{
    self, ConfirmWait, ConsumeLoopSettings, PublishLoopSettings, QueueAfterRun,
};
use moss_broker::{Broker, Topology};
use moss_emulator::{Emulator, ThrottlingSettings};
use serde::Serialize;
use serde_json::{Value, json};

use super::support::{
    ChildConfig, Drained, OutcomeCounts, OutcomeTap, Pacing, Sink, WorkerChild, percentile,
};

/// Everything the phases share: RabbitMQ, the emulator, the producer's ingest, the outcome tap.
pub(crate) struct Rig {
    pub(crate) amqp_url: String,
    pub(crate) topology: Topology,
    pub(crate) broker: Broker,
    pub(crate) emulator: Emulator,
    pub(crate) ingest_url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) tap: OutcomeTap,
    pub(crate) child: ChildConfig,
    pub(crate) data_dir: std::path::PathBuf,
    pub(crate) domain: String,
    pub(crate) license: String,
}

impl Rig {
    /// A `moss.user.added.v1` event for a new subject, with an online account and a licence:
    /// the event moss mostly carries (a create and a licence assignment in the tenant).
    pub(crate) fn user_added(&self) -> (String, Value) {
        let subject = uuid::Uuid::new_v4().to_string();
        let id = uuid::Uuid::now_v7().to_string();
        let account = format!("b{}", &subject.replace('-', "")[..12]);
        let event = json!({
            "specversion": "1.0",
            "id": id,
            "source": "moss-bench",
            "type": "moss.user.added.v1",
            "subject": subject,
            "time": Utc::now().to_rfc3339(),
            "sequence": "1",
            "data": {
                "account_name": account,
                "display_name": format!("Bench User {account}"),
                "given_name": "Bench",
                "surname": format!("User {account}"),
                "online_account": {
                    "upn": format!("{account}@{}", self.domain),
                    "usage_location": "NL",
                    "licenses": [self.license]
                }
            }
        });
        (id, event)
    }

    /// Posts `events` to the ingest in batches of 100 from 4 clients; fails unless every
    /// batch is answered 202.
    async fn post_all(&self, events: Vec<Value>) -> Result<()> {
        let batches: Vec<Vec<u8>> = events
            .chunks(100)
            .map(serde_json::to_vec)
            .collect::<Result<_, _>>()?;
        let queue = std::sync::Arc::new(std::sync::Mutex::new(batches));
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (queue, http, url) = (queue.clone(), self.http.clone(), self.ingest_url.clone());
            clients.spawn(async move {
                loop {
                    let next = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .pop();
                    let Some(body) = next else {
                        return anyhow::Ok(());
                    };
                    let status = http
                        .post(&url)
                        .header("content-type", moss_producer::BATCH_CONTENT_TYPE)
                        .body(body)
                        .send()
                        .await
                        .context("the producer's ingest answers")?
                        .status();
                    ensure!(
                        status.as_u16() == 202,
                        "the ingest answered {status} to a batch"
                    );
                }
            });
        }
        while let Some(done) = clients.join_next().await {
            done??;
        }
        Ok(())
    }

    /// Waits for a first event's outcome: the worker is consuming and holds a token.
    async fn warm_up(&mut self, worker: &mut WorkerChild) -> Result<()> {
        let (id, event) = self.user_added();
        self.post_all(vec![event]).await?;
        let wanted = HashMap::from([(id, ())]);
        for _ in 0..60 {
            if !self
                .tap
                .collect(
                    &wanted,
                    Duration::from_millis(500),
                    Duration::from_millis(500),
                )
                .await
                .is_empty()
            {
                return Ok(());
            }
            worker.check_running()?;
        }
        bail!("the worker applied no event within 30 s of starting")
    }
}

/// How long a phase waits for the next outcome before it calls the worker stuck.
const STALL: Duration = Duration::from_secs(30);

/// Fails when events went without an outcome: the figures would not mean what they say.
fn missing_outcomes(worker: &WorkerChild, expected: usize, seen: usize) -> Result<()> {
    if seen < expected {
        bail!(
            "only {seen} of {expected} events had an outcome: the worker settled nothing for {} s although its process is still running; its last log lines:\n{}",
            STALL.as_secs(),
            worker.log_tail()
        );
    }
    Ok(())
}

/// The raw ceiling: plain lapin, no moss.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RawCeiling {
    /// Messages published with confirms (sliding window of 1000) to one quorum queue.
    pub(crate) published: u64,
    /// Messages consumed, POSTed to the HTTP sink and acked.
    pub(crate) acked: u64,
    /// Deliveries handled at once by the consumer (and its prefetch).
    pub(crate) in_flight: u64,
    /// Message size in bytes (that of the bench's event as the producer relays it).
    pub(crate) message_bytes: u64,
    /// From the first publish to the last ack, publisher and consumer running at once.
    pub(crate) seconds: f64,
    pub(crate) events_per_second: f64,
}

pub(crate) async fn raw_ceiling(rig: &Rig, messages: usize, in_flight: u16) -> Result<RawCeiling> {
    let queue = format!("{}.bench-raw", rig.topology.prefix().as_str());
    let size = serde_json::to_vec(&rig.user_added().1)?.len() + 150;
    let sink = Sink::start().await?;
    let declared = baseline::declare_quorum_queue(&rig.amqp_url, &queue).await;
    let measured = async {
        declared.context("could not declare the raw loop's queue")?;
        let http = rig.http.clone();
        let url = sink.url.clone();
        let handler = move |body: Vec<u8>| {
            let request = http.post(&url).body(body).send();
            async move { request.await?.error_for_status().map(|_| ()) }
        };
        let started = Instant::now();
        let (published, consumed) = tokio::join!(
            baseline::confirmed_publish_loop(
                &rig.amqp_url,
                &queue,
                PublishLoopSettings {
                    messages,
                    window: 1000,
                    confirms: ConfirmWait::Sliding,
                },
                QueueAfterRun::Keep,
                |index| baseline::filler_body(index, size),
            ),
            baseline::consume_ack_loop(
                &rig.amqp_url,
                &queue,
                ConsumeLoopSettings {
                    messages,
                    prefetch: in_flight,
                    in_flight: usize::from(in_flight),
                },
                handler,
            )
        );
        let seconds = started.elapsed().as_secs_f64();
        let published = published.context("the raw publish loop failed")?;
        let consumed = consumed.context("the raw consume → POST → ack loop failed")?;
        anyhow::Ok(RawCeiling {
            published: published.messages as u64,
            acked: consumed.messages as u64,
            in_flight: u64::from(in_flight),
            message_bytes: size as u64,
            seconds,
            events_per_second: consumed.messages as f64 / seconds,
        })
    }
    .await;
    let _ = baseline::delete_queue(&rig.amqp_url, &queue).await;
    sink.stop().await;
    measured
}

/// moss end to end with the emulator unthrottled.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Unthrottled {
    /// Events posted (batches of 100, 4 clients).
    pub(crate) events: u64,
    pub(crate) outcomes: OutcomeCounts,
    /// From the first request until every batch was answered 202 (stored durably).
    pub(crate) accept_seconds: f64,
    /// From the first request until the tap received the last outcome.
    pub(crate) seconds: f64,
    pub(crate) events_per_second: f64,
    /// Requests the worker made to the emulator in the phase (reads and writes, token calls
    /// included), and the writes among them.
    pub(crate) http_requests: u64,
    pub(crate) http_writes: u64,
    /// moss's events/s over the raw ceiling's.
    pub(crate) ratio_to_raw: f64,
}

pub(crate) async fn unthrottled(
    rig: &mut Rig,
    worker: &mut WorkerChild,
    events: usize,
    raw: &RawCeiling,
) -> Result<Unthrottled> {
    rig.warm_up(worker).await?;
    let (ids, bodies): (Vec<String>, Vec<Value>) = (0..events).map(|_| rig.user_added()).unzip();
    let wanted: HashMap<String, ()> = ids.into_iter().map(|id| (id, ())).collect();
    let log_before = rig.emulator.requests().last().map_or(0, |r| r.seq);
    let started = Instant::now();
    rig.post_all(bodies).await?;
    let accept_seconds = started.elapsed().as_secs_f64();
    let deadline = Duration::from_secs(30 + events as u64 / 20);
    let seen = rig.tap.collect(&wanted, deadline, STALL).await;
    worker.check_running()?;
    missing_outcomes(worker, events, seen.len())?;
    let last = seen.values().map(|o| o.received).max().unwrap_or(started);
    let seconds = last.duration_since(started).as_secs_f64();
    let outcomes = OutcomeCounts::of(seen.values(), events as u64);
    let requests: Vec<_> = rig
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.seq > log_before)
        .collect();
    let done = (events as u64 - outcomes.missing) as f64;
    let events_per_second = done / seconds.max(f64::MIN_POSITIVE);
    Ok(Unthrottled {
        events: events as u64,
        accept_seconds,
        seconds,
        events_per_second,
        http_requests: requests.len() as u64,
        http_writes: requests.iter().filter(|r| r.write).count() as u64,
        ratio_to_raw: events_per_second / raw.events_per_second.max(f64::MIN_POSITIVE),
        outcomes,
    })
}

/// Ingest → applied latency at a fixed rate.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    /// Events per second, sent open loop (each on its tick, whatever the earlier answers).
    pub(crate) rate: u32,
    pub(crate) events: u64,
    pub(crate) outcomes: OutcomeCounts,
    /// From just before the POST to the worker's settle time (the outcome's `time`).
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    /// From just before the POST until the tap received the outcome (adds the outcome relay).
    pub(crate) seen_p99_ms: f64,
}

pub(crate) async fn latency(
    rig: &mut Rig,
    worker: &mut WorkerChild,
    rate: u32,
    seconds: u64,
) -> Result<Latency> {
    let count = u64::from(rate) * seconds;
    let events: Vec<(String, Value)> = (0..count).map(|_| rig.user_added()).collect();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut requests = tokio::task::JoinSet::new();
    for (id, event) in events {
        ticks.tick().await;
        let body = serde_json::to_vec(&event)?;
        let (http, url) = (rig.http.clone(), rig.ingest_url.clone());
        requests.spawn(async move {
            let sent_at = Utc::now();
            let sent = Instant::now();
            let status = http
                .post(&url)
                .header("content-type", moss_producer::SINGLE_CONTENT_TYPE)
                .body(body)
                .send()
                .await
                .context("the producer's ingest answers")?
                .status();
            ensure!(
                status.as_u16() == 202,
                "the ingest answered {status} to an event"
            );
            anyhow::Ok((id, sent_at, sent))
        });
    }
    let mut sent = HashMap::with_capacity(count as usize);
    while let Some(done) = requests.join_next().await {
        let (id, at, instant) = done??;
        sent.insert(id, (at, instant));
    }
    let wanted: HashMap<String, ()> = sent.keys().map(|id| (id.clone(), ())).collect();
    let seen = rig
        .tap
        .collect(&wanted, Duration::from_secs(60), STALL)
        .await;
    worker.check_running()?;
    missing_outcomes(worker, count as usize, seen.len())?;
    let mut applied = Vec::with_capacity(seen.len());
    let mut received = Vec::with_capacity(seen.len());
    for (id, outcome) in &seen {
        let (at, instant) = sent[id];
        let ms = (outcome.settled - at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        applied.push(ms.max(0.0));
        received.push(outcome.received.duration_since(instant).as_secs_f64() * 1000.0);
    }
    applied.sort_by(f64::total_cmp);
    received.sort_by(f64::total_cmp);
    Ok(Latency {
        rate,
        events: count,
        outcomes: OutcomeCounts::of(seen.values(), count),
        p50_ms: percentile(&applied, 0.50),
        p95_ms: percentile(&applied, 0.95),
        p99_ms: percentile(&applied, 0.99),
        max_ms: applied.last().copied().unwrap_or(0.0),
        seen_p99_ms: percentile(&received, 0.99),
    })
}

/// moss as shipped under the emulator's default Microsoft write budget.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Throttled {
    /// The measured window, from the moment the write bucket was empty (the shipped worker
    /// is started then: its start-up is inside the window).
    pub(crate) seconds: f64,
    /// The budget's refill rate: write_limit / write_window (3000 / 150 s = 20).
    pub(crate) budget_writes_per_second: f64,
    /// The writes the budget allowed in the window: refill rate × seconds (the bucket starts
    /// empty, see `drain`).
    pub(crate) budget_writes: f64,
    /// Writes the emulator answered 2xx in the window.
    pub(crate) writes_applied: u64,
    /// Every request of the worker answered in the window (reads, writes, token calls).
    pub(crate) requests: u64,
    /// Of those, answered 429.
    pub(crate) throttled: u64,
    /// Of those, answered anything else outside 2xx (404s on lookups, for example).
    pub(crate) other_non_2xx: u64,
    /// writes_applied / budget_writes.
    pub(crate) budget_share: f64,
    /// throttled / requests.
    pub(crate) throttled_share: f64,
    /// Events queued before the window opened (more than the budget can apply).
    pub(crate) backlog_events: u64,
    /// Outcomes settled in the window.
    pub(crate) outcomes_in_window: u64,
    /// True if the worker ran out of events before the window closed (the share would then
    /// understate what it could use).
    pub(crate) backlog_ran_dry: bool,
    /// Emptying the write bucket (3000-write burst) before the window.
    pub(crate) drain: Drained,
}

pub(crate) async fn throttled(
    rig: &mut Rig,
    seconds: u64,
    writes_per_event: f64,
    peak_rss: &mut Vec<u64>,
) -> Result<Throttled> {
    let budget = ThrottlingSettings::default();
    let per_second = f64::from(budget.write_limit) / f64::from(budget.write_window_secs);
    // More than the budget can apply, even if the worker used the whole window at full rate.
    let backlog = ((per_second * seconds as f64 / writes_per_event.max(1.0)) * 1.5) as usize + 100;
    let bodies: Vec<Value> = (0..backlog).map(|_| rig.user_added().1).collect();
    let queued_before = moss_tests_queued(rig).await?;
    rig.post_all(bodies).await?;
    wait_queued(rig, queued_before + backlog as u64).await?;

    // A write the drain can repeat: a user an earlier phase created.
    let user_id = rig
        .emulator
        .state()
        .users
        .iter()
        .find_map(|user| user.get("id").and_then(Value::as_str).map(str::to_owned))
        .context("the emulator holds no user to drain its write budget with")?;
    rig.emulator.set_throttling(budget.clone());
    let drain = super::support::drain_write_bucket(
        &rig.http,
        &rig.child,
        &rig.emulator.token_url(),
        &user_id,
        u64::from(budget.write_limit) * 3,
    )
    .await?;
    // The refused drain writes left the bucket below zero: wait until the refill has made up
    // for them, so that the window opens on an empty bucket (0 tokens, refilling at 20/s).
    tokio::time::sleep(Duration::from_secs_f64(drain.refused as f64 / per_second)).await;
    let opened = Instant::now();
    let opened_at = Utc::now();
    rig.tap.drain();

    let mut worker = WorkerChild::spawn(
        &rig.child,
        Pacing::Shipped,
        &rig.data_dir.join("worker-shipped"),
    )?;
    let window = Duration::from_secs(seconds);
    while opened.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(250).min(window.saturating_sub(opened.elapsed())))
            .await;
        worker.check_running()?;
    }
    let closed_at = Utc::now();
    let measured = opened.elapsed().as_secs_f64();
    peak_rss.push(worker.peak_rss()?);
    worker.kill();

    let requests: Vec<_> = rig
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.time >= opened_at && r.time <= closed_at)
        .filter(|r| {
            !r.client_request_id
                .as_deref()
                .is_some_and(|id| id.starts_with(super::support::DRAIN_REQUEST_ID))
        })
        .collect();
    let ok = |status: Option<u16>| status.is_some_and(|s| (200..300).contains(&s));
    let writes_applied = requests.iter().filter(|r| r.write && ok(r.status)).count() as u64;
    let throttled = requests.iter().filter(|r| r.status == Some(429)).count() as u64;
    let other_non_2xx = requests
        .iter()
        .filter(|r| !ok(r.status) && r.status != Some(429))
        .count() as u64;
    let outcomes_in_window = rig
        .tap
        .drain()
        .iter()
        .filter(|o| o.settled >= opened_at && o.settled <= closed_at)
        .count() as u64;
    let budget_writes = per_second * measured;
    rig.emulator.set_throttling(ThrottlingSettings::disabled());
    Ok(Throttled {
        seconds: measured,
        budget_writes_per_second: per_second,
        budget_writes,
        writes_applied,
        requests: requests.len() as u64,
        throttled,
        other_non_2xx,
        budget_share: writes_applied as f64 / budget_writes.max(f64::MIN_POSITIVE),
        throttled_share: throttled as f64 / (requests.len() as f64).max(1.0),
        backlog_events: backlog as u64,
        outcomes_in_window,
        backlog_ran_dry: outcomes_in_window >= backlog as u64,
        drain,
    })
}

async fn moss_tests_queued(rig: &Rig) -> Result<u64> {
    let mut total = 0;
    for queue in rig.topology.partition_queues() {
        total += u64::from(rig.broker.queue_depth(&queue).await?.ready);
    }
    Ok(total)
}

async fn wait_queued(rig: &Rig, count: u64) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = moss_tests_queued(rig).await?;
        if seen >= count {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("only {seen} of {count} events reached the partition queues within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
