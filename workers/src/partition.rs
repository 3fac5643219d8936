//! One partition queue: take deliveries (while the circuit is closed), put each in its
//! subject's lane, run lanes side by side, and on shutdown stop taking, hand back what has not
//! started, let what runs finish, and close the channel before the connection closes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moss_broker::{Broker, Consumer, Delivery};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::counters::Counters;
use crate::lanes::{LaneKey, Lanes};
use crate::pipeline::{Job, JobEnd, WorkerContext, run_job};

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
    // Deliveries of this consumer's channel; cancelled when the channel is lost.
    let mut channel_lost = CancellationToken::new();
    // The first delivery after (re)subscribing may mean this worker just took the partition
    // over (single active consumer): it waits until other workers' outcomes are folded in.
    let mut cold = true;
    // A connection recovery keeps the consumer's stream but requeues what was unacknowledged
    // and may have moved the active role to another worker: the same as a new channel.
    let mut interruptions = broker.interruptions();
    interruptions.mark_unchanged();
    let mut lanes: Lanes<LaneKey, Job> = Lanes::new();
    let mut running: JoinSet<(LaneKey, JobEnd)> = JoinSet::new();
    let mut running_keys: HashMap<tokio::task::Id, LaneKey> = HashMap::new();
    let mut circuit_changes = ctx.circuit.subscribe();
    let mut undecodable = 0_u64;
    let spawn = |running: &mut JoinSet<(LaneKey, JobEnd)>,
                 running_keys: &mut HashMap<tokio::task::Id, LaneKey>,
                 key: LaneKey,
                 job: Job| {
        let ctx = Arc::clone(&ctx);
        let task_key = key.clone();
        let handle = running.spawn(async move { (task_key, run_job(ctx, job).await) });
        running_keys.insert(handle.id(), key);
    };
    loop {
        let taking = ctx.circuit.is_closed();
        let mut reconsume = false;
        tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                let (key, end) = match joined {
                    Ok((id, (key, end))) => {
                        running_keys.remove(&id);
                        (key, end)
                    }
                    Err(join_error) => {
                        tracing::error!(error = %join_error, "a delivery's task failed; its lane's waiting deliveries are handed back");
                        let Some(key) = running_keys.remove(&join_error.id()) else { continue };
                        (key, JobEnd::HandedBack)
                    }
                };
                match end {
                    JobEnd::Settled => {
                        if let Some(next) = lanes.finished(&key) {
                            spawn(&mut running, &mut running_keys, key, next);
                        }
                    }
                    JobEnd::HandedBack => {
                        for job in lanes.drain_lane(&key) {
                            hand_back(&ctx, &job.delivery).await;
                        }
                    }
                }
            }
            _ = circuit_changes.changed() => {}
            Ok(()) = interruptions.changed() => {
                interruptions.mark_unchanged();
                tracing::info!(queue = %queue, "the connection was interrupted; in-flight deliveries stop and the next one waits for other workers' outcomes");
                channel_lost.cancel();
                channel_lost = CancellationToken::new();
                cold = true;
            }
            next = consumer.next(), if taking => match next {
                Some(Ok(delivery)) => {
                    Counters::bump(&ctx.counters.received);
                    if interruptions.has_changed().unwrap_or(false) {
                        interruptions.mark_unchanged();
                        channel_lost.cancel();
                        channel_lost = CancellationToken::new();
                        cold = true;
                    }
                    if cold {
                        cold = false;
                        if !ctx.fold.caught_up(&ctx.shutdown).await {
                            hand_back(&ctx, &delivery).await;
                            break;
                        }
                        tracing::debug!(queue = %queue, "first delivery since subscribing; other workers' outcomes are folded in");
                    }
                    let job = Job::decode(delivery, channel_lost.clone());
                    let key = match job.subject() {
                        Some(subject) => LaneKey::Subject(subject),
                        None => {
                            undecodable += 1;
                            LaneKey::Undecodable(undecodable)
                        }
                    };
                    if let Some(job) = lanes.offer(key.clone(), job) {
                        spawn(&mut running, &mut running_keys, key, job);
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %error, queue = %queue, "the consumer's channel closed; consuming again");
                    reconsume = true;
                }
                None => {
                    tracing::warn!(queue = %queue, "the broker cancelled the consumer; consuming again");
                    reconsume = true;
                }
            },
        }
        if reconsume {
            // Deliveries of the old channel were requeued by the broker and will come again,
            // perhaps to another worker: jobs of that channel stop before their next attempt
            // and hand back (a call already made finishes; its record's outcome reaches the
            // other workers before anything of ours is acknowledged). A subject's lane stays
            // in place, so its redelivered events still queue behind its running one.
            channel_lost.cancel();
            channel_lost = CancellationToken::new();
            cold = true;
            tokio::select! {
                () = ctx.shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match consume(&ctx, &broker, &queue, prefetch, &tag).await {
                Some(fresh) => consumer = fresh,
                None => break,
            }
        }
    }
    shut_down(&ctx, consumer, lanes, running, grace).await;
}

/// Stop taking; hand back deliveries not started; let running ones finish (they hand back
/// their delivery if they are only waiting); close the channel.
async fn shut_down(
    ctx: &WorkerContext,
    mut consumer: Consumer,
    mut lanes: Lanes<LaneKey, Job>,
    mut running: JoinSet<(LaneKey, JobEnd)>,
    grace: Duration,
) {
    if let Err(error) = consumer.cancel().await {
        tracing::warn!(error = %error, "cannot cancel the consumer");
    }
    // Deliveries already sent to us before the cancel took effect.
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
    {
        hand_back(ctx, &delivery).await;
    }
    for job in lanes.drain_waiting() {
        hand_back(ctx, &job.delivery).await;
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
    if let Err(error) = consumer.close().await {
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

async fn hand_back(ctx: &WorkerContext, delivery: &Delivery) {
    Counters::bump(&ctx.counters.handed_back);
    if let Err(error) = delivery.nack_requeue().await {
        tracing::debug!(error = %error, "hand-back failed; RabbitMQ requeues it when the channel closes");
    }
}
