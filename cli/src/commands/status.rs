//! `moss status`: what an operator watches. Per partition ready / unacknowledged / consumers,
//! dead letters by error class, the producer's outbox backlog, applied per minute, the circuit
//! and why, free seats per SKU, and the last errors.
//!
//! It works from AMQP alone (passive declares, and a bounded read of the dead queue that hands
//! every letter back) and says more when RabbitMQ's management API answers (unacknowledged
//! counts, rates, dead letters in flight) and when the producer's and worker's `/metrics` do.
//! A figure it cannot get is `null` in JSON and "unknown (why)" in text, never a guess.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{SecondsFormat, Utc};
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets};
use moss_broker::Broker;
use serde::Serialize;

use crate::commands::producer::DEFAULT_INGEST_ADDR;
use crate::config::{Common, CommonArgs, FileConfig, layered};
use crate::figures::{Circuit, WorkerFigures, count_by_class, outbox_backlog, partition_depths};
use crate::operate::connection;
use crate::operate::dead_letters::{DeadLetter, DeadQueueView, sort_by_dead_at};
use crate::operate::management::{DEFAULT_MANAGEMENT_URL, Management, QueueStats};
use crate::operate::metrics::{Scrape, WORKER_APPLIED};

/// The worker's metrics listener by default (INTERFACES.md, `MOSS_METRICS_ADDR` of a worker).
const DEFAULT_WORKER_METRICS_ADDR: &str = "127.0.0.1:9481";
/// How many of the newest dead letters are shown as the last errors.
const LAST_ERRORS: usize = 5;
/// The shortest window over which applied-per-minute is measured in a one-shot status.
const RATE_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// JSON instead of text (schema `moss.status.v1`, in docs/OPERATING.md); with --watch, one
    /// document per line.
    #[arg(long)]
    json: bool,
    /// Refresh in place every SECONDS (default 2) until Ctrl-C.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    watch: Option<u64>,
    /// RabbitMQ's management API; credentials from this URL, else from MOSS_AMQP_URL.
    #[arg(long, env = "MOSS_MANAGEMENT_URL", value_name = "URL")]
    management_url: Option<String>,
    /// The worker's metrics address (its MOSS_METRICS_ADDR).
    #[arg(long, env = "MOSS_WORKER_METRICS_ADDR", value_name = "ADDR")]
    worker_metrics_addr: Option<String>,
    /// The producer's metrics address (its ingest address serves /metrics too).
    #[arg(long, env = "MOSS_PRODUCER_METRICS_ADDR", value_name = "ADDR")]
    producer_metrics_addr: Option<String>,
    /// Read at most this many dead letters to count them by class.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    dead_letter_sample: usize,
}

/// `moss status --json` (schema `moss.status.v1`). Additive changes only within v1.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    schema: &'static str,
    time: String,
    prefix: String,
    sources: Sources,
    partitions: Vec<PartitionStatus>,
    totals: Totals,
    dead_letters: DeadLetterStatus,
    outbox_backlog: Option<u64>,
    applied_per_minute: Option<f64>,
    settled_per_minute: Option<f64>,
    circuit: Option<Circuit>,
    free_seats: Option<Vec<FreeSeats>>,
    /// Users whose online account waits for a free licence seat (the worker assigns it once
    /// one frees); `null` when the worker's metrics do not answer.
    awaiting_licence: Option<u64>,
    last_errors: Vec<LastError>,
}

#[derive(Debug, Serialize)]
struct Sources {
    amqp: Source,
    management: Source,
    producer_metrics: Source,
    worker_metrics: Source,
}

/// Whether a source answered, and why not.
#[derive(Debug, Clone, Serialize)]
struct Source {
    address: String,
    available: bool,
    reason: Option<String>,
}

impl Source {
    fn from_result<T>(address: String, result: &Result<T>) -> Source {
        Source {
            address,
            available: result.is_ok(),
            reason: result.as_ref().err().map(|error| format!("{error:#}")),
        }
    }
}

