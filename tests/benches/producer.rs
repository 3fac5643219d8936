//! The producer benchmark (docs/PERFORMANCE.md): moss's ingest + outbox + relay beside a plain
//! lapin confirmed-publish loop, in the same run, on the same RabbitMQ.
//!
//! `cargo bench -p moss-tests --bench producer`
//!
//! 1. plain: [`moss_broker::baseline::confirmed_publish_loop`], N persistent messages of the size
//!    of a moss event to one quorum queue, confirms pipelined in a window.
//! 2. moss relay: N events posted to the ingest in batches by several HTTP clients at once; the
//!    time from the first request until all N are ready in the partition queues (so the outbox has
//!    been relayed). Plain and moss alternate, once per round; medians are reported.
//! 3. moss relay alone (breakdown): the outbox is filled first while the relay is held back (a
//!    partition queue pre-declared with other arguments makes its topology declaration fail), then
//!    a producer is started on that outbox and timed until all N are in the queues.
//! 4. moss publisher alone (breakdown): moss's `Publisher` straight into the partitioned topology,
//!    no ingest, no outbox, in the relay's window: what RabbitMQ and the mandatory flag over N
//!    quorum queues cost against the plain loop's one queue.
//! 5. moss accept latency: single-event POSTs at a fixed rate, open loop (each request is sent on
//!    its tick whether or not earlier ones have been answered), time until `202`; beside it the
//!    producer's own accept histogram (server side) and a sled append+flush alone at the same
//!    rate (the durable write every accept waits for).
//!
//! Options (environment): MOSS_BENCH_EVENTS (N, 50000), MOSS_BENCH_ROUNDS (3),
//! MOSS_BENCH_BATCH (100 events per request), MOSS_BENCH_CLIENTS (4 concurrent HTTP clients),
//! MOSS_BENCH_WINDOW (1000 confirms in flight for the plain loop), MOSS_BENCH_PARTITIONS (8),
//! MOSS_BENCH_LATENCY_RATE (200 requests/s), MOSS_BENCH_LATENCY_SECONDS (10),
//! MOSS_BENCH_PHASES (`plain,relay,drain,publish,latency`; a subset runs only those, e.g. under `perf`),
//! MOSS_AMQP_URL.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use moss_broker::baseline::{
    ConfirmWait, PublishLoopSettings, QueueAfterRun, confirmed_publish_loop, declare_quorum_queue,
    delete_queue, filler_body,
};
use moss_broker::{Broker, Headers, OutgoingMessage, Persistence, Topology};
use moss_schemas::{Envelope, SealingKey};
use moss_tests::{
    TestSystem, TestSystemOptions, amqp_url, producer_settings, unique_prefix, wait_until_queued,
};
use tokio_util::sync::CancellationToken;

/// A domain and licence for events that only the producer sees (it does not check them).
const BENCH_DOMAIN: &str = "contoso.onmicrosoft.com";
const BENCH_LICENSE: &str = "ENTERPRISEPACK";

/// The goals.
const RELAY_GOAL_RATIO: f64 = 0.70;
const ACCEPT_P99_GOAL: Duration = Duration::from_millis(5);
/// Stop-and-wait batches of this size were how the relay worked before its sliding window (it
/// published 500, awaited all their confirms, removed them, then read the next); the plain loop
/// in that discipline stays in the table to show what the window is worth.
const RELAY_BATCH: usize = 500;

#[derive(Debug, Clone)]
struct Config {
    events: usize,
    rounds: usize,
    batch: usize,
    clients: usize,
    window: usize,
    partitions: u16,
    latency_rate: u32,
    latency_seconds: u64,
    phases: Vec<String>,
}

fn env<T: FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={text:?} is not a valid number")),
        Err(_) => Ok(default),
    }
}

