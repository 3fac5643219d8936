//! The dead queue, read without losing a letter.
//!
//! RabbitMQ has no "peek": [`DeadQueueView::open`] consumes `{prefix}.dead` with manual acks and
//! holds what it received unacknowledged. Closing the view hands every letter it did not ack back
//! to the queue (the dead queue has no delivery limit, so handing back never drops one). A
//! requeue may change the queue's order, which is why letters are always shown and replayed in
//! the order of `moss-dead-at`, never in the order they happen to arrive.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use moss_broker::{Broker, Consumer, Delivery, Headers, Topology};
use moss_workers::{
    ATTEMPT, ATTEMPTS, CLIENT_REQUEST_ID, DEAD_AT, DEAD_BY, ERROR_CLASS, ERROR_CODE, ERROR_MESSAGE,
    ERROR_STATUS, EVENT_TYPE, ORIGINAL_ROUTING_KEY, REPLAY_OF, REQUEST_ID, SUBJECT,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `moss-history`: earlier failures of a replayed event, as a JSON array of [`PastFailure`].
/// `moss dlq replay` writes it; the worker carries it into the next dead letter (it keeps every
/// header that is not RabbitMQ's own), so `moss dlq show` can list every attempt and error.
pub(crate) const HISTORY: &str = "moss-history";
/// `moss-replayed-at`: when `moss dlq replay` republished the event (RFC 3339).
pub(crate) const REPLAYED_AT: &str = "moss-replayed-at";
/// The most earlier failures kept in [`HISTORY`]; older ones are dropped first.
const MAX_HISTORY: usize = 20;

/// How long the view waits for the next letter once the queue seems drained: letters another
/// client holds unacknowledged are not delivered to us, and we must not wait for them forever.
const QUIET_PERIOD: Duration = Duration::from_millis(1_500);
/// The longest a view spends collecting letters.
const COLLECT_LIMIT: Duration = Duration::from_secs(120);

/// Why an event failed on one attempt, as recorded in the dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PastFailure {
    /// `moss-attempt` of that try (1 for the first delivery, then one more per replay).
    pub(crate) attempt: i64,
    /// When it was dead-lettered.
    pub(crate) dead_at: Option<String>,
    /// The worker that dead-lettered it.
    pub(crate) dead_by: Option<String>,
    /// Calls the worker made on that try.
    pub(crate) attempts: Option<i64>,
    /// The error.
    pub(crate) error: ErrorReport,
}

/// The error a dead letter carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ErrorReport {
    /// `moss-error-class` (`permanent`, `quarantined`, …), `delivery_limit` for a letter the
    /// broker dead-lettered after repeated consumer crashes, or `unknown`.
    pub(crate) class: String,
    /// The HTTP status, when the tenant answered.
    pub(crate) status: Option<i64>,
    /// The service's error code, or moss's own.
    pub(crate) code: Option<String>,
    /// One sentence.
    pub(crate) message: Option<String>,
    /// The tenant's request id (for Microsoft support).
    pub(crate) request_id: Option<String>,
    /// moss's id of the failed operation.
    pub(crate) client_request_id: Option<String>,
}

/// One dead letter as the operator sees it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeadLetter {
    /// The event id (the AMQP message id).
    pub(crate) id: String,
    /// The CloudEvents type, or `unknown` when the message did not decode.
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    /// The subject (the directory's id of the user or group).
    pub(crate) subject: Option<String>,
    /// The directory's change number.
    pub(crate) sequence: Option<u64>,
    /// The online id (UPN) the event names, if any.
    pub(crate) upn: Option<String>,
    /// The partition routing key it came from (`p{n}`).
    pub(crate) partition: Option<String>,
    /// `moss-attempt`: 1 for the first delivery, one more for each replay.
    pub(crate) attempt: i64,
    /// The event this one replays (`moss-replay-of`), when it was replayed before.
    pub(crate) replay_of: Option<String>,
    /// When it was dead-lettered (RFC 3339).
    pub(crate) dead_at: Option<String>,
    /// The worker that dead-lettered it.
    pub(crate) dead_by: Option<String>,
    /// Calls the worker made on the last try.
    pub(crate) attempts: Option<i64>,
    /// The last error.
    pub(crate) error: ErrorReport,
    /// Earlier failures, oldest first (from `moss-history`).
    pub(crate) history: Vec<PastFailure>,
    #[serde(skip)]
    pub(crate) dead_at_time: Option<DateTime<Utc>>,
    /// The order the letter arrived in while reading the queue.
    #[serde(skip)]
    pub(crate) position: usize,
}

