//! `moss bench`: how fast moss is on this machine, as ratios against a plain RabbitMQ loop
//! measured in the same run (docs/PERFORMANCE.md, "moss bench").
//!
//! It uses the RabbitMQ that `MOSS_AMQP_URL` names under a fresh `moss-bench-<uuid>` topology
//! (deleted at the end), an in-process emulator and producer, and the worker as a child process
//! of this binary so that its peak memory is its own. Phases, in order:
//!
//! 1. raw ceiling: plain lapin publishes N messages with confirms to a quorum queue while a
//!    plain consumer POSTs each to an HTTP sink and acks, C in flight;
//! 2. moss unthrottled: N `user.added` events through the ingest, the worker (write pacer
//!    lifted) and the emulator, from the first request to the last outcome;
//! 3. latency: events at a fixed rate (100/s), ingest → applied percentiles;
//! 4. moss as shipped (`moss worker`) under the emulator's default write budget, with the
//!    bucket's burst drained first: share of the budget used and of requests answered 429.

mod phases;
mod support;

use anyhow::{Context, Result};
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets};
use moss_broker::{Broker, Topology, TopologyPrefix, baseline};
use serde::Serialize;

use crate::config::{DEFAULT_AMQP_URL, FileConfig, layered};
use phases::{Latency, RawCeiling, Rig, Throttled, Unthrottled};
use support::{ChildConfig, OutcomeTap, Pacing, WorkerChild};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// RabbitMQ URL; the bench declares and deletes its own `moss-bench-<uuid>` topology there.
    #[arg(long, env = "MOSS_AMQP_URL", value_name = "URL")]
    amqp_url: Option<String>,
    /// A run under a minute: fewer events and shorter windows (noisier figures).
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Events for the raw loop and for moss unthrottled [default: 10000, quick 1500].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    events: Option<u64>,
    /// Seconds of events at the latency rate [default: 30, quick 5].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=600))]
    latency_secs: Option<u64>,
    /// Events per second in the latency phase.
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=5000))]
    latency_rate: u32,
    /// Seconds of the window under the write budget [default: 120, quick 15].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(5..=3600))]
    throttled_secs: Option<u64>,
    /// Partition queues of the bench's topology.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    partitions: u16,
    /// Internal: run as the bench's worker child process, configured by the environment.
    #[arg(long, hide = true)]
    worker_process: bool,
}

/// The goals of issue 10 (and issue 5's benchmark).
const GOAL_RATIO: f64 = 0.50;
const GOAL_BUDGET_SHARE: f64 = 0.95;
const GOAL_THROTTLED_SHARE: f64 = 0.01;
const GOAL_P99_MS: f64 = 1000.0;
const GOAL_RSS_MB: f64 = 100.0;

/// `moss bench --json`'s document (docs/PERFORMANCE.md describes every field).
#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    quick: bool,
    started: String,
    /// The topology the bench declared (and deleted).
    topology_prefix: String,
    machine: Machine,
    raw_ceiling: RawCeiling,
    moss_unthrottled: Unthrottled,
    latency: Latency,
    throttled: Throttled,
    memory: Memory,
    goals: Vec<Goal>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    load_average_start: Option<[f64; 3]>,
    load_average_end: Option<[f64; 3]>,
    moss_version: &'static str,
}

#[derive(Debug, Serialize)]
struct Memory {
    /// Peak resident memory (VmHWM) of the worker child that ran phases 2 and 3.
    unthrottled_worker_peak_mb: f64,
    /// Peak resident memory of the `moss worker` child that ran under the write budget.
    throttled_worker_peak_mb: f64,
    /// The larger of the two.
    worker_peak_mb: f64,
}

#[derive(Debug, Serialize)]
struct Goal {
    name: &'static str,
    measured: f64,
    goal: String,
    met: bool,
}

