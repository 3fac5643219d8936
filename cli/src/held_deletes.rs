//! Approving held deletes, one way for `moss deletes approve` and the dashboard: which events go
//! (the held deletes with the events of their users that waited behind them, in replay order),
//! and republishing dead letters in an order, each dead copy acknowledged once RabbitMQ confirms
//! its replay (the dashboard's replay uses the same publishing).

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use chrono::Utc;
use moss_broker::{Broker, OutgoingMessage, Persistence, Topology};

use crate::operate::dead_letters::{DeadLetter, DeadQueueView, replay_headers};
use crate::operate::selection::replay_order;

/// Replays are published in batches of this many (pipelined confirms).
const BATCH: usize = 200;

/// The `chosen` held deletes and, after each, the events of its user that waited behind it
/// (dead-lettered as `quarantined`), each id once, in replay order. `letters` is the dead
/// queue, oldest first.
pub(crate) fn with_waiting<'a>(
    letters: &[&'a DeadLetter],
    chosen: &[&'a DeadLetter],
) -> Vec<&'a DeadLetter> {
    let chosen_ids: HashSet<&str> = chosen.iter().map(|letter| letter.id.as_str()).collect();
    let subjects: HashSet<&str> = chosen
        .iter()
        .filter_map(|letter| letter.subject.as_deref())
        .collect();
    let mut seen = HashSet::new();
    let together: Vec<&DeadLetter> = letters
        .iter()
        .copied()
        .filter(|letter| {
            chosen_ids.contains(letter.id.as_str())
                || (letter.error.class == "quarantined"
                    && letter
                        .subject
                        .as_deref()
                        .is_some_and(|subject| subjects.contains(subject)))
        })
        .filter(|letter| seen.insert(letter.id.as_str()))
        .collect();
    replay_order(&together)
        .into_iter()
        .map(|index| together[index])
        .collect()
}

/// Where each event id stands in the view (a letter can be in the dead queue more than once).
pub(crate) fn copies_by_id(view: &DeadQueueView) -> HashMap<&str, Vec<usize>> {
    let mut copies: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, held) in view.held.iter().enumerate() {
        copies
            .entry(held.letter.id.as_str())
            .or_default()
            .push(index);
    }
    copies
}

/// Why [`republish`] stopped; each caller says it in its own words.
#[derive(Debug)]
pub(crate) enum RepublishError {
    /// No channel to publish on: nothing was published.
    Channel(anyhow::Error),
    /// RabbitMQ did not confirm `id`; the `done` before it are replayed and gone from the dead
    /// queue, the rest stay there.
    Unconfirmed {
        done: usize,
        id: String,
        error: String,
    },
    /// A routing key or an acknowledgement failed.
    Other(anyhow::Error),
}

/// Publishes `order` (letters of `view`) to the events exchange in that order, with their
/// event ids and replay headers, `moss-delete-approved: true` on those `approved` says; once
/// RabbitMQ confirms one, its dead copies are acknowledged (keeping one would only make a
/// duplicate). Returns how many were replayed.
pub(crate) async fn republish(
    broker: &Broker,
    topology: &Topology,
    view: &DeadQueueView,
    order: &[&DeadLetter],
    approved: impl Fn(&DeadLetter) -> bool,
    routing_key: impl Fn(&DeadLetter, &Topology) -> Result<String>,
) -> Result<usize, RepublishError> {
    let copies = copies_by_id(view);
    let publisher = broker
        .publisher()
        .await
        .map_err(|error| RepublishError::Channel(error.into()))?;
    let now = Utc::now();
    let mut done = 0_usize;
    for batch in order.chunks(BATCH) {
        let mut messages: Vec<OutgoingMessage> = Vec::with_capacity(batch.len());
        for letter in batch {
            let held = &view.held[copies[letter.id.as_str()][0]];
            let delivery = held.delivery();
            let mut headers = replay_headers(delivery, &held.letter, now);
            if approved(letter) {
                headers = headers.with_text(moss_workers::DELETE_APPROVED, "true");
            }
            messages.push(OutgoingMessage {
                exchange: topology.events_exchange(),
                routing_key: routing_key(letter, topology).map_err(RepublishError::Other)?,
                message_id: letter.id.clone(),
                body: delivery.body.clone(),
                content_type: delivery
                    .content_type
                    .clone()
                    .unwrap_or_else(|| moss_schemas::Envelope::CONTENT_TYPE.to_owned()),
                headers,
                persistence: Persistence::Persistent,
            });
        }
        let results = publisher.publish_batch(messages).await;
        for (letter, result) in batch.iter().zip(results) {
            if let Err(error) = result {
                let _ = publisher.close().await;
                return Err(RepublishError::Unconfirmed {
                    done,
                    id: letter.id.clone(),
                    error: error.to_string(),
                });
            }
            for &index in &copies[letter.id.as_str()] {
                view.ack(index).await.map_err(RepublishError::Other)?;
            }
            done += 1;
        }
    }
    let _ = publisher.close().await;
    Ok(done)
}