#[derive(Debug, Serialize)]
struct PartitionStatus {
    partition: u16,
    queue: String,
    ready: u32,
    unacked: Option<u64>,
    consumers: u32,
    publish_per_second: Option<f64>,
    ack_per_second: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Totals {
    ready: u64,
    unacked: Option<u64>,
    consumers: u64,
}

#[derive(Debug, Serialize)]
struct DeadLetterStatus {
    queue: String,
    count: u32,
    counted: usize,
    by_class: BTreeMap<String, usize>,
    /// Removals and deactivations the mass-delete guard holds (class `held`), waiting for
    /// `moss deletes approve` or `reject`.
    held_deletes: usize,
    in_flight: Option<u64>,
    oldest_dead_at: Option<String>,
    newest_dead_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct FreeSeats {
    sku: String,
    free: f64,
}

#[derive(Debug, Serialize)]
struct LastError {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    subject: Option<String>,
    error_class: String,
    error_status: Option<i64>,
    error_code: Option<String>,
    error_message: Option<String>,
    dead_at: Option<String>,
}

/// The addresses status reads, resolved once.
#[derive(Debug)]
struct Sight {
    common: Common,
    management: Option<Management>,
    management_address: String,
    management_error: Option<String>,
    worker_metrics: String,
    producer_metrics: String,
    http: reqwest::Client,
    sample: usize,
}

pub(crate) async fn run(args: StatusArgs, file: &FileConfig) -> Result<()> {
    let common = args.common.resolve(file)?;
    let management_url = args
        .management_url
        .clone()
        .unwrap_or_else(|| DEFAULT_MANAGEMENT_URL.to_owned());
    let (management, management_error) = match Management::new(&management_url, &common.amqp_url) {
        Ok(management) => (Some(management), None),
        Err(error) => (None, Some(format!("{error:#}"))),
    };
    let producer_metrics = args.producer_metrics_addr.clone().unwrap_or_else(|| {
        layered(None, file.ingest_addr.clone(), || {
            std::env::var("MOSS_INGEST_ADDR").unwrap_or_else(|_| DEFAULT_INGEST_ADDR.to_owned())
        })
    });
    let sight = Sight {
        management_address: management
            .as_ref()
            .map_or(management_url, Management::address),
        management,
        management_error,
        worker_metrics: args
            .worker_metrics_addr
            .clone()
            .unwrap_or_else(|| DEFAULT_WORKER_METRICS_ADDR.to_owned()),
        producer_metrics,
        http: reqwest::Client::new(),
        sample: args.dead_letter_sample.max(1),
        common,
    };
    let broker = connection::connect(
        &sight.common.amqp_url,
        &sight.common.topology,
        "moss-status",
    )
    .await?;
    let result = match args.watch {
        None => {
            let status = gather(&sight, &broker, None).await;
            status.map(|(status, _)| print(&status, args.json))
        }
        Some(seconds) => {
            watch(
                &sight,
                &broker,
                Duration::from_secs(seconds.max(1)),
                args.json,
            )
            .await
        }
    };
    let _ = broker.close().await;
    result
}

async fn watch(sight: &Sight, broker: &Broker, every: Duration, json: bool) -> Result<()> {
    let redraw = !json && std::io::stdout().is_terminal();
    let mut previous: Option<(Instant, f64)> = None;
    loop {
        let (status, applied) = gather(sight, broker, previous).await?;
        if redraw {
            // Clear the screen and home the cursor: refresh in place.
            print!("\x1b[2J\x1b[H");
        }
        print(&status, json);
        previous = applied;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One status; `previous` is the worker's applied counter at an earlier moment (watch mode).
/// Returns the counter now, for the next round.
async fn gather(
    sight: &Sight,
    broker: &Broker,
    previous: Option<(Instant, f64)>,
) -> Result<(Status, Option<(Instant, f64)>)> {
    let topology = &sight.common.topology;
    let worker_first = Scrape::fetch(&sight.http, &sight.worker_metrics).await;
    let first_at = Instant::now();
    let previous = previous.or_else(|| {
        worker_first
            .as_ref()
            .ok()
            .and_then(|scrape| scrape.value(WORKER_APPLIED))
            .map(|applied| (first_at, applied))
    });

    let mut partitions = Vec::with_capacity(usize::from(topology.partitions()));
    for (partition, (queue, depth)) in (0..).zip(partition_depths(broker, topology).await) {
        let depth = depth.map_err(|error| match error {
            moss_broker::BrokerError::QueueNotFound { .. } => anyhow::anyhow!(
                "RabbitMQ has no queue {queue}; set MOSS_PARTITIONS to the installation's partition count"
            ),
            other => anyhow::anyhow!(other).context(format!("could not inspect {queue}")),
        })?;
        partitions.push(PartitionStatus {
            partition,
            queue,
            ready: depth.ready,
            unacked: None,
            consumers: depth.consumers,
            publish_per_second: None,
            ack_per_second: None,
        });
    }

    let view = DeadQueueView::open(broker, topology, sight.sample).await?;
    let dead_letters = {
        let mut letters: Vec<&DeadLetter> = view.held.iter().map(|held| &held.letter).collect();
        sort_by_dead_at(&mut letters);
        let (by_class, held_deletes) = count_by_class(letters.iter().copied());
        let last_errors: Vec<LastError> = letters
            .iter()
            .rev()
            .take(LAST_ERRORS)
            .map(|letter| LastError {
                id: letter.id.clone(),
                event_type: letter.event_type.clone(),
                subject: letter.subject.clone(),
                error_class: letter.error.class.clone(),
                error_status: letter.error.status,
                error_code: letter.error.code.clone(),
                error_message: letter.error.message.clone(),
                dead_at: letter.dead_at.clone(),
            })
            .collect();
        let status = DeadLetterStatus {
            queue: topology.dead_queue(),
            count: view.in_queue,
            counted: letters.len(),
            held_deletes,
            by_class,
            in_flight: None,
            oldest_dead_at: letters.iter().find_map(|letter| letter.dead_at.clone()),
            newest_dead_at: letters
                .iter()
                .rev()
                .find_map(|letter| letter.dead_at.clone()),
        };
        (status, last_errors)
    };
    view.close().await?;
    let (mut dead_letters, last_errors) = dead_letters;

    let management: Result<BTreeMap<String, QueueStats>> =
        match (&sight.management, &sight.management_error) {
            (Some(management), _) => management.queues(topology.prefix().as_str()).await,
            (None, error) => Err(anyhow::anyhow!(error.clone().unwrap_or_default())),
        };
    let mut settled_per_minute = None;
    if let Ok(queues) = &management {
        let mut settled = 0.0;
        let mut in_flight = 0;
        for partition in &mut partitions {
            if let Some(stats) = queues.get(&partition.queue) {
                partition.unacked = stats.messages_unacknowledged;
                in_flight += stats.messages_dlx.unwrap_or(0);
                if let Some(rates) = &stats.message_stats {
                    partition.publish_per_second = rates.publish_rate();
                    partition.ack_per_second = rates.ack_rate();
                    settled += rates.ack_rate().unwrap_or(0.0);
                }
            }
        }
        dead_letters.in_flight = Some(in_flight);
        settled_per_minute = Some(settled * 60.0);
    }

    let producer = Scrape::fetch(&sight.http, &sight.producer_metrics).await;
    let outbox_backlog = outbox_backlog(&producer);

    // Applied per minute needs two readings of the worker's counter some time apart.
    let mut worker = worker_first;
    let mut applied_per_minute = None;
    let mut applied_now = None;
    if worker.is_ok() {
        if let Some((since, _)) = previous {
            let waited = since.elapsed();
            if waited < RATE_WINDOW {
                tokio::time::sleep(RATE_WINDOW - waited).await;
            }
        }
        worker = Scrape::fetch(&sight.http, &sight.worker_metrics).await;
        if let (Ok(scrape), Some((since, before))) = (&worker, previous)
            && let Some(now) = scrape.value(WORKER_APPLIED)
        {
            let minutes = since.elapsed().as_secs_f64() / 60.0;
            if minutes > 0.0 {
                applied_per_minute =
                    Some(((now - before).max(0.0) / minutes * 10.0).round() / 10.0);
            }
            applied_now = Some((Instant::now(), now));
        }
    }
    let figures = WorkerFigures::read(&worker);
    let free_seats = figures.free_seats.map(|seats| {
        seats
            .into_iter()
            .map(|(sku, free)| FreeSeats { sku, free })
            .collect()
    });

    let totals = Totals {
        ready: partitions
            .iter()
            .map(|partition| u64::from(partition.ready))
            .sum(),
        unacked: partitions.iter().map(|partition| partition.unacked).sum(),
        consumers: partitions
            .iter()
            .map(|partition| u64::from(partition.consumers))
            .sum(),
    };
    let status = Status {
        schema: "moss.status.v1",
        time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        prefix: topology.prefix().as_str().to_owned(),
        sources: Sources {
            amqp: Source {
                address: crate::operate::connection::redacted(&sight.common.amqp_url),
                available: true,
                reason: None,
            },
            management: Source::from_result(sight.management_address.clone(), &management),
            producer_metrics: Source::from_result(sight.producer_metrics.clone(), &producer),
            worker_metrics: Source::from_result(sight.worker_metrics.clone(), &worker),
        },
        partitions,
        totals,
        dead_letters,
        outbox_backlog,
        applied_per_minute,
        settled_per_minute,
        circuit: figures.circuit,
        free_seats,
        awaiting_licence: figures.awaiting_licence,
        last_errors,
    };
    Ok((status, applied_now))
}

fn print(status: &Status, json: bool) {
    if json {
        match serde_json::to_string(status) {
            Ok(text) => println!("{text}"),
            Err(error) => eprintln!("moss: could not encode the status: {error}"),
        }
        return;
    }
    let sources = &status.sources;
    let unknown = |source: &Source, who: &str| -> String {
        if source.available {
            format!("unknown ({who} at {} does not report it)", source.address)
        } else {
            format!("unknown ({who} not reachable at {})", source.address)
        }
    };
    let optional =
        |value: Option<u64>| value.map_or_else(|| "?".to_owned(), |value| value.to_string());
    let rate =
        |value: Option<f64>| value.map_or_else(|| "?".to_owned(), |value| format!("{value:.1}"));
    println!("moss status  prefix {}  {}", status.prefix, status.time);
    println!();
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "PARTITION",
            "READY",
            "UNACKED",
            "CONSUMERS",
            "IN/S",
            "ACKED/S",
        ]);
    for partition in &status.partitions {
        table.add_row([
            partition.queue.clone(),
            partition.ready.to_string(),
            optional(partition.unacked),
            partition.consumers.to_string(),
            rate(partition.publish_per_second),
            rate(partition.ack_per_second),
        ]);
    }
    table.add_row([
        "total".to_owned(),
        status.totals.ready.to_string(),
        optional(status.totals.unacked),
        status.totals.consumers.to_string(),
        String::new(),
        String::new(),
    ]);
    println!("{table}");
    if !sources.management.available {
        println!(
            "(unacked and rates: unknown, the management API is not reachable at {})",
            sources.management.address
        );
    }
    if status.totals.consumers == 0 {
        println!("(no worker is consuming: start `moss worker` or `moss up`)");
    }
    println!();
    let dead = &status.dead_letters;
    let classes: Vec<String> = dead
        .by_class
        .iter()
        .map(|(class, count)| format!("{class} {count}"))
        .collect();
    let mut line = format!("dead letters      {}", dead.count);
    if !classes.is_empty() {
        line.push_str(&format!(" ({})", classes.join(", ")));
    }
    if (dead.counted as u64) < u64::from(dead.count) {
        line.push_str(&format!(
            ", classes counted over the first {}",
            dead.counted
        ));
    }
    println!("{line}");
    if dead.held_deletes > 0 {
        println!(
            "DELETES HELD      {} removals/deactivations over the mass-delete threshold wait for an operator: `moss deletes pending`, then `moss deletes approve` or `moss deletes reject`",
            dead.held_deletes
        );
    }
    if let Some(in_flight) = dead.in_flight {
        println!("  on their way    {in_flight}");
    }
    println!(
        "outbox backlog    {}",
        status.outbox_backlog.map_or_else(
            || unknown(&sources.producer_metrics, "producer"),
            |backlog| backlog.to_string()
        )
    );
    println!(
        "applied/minute    {}",
        status.applied_per_minute.map_or_else(
            || unknown(&sources.worker_metrics, "worker"),
            |rate| format!("{rate:.1}")
        )
    );
    if let Some(settled) = status.settled_per_minute {
        println!("acked/minute      {settled:.1}");
    }
    println!(
        "circuit           {}",
        status.circuit.as_ref().map_or_else(
            || unknown(&sources.worker_metrics, "worker"),
            |circuit| match &circuit.cause {
                Some(cause) => format!("{} ({cause})", circuit.state),
                None => circuit.state.clone(),
            }
        )
    );
    println!(
        "free seats        {}",
        status.free_seats.as_ref().map_or_else(
            || unknown(&sources.worker_metrics, "worker"),
            |seats| seats
                .iter()
                .map(|seat| format!("{} {}", seat.sku, seat.free))
                .collect::<Vec<_>>()
                .join(", ")
        )
    );
    match status.awaiting_licence {
        Some(0) | None => {}
        Some(waiting) => println!(
            "AWAITING LICENCE  {waiting} users wait for a free seat (assigned by the worker once one frees; `moss licenses` shows the SKUs)"
        ),
    }
    println!();
    if status.last_errors.is_empty() {
        println!("last errors       none");
    } else {
        println!("last errors (newest first; `moss dlq show ID` for more)");
        for error in &status.last_errors {
            let mut reason = error.error_code.clone().unwrap_or_default();
            if let Some(status) = error.error_status {
                reason.push_str(&format!(" ({status})"));
            }
            if let Some(message) = &error.error_message {
                reason.push_str(": ");
                reason.push_str(message);
            }
            println!(
                "  {}  {}  {}  {}  {}",
                error.dead_at.as_deref().unwrap_or("?"),
                error.id,
                error.event_type,
                error.error_class,
                reason
            );
        }
    }
}