impl Config {
    fn from_env() -> anyhow::Result<Config> {
        let config = Config {
            // At 30-40k msg/s a round of 20 000 lasts half a second, so connection setup and
            // the 10 ms polling weigh on the result; 50 000 keeps each round above a second.
            events: env("MOSS_BENCH_EVENTS", 50_000)?,
            rounds: env("MOSS_BENCH_ROUNDS", 3)?,
            batch: env("MOSS_BENCH_BATCH", 100)?,
            clients: env("MOSS_BENCH_CLIENTS", 4)?,
            window: env("MOSS_BENCH_WINDOW", 1000)?,
            partitions: env("MOSS_BENCH_PARTITIONS", 8)?,
            latency_rate: env("MOSS_BENCH_LATENCY_RATE", 200)?,
            latency_seconds: env("MOSS_BENCH_LATENCY_SECONDS", 10)?,
            phases: std::env::var("MOSS_BENCH_PHASES")
                .unwrap_or_else(|_| "plain,relay,drain,publish,latency".to_owned())
                .split(',')
                .map(|phase| phase.trim().to_owned())
                .collect(),
        };
        ensure!(config.events > 0, "MOSS_BENCH_EVENTS must be at least 1");
        ensure!(config.rounds > 0, "MOSS_BENCH_ROUNDS must be at least 1");
        ensure!(config.batch > 0, "MOSS_BENCH_BATCH must be at least 1");
        ensure!(config.clients > 0, "MOSS_BENCH_CLIENTS must be at least 1");
        ensure!(
            config.latency_rate > 0,
            "MOSS_BENCH_LATENCY_RATE must be at least 1"
        );
        for phase in &config.phases {
            ensure!(
                matches!(
                    phase.as_str(),
                    "plain" | "relay" | "drain" | "publish" | "latency"
                ),
                "MOSS_BENCH_PHASES: unknown phase {phase:?}; use plain, relay, drain, publish, latency"
            );
        }
        Ok(config)
    }

    fn runs(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

/// One moss relay round.
#[derive(Debug, Clone, Copy)]
struct RelayRound {
    /// First request → last `202`.
    accepted: Duration,
    /// First request → all events ready in the partition queues.
    queued: Duration,
}

fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&config))
}