pub(crate) async fn run(args: BenchArgs, file: &FileConfig) -> Result<()> {
    if args.worker_process {
        return worker_process().await;
    }
    let amqp_url = layered(args.amqp_url.clone(), file.amqp_url.clone(), || {
        DEFAULT_AMQP_URL.to_owned()
    });
    if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
        anyhow::bail!("MOSS_AMQP_URL must start with amqp:// or amqps://");
    }
    let events = args
        .events
        .unwrap_or(if args.quick { 1_500 } else { 10_000 }) as usize;
    let latency_secs = args.latency_secs.unwrap_or(if args.quick { 5 } else { 30 });
    let throttled_secs = args
        .throttled_secs
        .unwrap_or(if args.quick { 15 } else { 120 });
    let load_start = support::load_average();
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    let dir = std::env::temp_dir().join(format!("moss-bench-{}", uuid::Uuid::new_v4().simple()));
    crate::config::private_dir(&dir)?;
    let prefix = TopologyPrefix::parse(&format!("moss-bench-{}", uuid::Uuid::new_v4().simple()))?;
    let topology = Topology::new(prefix, args.partitions)?;
    let broker = Broker::connect(&amqp_url, "moss-bench")
        .await
        .context("RabbitMQ does not answer at MOSS_AMQP_URL")?;
    let tap_queue = format!("{}.bench-outcomes", topology.prefix().as_str());
    let stop_producer = tokio_util::sync::CancellationToken::new();
    let measured = async {
        broker.declare(&topology).await?;
        baseline::declare_tap_queue(&amqp_url, &tap_queue, &topology.outcomes_exchange()).await?;
        measure(
            &args,
            &amqp_url,
            &topology,
            &broker,
            &tap_queue,
            &dir,
            events,
            latency_secs,
            throttled_secs,
            stop_producer.clone(),
        )
        .await
    };
    // Ctrl-C stops the measuring (the worker child is killed as its handle drops, the
    // producer is stopped) and still cleans up below.
    let measured = tokio::select! {
        measured = measured => measured,
        interrupted = tokio::signal::ctrl_c() => {
            interrupted.context("could not listen for Ctrl-C")?;
            eprintln!("moss bench: interrupted; deleting the bench's topology and data");
            stop_producer.cancel();
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            Err(anyhow::anyhow!("interrupted; nothing was measured"))
        }
    };
    // Cleanup whatever happened: the topology with its messages, the workers' own outcome
    // queues (not part of the topology), the tap, the data.
    let _ = baseline::delete_queue(&amqp_url, &tap_queue).await;
    for worker in ["worker-lifted", "worker-shipped"] {
        if let Some(queue) = worker_outcome_queue(&dir.join(worker).join("worker"), &topology).await
        {
            let _ = baseline::delete_queue(&amqp_url, &queue).await;
        }
    }
    let deleted = broker.delete_topology(&topology).await;
    let _ = broker.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    let (raw, unthrottled, latency, throttled, memory) = measured?;
    deleted.context("could not delete the bench's topology")?;

    let goals = vec![
        Goal {
            name: "moss unthrottled / raw ceiling (events/s)",
            measured: unthrottled.ratio_to_raw,
            goal: format!(">= {GOAL_RATIO}"),
            met: unthrottled.ratio_to_raw >= GOAL_RATIO,
        },
        Goal {
            name: "share of the write budget used",
            measured: throttled.budget_share,
            goal: format!(">= {GOAL_BUDGET_SHARE}"),
            met: throttled.budget_share >= GOAL_BUDGET_SHARE,
        },
        Goal {
            name: "share of requests answered 429",
            measured: throttled.throttled_share,
            goal: format!("< {GOAL_THROTTLED_SHARE}"),
            met: throttled.throttled_share < GOAL_THROTTLED_SHARE,
        },
        Goal {
            name: "p99 ingest -> applied (ms)",
            measured: latency.p99_ms,
            goal: format!("< {GOAL_P99_MS}"),
            met: latency.p99_ms < GOAL_P99_MS && latency.outcomes.missing == 0,
        },
        Goal {
            name: "worker peak RSS (MB)",
            measured: memory.worker_peak_mb,
            goal: format!("< {GOAL_RSS_MB}"),
            met: memory.worker_peak_mb < GOAL_RSS_MB,
        },
    ];
    let report = Report {
        schema: "moss.bench.v1",
        quick: args.quick,
        started,
        topology_prefix: topology.prefix().as_str().to_owned(),
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            load_average_start: load_start,
            load_average_end: support::load_average(),
            moss_version: env!("CARGO_PKG_VERSION"),
        },
        raw_ceiling: raw,
        moss_unthrottled: unthrottled,
        latency,
        throttled,
        memory,
        goals,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &BenchArgs,
    amqp_url: &str,
    topology: &Topology,
    broker: &Broker,
    tap_queue: &str,
    dir: &std::path::Path,
    events: usize,
    latency_secs: u64,
    throttled_secs: u64,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(RawCeiling, Unthrottled, Latency, Throttled, Memory)> {
    let emulator = moss_emulator::Emulator::start_for_tests()
        .await
        .context("the in-process emulator could not start")?;
    let tenant = emulator.tenant();
    let license = tenant
        .skus
        .first()
        .map(|sku| sku.sku_part_number.clone())
        .context("the emulator's tenant has no licence")?;
    emulator.set_sku_units(&license, 10_000_000)?;
    let keys = moss_schemas::generate_key_pair();
    let key_file = dir.join("moss-seal.key");
    write_private(&key_file, &keys.private)?;
    let mut producer_settings = moss_producer::ProducerSettings::new(
        dir.join("producer"),
        amqp_url.to_owned(),
        topology.clone(),
        moss_schemas::SealingKey::parse(&keys.public)?,
    );
    producer_settings.ingest_addr = "127.0.0.1:0".parse()?;
    let producer = moss_producer::start(producer_settings, shutdown.clone())
        .await
        .context("the in-process producer could not start")?;
    let tap = OutcomeTap::start(broker, tap_queue).await?;
    let mut rig = Rig {
        amqp_url: amqp_url.to_owned(),
        topology: topology.clone(),
        broker: Broker::connect(amqp_url, "moss-bench-depth").await?,
        ingest_url: format!("http://{}/v1/events", producer.ingest_addr()),
        http: reqwest::Client::new(),
        tap,
        child: ChildConfig {
            amqp_url: amqp_url.to_owned(),
            prefix: topology.prefix().as_str().to_owned(),
            partitions: topology.partitions(),
            tenant_id: tenant.tenant_id.to_string(),
            client_id: tenant.client_id.to_string(),
            client_secret: tenant.client_secret.clone(),
            base_url: emulator.base_url(),
            key_file,
        },
        data_dir: dir.to_owned(),
        domain: tenant.default_domain.clone(),
        license,
        emulator,
    };
    let result = phases_in_order(&mut rig, args, events, latency_secs, throttled_secs).await;
    shutdown.cancel();
    producer.wait().await;
    let Rig {
        tap,
        emulator,
        broker,
        ..
    } = rig;
    tap.stop().await;
    let _ = broker.close().await;
    emulator.shutdown().await;
    result
}

