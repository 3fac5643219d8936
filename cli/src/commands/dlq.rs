//! `moss dlq`: the dead letters. `list` and `show` read them and hand them back; `replay`
//! republishes the chosen ones to the partitions, in order, with their event ids; `purge`
//! deletes them after asking.
//!
//! Nothing here opens a worker's sled database (the running worker holds its lock): it all goes
//! through RabbitMQ. A replay never duplicates an effect: the event keeps its id, so the worker's
//! ledger recognises an event it applied before, and the dead copy is acknowledged only after
//! RabbitMQ confirmed the replay (a crash in between leaves a copy the worker would answer with
//! "duplicate").

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets};
use moss_broker::{OutgoingMessage, Persistence, Topology};
use serde_json::json;

use crate::config::{Common, CommonArgs, FileConfig};
use crate::operate::connection;
use crate::operate::dead_letters::{
    DeadLetter, DeadQueueView, redacted_body, release_quarantines, replay_headers, sort_by_dead_at,
};
use crate::operate::progress::Progress;
use crate::operate::selection::{ErrorClassFilter, Filters, parse_since, replay_order, select};

/// The most letters one command reads at once (all held unacknowledged while it runs).
const DEFAULT_LIMIT: usize = 10_000;
/// Replays are published in batches of this many (pipelined confirms).
const REPLAY_BATCH: usize = 200;

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List the dead letters (oldest first), with their reason.
    List(ListArgs),
    /// One dead letter: the event (passwords redacted), every attempt and error.
    Show(ShowArgs),
    /// Republish dead letters to their partitions, in order, keeping their event ids.
    Replay(ReplayArgs),
    /// Delete dead letters for good (asks first, unless --yes).
    Purge(PurgeArgs),
}

/// Where the dead queue is, and how much of it to read.
#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Read at most this many dead letters (they are held unacknowledged while moss works).
    #[arg(long, default_value_t = DEFAULT_LIMIT, value_name = "N")]
    limit: usize,
}

/// Which dead letters: every filter given must hold.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Event type, full (moss.user.added.v1) or short (user.added); repeat for several.
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// A subject (the directory's id) or a user's UPN.
    #[arg(long, visible_alias = "subject", value_name = "SUBJECT|UPN")]
    user: Option<String>,
    /// Error class; repeat for several.
    #[arg(long = "class", value_enum, value_name = "CLASS")]
    classes: Vec<ErrorClassFilter>,
    /// Dead-lettered since a time (2026-01-31T08:00:00Z) or within an age (30m, 6h, 2d).
    #[arg(long, value_name = "TIME|AGE")]
    since: Option<String>,
}