async fn run(config: &Config) -> anyhow::Result<()> {
    let url = amqp_url();
    let event_size = moss_event_size()?;
    println!(
        "moss producer benchmark: {} events of {event_size} bytes per round, {} rounds, {} CPUs",
        config.events,
        config.rounds,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "plain: lapin confirmed publish, window {}, 1 quorum queue; moss: {} clients x batches of {}, {} partitions",
        config.window, config.clients, config.batch, config.partitions
    );
    println!("load average before: {}", load_average());

    let mut plain = Vec::new();
    let mut plain_batched = Vec::new();
    let mut relay = Vec::new();
    let mut drain = Vec::new();
    let mut publish = Vec::new();
    for round in 1..=config.rounds {
        if config.runs("plain") {
            let queue = format!("{}.baseline", unique_prefix());
            let report = confirmed_publish_loop(
                &url,
                &queue,
                PublishLoopSettings {
                    messages: config.events,
                    window: config.window,
                    confirms: ConfirmWait::Sliding,
                },
                QueueAfterRun::Delete,
                |index| filler_body(index, event_size),
            )
            .await
            .context("the plain lapin loop")?;
            println!(
                "round {round}: plain {:>8.0} msg/s ({:.2} s)",
                report.rate(),
                report.elapsed.as_secs_f64()
            );
            plain.push(report.rate());
            let queue = format!("{}.baseline", unique_prefix());
            let batched = confirmed_publish_loop(
                &url,
                &queue,
                PublishLoopSettings {
                    messages: config.events,
                    window: RELAY_BATCH,
                    confirms: ConfirmWait::WholeBatch,
                },
                QueueAfterRun::Delete,
                |index| filler_body(index, event_size),
            )
            .await
            .context("the plain lapin loop in stop-and-wait batches")?;
            println!(
                "round {round}: plain {:>8.0} msg/s in stop-and-wait batches of {RELAY_BATCH} ({:.2} s)",
                batched.rate(),
                batched.elapsed.as_secs_f64()
            );
            plain_batched.push(batched.rate());
        }
        if config.runs("relay") {
            let result = relay_round(config).await?;
            println!(
                "round {round}: moss  {:>8.0} events/s relayed ({:.2} s), {:.0} events/s accepted ({:.2} s)",
                rate(config.events, result.queued),
                result.queued.as_secs_f64(),
                rate(config.events, result.accepted),
                result.accepted.as_secs_f64()
            );
            relay.push(result);
        }
        if config.runs("drain") {
            let took = drain_round(config).await?;
            println!(
                "round {round}: moss  {:>8.0} events/s relayed from a full outbox ({:.2} s)",
                rate(config.events, took),
                took.as_secs_f64()
            );
            drain.push(rate(config.events, took));
        }
        if config.runs("publish") {
            let took = publish_round(config, event_size).await?;
            println!(
                "round {round}: moss publisher alone {:>8.0} msg/s into {} partitions ({:.2} s)",
                rate(config.events, took),
                config.partitions,
                took.as_secs_f64()
            );
            publish.push(rate(config.events, took));
        }
    }

    let latency = if config.runs("latency") {
        Some(latency_run(config).await?)
    } else {
        None
    };
    println!("load average after: {}", load_average());

    println!();
    println!("| measure | plain lapin | moss | moss / plain | goal | met |");
    println!("|---|---:|---:|---:|---|---|");
    if !plain.is_empty() || !relay.is_empty() {
        let plain_rate = median(plain.clone());
        let relay_rate = median(
            relay
                .iter()
                .map(|r| rate(config.events, r.queued))
                .collect(),
        );
        let accept_rate = median(
            relay
                .iter()
                .map(|r| rate(config.events, r.accepted))
                .collect(),
        );
        let ratio = plain_rate.zip(relay_rate).map(|(plain, moss)| moss / plain);
        println!(
            "| throughput to the queues (msg/s, median) | {} | {} | {} | moss ≥ 70 % of plain | {} |",
            show_rate(plain_rate),
            show_rate(relay_rate),
            ratio.map_or("—".to_owned(), |r| format!("{:.0} %", r * 100.0)),
            ratio.map_or("—", |r| met(r >= RELAY_GOAL_RATIO)),
        );
        println!(
            "| ingest accepted, same run (events/s, median) | — | {} | — | — | — |",
            show_rate(accept_rate)
        );
    }
    if !drain.is_empty() {
        let drain_rate = median(drain);
        let ratio = median(plain.clone())
            .zip(drain_rate)
            .map(|(plain, moss)| moss / plain);
        println!(
            "| relay alone, from a full outbox (msg/s, median) | {} | {} | {} | — | — |",
            show_rate(median(plain.clone())),
            show_rate(drain_rate),
            ratio.map_or("—".to_owned(), |r| format!("{:.0} %", r * 100.0)),
        );
    }
    if !publish.is_empty() {
        let publish_rate = median(publish);
        let ratio = median(plain.clone())
            .zip(publish_rate)
            .map(|(plain, moss)| moss / plain);
        println!(
            "| moss publisher alone, no outbox: {} partitions, mandatory, the relay's window (msg/s, median) | {} | {} | {} | — | — |",
            config.partitions,
            show_rate(median(plain.clone())),
            show_rate(publish_rate),
            ratio.map_or("—".to_owned(), |r| format!("{:.0} %", r * 100.0)),
        );
    }
    if !plain_batched.is_empty() {
        let batched = median(plain_batched);
        let ratio = median(plain.clone())
            .zip(batched)
            .map(|(sliding, batched)| batched / sliding);
        println!(
            "| plain lapin in stop-and-wait batches of {RELAY_BATCH} (msg/s, median) | {} | — | {} of the sliding window | — | — |",
            show_rate(batched),
            ratio.map_or("—".to_owned(), |r| format!("{:.0} %", r * 100.0)),
        );
    }
    if let Some(latency) = latency {
        let client = &latency.client;
        println!(
            "| accept latency p50 / p99 / max (ms), {} single events at {}/s, HTTP client | — | {:.2} / {:.2} / {:.2} | — | p99 < 5 ms | {} |",
            client.len(),
            config.latency_rate,
            millis(percentile(client, 0.50)),
            millis(percentile(client, 0.99)),
            millis(percentile(client, 1.0)),
            met(percentile(client, 0.99) < ACCEPT_P99_GOAL),
        );
        println!(
            "| … the producer's own accept histogram p50 / p99 (ms, bucket upper bounds) | — | ≤ {} / ≤ {} | — | — | — |",
            latency
                .server_p50
                .map_or("?".to_owned(), |s| format!("{:.2}", s * 1000.0)),
            latency
                .server_p99
                .map_or("?".to_owned(), |s| format!("{:.2}", s * 1000.0)),
        );
        let store = &latency.store;
        println!(
            "| … sled append + flush alone, same rate, p50 / p99 / max (ms) | {:.2} / {:.2} / {:.2} | — | — | — | — |",
            millis(percentile(store, 0.50)),
            millis(percentile(store, 0.99)),
            millis(percentile(store, 1.0)),
        );
    }
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Batches of fresh user-added events, serialised before any clock starts: the bench measures
/// moss, not serde on the client.
fn batch_bodies(config: &Config, domain: &str, license: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let events: Vec<_> = (0..config.events)
        .map(|_| moss_tests::user_added(&uuid::Uuid::new_v4().to_string(), 1, domain, license))
        .collect();
    Ok(events
        .chunks(config.batch)
        .map(serde_json::to_vec)
        .collect::<Result<Vec<_>, _>>()?)
}

/// Posts every batch with `clients` concurrent clients; returns when the last `202` came.
async fn post_batches(
    http: &reqwest::Client,
    url: &str,
    bodies: Vec<Vec<u8>>,
    clients: usize,
) -> anyhow::Result<Instant> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let bodies = Arc::clone(&bodies);
        let next = Arc::clone(&next);
        let http = http.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index) else {
                    return anyhow::Ok(Instant::now());
                };
                let response = http
                    .post(&url)
                    .header("content-type", moss_producer::BATCH_CONTENT_TYPE)
                    .body(body.clone())
                    .send()
                    .await?;
                if response.status().as_u16() != 202 {
                    bail!("the ingest answered {} to a batch", response.status());
                }
            }
        }));
    }
    let mut last = Instant::now();
    for task in tasks {
        last = last.max(task.await??);
    }
    Ok(last)
}

