//! The recent history of outcomes: the dashboard binds a queue of its own to `{prefix}.outcomes`
//! (exclusive, gone with the connection, at most [`QUEUE_LIMIT`] messages) and keeps the newest
//! [`HISTORY_LIMIT`] outcome events in memory for the Users page. It also writes the operator's
//! actions to that exchange (schema `moss.operator_action.v1`), so whoever follows the outcomes
//! sees who replayed, purged, approved or rejected what.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{SecondsFormat, Utc};
use moss_broker::{Headers, OutgoingMessage, Persistence, PublishError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Shared;

/// Outcome events kept in memory.
pub(crate) const HISTORY_LIMIT: usize = 20_000;
/// Messages the dashboard's queue holds while the dashboard is slow (oldest dropped first).
const QUEUE_LIMIT: u32 = 50_000;

/// The newest outcome events, oldest first.
#[derive(Debug, Default)]
pub(crate) struct History {
    entries: Mutex<VecDeque<Value>>,
    /// Why the history is not being followed, when it is not.
    problem: Mutex<Option<String>>,
}

impl History {
    fn push(&self, entry: Value) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if entries.len() == HISTORY_LIMIT {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// Every entry that concerns `subject` (an outcome of one of its events, or an operator
    /// action naming it), newest first.
    pub(crate) fn for_subject(&self, subject: &str) -> Vec<Value> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        entries
            .iter()
            .rev()
            .filter(|entry| {
                entry
                    .get("subject")
                    .and_then(Value::as_str)
                    .is_some_and(|theirs| theirs.eq_ignore_ascii_case(subject))
                    || entry
                        .get("subjects")
                        .and_then(Value::as_array)
                        .is_some_and(|subjects| {
                            subjects.iter().any(|theirs| {
                                theirs
                                    .as_str()
                                    .is_some_and(|theirs| theirs.eq_ignore_ascii_case(subject))
                            })
                        })
            })
            .cloned()
            .collect()
    }

    /// How many entries are kept.
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    /// Why the outcomes are not followed right now, if they are not.
    pub(crate) fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn set_problem(&self, problem: Option<String>) {
        *self
            .problem
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = problem;
    }
}

/// Follows the outcomes exchange until `shutdown`, starting again after a failure.
pub(crate) async fn follow(shared: Arc<Shared>, shutdown: CancellationToken) {
    let exchange = shared.settings.topology.outcomes_exchange();
    let tag = format!("moss-dashboard-{}", std::process::id());
    loop {
        match shared
            .broker
            .follow_fanout(&exchange, QUEUE_LIMIT, 500, &tag)
            .await
        {
            Ok(mut consumer) => {
                shared.outcomes.set_problem(None);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            let _ = consumer.cancel().await;
                            return;
                        }
                        next = consumer.next() => match next {
                            Some(Ok(delivery)) => {
                                if let Ok(entry) = serde_json::from_slice::<Value>(&delivery.body) {
                                    shared.outcomes.push(entry);
                                }
                                let _ = delivery.ack().await;
                            }
                            Some(Err(error)) => {
                                shared.outcomes.set_problem(Some(format!("reading {exchange} stopped: {error}")));
                                break;
                            }
                            None => {
                                shared.outcomes.set_problem(Some(format!("RabbitMQ stopped sending {exchange}")));
                                break;
                            }
                        }
                    }
                }
            }
            Err(error) => {
                shared
                    .outcomes
                    .set_problem(Some(format!("cannot follow {exchange}: {error}")));
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Writes one operator action to the outcomes exchange. Confirmed by RabbitMQ, or an error.
pub(crate) async fn record_action(
    shared: &Shared,
    action: &str,
    by: &str,
    ids: &[String],
    subjects: &[String],
    result: &str,
) -> Result<()> {
    let document = json!({
        "schema": "moss.operator_action.v1",
        "action": action,
        "by": by,
        "via": "moss dashboard",
        "event_ids": ids,
        "subjects": subjects,
        "result": result,
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    let publisher = shared
        .broker
        .publisher()
        .await
        .context("could not open a channel to record the action")?;
    let results = publisher
        .publish_batch(vec![OutgoingMessage {
            exchange: shared.settings.topology.outcomes_exchange(),
            routing_key: String::new(),
            message_id: format!("operator-{}", uuid::Uuid::now_v7()),
            body: serde_json::to_vec(&document).unwrap_or_default(),
            content_type: "application/json".to_owned(),
            headers: Headers::new(),
            persistence: Persistence::Persistent,
        }])
        .await;
    let _ = publisher.close().await;
    match results.into_iter().next() {
        // Nobody follows the outcomes (not even this dashboard, for a moment): nothing to tell.
        Some(Ok(())) | Some(Err(PublishError::Returned { .. })) | None => Ok(()),
        Some(Err(error)) => {
            Err(anyhow::Error::new(error).context("RabbitMQ did not take the record of the action"))
        }
    }
}