async fn phases_in_order(
    rig: &mut Rig,
    args: &BenchArgs,
    events: usize,
    latency_secs: u64,
    throttled_secs: u64,
) -> Result<(RawCeiling, Unthrottled, Latency, Throttled, Memory)> {
    let in_flight = moss_workers::DEFAULT_PREFETCH.saturating_mul(args.partitions);
    progress(&format!(
        "1/4 raw ceiling: {events} messages, plain lapin publish + consume → POST → ack, {in_flight} in flight"
    ));
    let raw = phases::raw_ceiling(rig, events, in_flight).await?;

    let mut peaks = Vec::new();
    let mut worker = WorkerChild::spawn(
        &rig.child,
        Pacing::Lifted,
        &rig.data_dir.join("worker-lifted"),
    )?;
    let measured = async {
        progress(&format!(
            "2/4 moss unthrottled: {events} events, ingest → worker → emulator"
        ));
        let unthrottled = phases::unthrottled(rig, &mut worker, events, &raw).await?;
        progress(&format!(
            "3/4 latency: {} events/s for {latency_secs} s",
            args.latency_rate
        ));
        let latency = phases::latency(rig, &mut worker, args.latency_rate, latency_secs).await?;
        anyhow::Ok((unthrottled, latency))
    }
    .await;
    let peak = worker.peak_rss();
    worker.kill();
    let (unthrottled, latency) = measured?;
    peaks.push(peak?);

    let writes_per_event = unthrottled.http_writes as f64 / unthrottled.events as f64;
    progress(&format!(
        "4/4 moss worker under the default write budget: drain the burst, then {throttled_secs} s"
    ));
    let throttled = phases::throttled(rig, throttled_secs, writes_per_event, &mut peaks).await?;
    let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let memory = Memory {
        unthrottled_worker_peak_mb: mb(peaks[0]),
        throttled_worker_peak_mb: mb(peaks.get(1).copied().unwrap_or(0)),
        worker_peak_mb: mb(peaks.iter().copied().max().unwrap_or(0)),
    };
    Ok((raw, unthrottled, latency, throttled, memory))
}

