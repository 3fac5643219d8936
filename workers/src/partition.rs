//! One partition queue: take deliveries (while the circuit is closed), put each in its
//! subject's lane, run lanes side by side, and on shutdown stop taking, let what runs finish,
//! and close the channel before the connection closes.
//!
//! The order of a subject's events rests on two rules here:
//!
//! - A delivery is never nacked on its own. A nack puts it back behind deliveries of the same
//!   subject that this consumer already holds (in its lane, in lapin's buffer or on the wire),
//!   and the later one would run first: chaos seed 874904 (one worker) acknowledged users'
//!   deactivations as stale that way, after their reactivation had run. A delivery that must
//!   come again is left unsettled, and its channel is closed (by RabbitMQ, by a lost
//!   connection, or here, [`Reopen`]): RabbitMQ then returns every unsettled delivery of the
//!   channel in the order it delivered them, ahead of anything delivered later.
//! - A subject's lane outlives its channel. When a channel is lost, the jobs that came on it
//!   stop (before their next call) and those waiting are dropped as their turn comes, while the
//!   redeliveries on the new channel queue behind whatever of the old channel still runs (a
//!   record waiting for its outcome's confirm, say).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moss_broker::{Broker, ChannelProbe, Consumer, Delivery};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::counters::Counters;
use crate::lanes::{LaneKey, Lanes};
use crate::pipeline::{Job, JobEnd, WorkerContext, run_job};

/// The channel the partition's deliveries come on now. lapin recovers a lost connection under
/// the same consumer stream, so a new channel shows only in its deliveries: theirs is open
/// while the one this knows is closed.
#[derive(Debug)]
struct Channel {
    /// A probe of the channel, from its first delivery; none before it.
    probe: Option<ChannelProbe>,
    /// Cancelled once the channel is closed: the jobs of its deliveries stop.
    lost: CancellationToken,
}

impl Channel {
    fn new() -> Channel {
        Channel {
            probe: None,
            lost: CancellationToken::new(),
        }
    }

    /// Cancels the jobs of the channel if it is closed.
    fn check(&self) {
        if self.probe.as_ref().is_some_and(ChannelProbe::is_closed) {
            self.lost.cancel();
        }
    }

    /// Forgets the channel (the consumer is replaced): its jobs stop.
    fn forget(&mut self) {
        self.lost.cancel();
        *self = Channel::new();
    }

    /// The token for `delivery`'s job, and whether the delivery is the first of a new channel
    /// (which may mean another worker held the partition meanwhile).
    fn admit(&mut self, delivery: &Delivery) -> (CancellationToken, bool) {
        let first = match &self.probe {
            Some(probe) if !probe.is_closed() => false,
            Some(_) => {
                self.lost.cancel();
                self.lost = CancellationToken::new();
                true
            }
            None => true,
        };
        if first {
            self.probe = Some(delivery.channel_probe());
        }
        (self.lost.clone(), first)
    }
}

/// Why the partition closes its channel and consumes again.
#[derive(Debug, Clone, Copy)]
enum Reopen {
    /// The broker closed the channel.
    Closed,
    /// The broker cancelled the consumer.
    Cancelled,
    /// A job handed its delivery back while the channel was open.
    HandedBack,
}

