//! One delivery from arrival to settlement: decode, dedupe, stale check, quarantine, the
//! handler with retries under the shared circuit, and the one place that settles (ack after
//! the ledger is flushed, dead letter with confirm then ack, or hand back).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use moss_broker::{Delivery, Headers, Publisher, Topology};
use moss_schemas::{DecodeError, Envelope};
use moss_store::{
    AppliedEvent, AppliedRecord, AppliedResult, Ledger, Outbox, OutboxId, Quarantine,
    QuarantineRecord, StoreError, Versions,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::circuit::{Admission, Circuit, Signal};
use crate::control::{self, Control, ReleaseQuarantine};
use crate::counters::Counters;
use crate::dead_letter::{DELETE_APPROVED, REPLAY_OF, Received, dead_letter_message};
use crate::delete_guard::{Approval, DeleteGuard, Verdict};
use crate::fold::Fold;
use crate::handlers;
use crate::outcome::{Failure, FailureClass, Outcome};
use crate::outcomes::{Confirmations, OutcomeEvent, OutcomeKind};
use crate::recorder::Recorder;
use crate::settings::RetrySettings;
use crate::tenant::{Tenant, unix_ms};

/// A delivery held while the circuit is open is handed back after this long, well before
/// RabbitMQ's 30-minute consumer timeout would close the channel and requeue everything.
const HAND_BACK_AFTER: Duration = Duration::from_secs(20 * 60);

/// Everything the pipeline shares across partitions and lanes.
#[derive(Debug)]
pub(crate) struct WorkerContext {
    pub(crate) ledger: Ledger,
    pub(crate) versions: Versions,
    pub(crate) quarantine: Quarantine,
    pub(crate) delete_guard: DeleteGuard,
    pub(crate) outcomes: Outbox,
    /// Writes settled events to the ledger in groups.
    pub(crate) recorder: Recorder,
    /// Tells a lane when RabbitMQ has confirmed an outcome entry.
    pub(crate) confirmations: Confirmations,
    /// Other workers' outcomes and the takeover barrier.
    pub(crate) fold: Arc<Fold>,
    pub(crate) tenant: Tenant,
    pub(crate) dead_letters: Publisher,
    pub(crate) topology: Topology,
    pub(crate) circuit: Arc<Circuit>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) retry: RetrySettings,
    pub(crate) worker_name: String,
    pub(crate) shutdown: CancellationToken,
}

/// A delivery and what its body decoded to.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) delivery: Delivery,
    pub(crate) work: Work,
    /// When the delivery arrived, for the settle-duration histogram.
    pub(crate) received: Instant,
    /// Cancelled when the channel it came on is gone (or the worker shuts down): RabbitMQ
    /// redelivers it, maybe to another worker, so it must not be applied here any more.
    pub(crate) channel_lost: CancellationToken,
}

/// What a delivery asks for.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // reason: nearly every job is an event; boxing it would allocate per delivery for a rare control message
pub(crate) enum Work {
    /// A directory event (or a message that failed to decode as one).
    Event(Result<Envelope, DecodeError>),
    /// An operator's control message (or one that failed to decode).
    Control(Result<Control, String>),
}

impl Job {
    pub(crate) fn decode(delivery: Delivery, channel_lost: CancellationToken) -> Job {
        let work = if control::is_control(&delivery) {
            Work::Control(control::decode(&delivery))
        } else {
            Work::Event(Envelope::from_json_slice(&delivery.body))
        };
        Job {
            delivery,
            work,
            received: Instant::now(),
            channel_lost,
        }
    }

    /// The subject whose lane it runs in, when it names one.
    pub(crate) fn subject(&self) -> Option<moss_schemas::Subject> {
        match &self.work {
            Work::Event(Ok(event)) => Some(event.subject),
            Work::Control(Ok(Control::Release(release))) => Some(release.subject),
            Work::Event(Err(_)) | Work::Control(Err(_)) => None,
        }
    }
}

/// How a job ended, for its lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobEnd {
    /// Acknowledged (applied, stale, duplicate or dead-lettered).
    Settled,
    /// Not settled: it must come again. It is never nacked on its own (a nack puts it behind
    /// the subject's later deliveries this consumer already holds, and one of those would run
    /// first): RabbitMQ returns it when its channel closes, with every other unsettled delivery
    /// of that channel, in the order delivered. If the channel is still open the partition
    /// closes it.
    HandedBack,
}