/// Fills an outbox while its relay is held back, then times a fresh producer draining it.
async fn drain_round(config: &Config) -> anyhow::Result<Duration> {
    let url = amqp_url();
    let topology = Topology::new(unique_prefix(), config.partitions)?;
    let broker = Broker::connect(&url, "moss-bench").await?;
    let result = drain_on(config, &url, &broker, &topology).await;
    let deleted = broker.delete_topology(&topology).await;
    broker.close().await?;
    deleted?;
    result
}

async fn drain_on(
    config: &Config,
    url: &str,
    broker: &Broker,
    topology: &Topology,
) -> anyhow::Result<Duration> {
    let blocker = topology.partition_queue(0);
    declare_quorum_queue(url, &blocker).await?;
    let dir = tempfile::tempdir()?;
    let keys = moss_schemas::generate_key_pair();
    let settings = producer_settings(dir.path().join("producer"), topology, &keys)?;
    let bodies = batch_bodies(config, BENCH_DOMAIN, BENCH_LICENSE)?;

    let filling = moss_producer::start(settings.clone(), CancellationToken::new()).await?;
    let url_in = format!("http://{}/v1/events", filling.ingest_addr());
    let posted = post_batches(&reqwest::Client::new(), &url_in, bodies, config.clients).await;
    filling.shutdown().await;
    posted?;
    delete_queue(url, &blocker).await?;
    broker.declare(topology).await?;
    ensure!(
        moss_tests::queued(broker, topology).await? == 0,
        "the relay was not held back while the outbox filled"
    );

    let started = Instant::now();
    let draining = moss_producer::start(settings, CancellationToken::new()).await?;
    let queued_at = wait_until_queued(
        broker,
        topology,
        config.events as u64,
        Duration::from_millis(10),
        Duration::from_secs(300),
    )
    .await;
    draining.shutdown().await;
    Ok(queued_at? - started)
}

/// The relay's own publishing without the outbox or the ingest: moss's `Publisher` (mandatory
/// flag, message id, content type) into the partitioned topology, round-robin over the
/// partitions, in the relay's sliding window (chunks of `PUBLISH_CHUNK`, `PUBLISH_WINDOW_CHUNKS`
/// on the wire). The gap between this and the plain loop is RabbitMQ's and the publisher's, not
/// the outbox's.
async fn publish_round(config: &Config, event_size: usize) -> anyhow::Result<Duration> {
    let url = amqp_url();
    let topology = Topology::new(unique_prefix(), config.partitions)?;
    let broker = Broker::connect(&url, "moss-bench-publish").await?;
    let result = publish_on(config, event_size, &broker, &topology).await;
    let deleted = broker.delete_topology(&topology).await;
    broker.close().await?;
    deleted?;
    result
}