/// Runs partition `partition` until the worker shuts down.
pub(crate) async fn run_partition(
    ctx: Arc<WorkerContext>,
    broker: Arc<Broker>,
    partition: u16,
    prefetch: u16,
    grace: Duration,
) {
    let queue = ctx.topology.partition_queue(partition);
    let tag = format!(
        "{}-p{partition}-{}",
        ctx.worker_name,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let Some(mut consumer) = consume(&ctx, &broker, &queue, prefetch, &tag).await else {
        return;
    };
    let mut channel = Channel::new();
    // Goes up when the connection fails, is down or is recovered: time to check the channel.
    let mut interruptions = broker.interruptions();
    interruptions.mark_unchanged();
    let mut lanes: Lanes<LaneKey, Job> = Lanes::new();
    let mut running: JoinSet<(LaneKey, JobEnd)> = JoinSet::new();
    let mut running_jobs: HashMap<tokio::task::Id, (LaneKey, ChannelProbe)> = HashMap::new();
    let mut circuit_changes = ctx.circuit.subscribe();
    let mut undecodable = 0_u64;
    let spawn = |running: &mut JoinSet<(LaneKey, JobEnd)>,
                 running_jobs: &mut HashMap<tokio::task::Id, (LaneKey, ChannelProbe)>,
                 key: LaneKey,
                 job: Job| {
        let ctx = Arc::clone(&ctx);
        let task_key = key.clone();
        let probe = job.delivery.channel_probe();
        let handle = running.spawn(async move { (task_key, run_job(ctx, job).await) });
        running_jobs.insert(handle.id(), (key, probe));
    };
    'taking: loop {
        let taking = ctx.circuit.is_closed();
        let mut reopen = None;
        // The lane whose running job ended, to start its next job once `reopen` is done.
        let mut ended = None;
        tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                let (id, end) = match joined {
                    Ok((id, (_, end))) => (id, end),
                    Err(join_error) => {
                        tracing::error!(error = %join_error, "a delivery's task failed; its delivery comes again");
                        (join_error.id(), JobEnd::HandedBack)
                    }
                };
                if let Some((key, probe)) = running_jobs.remove(&id) {
                    if end == JobEnd::HandedBack && !probe.is_closed() {
                        reopen = Some(Reopen::HandedBack);
                    }
                    ended = Some(key);
                }
            }
            _ = circuit_changes.changed() => {}
            Ok(()) = interruptions.changed() => {
                interruptions.mark_unchanged();
                channel.check();
            }
            next = consumer.next(), if taking => match next {
                Some(Ok(delivery)) => {
                    Counters::bump(&ctx.counters.received);
                    if delivery.channel_closed() {
                        // Read from lapin's buffer after its channel was lost: RabbitMQ has
                        // returned it, and it comes again on the new channel.
                        Counters::bump(&ctx.counters.handed_back);
                        continue;
                    }
                    let (lost, first) = channel.admit(&delivery);
                    if first {
                        // The first delivery since subscribing or since the connection came
                        // back: this worker may just have taken the partition over (single
                        // active consumer), so other workers' outcomes are folded in first.
                        if !ctx.fold.caught_up(&ctx.shutdown).await {
                            break;
                        }
                        tracing::debug!(queue = %queue, "first delivery on a new channel; other workers' outcomes are folded in");
                    }
                    let job = Job::decode(delivery, lost);
                    let key = match job.subject() {
                        Some(subject) => LaneKey::Subject(subject),
                        None => {
                            undecodable += 1;
                            LaneKey::Undecodable(undecodable)
                        }
                    };
                    if let Some(job) = lanes.offer(key.clone(), job) {
                        spawn(&mut running, &mut running_jobs, key, job);
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %error, queue = %queue, "the consumer's channel closed; consuming again");
                    reopen = Some(Reopen::Closed);
                }
                None => {
                    tracing::warn!(queue = %queue, "the broker cancelled the consumer; consuming again");
                    reopen = Some(Reopen::Cancelled);
                }
            },
        }
        if let Some(why) = reopen {
            if matches!(why, Reopen::HandedBack) {
                tracing::info!(queue = %queue, "a delivery was handed back; the channel is closed so that RabbitMQ returns it ahead of the subject's later deliveries");
            }
            // The jobs of the old channel stop before their next call and hand back; a call
            // already made finishes, and its record's outcome reaches the other workers before
            // anything of ours is acknowledged. The lanes stay, so a subject's redelivered
            // events still queue behind its running one.
            channel.forget();
            if let Err(error) = consumer.close().await {
                tracing::debug!(error = %error, queue = %queue, "closing the consumer's channel");
            }
            tokio::select! {
                () = ctx.shutdown.cancelled() => {
                    shut_down(&ctx, None, lanes, running, grace).await;
                    return;
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match consume(&ctx, &broker, &queue, prefetch, &tag).await {
                Some(fresh) => consumer = fresh,
                None => {
                    shut_down(&ctx, None, lanes, running, grace).await;
                    return;
                }
            }
        }
        if let Some(key) = ended {
            // Jobs whose channel is gone are dropped (RabbitMQ has returned their deliveries);
            // the first one still live, if any, runs next.
            while let Some(next) = lanes.finished(&key) {
                if next.channel_lost.is_cancelled() || next.delivery.channel_closed() {
                    Counters::bump(&ctx.counters.handed_back);
                    continue;
                }
                spawn(&mut running, &mut running_jobs, key, next);
                continue 'taking;
            }
        }
    }
    shut_down(&ctx, Some(consumer), lanes, running, grace).await;
}

/// Stop taking; drop deliveries not started; let running ones finish (they hand back their
/// delivery if they are only waiting); close the channel, which returns every unsettled
/// delivery to the queue in the order it was delivered.
async fn shut_down(
    ctx: &WorkerContext,
    consumer: Option<Consumer>,
    mut lanes: Lanes<LaneKey, Job>,
    mut running: JoinSet<(LaneKey, JobEnd)>,
    grace: Duration,
) {
    let mut consumer = consumer;
    if let Some(consumer) = consumer.as_mut() {
        if let Err(error) = consumer.cancel().await {
            tracing::warn!(error = %error, "cannot cancel the consumer");
        }
        // Deliveries already sent to us before the cancel took effect: left unsettled.
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
        {
            Counters::bump(&ctx.counters.handed_back);
        }
    }
    for _ in lanes.drain_waiting() {
        Counters::bump(&ctx.counters.handed_back);
    }
    let finished = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            "in-flight deliveries did not finish in time; RabbitMQ requeues them when the channel closes"
        );
        running.abort_all();
    }
    if let Some(consumer) = consumer
        && let Err(error) = consumer.close().await
    {
        tracing::warn!(error = %error, "cannot close the consumer's channel");
    }
}

async fn consume(
    ctx: &WorkerContext,
    broker: &Broker,
    queue: &str,
    prefetch: u16,
    tag: &str,
) -> Option<Consumer> {
    let mut pause = Duration::from_millis(500);
    loop {
        match broker.consume(queue, prefetch, tag).await {
            Ok(consumer) => return Some(consumer),
            Err(error) => {
                tracing::warn!(error = %error, queue, "cannot consume; trying again");
                tokio::select! {
                    () = ctx.shutdown.cancelled() => return None,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}