/// What the store says before any call is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admit {
    /// New: apply it.
    Proceed,
    /// The ledger has it (applied, or dead-lettered and this is not a replay).
    Duplicate,
    /// Older than the subject's applied sequence.
    Stale {
        /// The subject's applied sequence.
        current: u64,
    },
    /// The subject is quarantined behind another dead-lettered event.
    Quarantined {
        /// That event's id.
        blocking_event_id: String,
    },
}

/// How the pipeline decided to settle.
#[derive(Debug)]
pub(crate) enum Settlement {
    Duplicate,
    Done { outcome: Outcome, attempts: u32 },
    HandBack,
}

/// Checks ledger, version and quarantine. A replay (`moss-replay-of`) of a dead-lettered
/// event is applied again, and the replay of the event blocking its subject lifts the
/// quarantine. Blocking (sled reads and, when lifting, an fsync).
pub(crate) fn admit(
    ledger: &Ledger,
    versions: &Versions,
    quarantine: &Quarantine,
    headers: &Headers,
    event: &Envelope,
) -> Result<Admit, StoreError> {
    let event_id = event.id.to_string();
    let subject = event.subject.to_string();
    let is_replay = headers.get_str(REPLAY_OF).is_some();
    if let Some(record) = ledger.get(&event_id)? {
        match record.result {
            AppliedResult::Applied | AppliedResult::DoneBefore => return Ok(Admit::Duplicate),
            AppliedResult::DeadLettered if is_replay => ledger.forget(&event_id)?,
            AppliedResult::DeadLettered => return Ok(Admit::Duplicate),
        }
    }
    if let Some(current) = versions.get(&subject)?
        && current >= event.sequence.value()
    {
        return Ok(Admit::Stale { current });
    }
    if let Some(record) = quarantine.get(&subject)? {
        if is_replay && record.blocking_event_id == event_id {
            quarantine.lift(&subject)?;
            tracing::info!(subject = %subject, event_id = %event_id, "replay of the blocking event lifts the quarantine");
        } else {
            return Ok(Admit::Quarantined {
                blocking_event_id: record.blocking_event_id,
            });
        }
    }
    Ok(Admit::Proceed)
}

/// Runs one job to its settlement, inside a span naming its event so that every line logged
/// meanwhile (the online client's per-attempt lines with the Graph request-id among them)
/// carries the event id, subject and type.
pub(crate) async fn run_job(ctx: Arc<WorkerContext>, job: Job) -> JobEnd {
    let received = job.received;
    let span = match &job.work {
        Work::Event(Ok(event)) => tracing::info_span!(
            "event",
            event_id = %event.id,
            subject = %event.subject,
            r#type = %event.event_type()
        ),
        Work::Event(Err(_)) | Work::Control(_) => tracing::info_span!("delivery"),
    };
    let counters = Arc::clone(&ctx.counters);
    let end = run_job_in_span(ctx, job).instrument(span).await;
    if end == JobEnd::Settled {
        counters.observe_settle(received.elapsed());
    }
    end
}

async fn run_job_in_span(ctx: Arc<WorkerContext>, job: Job) -> JobEnd {
    let Job {
        delivery,
        work,
        channel_lost,
        ..
    } = job;
    if channel_lost.is_cancelled() || delivery.channel_closed() {
        // Its channel is gone: the broker has requeued it, perhaps for another worker.
        return hand_back(&ctx, &delivery).await;
    }
    let event = match work {
        Work::Event(event) => event,
        Work::Control(Ok(Control::Release(release))) => {
            return release_quarantine(&ctx, &delivery, release).await;
        }
        Work::Control(Err(problem)) => {
            let reason = Failure::local(FailureClass::Invalid, "BadControlMessage", problem);
            return dead_letter(&ctx, &delivery, None, &reason, 0).await;
        }
    };
    let settlement = match &event {
        Err(error) => Settlement::Done {
            outcome: Outcome::DeadLetter {
                reason: Failure::local(FailureClass::Invalid, "SchemaViolation", error.to_string()),
            },
            attempts: 0,
        },
        Ok(event) => decide(&ctx, &delivery, event, &channel_lost).await,
    };
    settle(&ctx, &delivery, event.as_ref().ok(), settlement).await
}