impl DeadLetter {
    /// Reads a delivery from the dead queue. Letters the broker dead-lettered itself (after
    /// repeated consumer crashes) carry no moss headers; their class is RabbitMQ's reason.
    pub(crate) fn from_delivery(delivery: &Delivery, position: usize) -> DeadLetter {
        let headers = &delivery.headers;
        let text = |name: &str| headers.get_str(name).map(str::to_owned);
        let body: Option<Value> = serde_json::from_slice(&delivery.body).ok();
        let body_text = |pointer: &str| {
            body.as_ref()
                .and_then(|body| body.pointer(pointer))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let class = text(ERROR_CLASS)
            .or_else(|| text("x-first-death-reason"))
            .unwrap_or_else(|| "unknown".to_owned());
        let dead_at = text(DEAD_AT);
        let dead_at_time = dead_at
            .as_deref()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|time| time.with_timezone(&Utc));
        let partition = text(ORIGINAL_ROUTING_KEY).or_else(|| {
            is_partition_key(&delivery.routing_key).then(|| delivery.routing_key.clone())
        });
        DeadLetter {
            id: delivery.message_id.clone().unwrap_or_default(),
            event_type: text(EVENT_TYPE)
                .filter(|kind| kind != "unknown")
                .or_else(|| body_text("/type"))
                .unwrap_or_else(|| "unknown".to_owned()),
            subject: text(SUBJECT).or_else(|| body_text("/subject")),
            sequence: body_text("/sequence")
                .and_then(|text| text.parse().ok())
                .or_else(|| {
                    body.as_ref()
                        .and_then(|body| body.get("sequence"))
                        .and_then(Value::as_u64)
                }),
            upn: body_text("/data/online_account/upn").or_else(|| body_text("/data/upn")),
            partition,
            attempt: headers.get_i64(ATTEMPT).unwrap_or(1),
            replay_of: text(REPLAY_OF),
            dead_at,
            dead_by: text(DEAD_BY),
            attempts: headers.get_i64(ATTEMPTS),
            error: ErrorReport {
                class,
                status: headers.get_i64(ERROR_STATUS),
                code: text(ERROR_CODE),
                message: text(ERROR_MESSAGE),
                request_id: text(REQUEST_ID),
                client_request_id: text(CLIENT_REQUEST_ID),
            },
            history: headers
                .get_str(HISTORY)
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default(),
            dead_at_time,
            position,
        }
    }

    /// This letter's last failure, for the history of its replay.
    pub(crate) fn as_past_failure(&self) -> PastFailure {
        PastFailure {
            attempt: self.attempt,
            dead_at: self.dead_at.clone(),
            dead_by: self.dead_by.clone(),
            attempts: self.attempts,
            error: self.error.clone(),
        }
    }

    /// The history to send with a replay: the earlier failures and this one, at most
    /// [`MAX_HISTORY`] of the newest.
    pub(crate) fn history_for_replay(&self) -> Vec<PastFailure> {
        let mut history = self.history.clone();
        history.push(self.as_past_failure());
        let excess = history.len().saturating_sub(MAX_HISTORY);
        history.drain(..excess);
        history
    }

    /// Age in whole seconds, when the dead-lettering time is known.
    pub(crate) fn age(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        self.dead_at_time.map(|time| now - time)
    }
}

