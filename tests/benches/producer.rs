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
//! 3. moss accept latency: single-event POSTs at a fixed rate, open loop (each request is sent on
//!    its tick whether or not earlier ones have been answered), time until `202`.
//!
//! Options (environment): MOSS_BENCH_EVENTS (N, 20000), MOSS_BENCH_ROUNDS (3),
//! MOSS_BENCH_BATCH (100 events per request), MOSS_BENCH_CLIENTS (4 concurrent HTTP clients),
//! MOSS_BENCH_WINDOW (1000 confirms in flight for the plain loop), MOSS_BENCH_PARTITIONS (8),
//! MOSS_BENCH_LATENCY_RATE (200 requests/s), MOSS_BENCH_LATENCY_SECONDS (10),
//! MOSS_BENCH_PHASES (`plain,relay,latency`; a subset runs only those, e.g. under `perf`),
//! MOSS_AMQP_URL.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use moss_broker::baseline::{
    PublishLoopSettings, QueueAfterRun, confirmed_publish_loop, filler_body,
};
use moss_schemas::{Envelope, SealingKey};
use moss_tests::{TestSystem, TestSystemOptions, amqp_url, unique_prefix};

/// The goals.
const RELAY_GOAL_RATIO: f64 = 0.70;
const ACCEPT_P99_GOAL: Duration = Duration::from_millis(5);

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
            events: env("MOSS_BENCH_EVENTS", 20_000)?,
            rounds: env("MOSS_BENCH_ROUNDS", 3)?,
            batch: env("MOSS_BENCH_BATCH", 100)?,
            clients: env("MOSS_BENCH_CLIENTS", 4)?,
            window: env("MOSS_BENCH_WINDOW", 1000)?,
            partitions: env("MOSS_BENCH_PARTITIONS", 8)?,
            latency_rate: env("MOSS_BENCH_LATENCY_RATE", 200)?,
            latency_seconds: env("MOSS_BENCH_LATENCY_SECONDS", 10)?,
            phases: std::env::var("MOSS_BENCH_PHASES")
                .unwrap_or_else(|_| "plain,relay,latency".to_owned())
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
                matches!(phase.as_str(), "plain" | "relay" | "latency"),
                "MOSS_BENCH_PHASES: unknown phase {phase:?}; use plain, relay, latency"
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

    let mut plain = Vec::new();
    let mut relay = Vec::new();
    for round in 1..=config.rounds {
        if config.runs("plain") {
            let queue = format!("{}.baseline", unique_prefix());
            let report = confirmed_publish_loop(
                &url,
                &queue,
                PublishLoopSettings {
                    messages: config.events,
                    window: config.window,
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
    }

    let latency = if config.runs("latency") {
        Some(latency_run(config).await?)
    } else {
        None
    };

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
            "| ingest accepted (events/s, median) | — | {} | — | — | — |",
            show_rate(accept_rate)
        );
    }
    if let Some(latency) = latency {
        println!(
            "| accept latency p50 / p99 / max (ms), {} single events at {}/s | — | {:.2} / {:.2} / {:.2} | — | p99 < 5 ms | {} |",
            latency.len(),
            config.latency_rate,
            millis(percentile(&latency, 0.50)),
            millis(percentile(&latency, 0.99)),
            millis(percentile(&latency, 1.0)),
            met(percentile(&latency, 0.99) < ACCEPT_P99_GOAL),
        );
    }
    Ok(())
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
    // Bodies are made before the clock starts: the bench measures moss, not serde on the client.
    let events: Vec<_> = (0..config.events)
        .map(|_| system.new_user_event())
        .collect();
    let bodies = Arc::new(
        events
            .chunks(config.batch)
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()?,
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..config.clients {
        let bodies = Arc::clone(&bodies);
        let next = Arc::clone(&next);
        let http = system.http.clone();
        let url = system.ingest_url();
        clients.push(tokio::spawn(async move {
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
    let queued_at = system
        .wait_until_queued(
            config.events as u64,
            Duration::from_millis(10),
            Duration::from_secs(300),
        )
        .await?;
    let mut accepted_at = started;
    for client in clients {
        accepted_at = accepted_at.max(client.await??);
    }
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

async fn latency_run(config: &Config) -> anyhow::Result<Vec<Duration>> {
    let system = TestSystem::spawn_with(TestSystemOptions {
        partitions: config.partitions,
    })
    .await?;
    let result = latency_on(config, &system).await;
    system.shutdown().await?;
    result
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