async fn decide(
    ctx: &Arc<WorkerContext>,
    delivery: &Delivery,
    event: &Envelope,
    channel_lost: &CancellationToken,
) -> Settlement {
    // Usually three point reads that sled answers from its cache: done on the runtime thread,
    // since handing them to a blocking thread cost two thread switches per event, more than
    // the reads. A replay may forget a ledger entry or lift a quarantine (an fsync each): that
    // runs on a blocking thread.
    let admitted = if delivery.headers.get_str(REPLAY_OF).is_some() {
        let ctx = Arc::clone(ctx);
        let headers = delivery.headers.clone();
        let event = event.clone();
        tokio::task::spawn_blocking(move || {
            admit(
                &ctx.ledger,
                &ctx.versions,
                &ctx.quarantine,
                &headers,
                &event,
            )
        })
        .await
        .unwrap_or_else(|join_error| {
            Err(StoreError::Engine {
                operation: "check the ledger",
                detail: join_error.to_string(),
            })
        })
    } else {
        admit(
            &ctx.ledger,
            &ctx.versions,
            &ctx.quarantine,
            &delivery.headers,
            event,
        )
    };
    match admitted {
        Ok(Admit::Proceed) => guarded_attempt(ctx, delivery, event, channel_lost).await,
        Ok(Admit::Duplicate) => Settlement::Duplicate,
        Ok(Admit::Stale { current }) => Settlement::Done {
            outcome: Outcome::Stale { current },
            attempts: 0,
        },
        Ok(Admit::Quarantined { blocking_event_id }) => Settlement::Done {
            outcome: Outcome::DeadLetter {
                reason: Failure::local(
                    FailureClass::Quarantined,
                    "Quarantined",
                    format!(
                        "an earlier event of this subject ({blocking_event_id}) is dead-lettered; replay it first, then this one"
                    ),
                ),
            },
            attempts: 0,
        },
        Err(error) => {
            tracing::error!(error = %error, event_id = %event.id, "the ledger cannot be read; handing the delivery back");
            pause_then_hand_back(ctx).await
        }
    }
}

/// The mass-delete guard around [`attempt`]: a removal or deactivation over the threshold is
/// held (dead-lettered as `held`), one that changed nothing gives its slot back.
async fn guarded_attempt(
    ctx: &Arc<WorkerContext>,
    delivery: &Delivery,
    event: &Envelope,
    channel_lost: &CancellationToken,
) -> Settlement {
    if DeleteGuard::kind_of(event).is_none() {
        return attempt(ctx, event, channel_lost).await;
    }
    let approval = if delivery.headers.get_str(DELETE_APPROVED) == Some("true") {
        Approval::Approved
    } else {
        Approval::NotApproved
    };
    let checked = {
        let ctx = Arc::clone(ctx);
        let event = event.clone();
        tokio::task::spawn_blocking(move || ctx.delete_guard.check(&event, approval, unix_ms()))
            .await
    };
    let slot = match checked {
        Ok(Ok(Verdict::Unguarded)) => return attempt(ctx, event, channel_lost).await,
        Ok(Ok(Verdict::Held(reason))) => {
            return Settlement::Done {
                outcome: Outcome::DeadLetter { reason },
                attempts: 0,
            };
        }
        Ok(Ok(Verdict::Granted(slot))) => slot,
        Ok(Err(error)) => {
            tracing::error!(error = %error, event_id = %event.id, "the delete window cannot be read; handing the delivery back");
            return pause_then_hand_back(ctx).await;
        }
        Err(join_error) => {
            tracing::error!(error = %join_error, "a delete window check failed; handing the delivery back");
            return pause_then_hand_back(ctx).await;
        }
    };
    if approval == Approval::Approved {
        tracing::warn!(event_id = %event.id, subject = %event.subject, r#type = %event.event_type(), "applying a delete an operator approved over the threshold");
    }
    let settlement = attempt(ctx, event, channel_lost).await;
    let changed = matches!(
        settlement,
        Settlement::Done {
            outcome: Outcome::Applied,
            ..
        }
    );
    if !changed {
        let ctx = Arc::clone(ctx);
        let released = tokio::task::spawn_blocking(move || ctx.delete_guard.release(&slot)).await;
        if !matches!(released, Ok(Ok(()))) {
            tracing::warn!(event_id = %event.id, "cannot give back a delete window slot; it counts until the window passes");
        }
    }
    settlement
}

/// An operator purged the dead letter blocking `release.subject`: lift the quarantine if that
/// letter still is what blocks it, then ack. Runs in the subject's lane, so it cannot overtake
/// the subject's events that arrived before it.
async fn release_quarantine(
    ctx: &Arc<WorkerContext>,
    delivery: &Delivery,
    release: ReleaseQuarantine,
) -> JobEnd {
    /// What the release found.
    enum Released {
        Lifted,
        OtherBlocks(String),
        NotQuarantined,
    }
    let quarantine = ctx.quarantine.clone();
    let subject = release.subject.to_string();
    let purged = release.blocking_event_id.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<Released, StoreError> {
        match quarantine.get(&subject)? {
            Some(record) if record.blocking_event_id == purged => {
                quarantine.lift(&subject)?;
                Ok(Released::Lifted)
            }
            Some(record) => Ok(Released::OtherBlocks(record.blocking_event_id)),
            None => Ok(Released::NotQuarantined),
        }
    })
    .await;
    match found {
        Ok(Ok(Released::Lifted)) => {
            tracing::info!(subject = %release.subject, blocking_event_id = %release.blocking_event_id, "an operator purged the blocking dead letter; quarantine released");
        }
        Ok(Ok(Released::OtherBlocks(blocking))) => {
            tracing::info!(subject = %release.subject, purged = %release.blocking_event_id, blocking_event_id = %blocking, "a release names a dead letter that does not block the subject; the quarantine stays");
        }
        Ok(Ok(Released::NotQuarantined)) => {
            tracing::info!(subject = %release.subject, "a release for a subject that is not quarantined; nothing to do");
        }
        Ok(Err(error)) => {
            tracing::error!(error = %error, subject = %release.subject, "cannot release a quarantine; handing the message back");
            return hand_back(ctx, delivery).await;
        }
        Err(join_error) => {
            tracing::error!(error = %join_error, "a quarantine release failed; handing the message back");
            return hand_back(ctx, delivery).await;
        }
    }
    ack(delivery).await
}

