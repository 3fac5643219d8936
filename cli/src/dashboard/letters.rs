//! The dead letters as the dashboard sees them, and the operator's actions on them.
//!
//! Reading the dead queue means holding its letters unacknowledged for a moment (RabbitMQ has no
//! peek, see `operate::dead_letters`), so the dashboard does it under one lock: a refresh every
//! few seconds keeps a snapshot for the pages, and an action takes the lock for its whole read,
//! publish and acknowledge.
//!
//! Every action goes in two steps: a preview (what would be replayed, purged, approved or
//! rejected, in which order, with notes) that hands back a one-time key, then a confirmation
//! with that key that does exactly what the preview showed. A key is carried out once: a second
//! confirmation (a double click, a retried request) answers with the first one's result and
//! changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use moss_broker::Topology;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::auth::Operator;
use crate::figures::HELD;
use crate::held_deletes::{RepublishError, copies_by_id, republish, with_waiting};
use crate::operate::dead_letters::{
    DeadLetter, DeadQueueView, redacted_body, release_quarantines, sort_by_dead_at,
};
use crate::operate::selection::{ErrorClassFilter, Filters, parse_since, replay_order, select};

/// The most letters the dashboard reads at once.
const READ_LIMIT: usize = 10_000;
/// How often the snapshot is refreshed in the background.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How long a preview's key stays valid.
const PREVIEW_VALID: Duration = Duration::from_secs(15 * 60);

/// The dead queue as last read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Letters in the order they were dead-lettered, one per id.
    pub(crate) letters: Vec<DeadLetter>,
    /// Each letter's event with passwords and secrets redacted (`None`: not JSON, not shown).
    pub(crate) events: HashMap<String, Option<Value>>,
    /// Ready messages in the queue when it was read.
    pub(crate) in_queue: u32,
    /// When.
    pub(crate) read_at: Option<DateTime<Utc>>,
    /// Why the last read failed, if it did.
    pub(crate) problem: Option<String>,
}

#[derive(Debug)]
struct Pending {
    action: Action,
    ids: Vec<String>,
    created: Instant,
    /// The answer once carried out.
    done: Option<Value>,
}

/// The dead letters and the actions in progress.
#[derive(Debug, Default)]
pub(crate) struct Letters {
    snapshot: std::sync::RwLock<Snapshot>,
    /// Held while the dead queue is read or changed.
    queue: tokio::sync::Mutex<()>,
    pending: std::sync::Mutex<HashMap<String, Pending>>,
}

impl Letters {
    /// The snapshot as last read.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.snapshot
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn store(&self, snapshot: Snapshot) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = snapshot;
    }

    fn note_problem(&self, problem: String) {
        self.snapshot
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .problem = Some(problem);
    }
}

/// Reads the dead queue into the snapshot, under the lock.
pub(crate) async fn refresh(shared: &Shared) {
    let _guard = shared.letters.queue.lock().await;
    refresh_locked(shared).await;
}

/// The snapshot, read again first when it is older than `max_age` (a page shows what the
/// operator just did or just saw fail, not what the last background read saw).
pub(crate) async fn fresh(shared: &Shared, max_age: Duration) -> Snapshot {
    let stale = |snapshot: &Snapshot| {
        snapshot
            .read_at
            .is_none_or(|read_at| (Utc::now() - read_at).to_std().unwrap_or_default() > max_age)
    };
    if stale(&shared.letters.snapshot()) {
        let _guard = shared.letters.queue.lock().await;
        // Another request may have read it while this one waited.
        if stale(&shared.letters.snapshot()) {
            refresh_locked(shared).await;
        }
    }
    shared.letters.snapshot()
}

async fn refresh_locked(shared: &Shared) {
    match read(shared).await {
        Ok(snapshot) => shared.letters.store(snapshot),
        Err(error) => shared.letters.note_problem(format!("{error:#}")),
    }
}

async fn read(shared: &Shared) -> Result<Snapshot> {
    let view = DeadQueueView::open(&shared.broker, &shared.settings.topology, READ_LIMIT).await?;
    let snapshot = snapshot_of(&view);
    view.close().await?;
    Ok(snapshot)
}

fn snapshot_of(view: &DeadQueueView) -> Snapshot {
    let mut letters: Vec<&DeadLetter> = view.held.iter().map(|held| &held.letter).collect();
    sort_by_dead_at(&mut letters);
    let mut seen = HashSet::new();
    let letters: Vec<DeadLetter> = letters
        .into_iter()
        .filter(|letter| seen.insert(letter.id.clone()))
        .cloned()
        .collect();
    let mut events = HashMap::new();
    for held in &view.held {
        events
            .entry(held.letter.id.clone())
            .or_insert_with(|| redacted_body(&held.delivery().body));
    }
    Snapshot {
        letters,
        events,
        in_queue: view.in_queue,
        read_at: Some(Utc::now()),
        problem: None,
    }
}