fn progress(line: &str) {
    eprintln!("moss bench: {line}");
}

fn write_private(path: &std::path::Path, key: &secrecy::SecretString) -> Result<()> {
    use secrecy::ExposeSecret;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("could not write {}", path.display()))?;
    file.write_all(key.expose_secret().as_bytes())?;
    Ok(())
}

/// The worker child of phases 2 and 3: `moss worker`'s settings from the same environment,
/// with the write pacer lifted so that the pipeline, not the pacer, sets the pace.
async fn worker_process() -> Result<()> {
    crate::logging::init(crate::logging::LogFormat::Text);
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let prefix = TopologyPrefix::parse(&var("MOSS_TOPOLOGY_PREFIX")?)?;
    let partitions: u16 = var("MOSS_PARTITIONS")?.parse().context("MOSS_PARTITIONS")?;
    let topology = Topology::new(prefix, partitions)?;
    let base = var("MOSS_GRAPH_URL")?;
    let online = moss_online::OnlineConfig::new(
        var("MOSS_TENANT_ID")?,
        var("MOSS_CLIENT_ID")?,
        secrecy::SecretString::from(var("MOSS_CLIENT_SECRET")?),
    )
    .with_single_base_url(&base);
    let key_file = std::path::PathBuf::from(var("MOSS_SEAL_PRIVATE_KEY_FILE")?);
    let key = crate::config::read_secret_file(&key_file, "MOSS_SEAL_PRIVATE_KEY_FILE")?;
    let opening_key = moss_schemas::OpeningKey::parse(&key)?;
    let data_dir = std::path::PathBuf::from(var("MOSS_DATA_DIR")?);
    let mut settings = moss_workers::WorkerSettings::new(
        var("MOSS_AMQP_URL")?,
        topology,
        data_dir.join("worker"),
        online,
        opening_key,
    );
    settings.worker_name = "moss-bench-worker".to_owned();
    if std::env::var_os(support::LIFTED_ENV).is_some() {
        settings.pacing = moss_workers::PacingSettings {
            initial_rate: 1_000_000.0,
            max_rate: 1_000_000.0,
            ..moss_workers::PacingSettings::default()
        };
    }
    let shutdown = crate::shutdown::on_signal();
    let running = moss_workers::start(settings, shutdown)
        .await
        .context("the bench's worker could not start")?;
    running.wait().await.context("the bench's worker failed")?;
    Ok(())
}

