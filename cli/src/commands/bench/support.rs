//! The pieces the phases of `moss bench` share: the outcome tap, the worker child process and
//! its peak memory, the HTTP sink of the raw loop, draining the emulator's write bucket, and
//! percentiles.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use moss_broker::Broker;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One outcome event as the tap saw it.
#[derive(Debug, Clone)]
pub(crate) struct SeenOutcome {
    pub(crate) event_id: String,
    pub(crate) outcome: String,
    /// When the worker settled the event (its `time`, millisecond precision).
    pub(crate) settled: DateTime<Utc>,
    /// When the tap received the outcome.
    pub(crate) received: Instant,
}

#[derive(Deserialize)]
struct OutcomeWire {
    event_id: Option<String>,
    outcome: String,
    time: String,
}

/// Reads the bench's queue on `{prefix}.outcomes` and hands every outcome to the phases.
pub(crate) struct OutcomeTap {
    receiver: mpsc::UnboundedReceiver<SeenOutcome>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl OutcomeTap {
    pub(crate) async fn start(broker: &Broker, queue: &str) -> Result<OutcomeTap> {
        let mut consumer = broker
            .consume(queue, 2_000, "moss-bench-outcome-tap")
            .await
            .context("could not consume the bench's outcome tap")?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let delivery = tokio::select! {
                    () = stopping.cancelled() => break,
                    delivery = consumer.next() => delivery,
                };
                let Some(Ok(delivery)) = delivery else { break };
                let received = Instant::now();
                if let Ok(wire) = serde_json::from_slice::<OutcomeWire>(&delivery.body)
                    && let (Some(event_id), Ok(settled)) =
                        (wire.event_id, DateTime::parse_from_rfc3339(&wire.time))
                {
                    let _ = sender.send(SeenOutcome {
                        event_id,
                        outcome: wire.outcome,
                        settled: settled.with_timezone(&Utc),
                        received,
                    });
                }
                if delivery.ack().await.is_err() {
                    break;
                }
            }
            let _ = consumer.shutdown().await;
        });
        Ok(OutcomeTap {
            receiver,
            stop,
            task,
        })
    }

    /// Waits until every id of `wanted` has an outcome, or `deadline` passes, or no outcome
    /// of `wanted` has come for `stall` (the worker has stopped settling); returns the
    /// outcomes of `wanted` seen (others are dropped: earlier phases' stragglers).
    pub(crate) async fn collect(
        &mut self,
        wanted: &HashMap<String, ()>,
        deadline: Duration,
        stall: Duration,
    ) -> HashMap<String, SeenOutcome> {
        let until = tokio::time::Instant::now() + deadline;
        let mut seen = HashMap::with_capacity(wanted.len());
        let mut last = tokio::time::Instant::now();
        while seen.len() < wanted.len() {
            let wait = until.min(last + stall);
            match tokio::time::timeout_at(wait, self.receiver.recv()).await {
                Ok(Some(outcome)) => {
                    if wanted.contains_key(&outcome.event_id) {
                        seen.entry(outcome.event_id.clone()).or_insert(outcome);
                        last = tokio::time::Instant::now();
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        seen
    }

    /// Takes every outcome received so far without waiting.
    pub(crate) fn drain(&mut self) -> Vec<SeenOutcome> {
        let mut all = Vec::new();
        while let Ok(outcome) = self.receiver.try_recv() {
            all.push(outcome);
        }
        all
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Outcomes by kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct OutcomeCounts {
    pub(crate) applied: u64,
    pub(crate) already_applied: u64,
    pub(crate) stale: u64,
    pub(crate) dead_lettered: u64,
    /// Events with no outcome by the deadline.
    pub(crate) missing: u64,
}

impl OutcomeCounts {
    pub(crate) fn of<'a>(
        outcomes: impl Iterator<Item = &'a SeenOutcome>,
        expected: u64,
    ) -> OutcomeCounts {
        let mut counts = OutcomeCounts::default();
        let mut seen = 0;
        for outcome in outcomes {
            seen += 1;
            match outcome.outcome.as_str() {
                "applied" => counts.applied += 1,
                "already_applied" => counts.already_applied += 1,
                "stale" => counts.stale += 1,
                _ => counts.dead_lettered += 1,
            }
        }
        counts.missing = expected.saturating_sub(seen);
        counts
    }
}

/// How the worker child paces its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pacing {
    /// `moss worker` exactly as shipped (adaptive pacer from 20 writes/s, at most 40).
    Shipped,
    /// The same worker with the write pacer lifted, to measure the pipeline itself.
    Lifted,
}

/// What a worker child needs to reach RabbitMQ and the emulator.
#[derive(Debug, Clone)]
pub(crate) struct ChildConfig {
    pub(crate) amqp_url: String,
    pub(crate) prefix: String,
    pub(crate) partitions: u16,
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) base_url: String,
    pub(crate) key_file: PathBuf,
}

/// A worker running as a child process of the bench, so its memory is its own.
pub(crate) struct WorkerChild {
    child: Child,
    log: PathBuf,
}

/// Set in the environment of a lifted worker child (`moss bench --worker-process`).
pub(crate) const LIFTED_ENV: &str = "MOSS_BENCH_WORKER_LIFTED";

impl WorkerChild {
    pub(crate) fn spawn(
        config: &ChildConfig,
        pacing: Pacing,
        data_dir: &Path,
    ) -> Result<WorkerChild> {
        let exe =
            std::env::current_exe().context("could not find the moss binary to start a worker")?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("could not create {}", data_dir.display()))?;
        let log = data_dir.join("worker.log");
        let stderr = std::fs::File::create(&log)
            .with_context(|| format!("could not create {}", log.display()))?;
        let mut command = Command::new(exe);
        match pacing {
            Pacing::Shipped => {
                command.arg("worker");
            }
            Pacing::Lifted => {
                command
                    .args(["bench", "--worker-process"])
                    .env(LIFTED_ENV, "1");
            }
        }
        command
            .env("MOSS_AMQP_URL", &config.amqp_url)
            .env("MOSS_TOPOLOGY_PREFIX", &config.prefix)
            .env("MOSS_PARTITIONS", config.partitions.to_string())
            .env("MOSS_DATA_DIR", data_dir)
            .env("MOSS_TENANT_ID", &config.tenant_id)
            .env("MOSS_CLIENT_ID", &config.client_id)
            .env("MOSS_CLIENT_SECRET", &config.client_secret)
            .env_remove("MOSS_CLIENT_SECRET_FILE")
            .env("MOSS_GRAPH_URL", &config.base_url)
            .env("MOSS_LOGIN_URL", &config.base_url)
            .env("MOSS_EXCHANGE_URL", &config.base_url)
            .env("MOSS_SEAL_PRIVATE_KEY_FILE", &config.key_file)
            .env("MOSS_METRICS_ADDR", "127.0.0.1:0")
            .env("MOSS_WORKER_NAME", "moss-bench-worker")
            .env("MOSS_LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command
            .spawn()
            .context("could not start the worker process")?;
        Ok(WorkerChild { child, log })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the end of the child's log when it has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self
            .child
            .try_wait()
            .context("could not check the worker process")?
        {
            bail!(
                "the worker process exited ({status}) during the bench; its last log lines:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The last lines of the child's log (stderr).
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The peak resident set size so far (`VmHWM`), in bytes.
    pub(crate) fn peak_rss(&self) -> Result<u64> {
        peak_rss(self.pid())
    }

    /// Ends the child (SIGKILL: what it was doing no longer matters, its topology and data
    /// are deleted next) and reaps it.
    pub(crate) fn kill(self) {
        // Drop does it.
    }
}

impl Drop for WorkerChild {
    /// A child never outlives the bench, whichever way the bench ends (an error, Ctrl-C).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmHWM` of a process from `/proc/<pid>/status`, in bytes.
pub(crate) fn peak_rss(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| {
        format!("could not read {path} (the bench measures memory on Linux only)")
    })?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .with_context(|| format!("{path} has no VmHWM line"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("{path} has an unreadable VmHWM line: {line:?}"))?;
    Ok(kb * 1024)
}

/// An HTTP sink for the raw loop: answers every POST with 204 once it has read the body.
pub(crate) struct Sink {
    pub(crate) url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub(crate) async fn start() -> Result<Sink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("could not open the raw loop's HTTP sink")?;
        let addr = listener.local_addr()?;
        let router = axum::Router::new().route(
            "/sink",
            axum::routing::post(|body: axum::body::Bytes| async move {
                std::hint::black_box(body.len());
                axum::http::StatusCode::NO_CONTENT
            }),
        );
        let stop = CancellationToken::new();
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stopping.cancelled().await })
                .await;
        });
        Ok(Sink {
            url: format!("http://{addr}/sink"),
            stop,
            task,
        })
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// What draining the emulator's write bucket took.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Drained {
    /// Writes sent until the first 429 (those answered 429 included).
    pub(crate) writes: u64,
    /// Of those, answered 429: each still took a token, so the bucket ended about this many
    /// writes below zero, and the window opens once the refill has made up for them.
    pub(crate) refused: u64,
    pub(crate) seconds: f64,
}

/// The `client-request-id` prefix of the drain's requests, to tell them apart in the log.
pub(crate) const DRAIN_REQUEST_ID: &str = "moss-bench-drain";

/// Empties the app's write bucket: PATCHes `user_id` as the worker's app, 16 at once, until
/// the emulator answers 429, then waits for every request in flight. The bucket is then at
/// or a little under zero (a refused write is still counted, as Microsoft does).
pub(crate) async fn drain_write_bucket(
    http: &reqwest::Client,
    config: &ChildConfig,
    token_url: &str,
    user_id: &str,
    limit: u64,
) -> Result<Drained> {
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
        config.client_id, config.client_secret
    );
    let token: serde_json::Value = http
        .post(token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .context("the emulator's token endpoint answers")?
        .error_for_status()
        .context("the emulator gives the bench a token")?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .context("the emulator's token answer has no access_token")?
        .to_owned();
    let url = format!("{}/v1.0/users/{user_id}", config.base_url);
    let started = Instant::now();
    let throttled = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        let (throttled, sent, refused) = (throttled.clone(), sent.clone(), refused.clone());
        tasks.spawn(async move {
            while !throttled.load(Ordering::Relaxed) {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if n >= limit {
                    bail!("the emulator took {limit} writes without throttling; is its write budget the default?");
                }
                let status = http
                    .patch(&url)
                    .bearer_auth(&token)
                    .header("client-request-id", format!("{DRAIN_REQUEST_ID}-{n}"))
                    .header("content-type", "application/json")
                    .body(format!("{{\"jobTitle\":\"drain {n}\"}}"))
                    .send()
                    .await?
                    .status()
                    .as_u16();
                match status {
                    429 => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        throttled.store(true, Ordering::Relaxed);
                    }
                    200..=299 => {}
                    other => bail!("the emulator answered {other} to a write that drains its budget"),
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(Drained {
        writes: sent.load(Ordering::Relaxed).min(limit),
        refused: refused.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=1).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}