/// `p` followed by digits: a partition routing key.
pub(crate) fn is_partition_key(key: &str) -> bool {
    key.strip_prefix('p')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Sorts letters into the order they were dead-lettered (`moss-dead-at`, then the order they
/// were read); letters without a time go last.
pub(crate) fn sort_by_dead_at(letters: &mut [&DeadLetter]) {
    letters.sort_by_key(|letter| {
        (
            letter.dead_at_time.is_none(),
            letter.dead_at_time,
            letter.position,
        )
    });
}

/// A letter held unacknowledged by a [`DeadQueueView`].
#[derive(Debug)]
pub(crate) struct HeldLetter {
    /// What it says.
    pub(crate) letter: DeadLetter,
    delivery: Delivery,
}

impl HeldLetter {
    /// The message exactly as it lies in the dead queue.
    pub(crate) fn delivery(&self) -> &Delivery {
        &self.delivery
    }
}

/// The dead queue's depth once it stops moving. Letters that the previous operator command held
/// and handed back by closing its channel return to the quorum queue asynchronously, so a count
/// read at once can be short (even zero) for a moment: read until two readings 200 ms apart agree
/// (at most about 2 s).
async fn settled_depth(broker: &Broker, queue: &str) -> Result<moss_broker::QueueDepth> {
    let read = || async {
        broker
            .queue_depth(queue)
            .await
            .with_context(|| format!("could not inspect the dead queue {queue}"))
    };
    let mut depth = read().await?;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = read().await?;
        if again.ready == depth.ready {
            return Ok(again);
        }
        depth = again;
    }
    Ok(depth)
}

/// Letters taken from the dead queue and held unacknowledged until [`DeadQueueView::close`].
#[derive(Debug)]
pub(crate) struct DeadQueueView {
    consumer: Option<Consumer>,
    /// The letters held, in the order they arrived.
    pub(crate) held: Vec<HeldLetter>,
    /// The ready messages the queue reported when the view opened.
    pub(crate) in_queue: u32,
}

impl DeadQueueView {
    /// Takes up to `limit` letters from the dead queue and holds them.
    pub(crate) async fn open(
        broker: &Broker,
        topology: &Topology,
        limit: usize,
    ) -> Result<DeadQueueView> {
        let queue = topology.dead_queue();
        let depth = settled_depth(broker, &queue).await?;
        let expected = usize::try_from(depth.ready)
            .unwrap_or(usize::MAX)
            .min(limit);
        if expected == 0 {
            return Ok(DeadQueueView {
                consumer: None,
                held: Vec::new(),
                in_queue: depth.ready,
            });
        }
        let prefetch = u16::try_from(expected).unwrap_or(u16::MAX);
        let tag = format!("moss-operator-{}", std::process::id());
        let mut consumer = broker
            .consume(&queue, prefetch, &tag)
            .await
            .with_context(|| format!("could not read the dead queue {queue}"))?;
        let mut held = Vec::with_capacity(expected);
        let until = tokio::time::Instant::now() + COLLECT_LIMIT;
        while held.len() < expected && tokio::time::Instant::now() < until {
            match tokio::time::timeout(QUIET_PERIOD, consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    let letter = DeadLetter::from_delivery(&delivery, held.len());
                    held.push(HeldLetter { letter, delivery });
                }
                Ok(Some(Err(error))) => {
                    return Err(anyhow::Error::new(error).context(format!(
                        "RabbitMQ closed the channel reading {queue}; nothing was changed"
                    )));
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(DeadQueueView {
            consumer: Some(consumer),
            held,
            in_queue: depth.ready,
        })
    }

    /// Removes a letter from the dead queue for good.
    pub(crate) async fn ack(&self, index: usize) -> Result<()> {
        self.held[index]
            .delivery
            .ack()
            .await
            .context("RabbitMQ did not take the acknowledgement of a dead letter; it stays in the dead queue")
    }

    /// Hands every letter not acknowledged back to the dead queue.
    pub(crate) async fn close(mut self) -> Result<()> {
        let Some(consumer) = self.consumer.take() else {
            return Ok(());
        };
        // Cancel first, so nothing new arrives; closing the channel then returns every letter
        // still unacknowledged to the queue, and acks sent before it are processed first.
        consumer
            .cancel()
            .await
            .context("could not stop reading the dead queue")?;
        consumer
            .close()
            .await
            .context("could not hand the dead letters back to the queue")
    }
}

/// The headers of a replay: the letter's own headers minus the dead letter's diagnostics (the
/// worker writes fresh ones if it fails again), plus `moss-replay-of`, `moss-replayed-at`, the
/// next `moss-attempt` and the history of every earlier failure.
pub(crate) fn replay_headers(
    delivery: &Delivery,
    letter: &DeadLetter,
    now: DateTime<Utc>,
) -> Headers {
    const DIAGNOSTICS: [&str; 12] = [
        ERROR_CLASS,
        ERROR_STATUS,
        ERROR_CODE,
        ERROR_MESSAGE,
        REQUEST_ID,
        CLIENT_REQUEST_ID,
        ATTEMPTS,
        ORIGINAL_ROUTING_KEY,
        EVENT_TYPE,
        SUBJECT,
        DEAD_AT,
        DEAD_BY,
    ];
    let mut headers = Headers::new();
    for (name, value) in delivery.headers.iter() {
        if !name.starts_with("x-") && !DIAGNOSTICS.contains(&name) {
            headers.insert(name, value.clone());
        }
    }
    let history =
        serde_json::to_string(&letter.history_for_replay()).unwrap_or_else(|_| "[]".to_owned());
    headers
        .with_text(REPLAY_OF, letter.id.clone())
        .with_text(
            REPLAYED_AT,
            now.to_rfc3339_opts(SecondsFormat::Millis, true),
        )
        .with_int(ATTEMPT, letter.attempt.saturating_add(1))
        .with_text(HISTORY, history)
}

/// Whether purging `letter` may leave its subject quarantined behind it: the worker quarantines
/// a subject behind every dead letter of an event it could read, except `quarantined` (already
/// behind another) and `invalid` (the subject cannot be trusted).
pub(crate) fn may_block(letter: &DeadLetter) -> bool {
    letter.subject.is_some() && !matches!(letter.error.class.as_str(), "quarantined" | "invalid")
}

/// After `letters` were purged: sends the worker a `release-quarantine` control message for
/// each one that may block its subject, through the subject's partition (so it takes its place
/// behind the subject's events already queued). The worker lifts the quarantine only if that
/// letter still blocks the subject. Returns how many were sent, all confirmed.
pub(crate) async fn release_quarantines(
    broker: &Broker,
    topology: &Topology,
    letters: &[&DeadLetter],
) -> Result<usize> {
    let releases: Vec<moss_workers::ReleaseQuarantine> = letters
        .iter()
        .filter(|letter| may_block(letter))
        .filter_map(|letter| {
            let subject = moss_schemas::Subject::parse(letter.subject.as_deref()?).ok()?;
            Some(moss_workers::ReleaseQuarantine {
                subject,
                blocking_event_id: letter.id.clone(),
            })
        })
        .collect();
    if releases.is_empty() {
        return Ok(0);
    }
    let publisher = broker.publisher().await.context(
        "the dead letters are purged, but no channel opened to release their subjects' quarantine; their later events stay dead-lettered as quarantined until replayed",
    )?;
    let messages = releases
        .iter()
        .map(|release| release.message(topology))
        .collect();
    let results = publisher.publish_batch(messages).await;
    let _ = publisher.close().await;
    let mut sent = 0;
    for (release, result) in releases.iter().zip(results) {
        result.with_context(|| {
            format!(
                "the quarantine of {} (behind {}) could not be released: RabbitMQ did not confirm the message; its later events stay dead-lettered as quarantined",
                release.subject, release.blocking_event_id
            )
        })?;
        sent += 1;
    }
    Ok(sent)
}

/// The event as JSON with every password and secret replaced, for `moss dlq show`. Passwords are
/// sealed on the wire, but even a sealed password has no business on an operator's screen.
pub(crate) fn redacted_body(body: &[u8]) -> Option<Value> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    redact(&mut value);
    Some(value)
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                let lower = name.to_ascii_lowercase();
                if lower.contains("password") || lower.contains("secret") {
                    *member = Value::String("[redacted]".to_owned());
                } else {
                    redact(member);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_secrets_are_redacted_at_any_depth() {
        let body = br#"{"id":"e1","data":{"initial_password":{"clear":"Hunter2!"},"nested":[{"client_secret":"s"}],"display_name":"Ana"}}"#;
        let shown = redacted_body(body).unwrap();
        let text = shown.to_string();
        assert!(!text.contains("Hunter2!"));
        assert!(!text.contains("\"s\""));
        assert_eq!(shown["data"]["initial_password"], "[redacted]");
        assert_eq!(shown["data"]["display_name"], "Ana");
    }

    #[test]
    fn a_body_that_is_not_json_is_not_shown() {
        assert_eq!(redacted_body(b"password=Hunter2"), None);
    }

    #[test]
    fn partition_keys_are_p_and_digits() {
        assert!(is_partition_key("p0"));
        assert!(is_partition_key("p17"));
        assert!(!is_partition_key("p"));
        assert!(!is_partition_key("x3"));
        assert!(!is_partition_key("p3a"));
    }

    fn letter(attempt: i64, history: Vec<PastFailure>) -> DeadLetter {
        DeadLetter {
            id: "e1".into(),
            event_type: "moss.user.added.v1".into(),
            subject: None,
            sequence: None,
            upn: None,
            partition: Some("p0".into()),
            attempt,
            replay_of: None,
            dead_at: Some("2026-01-01T00:00:00.000Z".into()),
            dead_by: Some("w".into()),
            attempts: Some(3),
            error: ErrorReport {
                class: "permanent".into(),
                status: Some(400),
                code: Some("Bad".into()),
                message: Some("no".into()),
                request_id: None,
                client_request_id: None,
            },
            history,
            dead_at_time: None,
            position: 0,
        }
    }

    #[test]
    fn a_replay_carries_every_earlier_failure_and_keeps_only_the_newest() {
        let first = letter(1, Vec::new());
        let history = first.history_for_replay();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].attempt, 1);
        let many: Vec<PastFailure> = (1..=MAX_HISTORY as i64)
            .map(|n| letter(n, Vec::new()).as_past_failure())
            .collect();
        let late = letter(MAX_HISTORY as i64 + 1, many);
        let history = late.history_for_replay();
        assert_eq!(history.len(), MAX_HISTORY);
        assert_eq!(history[0].attempt, 2);
        assert_eq!(history[MAX_HISTORY - 1].attempt, MAX_HISTORY as i64 + 1);
    }
}