/// Refreshes the snapshot every few seconds until `shutdown`.
pub(crate) async fn refresh_every(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        refresh(&shared).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REFRESH_EVERY) => {}
        }
    }
}

/// What the operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    Replay,
    Purge,
    Approve,
    Reject,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Replay => "replay",
            Action::Purge => "purge",
            Action::Approve => "approve",
            Action::Reject => "reject",
        }
    }
}

/// A filter as the page sends it (the same filters as `moss dlq`).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct FilterForm {
    #[serde(default, rename = "type")]
    pub(crate) event_type: Option<String>,
    #[serde(default)]
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) class: Option<String>,
    #[serde(default)]
    pub(crate) since: Option<String>,
}

impl FilterForm {
    pub(crate) fn filters(&self) -> Result<Filters> {
        let given = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let classes = match given(&self.class) {
            None => Vec::new(),
            Some(class) => vec![
                <ErrorClassFilter as clap::ValueEnum>::from_str(&class, true)
                    .map_err(|_| anyhow::anyhow!("class: {class:?} is not an error class"))?,
            ],
        };
        Ok(Filters {
            types: given(&self.event_type).into_iter().collect(),
            subject_or_user: given(&self.user),
            classes,
            since: given(&self.since)
                .map(|since| parse_since(&since, Utc::now()))
                .transpose()
                .map_err(|error| anyhow::anyhow!("since: {error}"))?,
        })
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct PreviewRequest {
    action: Action,
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    filter: Option<FilterForm>,
    /// Every letter (with a filter: every one it matches).
    #[serde(default)]
    all: bool,
}

#[derive(Debug, Serialize)]
struct PlannedItem {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    who: String,
    error_class: String,
    routing_key: Option<String>,
    note: Option<String>,
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `POST /api/preview`: what the action would do, and the key that carries it out.
pub(crate) async fn preview(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<PreviewRequest>,
) -> Response {
    let filters = match request.filter.as_ref().map(FilterForm::filters).transpose() {
        Ok(filters) => filters.unwrap_or_default(),
        Err(error) => return problem(StatusCode::BAD_REQUEST, format!("{error:#}")),
    };
    if request.ids.is_empty() && filters.is_empty() && !request.all {
        return problem(
            StatusCode::BAD_REQUEST,
            "say which dead letters: tick them, or filter the table first (nothing was changed)",
        );
    }
    let guard = shared.letters.queue.lock().await;
    let view =
        match DeadQueueView::open(&shared.broker, &shared.settings.topology, READ_LIMIT).await {
            Ok(view) => view,
            Err(error) => {
                return problem(StatusCode::SERVICE_UNAVAILABLE, format!("{error:#}"));
            }
        };
    let planned = plan(
        &view,
        request.action,
        &request.ids,
        &filters,
        &shared.settings.topology,
    );
    shared.letters.store(snapshot_of(&view));
    let closed = view.close().await;
    drop(guard);
    if let Err(error) = closed {
        return problem(StatusCode::SERVICE_UNAVAILABLE, format!("{error:#}"));
    }
    let (items, ids) = match planned {
        Ok(planned) => planned,
        Err(error) => return problem(StatusCode::NOT_FOUND, format!("{error:#}")),
    };
    let key = uuid::Uuid::new_v4().to_string();
    {
        let mut pending = shared
            .letters
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        pending.retain(|_, entry| entry.created.elapsed() < PREVIEW_VALID);
        pending.insert(
            key.clone(),
            Pending {
                action: request.action,
                ids,
                created: Instant::now(),
                done: None,
            },
        );
    }
    let count = items.len();
    let summary = match request.action {
        Action::Replay => format!(
            "would replay {count} dead letters to {}, in this order, with their event ids",
            shared.settings.topology.events_exchange()
        ),
        Action::Purge => format!("would delete {count} dead letters for good"),
        Action::Approve => format!(
            "would apply {count} events in this order (the approved deletes, and the events of their users that waited behind them), even over the threshold"
        ),
        Action::Reject => format!(
            "would drop {count} held deletes for good (the accounts stay as they are) and release their users' quarantine"
        ),
    };
    Json(json!({
        "key": key,
        "action": request.action,
        "count": count,
        "summary": summary,
        "items": items,
    }))
    .into_response()
}

/// The letters an action means, in the order it treats them, with the ids to act on.
fn plan(
    view: &DeadQueueView,
    action: Action,
    ids: &[String],
    filters: &Filters,
    topology: &Topology,
) -> Result<(Vec<PlannedItem>, Vec<String>)> {
    let mut letters: Vec<&DeadLetter> = view.held.iter().map(|held| &held.letter).collect();
    sort_by_dead_at(&mut letters);
    let mut seen = HashSet::new();
    letters.retain(|letter| seen.insert(letter.id.as_str()));
    if letters.is_empty() {
        bail!(
            "the dead queue is empty; there is nothing to {} (nothing was changed)",
            action.as_str()
        );
    }
    let chosen: Vec<&DeadLetter> = select(&letters, ids, filters)?
        .into_iter()
        .map(|index| letters[index])
        .collect();
    if chosen.is_empty() {
        bail!("no dead letter matches both the ids and the filters (nothing was changed)");
    }
    let ordered: Vec<&DeadLetter> = match action {
        Action::Replay => {
            let order = replay_order(&chosen);
            order.into_iter().map(|index| chosen[index]).collect()
        }
        Action::Purge => chosen,
        Action::Approve | Action::Reject => {
            if let Some(other) = chosen.iter().find(|letter| letter.error.class != HELD) {
                bail!(
                    "{} is not a held delete (it is {}); nothing was changed",
                    other.id,
                    other.error.class
                );
            }
            if action == Action::Reject {
                chosen
            } else {
                with_waiting(&letters, &chosen)
            }
        }
    };
    let chosen_ids: HashSet<&str> = ordered.iter().map(|letter| letter.id.as_str()).collect();
    let mut items = Vec::with_capacity(ordered.len());
    for letter in &ordered {
        let routing_key = match action {
            Action::Replay | Action::Approve => Some(routing_key(letter, topology)?),
            Action::Purge | Action::Reject => None,
        };
        let note = match action {
            Action::Replay if letter.error.class == "quarantined" => letters
                .iter()
                .find(|other| {
                    other.subject == letter.subject
                        && other.error.class != "quarantined"
                        && !chosen_ids.contains(other.id.as_str())
                })
                .map(|blocker| {
                    format!(
                        "waits behind {} of the same user, which is not in this replay: it will be dead-lettered again",
                        blocker.id
                    )
                }),
            Action::Approve if letter.error.class != HELD => {
                Some("waited behind the held delete of its user; replayed after it".to_owned())
            }
            Action::Purge if letter.error.class == HELD => {
                Some("a held delete: purging drops it like a rejection".to_owned())
            }
            _ => None,
        };
        items.push(PlannedItem {
            id: letter.id.clone(),
            event_type: letter.event_type.clone(),
            who: letter
                .upn
                .clone()
                .or_else(|| letter.subject.clone())
                .unwrap_or_default(),
            error_class: letter.error.class.clone(),
            routing_key,
            note,
        });
    }
    let ids = ordered.iter().map(|letter| letter.id.clone()).collect();
    Ok((items, ids))
}

/// The subject's partition, as the producer routes it, else the partition it came from.
fn routing_key(letter: &DeadLetter, topology: &Topology) -> Result<String> {
    if let Some(subject) = letter
        .subject
        .as_deref()
        .and_then(|text| moss_schemas::Subject::parse(text).ok())
    {
        return Ok(topology.partition_routing_key(subject.partition(topology.partitions())));
    }
    letter
        .partition
        .as_deref()
        .and_then(|key| key.strip_prefix('p'))
        .and_then(|digits| digits.parse::<u16>().ok())
        .filter(|partition| *partition < topology.partitions())
        .map(|partition| topology.partition_routing_key(partition))
        .with_context(|| {
            format!(
                "dead letter {} names no subject and no partition of this topology; nothing was changed",
                letter.id
            )
        })
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmRequest {
    key: String,
}

/// `POST /api/confirm`: carries out a preview, once.
pub(crate) async fn confirm(
    State(shared): State<Arc<Shared>>,
    Extension(operator): Extension<Operator>,
    Json(request): Json<ConfirmRequest>,
) -> Response {
    // One action at a time: a second click waits here, then finds the first one's answer.
    let _guard = shared.letters.queue.lock().await;
    let (action, ids) = {
        let pending = shared
            .letters
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match pending.get(&request.key) {
            None => {
                return problem(
                    StatusCode::NOT_FOUND,
                    "this preview has expired or never existed; preview again (nothing was changed)",
                );
            }
            Some(entry) => {
                if let Some(done) = &entry.done {
                    let mut answer = done.clone();
                    answer["repeated"] = Value::Bool(true);
                    return Json(answer).into_response();
                }
                if entry.created.elapsed() >= PREVIEW_VALID {
                    return problem(
                        StatusCode::NOT_FOUND,
                        "this preview has expired; preview again (nothing was changed)",
                    );
                }
                (entry.action, entry.ids.clone())
            }
        }
    };
    let outcome = carry_out(&shared, action, &ids).await;
    refresh_locked(&shared).await;
    match outcome {
        Ok((message, subjects)) => {
            let recorded = super::outcomes::record_action(
                &shared,
                action.as_str(),
                &operator.0,
                &ids,
                &subjects,
                &message,
            )
            .await;
            let answer = json!({
                "action": action,
                "done": ids.len(),
                "message": message,
                "by": operator.0,
                "recorded": recorded.as_ref().map_or_else(|error| format!("{error:#}"), |()| "written to the outcomes stream".to_owned()),
                "repeated": false,
            });
            if let Some(entry) = shared
                .letters
                .pending
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .get_mut(&request.key)
            {
                entry.done = Some(answer.clone());
            }
            tracing::info!(action = action.as_str(), by = %operator.0, events = ids.len(), "dashboard action");
            Json(answer).into_response()
        }
        Err(error) => problem(StatusCode::CONFLICT, format!("{error:#}")),
    }
}

/// Does the action on exactly `ids`; returns what it did in one sentence, and the subjects.
async fn carry_out(
    shared: &Shared,
    action: Action,
    ids: &[String],
) -> Result<(String, Vec<String>)> {
    let topology = &shared.settings.topology;
    let view = DeadQueueView::open(&shared.broker, topology, READ_LIMIT).await?;
    let result = carry_out_on(shared, &view, action, ids).await;
    let closed = view.close().await;
    let done = result?;
    closed?;
    Ok(done)
}

async fn carry_out_on(
    shared: &Shared,
    view: &DeadQueueView,
    action: Action,
    ids: &[String],
) -> Result<(String, Vec<String>)> {
    let topology = &shared.settings.topology;
    let by_id = copies_by_id(view);
    let missing: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| !by_id.contains_key(id))
        .collect();
    if !missing.is_empty() {
        bail!(
            "no dead letter has the id {} any more (replayed or purged meanwhile?); nothing was changed, preview again",
            missing.join(", ")
        );
    }
    let letters: Vec<&DeadLetter> = ids
        .iter()
        .map(|id| &view.held[by_id[id.as_str()][0]].letter)
        .collect();
    let mut subjects: Vec<String> = letters
        .iter()
        .filter_map(|letter| letter.subject.clone())
        .collect();
    subjects.sort();
    subjects.dedup();
    match action {
        Action::Replay | Action::Approve => {
            let approved =
                |letter: &DeadLetter| action == Action::Approve && letter.error.class == HELD;
            let done = match republish(
                &shared.broker,
                topology,
                view,
                &letters,
                approved,
                routing_key,
            )
            .await
            {
                Ok(done) => done,
                Err(RepublishError::Channel(error)) => {
                    return Err(
                        error.context("could not open a channel to publish; nothing was replayed")
                    );
                }
                Err(RepublishError::Unconfirmed { done, id, error }) => bail!(
                    "replayed {done} of {}, then RabbitMQ did not confirm {id} ({error}); the rest stay in the dead queue",
                    letters.len()
                ),
                Err(RepublishError::Other(error)) => return Err(error),
            };
            let message = if action == Action::Replay {
                format!(
                    "replayed {done} dead letters in order, with their event ids; the worker reports each outcome on {}",
                    topology.outcomes_exchange()
                )
            } else {
                let held = letters
                    .iter()
                    .filter(|letter| letter.error.class == HELD)
                    .count();
                format!(
                    "approved {held} held deletes ({done} events replayed in order); the worker applies them even over the threshold"
                )
            };
            Ok((message, subjects))
        }
        Action::Purge | Action::Reject => {
            for letter in &letters {
                for &index in &by_id[letter.id.as_str()] {
                    view.ack(index).await?;
                }
            }
            let released = release_quarantines(&shared.broker, topology, &letters).await?;
            let message = if action == Action::Purge {
                format!(
                    "purged {} dead letters; released the quarantine of {released} users",
                    letters.len()
                )
            } else {
                format!(
                    "rejected {} held deletes (the accounts stay as they are); released the quarantine of {released} users",
                    letters.len()
                )
            };
            Ok((message, subjects))
        }
    }
}