/// The producer relay's defaults (`RelaySettings::batch_size` and `WINDOW_CHUNKS`).
const PUBLISH_CHUNK: usize = 1000;
const PUBLISH_WINDOW_CHUNKS: usize = 4;

async fn publish_on(
    config: &Config,
    event_size: usize,
    broker: &Broker,
    topology: &Topology,
) -> anyhow::Result<Duration> {
    broker.declare(topology).await?;
    let publisher = broker.publisher().await?;
    let exchange = topology.events_exchange();
    let partitions = usize::from(config.partitions.max(1));
    let messages: Vec<OutgoingMessage> = (0..config.events)
        .map(|index| OutgoingMessage {
            exchange: exchange.clone(),
            routing_key: format!("p{}", index % partitions),
            message_id: uuid::Uuid::new_v4().to_string(),
            body: filler_body(index, event_size),
            content_type: Envelope::CONTENT_TYPE.to_owned(),
            headers: Headers::new(),
            persistence: Persistence::Persistent,
        })
        .collect();
    let started = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    let mut chunks = messages.into_iter().peekable();
    while chunks.peek().is_some() || !in_flight.is_empty() {
        if in_flight.len() < PUBLISH_WINDOW_CHUNKS && chunks.peek().is_some() {
            let chunk: Vec<OutgoingMessage> = chunks.by_ref().take(PUBLISH_CHUNK).collect();
            in_flight.push_back(publisher.send_batch(chunk).await);
            continue;
        }
        if let Some(oldest) = in_flight.pop_front() {
            for result in oldest.confirmed(&publisher).await {
                result.context("a publish of the publisher-alone phase")?;
            }
        }
    }
    let took = started.elapsed();
    publisher.close().await?;
    Ok(took)
}

/// The bytes of a moss event as the relay publishes it (the envelope after ingest).
fn moss_event_size() -> anyhow::Result<usize> {
    let keys = moss_schemas::generate_key_pair();
    let key = SealingKey::parse(&keys.public)?;
    let subject = uuid::Uuid::new_v4().to_string();
    let event = moss_tests::user_added(&subject, 1, "contoso.onmicrosoft.com", "ENTERPRISEPACK");
    let envelope = Envelope::from_ingest_json_slice(&serde_json::to_vec(&event)?, &key)
        .map_err(|error| anyhow::anyhow!("the bench event is invalid: {error:?}"))?;
    Ok(envelope.to_json_vec().len())
}

async fn relay_round(config: &Config) -> anyhow::Result<RelayRound> {
    let system = TestSystem::spawn_with(TestSystemOptions {
        partitions: config.partitions,
    })
    .await?;
    let result = relay_round_on(config, &system).await;
    system.shutdown().await?;
    result
}

async fn relay_round_on(config: &Config, system: &TestSystem) -> anyhow::Result<RelayRound> {
    let bodies = batch_bodies(config, &system.domain(), &system.license())?;
    let started = Instant::now();
    let http = system.http.clone();
    let url = system.ingest_url();
    let clients = config.clients;
    let posting = tokio::spawn(async move { post_batches(&http, &url, bodies, clients).await });
    let queued_at = system
        .wait_until_queued(
            config.events as u64,
            Duration::from_millis(10),
            Duration::from_secs(300),
        )
        .await?;
    let accepted_at = posting.await??;
    let queued = system.queued().await?;
    ensure!(
        queued == config.events as u64,
        "{queued} messages queued for {} events: the relay duplicated some",
        config.events
    );
    Ok(RelayRound {
        accepted: accepted_at - started,
        queued: queued_at - started,
    })
}

/// What the latency phase measured.
#[derive(Debug)]
struct Latency {
    /// Request → `202` at the HTTP client, sorted.
    client: Vec<Duration>,
    /// The producer's own accept histogram (seconds), p50 and p99 as bucket upper bounds.
    server_p50: Option<f64>,
    server_p99: Option<f64>,
    /// sled append + flush alone at the same rate, sorted.
    store: Vec<Duration>,
}