async fn pause_then_hand_back(ctx: &WorkerContext) -> Settlement {
    tokio::select! {
        () = ctx.shutdown.cancelled() => {}
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
    Settlement::HandBack
}

/// What retrying needs from the worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryScope<'a> {
    pub(crate) circuit: &'a Circuit,
    pub(crate) retry: &'a RetrySettings,
    pub(crate) counters: &'a Counters,
    pub(crate) shutdown: &'a CancellationToken,
    /// Cancelled when the delivery's channel is gone: the call in flight is dropped (a request
    /// already on the wire may still land) and the delivery handed back at once, because
    /// RabbitMQ may already have given it to another worker.
    pub(crate) abandon: &'a CancellationToken,
}

/// Calls the handler until it ends in something other than `Retry`, under the circuit. Stops
/// (hands back), even in the middle of a call, once `channel_lost` is cancelled.
async fn attempt(
    ctx: &WorkerContext,
    event: &Envelope,
    channel_lost: &CancellationToken,
) -> Settlement {
    let scope = RetryScope {
        circuit: &ctx.circuit,
        retry: &ctx.retry,
        counters: &ctx.counters,
        shutdown: &ctx.shutdown,
        abandon: channel_lost,
    };
    attempt_with(scope, event, || handlers::apply(event, &ctx.tenant)).await
}