fn print_table(report: &Report) {
    let raw = &report.raw_ceiling;
    let moss = &report.moss_unthrottled;
    let latency = &report.latency;
    let throttled = &report.throttled;
    let yes = |met: bool| if met { "yes" } else { "NO" };
    let goal = |index: usize| report.goals.get(index).is_some_and(|g| g.met);
    println!(
        "moss bench{} on {} CPUs, load average {} → {}",
        if report.quick { " --quick" } else { "" },
        report.machine.cpus,
        show_load(report.machine.load_average_start),
        show_load(report.machine.load_average_end)
    );
    let mut table = Table::new();
    table
        .load_preset(presets::ASCII_MARKDOWN)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(["measure", "baseline", "moss", "ratio", "goal", "met"]);
    table.add_row([
        format!("events/s end to end, unthrottled ({} events)", moss.events),
        format!("{:.0}", raw.events_per_second),
        format!("{:.0}", moss.events_per_second),
        format!("{:.1} %", moss.ratio_to_raw * 100.0),
        ">= 50 % of raw".to_owned(),
        yes(goal(0)).to_owned(),
    ]);
    table.add_row([
        format!(
            "writes/s under the default budget ({:.0} s)",
            throttled.seconds
        ),
        format!("{:.0} budget", throttled.budget_writes_per_second),
        format!("{:.1}", throttled.writes_applied as f64 / throttled.seconds),
        format!("{:.1} %", throttled.budget_share * 100.0),
        ">= 95 % of budget".to_owned(),
        yes(goal(1)).to_owned(),
    ]);
    table.add_row([
        "requests answered 429".to_owned(),
        "—".to_owned(),
        format!("{} of {}", throttled.throttled, throttled.requests),
        format!("{:.2} %", throttled.throttled_share * 100.0),
        "< 1 %".to_owned(),
        yes(goal(2)).to_owned(),
    ]);
    table.add_row([
        format!(
            "ingest → applied at {}/s, p50 / p95 / p99 (ms)",
            latency.rate
        ),
        "—".to_owned(),
        format!(
            "{:.0} / {:.0} / {:.0}",
            latency.p50_ms, latency.p95_ms, latency.p99_ms
        ),
        "—".to_owned(),
        "p99 < 1000 ms".to_owned(),
        yes(goal(3)).to_owned(),
    ]);
    table.add_row([
        "worker peak RSS (MB)".to_owned(),
        "—".to_owned(),
        format!("{:.1}", report.memory.worker_peak_mb),
        "—".to_owned(),
        "< 100 MB".to_owned(),
        yes(goal(4)).to_owned(),
    ]);
    println!("{table}");
    println!(
        "raw ceiling: {} messages of {} B published with confirms and consumed → POST → ack, {} in flight, in {:.2} s",
        raw.acked, raw.message_bytes, raw.in_flight, raw.seconds
    );
    println!(
        "moss unthrottled (write pacer lifted): all {} accepted in {:.2} s, last outcome after {:.2} s; {:.2} requests and {:.2} writes per event; outcomes {}",
        moss.events,
        moss.accept_seconds,
        moss.seconds,
        moss.http_requests as f64 / moss.events as f64,
        moss.http_writes as f64 / moss.events as f64,
        show_counts(&moss.outcomes)
    );
    println!(
        "budget: {} writes applied of {:.0} allowed (20/s from an empty bucket; {} drain writes emptied the burst in {:.1} s); {} outcomes in the window{}",
        throttled.writes_applied,
        throttled.budget_writes,
        throttled.drain.writes,
        throttled.drain.seconds,
        throttled.outcomes_in_window,
        if throttled.backlog_ran_dry {
            " (the backlog ran dry: the share is understated)"
        } else {
            ""
        }
    );
    println!(
        "latency: max {:.0} ms, p99 until the outcome reached RabbitMQ {:.0} ms; outcomes {}",
        latency.max_ms,
        latency.seen_p99_ms,
        show_counts(&latency.outcomes)
    );
}

fn show_counts(counts: &support::OutcomeCounts) -> String {
    format!(
        "applied {}, already applied {}, stale {}, dead-lettered {}, missing {}",
        counts.applied, counts.already_applied, counts.stale, counts.dead_lettered, counts.missing
    )
}

fn show_load(load: Option<[f64; 3]>) -> String {
    load.map_or("?".to_owned(), |[one, five, fifteen]| {
        format!("{one:.2} {five:.2} {fifteen:.2}")
    })
}

/// The outcome queue of the worker whose data is in `store`, if one ran there. Its process has
/// just been stopped: the store's lock goes with the process, which may take a moment.
async fn worker_outcome_queue(store: &std::path::Path, topology: &Topology) -> Option<String> {
    if !store.exists() {
        return None;
    }
    for _ in 0..50 {
        match moss_store::Store::open(store) {
            Ok(opened) => {
                let id = moss_workers::recorded_worker_id(&opened).ok().flatten()?;
                return Some(moss_workers::worker_outcome_queue(topology, &id));
            }
            Err(moss_store::StoreError::Locked { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(_) => return None,
        }
    }
    None
}