async fn latency_run(config: &Config) -> anyhow::Result<Latency> {
    let system = TestSystem::spawn_with(TestSystemOptions {
        partitions: config.partitions,
    })
    .await?;
    let result = latency_on(config, &system).await;
    let histogram = match &result {
        Ok(_) => accept_histogram(&system).await,
        Err(_) => Ok(Vec::new()),
    };
    system.shutdown().await?;
    let client = result?;
    let histogram = histogram?;
    let store = store_latency(config).await?;
    Ok(Latency {
        client,
        server_p50: histogram_quantile(&histogram, 0.50),
        server_p99: histogram_quantile(&histogram, 0.99),
        store,
    })
}

/// `(upper bound in seconds, cumulative count)` of `moss_producer_accept_duration_seconds`.
async fn accept_histogram(system: &TestSystem) -> anyhow::Result<Vec<(f64, u64)>> {
    let text = system
        .http
        .get(system.metrics_url())
        .send()
        .await?
        .text()
        .await?;
    let mut buckets = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("moss_producer_accept_duration_seconds_bucket{le=\"")
        else {
            continue;
        };
        let Some((bound, count)) = rest.split_once("\"} ") else {
            continue;
        };
        let bound = if bound == "+Inf" {
            f64::INFINITY
        } else {
            bound.parse()?
        };
        buckets.push((bound, count.trim().parse()?));
    }
    Ok(buckets)
}

fn histogram_quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    let wanted = (q * total as f64).ceil() as u64;
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= wanted)
        .map(|(bound, _)| *bound)
}

/// The durable write alone: one sled append + flush per tick, at the latency phase's rate.
async fn store_latency(config: &Config) -> anyhow::Result<Vec<Duration>> {
    let dir = tempfile::tempdir()?;
    let store = moss_store::Store::open(&dir.path().join("bench"))?;
    let outbox = store.outbox("bench")?;
    let payload = filler_body(0, 700);
    let count = u64::from(config.latency_rate) * config.latency_seconds;
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / config.latency_rate);
    let mut writes = Vec::new();
    for _ in 0..count {
        ticks.tick().await;
        let outbox = outbox.clone();
        let payload = payload.clone();
        writes.push(tokio::spawn(async move {
            let started = Instant::now();
            tokio::task::spawn_blocking(move || outbox.append_all(&[payload])).await??;
            anyhow::Ok(started.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(writes.len());
    for write in writes {
        latencies.push(write.await??);
    }
    latencies.sort();
    Ok(latencies)
}

async fn latency_on(config: &Config, system: &TestSystem) -> anyhow::Result<Vec<Duration>> {
    let count = u64::from(config.latency_rate) * config.latency_seconds;
    let bodies: Vec<Vec<u8>> = (0..count)
        .map(|_| serde_json::to_vec(&system.new_user_event()))
        .collect::<Result<_, _>>()?;
    // One request first, so that connection setup is not counted as latency.
    let warm_up = system.post_event(&system.new_user_event()).await?;
    ensure!(
        warm_up == 202,
        "the ingest answered {warm_up} to the warm-up"
    );

    let mut ticks = tokio::time::interval(Duration::from_secs(1) / config.latency_rate);
    let mut requests = Vec::with_capacity(bodies.len());
    for body in bodies {
        ticks.tick().await;
        let http = system.http.clone();
        let url = system.ingest_url();
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = http
                .post(&url)
                .header("content-type", moss_producer::SINGLE_CONTENT_TYPE)
                .body(body)
                .send()
                .await?;
            let took = sent.elapsed();
            if response.status().as_u16() != 202 {
                bail!("the ingest answered {} to an event", response.status());
            }
            anyhow::Ok(took)
        }));
    }
    let mut latencies = Vec::with_capacity(requests.len());
    for request in requests {
        latencies.push(request.await??);
    }
    latencies.sort();
    Ok(latencies)
}

fn rate(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=1).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn show_rate(rate: Option<f64>) -> String {
    rate.map_or("—".to_owned(), |r| format!("{r:.0}"))
}

fn met(yes: bool) -> &'static str {
    if yes { "yes" } else { "**no**" }
}