/// The retry loop around any `apply`, so that its rules can be tested without a tenant.
pub(crate) async fn attempt_with<F, Fut>(
    scope: RetryScope<'_>,
    event: &Envelope,
    mut apply: F,
) -> Settlement
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let RetryScope {
        circuit,
        retry,
        counters,
        shutdown,
        abandon,
    } = scope;
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(retry.first_delay)
        .with_max_delay(retry.max_delay)
        .with_jitter()
        .without_max_times()
        .build();
    let held_since = Instant::now();
    let mut attempts = 0_u32;
    let mut counted_attempts = 0_u32;
    let mut counted_time = Duration::ZERO;
    loop {
        if held_since.elapsed() > HAND_BACK_AFTER {
            tracing::warn!(event_id = %event.id, "held too long while the tenant fails; handing it back");
            return Settlement::HandBack;
        }
        let admitted = tokio::select! {
            admission = circuit.admit(shutdown) => admission,
            () = abandon.cancelled() => None,
        };
        let Some(admission) = admitted else {
            return Settlement::HandBack;
        };
        if abandon.is_cancelled() {
            // Checked before the call starts: a select over a ready token and a fresh call
            // could poll the call first and put its request on the wire.
            return Settlement::HandBack;
        }
        attempts += 1;
        let started = Instant::now();
        // Dropping the call is what a crash would do; handlers are written for it. The circuit
        // notices a probe that never reports.
        let outcome = tokio::select! {
            outcome = apply() => outcome,
            () = abandon.cancelled() => {
                tracing::info!(event_id = %event.id, "its delivery's channel is gone; the call is abandoned and the delivery handed back");
                return Settlement::HandBack;
            }
        };
        let (after, failure) = match outcome {
            Outcome::Retry { after, failure } => (after, failure),
            final_outcome => {
                let signal = match &final_outcome {
                    Outcome::DeadLetter { reason } if reason.class.is_tenant_wide() => {
                        Signal::TenantFailure(reason.class)
                    }
                    _ => Signal::Answered,
                };
                circuit.record(admission, signal);
                return Settlement::Done {
                    outcome: final_outcome,
                    attempts,
                };
            }
        };
        Counters::bump(&counters.retries);
        let signal = if failure.class.is_tenant_wide() {
            Signal::TenantFailure(failure.class)
        } else {
            Signal::Answered
        };
        circuit.record(admission, signal);
        let wait = after
            .unwrap_or_else(|| backoff.next().unwrap_or(retry.max_delay))
            .min(retry.max_delay.max(Duration::from_secs(1)));
        // An attempt counts towards giving up only while the tenant as a whole answers: an
        // outage is backpressure, not dead letters.
        let counts = admission == Admission::Normal && circuit.is_closed();
        if counts {
            counted_attempts += 1;
            counted_time += started.elapsed() + wait;
        }
        if counts && (counted_attempts >= retry.max_attempts || counted_time >= retry.budget) {
            let mut failure = failure;
            failure.message = format!(
                "{} (gave up after {counted_attempts} attempts)",
                failure.message
            );
            return Settlement::Done {
                outcome: Outcome::DeadLetter { reason: failure },
                attempts,
            };
        }
        tracing::warn!(
            event_id = %event.id,
            subject = %event.subject,
            class = %failure.class,
            attempt = attempts,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            reason = %failure,
            "retrying"
        );
        tokio::select! {
            () = shutdown.cancelled() => return Settlement::HandBack,
            () = abandon.cancelled() => return Settlement::HandBack,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The one place a delivery is settled.
pub(crate) async fn settle(
    ctx: &Arc<WorkerContext>,
    delivery: &Delivery,
    event: Option<&Envelope>,
    settlement: Settlement,
) -> JobEnd {
    let (outcome, attempts) = match settlement {
        Settlement::Duplicate => {
            Counters::bump(&ctx.counters.duplicates);
            tracing::debug!(message_id = ?delivery.message_id, "duplicate delivery acknowledged");
            return ack(delivery).await;
        }
        Settlement::HandBack => return hand_back(ctx, delivery).await,
        Settlement::Done { outcome, attempts } => (outcome, attempts),
    };
    match (outcome, event) {
        (Outcome::Applied | Outcome::AlreadyApplied, None)
        | (Outcome::Retry { .. } | Outcome::Stale { .. }, None) => hand_back(ctx, delivery).await,
        (Outcome::Retry { .. }, Some(_)) => hand_back(ctx, delivery).await,
        (outcome @ (Outcome::Applied | Outcome::AlreadyApplied), Some(event)) => {
            let (kind, result, counter) = if outcome == Outcome::Applied {
                (
                    OutcomeKind::Applied,
                    AppliedResult::Applied,
                    &ctx.counters.applied,
                )
            } else {
                (
                    OutcomeKind::AlreadyApplied,
                    AppliedResult::DoneBefore,
                    &ctx.counters.already_applied,
                )
            };
            let payload = OutcomeEvent::new(Some(event), kind, attempts, None, &ctx.worker_name);
            match record(ctx, event, result, payload.to_json()).await {
                Ok(recorded) => {
                    // Ack only once the outcome is in RabbitMQ: a worker taking the partition
                    // over reads it from its own outcome queue before admitting anything.
                    if let Some(id) = recorded
                        && let Err(error) = ctx.confirmations.wait(id).await
                    {
                        tracing::error!(error = %error, event_id = %event.id, "cannot check the outcome outbox; handing the delivery back");
                        return hand_back(ctx, delivery).await;
                    }
                    Counters::bump(counter);
                    ctx.counters.settled(event.event_type(), kind);
                    tracing::info!(event_id = %event.id, subject = %event.subject, r#type = %event.event_type(), outcome = ?kind, attempts, "event settled");
                    ack(delivery).await
                }
                Err(error) => {
                    tracing::error!(error = %error, event_id = %event.id, "cannot record an applied event; handing it back (it will be re-applied idempotently)");
                    hand_back(ctx, delivery).await
                }
            }
        }
        (Outcome::Stale { current }, Some(event)) => {
            let payload =
                OutcomeEvent::new(Some(event), OutcomeKind::Stale, 0, None, &ctx.worker_name);
            if let Err(error) = ctx.outcomes.append_async(&payload.to_json()).await {
                tracing::warn!(error = %error, "cannot queue a stale outcome event");
            }
            Counters::bump(&ctx.counters.stale);
            ctx.counters.settled(event.event_type(), OutcomeKind::Stale);
            tracing::info!(event_id = %event.id, subject = %event.subject, sequence = event.sequence.value(), current, "stale event acknowledged");
            ack(delivery).await
        }
        (Outcome::DeadLetter { reason }, event) => {
            dead_letter(ctx, delivery, event, &reason, attempts).await
        }
    }
}

/// Records the event with its outcome; returns the outcome's outbox entry when one was
/// written (the event was new to the ledger).
async fn record(
    ctx: &Arc<WorkerContext>,
    event: &Envelope,
    result: AppliedResult,
    payload: Vec<u8>,
) -> Result<Option<OutboxId>, StoreError> {
    let applied = AppliedEvent {
        event_id: event.id.to_string(),
        record: AppliedRecord {
            subject: event.subject.to_string(),
            sequence: event.sequence.value(),
            result,
            recorded_at_unix_ms: unix_ms(),
        },
    };
    // Durable before the caller acks; written and flushed with every lane settling now.
    let outcome_id = ctx.recorder.record(applied, payload).await?;
    Ok(outcome_id)
}

async fn dead_letter(
    ctx: &Arc<WorkerContext>,
    delivery: &Delivery,
    event: Option<&Envelope>,
    reason: &Failure,
    attempts: u32,
) -> JobEnd {
    let message = dead_letter_message(
        &ctx.topology,
        Received {
            body: &delivery.body,
            message_id: delivery.message_id.as_deref(),
            headers: &delivery.headers,
            routing_key: &delivery.routing_key,
        },
        event,
        reason,
        attempts,
        &ctx.worker_name,
    );
    let mut pause = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        match ctx.dead_letters.publish(message.clone()).await {
            Ok(()) => break,
            Err(error) if tries < 5 && !ctx.shutdown.is_cancelled() => {
                tracing::warn!(error = %error, "dead letter not confirmed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot dead-letter; handing the delivery back");
                return hand_back(ctx, delivery).await;
            }
        }
    }
    Counters::bump(&ctx.counters.dead_lettered);
    if reason.class == FailureClass::Quarantined {
        Counters::bump(&ctx.counters.quarantined);
    }
    if let Some(event) = event {
        ctx.counters
            .settled(event.event_type(), OutcomeKind::DeadLettered);
    }
    tracing::warn!(
        message_id = ?delivery.message_id,
        event_id = ?event.map(|event| event.id.to_string()),
        subject = ?event.map(|event| event.subject.to_string()),
        class = %reason.class,
        reason = %reason,
        attempts,
        "event dead-lettered"
    );
    let payload = OutcomeEvent::new(
        event,
        OutcomeKind::DeadLettered,
        attempts,
        Some(reason),
        &ctx.worker_name,
    )
    .to_json();
    if let Some(event) = event {
        if reason.class != FailureClass::Quarantined && reason.class != FailureClass::Invalid {
            let quarantine = ctx.quarantine.clone();
            let subject = event.subject.to_string();
            let entry = QuarantineRecord {
                blocking_event_id: event.id.to_string(),
                error_class: reason.class.as_str().to_owned(),
                since_unix_ms: unix_ms(),
            };
            let entered =
                tokio::task::spawn_blocking(move || quarantine.enter(&subject, &entry)).await;
            if !matches!(entered, Ok(Ok(()))) {
                tracing::error!(subject = %event.subject, "cannot quarantine the subject; later events may apply ahead of the dead letter");
            }
        }
        if let Err(error) = record(ctx, event, AppliedResult::DeadLettered, payload).await {
            tracing::error!(error = %error, "cannot record the dead letter in the ledger");
        }
    } else if let Err(error) = ctx.outcomes.append_async(&payload).await {
        tracing::warn!(error = %error, "cannot queue a dead-letter outcome event");
    }
    ack(delivery).await
}

async fn ack(delivery: &Delivery) -> JobEnd {
    if let Err(error) = delivery.ack().await {
        // Not fatal: RabbitMQ redelivers it and the ledger recognises it.
        tracing::warn!(error = %error, message_id = ?delivery.message_id, "ack failed; the delivery will come again");
    }
    JobEnd::Settled
}

/// Gives the delivery back without settling it (see [`JobEnd::HandedBack`]): the partition
/// closes its channel if it is still open, and RabbitMQ returns it in order.
async fn hand_back(ctx: &WorkerContext, delivery: &Delivery) -> JobEnd {
    Counters::bump(&ctx.counters.handed_back);
    tracing::debug!(message_id = ?delivery.message_id, channel_closed = delivery.channel_closed(), "delivery handed back; it comes again when its channel closes");
    JobEnd::HandedBack
}

#[cfg(test)]
mod tests {
    use moss_schemas::{EventData, Sequence, Source, Subject, UserReactivated};
    use moss_store::Store;

    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            Fixture { _dir: dir, store }
        }

        fn admit(&self, headers: &Headers, event: &Envelope) -> Admit {
            admit(
                &self.store.ledger().unwrap(),
                &self.store.versions().unwrap(),
                &self.store.quarantine().unwrap(),
                headers,
                event,
            )
            .unwrap()
        }

        fn record(&self, event: &Envelope, result: AppliedResult) {
            self.store
                .record_applied(&AppliedEvent {
                    event_id: event.id.to_string(),
                    record: AppliedRecord {
                        subject: event.subject.to_string(),
                        sequence: event.sequence.value(),
                        result,
                        recorded_at_unix_ms: 0,
                    },
                })
                .unwrap();
        }
    }

    fn event(subject: Subject, sequence: u64) -> Envelope {
        Envelope::new(
            Source::parse("moss-test/unit").unwrap(),
            subject,
            Sequence(sequence),
            EventData::UserReactivated(UserReactivated {}),
        )
    }

    fn subject() -> Subject {
        Subject::parse(&uuid::Uuid::new_v4().to_string()).unwrap()
    }

    #[test]
    fn an_applied_event_is_a_duplicate_the_second_time() {
        let fixture = Fixture::new();
        let first = event(subject(), 5);
        assert_eq!(fixture.admit(&Headers::new(), &first), Admit::Proceed);
        fixture.record(&first, AppliedResult::Applied);
        assert_eq!(fixture.admit(&Headers::new(), &first), Admit::Duplicate);
    }

    #[test]
    fn an_event_at_or_below_the_applied_sequence_is_stale() {
        let fixture = Fixture::new();
        let subject = subject();
        fixture.record(&event(subject, 7), AppliedResult::Applied);
        assert_eq!(
            fixture.admit(&Headers::new(), &event(subject, 6)),
            Admit::Stale { current: 7 }
        );
        assert_eq!(
            fixture.admit(&Headers::new(), &event(subject, 7)),
            Admit::Stale { current: 7 }
        );
        assert_eq!(
            fixture.admit(&Headers::new(), &event(subject, 8)),
            Admit::Proceed
        );
    }

    #[test]
    fn later_events_wait_behind_a_quarantine_until_the_blocking_event_is_replayed() {
        let fixture = Fixture::new();
        let subject = subject();
        let blocking = event(subject, 1);
        let behind = event(subject, 2);
        fixture.record(&blocking, AppliedResult::DeadLettered);
        fixture
            .store
            .quarantine()
            .unwrap()
            .enter(
                &subject.to_string(),
                &QuarantineRecord {
                    blocking_event_id: blocking.id.to_string(),
                    error_class: "permanent".into(),
                    since_unix_ms: 0,
                },
            )
            .unwrap();
        assert_eq!(
            fixture.admit(&Headers::new(), &behind),
            Admit::Quarantined {
                blocking_event_id: blocking.id.to_string()
            }
        );
        // A plain redelivery of the dead-lettered event is a duplicate, not a second letter.
        assert_eq!(fixture.admit(&Headers::new(), &blocking), Admit::Duplicate);
        let replay = Headers::new().with_text(REPLAY_OF, blocking.id.to_string());
        assert_eq!(fixture.admit(&replay, &blocking), Admit::Proceed);
        assert_eq!(fixture.admit(&Headers::new(), &behind), Admit::Proceed);
    }

    fn scope_parts() -> (Circuit, RetrySettings, Counters, CancellationToken) {
        (
            Circuit::new(crate::circuit::CircuitSettings {
                failure_threshold: 3,
                first_probe_after: Duration::from_secs(1),
                max_probe_interval: Duration::from_secs(4),
            }),
            RetrySettings {
                first_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(1),
                max_attempts: 3,
                budget: Duration::from_secs(60),
            },
            Counters::default(),
            CancellationToken::new(),
        )
    }

    fn retry(class: FailureClass) -> Outcome {
        Outcome::Retry {
            after: None,
            failure: Failure::local(class, "Test", "failed"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_that_keeps_failing_alone_is_dead_lettered_after_its_attempts() {
        let (circuit, retry_settings, counters, shutdown) = scope_parts();
        let never = CancellationToken::new();
        let scope = RetryScope {
            circuit: &circuit,
            retry: &retry_settings,
            counters: &counters,
            shutdown: &shutdown,
            abandon: &never,
        };
        let event = event(subject(), 1);
        let settlement =
            attempt_with(scope, &event, || async { retry(FailureClass::Permanent) }).await;
        match settlement {
            Settlement::Done {
                outcome: Outcome::DeadLetter { reason },
                attempts,
            } => {
                assert_eq!(attempts, 3);
                assert!(reason.message.contains("gave up after 3 attempts"));
            }
            other => panic!("expected a dead letter, got {other:?}"),
        }
        assert!(
            circuit.is_closed(),
            "one event's failures say nothing about the tenant"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_while_the_circuit_is_open_never_dead_letter_and_the_event_applies_after() {
        let (circuit, retry_settings, counters, shutdown) = scope_parts();
        let never = CancellationToken::new();
        let scope = RetryScope {
            circuit: &circuit,
            retry: &retry_settings,
            counters: &counters,
            shutdown: &shutdown,
            abandon: &never,
        };
        let event = event(subject(), 1);
        let calls = std::cell::Cell::new(0);
        // Ten transient failures (an outage), far more than max_attempts, then success.
        let settlement = attempt_with(scope, &event, || {
            calls.set(calls.get() + 1);
            let outcome = if calls.get() <= 10 {
                retry(FailureClass::Transient)
            } else {
                Outcome::Applied
            };
            async move { outcome }
        })
        .await;
        match settlement {
            Settlement::Done {
                outcome: Outcome::Applied,
                attempts,
            } => assert_eq!(attempts, 11),
            other => panic!("expected applied, got {other:?}"),
        }
        assert!(circuit.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_a_retry_wait_hands_the_delivery_back() {
        let (circuit, retry_settings, counters, shutdown) = scope_parts();
        let never = CancellationToken::new();
        let scope = RetryScope {
            circuit: &circuit,
            retry: &retry_settings,
            counters: &counters,
            shutdown: &shutdown,
            abandon: &never,
        };
        let event = event(subject(), 1);
        let settlement = attempt_with(scope, &event, || {
            shutdown.cancel();
            async { retry(FailureClass::Transient) }
        })
        .await;
        assert!(matches!(settlement, Settlement::HandBack));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_waited_out_before_the_next_attempt() {
        let (circuit, retry_settings, counters, shutdown) = scope_parts();
        let never = CancellationToken::new();
        let scope = RetryScope {
            circuit: &circuit,
            retry: &retry_settings,
            counters: &counters,
            shutdown: &shutdown,
            abandon: &never,
        };
        let event = event(subject(), 1);
        let calls = std::cell::Cell::new(0);
        let started = Instant::now();
        let settlement = attempt_with(scope, &event, || {
            calls.set(calls.get() + 1);
            let outcome = if calls.get() == 1 {
                Outcome::Retry {
                    after: Some(Duration::from_millis(700)),
                    failure: Failure::local(FailureClass::Throttled, "TooManyRequests", "429"),
                }
            } else {
                Outcome::AlreadyApplied
            };
            async move { outcome }
        })
        .await;
        assert!(matches!(
            settlement,
            Settlement::Done {
                outcome: Outcome::AlreadyApplied,
                attempts: 2
            }
        ));
        assert!(started.elapsed() >= Duration::from_millis(700));
    }

    #[test]
    fn a_replay_of_an_event_behind_the_blocking_one_stays_quarantined() {
        let fixture = Fixture::new();
        let subject = subject();
        let blocking = event(subject, 1);
        let behind = event(subject, 2);
        fixture
            .store
            .quarantine()
            .unwrap()
            .enter(
                &subject.to_string(),
                &QuarantineRecord {
                    blocking_event_id: blocking.id.to_string(),
                    error_class: "permanent".into(),
                    since_unix_ms: 0,
                },
            )
            .unwrap();
        let replay = Headers::new().with_text(REPLAY_OF, behind.id.to_string());
        assert!(matches!(
            fixture.admit(&replay, &behind),
            Admit::Quarantined { .. }
        ));
    }
}