impl FilterArgs {
    fn filters(&self) -> Result<Filters> {
        Ok(Filters {
            types: self.types.clone(),
            subject_or_user: self.user.clone(),
            classes: self.classes.clone(),
            since: self
                .since
                .as_deref()
                .map(|text| parse_since(text, Utc::now()))
                .transpose()?,
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    filters: FilterArgs,
    /// JSON instead of a table (schema in docs/OPERATING.md).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The event id (from `moss dlq list`).
    #[arg(value_name = "ID")]
    id: String,
    #[command(flatten)]
    queue: QueueArgs,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Event ids to replay.
    #[arg(value_name = "ID")]
    ids: Vec<String>,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    filters: FilterArgs,
    /// Every dead letter (with filters: every one they match).
    #[arg(long)]
    all: bool,
    /// Show what would be replayed, in which order, and what to expect; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// Event ids to delete.
    #[arg(value_name = "ID")]
    ids: Vec<String>,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    filters: FilterArgs,
    /// Every dead letter (with filters: every one they match).
    #[arg(long)]
    all: bool,
    /// Do not ask.
    #[arg(long)]
    yes: bool,
}

pub(crate) async fn run(command: DlqCommand, file: &FileConfig) -> Result<()> {
    match command {
        DlqCommand::List(args) => list(args, file).await,
        DlqCommand::Show(args) => show(args, file).await,
        DlqCommand::Replay(args) => replay(args, file).await,
        DlqCommand::Purge(args) => purge(args, file).await,
    }
}

/// Connects and reads the dead queue; the caller must close the view on every path.
async fn open(
    queue: &QueueArgs,
    file: &FileConfig,
) -> Result<(Common, moss_broker::Broker, DeadQueueView)> {
    if queue.limit == 0 {
        bail!("--limit must be at least 1");
    }
    let common = queue.common.resolve(file)?;
    let broker = connection::connect(&common.amqp_url, &common.topology, "moss-dlq").await?;
    match DeadQueueView::open(&broker, &common.topology, queue.limit).await {
        Ok(view) => Ok((common, broker, view)),
        Err(error) => {
            let _ = broker.close().await;
            Err(error)
        }
    }
}

/// Hands unacknowledged letters back and closes the connection; `result` is what the command
/// answers, unless handing back failed (then the letters come back when the connection closes).
async fn finish<T>(
    broker: moss_broker::Broker,
    view: DeadQueueView,
    result: Result<T>,
) -> Result<T> {
    let closed = view.close().await;
    let _ = broker.close().await;
    let value = result?;
    closed?;
    Ok(value)
}

fn letters_in_order(view: &DeadQueueView) -> Vec<&DeadLetter> {
    let mut letters: Vec<&DeadLetter> = view.held.iter().map(|held| &held.letter).collect();
    sort_by_dead_at(&mut letters);
    letters
}

fn partial_read_note(view: &DeadQueueView) -> Option<String> {
    let read = view.held.len();
    let in_queue = usize::try_from(view.in_queue).unwrap_or(usize::MAX);
    (read < in_queue).then(|| {
        format!(
            "read {read} of the {in_queue} dead letters (raise --limit, or another client holds some of them)"
        )
    })
}

async fn list(args: ListArgs, file: &FileConfig) -> Result<()> {
    let filters = args.filters.filters()?;
    let (_common, broker, view) = open(&args.queue, file).await?;
    let result = (|| {
        let letters = letters_in_order(&view);
        let selected = select(&letters, &[], &filters)?;
        let chosen: Vec<&DeadLetter> = selected.iter().map(|&index| letters[index]).collect();
        if args.json {
            let document = json!({
                "schema": "moss.dlq.list.v1",
                "in_queue": view.in_queue,
                "read": view.held.len(),
                "letters": chosen,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
            return Ok(());
        }
        if chosen.is_empty() {
            println!("no dead letters");
            return Ok(());
        }
        let now = Utc::now();
        let mut table = Table::new();
        table
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header([
                "ID",
                "DEAD",
                "TYPE",
                "SUBJECT / UPN",
                "CLASS",
                "REASON",
                "TRY",
            ]);
        for letter in &chosen {
            let who = letter
                .upn
                .clone()
                .or_else(|| letter.subject.clone())
                .unwrap_or_default();
            table.add_row([
                letter.id.clone(),
                letter.age(now).map_or_else(|| "?".to_owned(), human_age),
                letter.event_type.clone(),
                who,
                letter.error.class.clone(),
                reason(letter),
                letter.attempt.to_string(),
            ]);
        }
        println!("{table}");
        let mut by_class: Vec<(String, usize)> = count_by_class(&chosen).into_iter().collect();
        by_class.sort();
        let summary: Vec<String> = by_class
            .iter()
            .map(|(class, count)| format!("{class} {count}"))
            .collect();
        println!("{} dead letters ({})", chosen.len(), summary.join(", "));
        if let Some(note) = partial_read_note(&view) {
            println!("note: {note}");
        }
        Ok(())
    })();
    finish(broker, view, result).await
}

fn count_by_class(letters: &[&DeadLetter]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for letter in letters {
        *counts.entry(letter.error.class.clone()).or_insert(0) += 1;
    }
    counts
}

/// `CODE (STATUS): message`, cut for a table.
fn reason(letter: &DeadLetter) -> String {
    let error = &letter.error;
    let mut text = String::new();
    if let Some(code) = &error.code {
        text.push_str(code);
    }
    if let Some(status) = error.status {
        text.push_str(&format!(" ({status})"));
    }
    if let Some(message) = &error.message {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(message);
    }
    if text.chars().count() > 90 {
        text = text.chars().take(89).collect::<String>() + "…";
    }
    text
}

fn human_age(age: chrono::Duration) -> String {
    let seconds = age.num_seconds().max(0);
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3_600 => format!("{}m ago", seconds / 60),
        3_600..86_400 => format!("{}h ago", seconds / 3_600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

async fn show(args: ShowArgs, file: &FileConfig) -> Result<()> {
    let (_common, broker, view) = open(&args.queue, file).await?;
    let result = (|| {
        let copies: Vec<&crate::operate::dead_letters::HeldLetter> = view
            .held
            .iter()
            .filter(|held| held.letter.id == args.id)
            .collect();
        let Some(first) = copies.first() else {
            let mut message = format!(
                "no dead letter has the id {}; `moss dlq list` shows the ids",
                args.id
            );
            if let Some(note) = partial_read_note(&view) {
                message.push_str(&format!(" ({note})"));
            }
            bail!(message);
        };
        let letter = &first.letter;
        let event = redacted_body(&first.delivery().body);
        if args.json {
            let document = json!({
                "schema": "moss.dlq.show.v1",
                "letter": letter,
                "copies": copies.len(),
                "event": event,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
            return Ok(());
        }
        let field = |name: &str, value: Option<String>| {
            println!("{name:<14}{}", value.unwrap_or_else(|| "-".to_owned()));
        };
        field("id", Some(letter.id.clone()));
        field("type", Some(letter.event_type.clone()));
        field("subject", letter.subject.clone());
        field("upn", letter.upn.clone());
        field(
            "sequence",
            letter.sequence.map(|sequence| sequence.to_string()),
        );
        field("partition", letter.partition.clone());
        field("replay of", letter.replay_of.clone());
        if copies.len() > 1 {
            field(
                "copies",
                Some(format!(
                    "{} (RabbitMQ dead-letters at least once; a replay sends one)",
                    copies.len()
                )),
            );
        }
        println!();
        println!("attempts and errors, oldest first:");
        let mut table = Table::new();
        table
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header([
                "TRY",
                "DEAD AT",
                "BY",
                "CALLS",
                "CLASS",
                "STATUS",
                "CODE",
                "MESSAGE",
                "REQUEST ID",
            ]);
        let mut history = letter.history.clone();
        history.push(letter.as_past_failure());
        for failure in &history {
            let error = &failure.error;
            table.add_row([
                failure.attempt.to_string(),
                failure.dead_at.clone().unwrap_or_else(|| "?".to_owned()),
                failure.dead_by.clone().unwrap_or_default(),
                failure
                    .attempts
                    .map(|calls| calls.to_string())
                    .unwrap_or_default(),
                error.class.clone(),
                error
                    .status
                    .map(|status| status.to_string())
                    .unwrap_or_default(),
                error.code.clone().unwrap_or_default(),
                error.message.clone().unwrap_or_default(),
                error
                    .request_id
                    .clone()
                    .or_else(|| error.client_request_id.clone())
                    .unwrap_or_default(),
            ]);
        }
        println!("{table}");
        println!();
        match event {
            Some(event) => println!(
                "event (passwords and secrets redacted):\n{}",
                serde_json::to_string_pretty(&event)?
            ),
            None => println!(
                "event: not JSON ({} bytes); not shown, as it could hold a secret in clear",
                first.delivery().body.len()
            ),
        }
        Ok(())
    })();
    finish(broker, view, result).await
}

/// Which letters a replay or purge means: ids, filters or --all, one of them required.
fn chosen<'a>(
    letters: &[&'a DeadLetter],
    ids: &[String],
    filters: &Filters,
    all: bool,
    verb: &str,
) -> Result<Vec<&'a DeadLetter>> {
    if ids.is_empty() && filters.is_empty() && !all {
        bail!(
            "say which dead letters to {verb}: ids, filters (--type, --user, --class, --since) or --all"
        );
    }
    if !ids.is_empty() && all {
        bail!("give ids or --all, not both");
    }
    if letters.is_empty() {
        bail!("the dead queue is empty; there is nothing to {verb}");
    }
    let selected = select(letters, ids, filters)?;
    if selected.is_empty() {
        bail!("no dead letter matches both the ids and the filters (nothing was changed)");
    }
    Ok(selected.into_iter().map(|index| letters[index]).collect())
}

/// One step of a replay plan.
#[derive(Debug, serde::Serialize)]
struct PlannedReplay {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    subject: Option<String>,
    sequence: Option<u64>,
    routing_key: String,
    attempt: i64,
    error_class: String,
    copies: usize,
    notes: Vec<String>,
}

/// The routing key a replay goes to: the subject's partition, computed as the producer does
/// (so a replay lands where the subject's newer events are), else the key it came with.
fn routing_key(letter: &DeadLetter, topology: &Topology) -> Result<String> {
    if let Some(subject) = letter
        .subject
        .as_deref()
        .and_then(|text| moss_schemas::Subject::parse(text).ok())
    {
        return Ok(topology.partition_routing_key(subject.partition(topology.partitions())));
    }
    let known = letter.partition.as_deref().and_then(|key| {
        key.strip_prefix('p')
            .and_then(|digits| digits.parse::<u16>().ok())
            .filter(|partition| *partition < topology.partitions())
    });
    match known {
        Some(partition) => Ok(topology.partition_routing_key(partition)),
        None => bail!(
            "dead letter {} names no subject and came from partition {}, which this topology ({} partitions) does not have; nothing was replayed",
            letter.id,
            letter.partition.as_deref().unwrap_or("(unknown)"),
            topology.partitions()
        ),
    }
}

/// What the operator should expect of each replayed event, from what the dead queue shows.
/// The worker's ledger is not readable from here: it alone decides "stale" in the end.
fn plan(
    letters: &[&DeadLetter],
    chosen: &[&DeadLetter],
    topology: &Topology,
) -> Result<Vec<PlannedReplay>> {
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for letter in chosen {
        *copies.entry(letter.id.as_str()).or_insert(0) += 1;
    }
    let mut seen = HashSet::new();
    let unique: Vec<&DeadLetter> = chosen
        .iter()
        .copied()
        .filter(|letter| seen.insert(letter.id.as_str()))
        .collect();
    let order = replay_order(&unique);
    let chosen_ids: HashSet<&str> = unique.iter().map(|letter| letter.id.as_str()).collect();
    let mut planned = Vec::with_capacity(order.len());
    let mut subjects_started: HashSet<&str> = HashSet::new();
    for index in order {
        let letter = unique[index];
        let mut notes = Vec::new();
        if let Some(subject) = letter.subject.as_deref() {
            let staying = letters.iter().filter(|other| {
                other.subject.as_deref() == Some(subject) && !chosen_ids.contains(other.id.as_str())
            });
            for other in staying {
                match (other.sequence, letter.sequence) {
                    (Some(theirs), Some(ours)) if theirs < ours => notes.push(format!(
                        "an older event of this subject ({}, sequence {theirs}) stays in the dead queue: once this one applies, that one is stale",
                        other.id
                    )),
                    (Some(theirs), Some(ours)) if theirs > ours => notes.push(format!(
                        "a newer event of this subject ({}, sequence {theirs}) stays in the dead queue: replay it after this one",
                        other.id
                    )),
                    _ => {}
                }
            }
            if letter.error.class == "quarantined" && !subjects_started.contains(subject) {
                notes.push(
                    "it waited behind an earlier dead letter of its subject that is not in this replay: the worker will dead-letter it again until that one is replayed first"
                        .to_owned(),
                );
            }
            subjects_started.insert(subject);
        }
        planned.push(PlannedReplay {
            id: letter.id.clone(),
            event_type: letter.event_type.clone(),
            subject: letter.subject.clone(),
            sequence: letter.sequence,
            routing_key: routing_key(letter, topology)?,
            attempt: letter.attempt + 1,
            error_class: letter.error.class.clone(),
            copies: copies.get(letter.id.as_str()).copied().unwrap_or(1),
            notes,
        });
    }
    Ok(planned)
}

async fn replay(args: ReplayArgs, file: &FileConfig) -> Result<()> {
    let filters = args.filters.filters()?;
    let (common, broker, view) = open(&args.queue, file).await?;
    let result = replay_with(&args, &filters, &common, &broker, &view).await;
    finish(broker, view, result).await
}

async fn replay_with(
    args: &ReplayArgs,
    filters: &Filters,
    common: &Common,
    broker: &moss_broker::Broker,
    view: &DeadQueueView,
) -> Result<()> {
    let letters = letters_in_order(view);
    let chosen = chosen(&letters, &args.ids, filters, args.all, "replay")?;
    let planned = plan(&letters, &chosen, &common.topology)?;
    let partial = partial_read_note(view);
    if args.dry_run {
        if args.json {
            let document = json!({
                "schema": "moss.dlq.replay.v1",
                "dry_run": true,
                "planned": planned,
                "replayed": 0,
                "note": partial,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
            return Ok(());
        }
        println!(
            "would replay {} dead letters to {}, in this order:",
            planned.len(),
            common.topology.events_exchange()
        );
        for (step, item) in planned.iter().enumerate() {
            println!(
                "{:>5}. {}  {}  {}  -> {}  (try {}, was {})",
                step + 1,
                item.id,
                item.event_type,
                item.subject.as_deref().unwrap_or("-"),
                item.routing_key,
                item.attempt,
                item.error_class
            );
            for note in &item.notes {
                println!("         note: {note}");
            }
        }
        println!(
            "the worker skips an event it applied before (same id) and answers `stale` for one older than what it applied; see the outcomes on {}",
            common.topology.outcomes_exchange()
        );
        if let Some(note) = partial {
            println!("note: {note}");
        }
        println!("nothing was changed (dry run)");
        return Ok(());
    }

    // The held deliveries of each planned id: the first is republished, every copy acked.
    let mut held_by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, held) in view.held.iter().enumerate() {
        held_by_id
            .entry(held.letter.id.as_str())
            .or_default()
            .push(index);
    }
    let publisher = broker
        .publisher()
        .await
        .context("could not open a channel to publish the replay; nothing was replayed")?;
    let now = Utc::now();
    let mut progress = Progress::start("replayed", planned.len() as u64);
    let mut replayed = 0_usize;
    let mut failure: Option<String> = None;
    for batch in planned.chunks(REPLAY_BATCH) {
        let messages: Vec<OutgoingMessage> = batch
            .iter()
            .map(|item| {
                let held = &view.held[held_by_id[item.id.as_str()][0]];
                let delivery = held.delivery();
                OutgoingMessage {
                    exchange: common.topology.events_exchange(),
                    routing_key: item.routing_key.clone(),
                    message_id: item.id.clone(),
                    body: delivery.body.clone(),
                    content_type: delivery
                        .content_type
                        .clone()
                        .unwrap_or_else(|| moss_schemas::Envelope::CONTENT_TYPE.to_owned()),
                    headers: replay_headers(delivery, &held.letter, now),
                    persistence: Persistence::Persistent,
                }
            })
            .collect();
        let results = publisher.publish_batch(messages).await;
        for (item, result) in batch.iter().zip(results) {
            match result {
                // Even after an earlier one of the batch failed, a confirmed replay is in
                // RabbitMQ: its dead copy goes (keeping it would only make a duplicate).
                Ok(()) => {
                    for &index in &held_by_id[item.id.as_str()] {
                        view.ack(index).await?;
                    }
                    replayed += 1;
                    progress.advance(1);
                }
                Err(error) => {
                    if failure.is_none() {
                        failure = Some(format!(
                            "{} was not confirmed by RabbitMQ ({error})",
                            item.id
                        ));
                    }
                }
            }
        }
        if failure.is_some() {
            break;
        }
    }
    progress.finish();
    let _ = publisher.close().await;
    if let Some(failure) = failure {
        bail!(
            "replayed {replayed} of {} dead letters, then {failure}; the rest stay in the dead queue, run the replay again",
            planned.len()
        );
    }
    if args.json {
        let document = json!({
            "schema": "moss.dlq.replay.v1",
            "dry_run": false,
            "planned": planned,
            "replayed": replayed,
            "note": partial,
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        println!(
            "replayed {replayed} dead letters to {} in order, with their event ids; the worker reports each outcome on {}",
            common.topology.events_exchange(),
            common.topology.outcomes_exchange()
        );
        for item in planned.iter().filter(|item| !item.notes.is_empty()) {
            for note in &item.notes {
                println!("note: {}: {note}", item.id);
            }
        }
        if let Some(note) = partial {
            println!("note: {note}");
        }
    }
    Ok(())
}

async fn purge(args: PurgeArgs, file: &FileConfig) -> Result<()> {
    let filters = args.filters.filters()?;
    let (common, broker, view) = open(&args.queue, file).await?;
    let result = purge_with(&args, &filters, &view).await;
    // The worker would keep a purged letter's subject quarantined for ever: release it.
    let result = match result {
        Ok(purged) => release_quarantines(&broker, &common.topology, &purged)
            .await
            .map(|released| {
                if released > 0 {
                    println!(
                        "released the quarantine of {released} subjects behind purged letters"
                    );
                }
            }),
        Err(error) => Err(error),
    };
    finish(broker, view, result).await
}

async fn purge_with<'a>(
    args: &PurgeArgs,
    filters: &Filters,
    view: &'a DeadQueueView,
) -> Result<Vec<&'a DeadLetter>> {
    let letters = letters_in_order(view);
    let chosen = chosen(&letters, &args.ids, filters, args.all, "purge")?;
    let ids: HashSet<&str> = chosen.iter().map(|letter| letter.id.as_str()).collect();
    // The first dead letter of a subject is what the worker's quarantine waits for: purging it
    // releases the quarantine, but the subject's later events already dead-lettered stay.
    let blockers = chosen
        .iter()
        .filter(|letter| letter.error.class != "quarantined" && letter.subject.is_some())
        .filter(|letter| {
            letters.iter().any(|other| {
                other.subject == letter.subject
                    && other.error.class == "quarantined"
                    && !ids.contains(other.id.as_str())
            })
        })
        .count();
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "moss dlq purge asks before deleting; pass --yes to purge {} dead letters without asking",
                ids.len()
            );
        }
        if blockers > 0 {
            eprintln!(
                "warning: {blockers} of them hold later events of their subject in quarantine; purging releases the quarantine, but those later events stay dead-lettered until you replay them"
            );
        }
        eprint!("delete {} dead letters for good? [y/N] ", ids.len());
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("could not read the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
            bail!("nothing was purged");
        }
    }
    let total = view
        .held
        .iter()
        .filter(|held| ids.contains(held.letter.id.as_str()))
        .count();
    let mut progress = Progress::start("purged", total as u64);
    let mut purged = 0_usize;
    for (index, held) in view.held.iter().enumerate() {
        if ids.contains(held.letter.id.as_str()) {
            view.ack(index).await?;
            purged += 1;
            progress.advance(1);
        }
    }
    progress.finish();
    println!(
        "purged {} dead letters ({purged} messages, counting copies)",
        ids.len()
    );
    Ok(chosen)
}
