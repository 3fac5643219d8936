//! `moss deletes`: removals and deactivations the worker's mass-delete guard held (dead letters
//! of class `held`). `pending` lists them; `approve` replays them, with the events of their users
//! that waited behind them (only the held ones marked `moss-delete-approved: true`, which the
//! worker applies even over the threshold); `reject` drops them and releases their users' quarantine.
//!
//! Like `moss dlq`, it goes through RabbitMQ only (the running worker holds its sled database).

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use moss_broker::{Broker, Topology};
use serde_json::json;

use crate::config::{CommonArgs, FileConfig};
use crate::figures::HELD;
use crate::held_deletes::{RepublishError, republish, with_waiting};
use crate::operate::connection;
use crate::operate::dead_letters::{
    DeadLetter, DeadQueueView, release_quarantines, sort_by_dead_at,
};

/// The most letters read at once (all held unacknowledged while the command runs).
const DEFAULT_LIMIT: usize = 10_000;

#[derive(Debug, Subcommand)]
pub(crate) enum DeletesCommand {
    /// The held removals and deactivations, oldest first.
    Pending(PendingArgs),
    /// Apply held deletes even over the threshold, in order, with their users' later events.
    Approve(ApproveArgs),
    /// Drop held deletes for good and release their users' quarantine (asks first, unless --yes).
    Reject(RejectArgs),
}

/// Where the dead queue is.
#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Read at most this many dead letters.
    #[arg(long, default_value_t = DEFAULT_LIMIT, value_name = "N")]
    limit: usize,
}

#[derive(Debug, Args)]
pub(crate) struct PendingArgs {
    #[command(flatten)]
    queue: QueueArgs,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// Event ids of held deletes (from `moss deletes pending`).
    #[arg(value_name = "ID")]
    ids: Vec<String>,
    /// Every held delete.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    queue: QueueArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RejectArgs {
    /// Event ids of held deletes (from `moss deletes pending`).
    #[arg(value_name = "ID")]
    ids: Vec<String>,
    /// Every held delete.
    #[arg(long)]
    all: bool,
    /// Do not ask.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    queue: QueueArgs,
}

pub(crate) async fn run(command: DeletesCommand, file: &FileConfig) -> Result<()> {
    match command {
        DeletesCommand::Pending(args) => {
            let (_topology, broker, view) = open(&args.queue, file).await?;
            let result = pending(&view, args.json);
            finish(broker, view, result).await
        }
        DeletesCommand::Approve(args) => {
            which(&args.ids, args.all)?;
            let (topology, broker, view) = open(&args.queue, file).await?;
            let result = approve(&args, &topology, &broker, &view).await;
            finish(broker, view, result).await
        }
        DeletesCommand::Reject(args) => {
            which(&args.ids, args.all)?;
            let (topology, broker, view) = open(&args.queue, file).await?;
            let result = reject(&args, &topology, &broker, &view).await;
            finish(broker, view, result).await
        }
    }
}

async fn open(queue: &QueueArgs, file: &FileConfig) -> Result<(Topology, Broker, DeadQueueView)> {
    if queue.limit == 0 {
        bail!("--limit must be at least 1");
    }
    let common = queue.common.resolve(file)?;
    let broker = connection::connect(&common.amqp_url, &common.topology, "moss-deletes").await?;
    match DeadQueueView::open(&broker, &common.topology, queue.limit).await {
        Ok(view) => Ok((common.topology, broker, view)),
        Err(error) => {
            let _ = broker.close().await;
            Err(error)
        }
    }
}

/// Hands unacknowledged letters back and closes the connection.
async fn finish(broker: Broker, view: DeadQueueView, result: Result<()>) -> Result<()> {
    let closed = view.close().await;
    let _ = broker.close().await;
    result?;
    closed
}

fn in_order(view: &DeadQueueView) -> Vec<&DeadLetter> {
    let mut letters: Vec<&DeadLetter> = view.held.iter().map(|held| &held.letter).collect();
    sort_by_dead_at(&mut letters);
    letters
}

fn pending(view: &DeadQueueView, json: bool) -> Result<()> {
    let letters = in_order(view);
    let held: Vec<&DeadLetter> = letters
        .iter()
        .copied()
        .filter(|letter| letter.error.class == HELD)
        .collect();
    if json {
        let document = json!({
            "schema": "moss.deletes.pending.v1",
            "held": held.len(),
            "letters": held,
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    if held.is_empty() {
        println!("no deletes are held");
        return Ok(());
    }
    for letter in &held {
        println!(
            "{}  {}  {}  {}  {}",
            letter.id,
            letter.dead_at.as_deref().unwrap_or("?"),
            letter.event_type,
            letter
                .upn
                .as_deref()
                .or(letter.subject.as_deref())
                .unwrap_or("-"),
            letter.error.message.as_deref().unwrap_or("")
        );
    }
    println!(
        "{} deletes held; `moss deletes approve ID…|--all` applies them, `moss deletes reject ID…|--all` drops them",
        held.len()
    );
    Ok(())
}

/// Ids or --all, one of them: checked before anything is read.
fn which(ids: &[String], all: bool) -> Result<()> {
    if ids.is_empty() && !all {
        bail!("say which held deletes: their ids (from `moss deletes pending`) or --all");
    }
    if !ids.is_empty() && all {
        bail!("give ids or --all, not both");
    }
    Ok(())
}

/// The held letters the operator named.
fn chosen<'a>(
    letters: &[&'a DeadLetter],
    ids: &[String],
    all: bool,
) -> Result<Vec<&'a DeadLetter>> {
    which(ids, all)?;
    let held: Vec<&DeadLetter> = letters
        .iter()
        .copied()
        .filter(|letter| letter.error.class == HELD)
        .collect();
    if held.is_empty() {
        bail!("no deletes are held; nothing was changed");
    }
    if all {
        return Ok(held);
    }
    for id in ids {
        if !held.iter().any(|letter| &letter.id == id) {
            bail!("{id} is not a held delete (see `moss deletes pending`); nothing was changed");
        }
    }
    let mut seen = HashSet::new();
    Ok(held
        .into_iter()
        .filter(|letter| ids.contains(&letter.id) && seen.insert(letter.id.as_str()))
        .collect())
}

/// The subject's partition, as the producer routes it.
fn routing_key(letter: &DeadLetter, topology: &Topology) -> Result<String> {
    let subject = letter
        .subject
        .as_deref()
        .and_then(|text| moss_schemas::Subject::parse(text).ok())
        .with_context(|| {
            format!(
                "held delete {} names no subject; nothing was replayed",
                letter.id
            )
        })?;
    Ok(topology.partition_routing_key(subject.partition(topology.partitions())))
}

async fn approve(
    args: &ApproveArgs,
    topology: &Topology,
    broker: &Broker,
    view: &DeadQueueView,
) -> Result<()> {
    let letters = in_order(view);
    let chosen = chosen(&letters, &args.ids, args.all)?;
    let chosen_ids: HashSet<&str> = chosen.iter().map(|letter| letter.id.as_str()).collect();
    // The events of those users that waited behind the held delete go with it, after it:
    // otherwise they would stay dead-lettered as quarantined. Only the held deletes are
    // approved: a delete among the events that waited behind them still meets the threshold.
    let order = with_waiting(&letters, &chosen);
    let approved = |letter: &DeadLetter| chosen_ids.contains(letter.id.as_str());
    let done = match republish(broker, topology, view, &order, approved, routing_key).await {
        Ok(done) => done,
        Err(RepublishError::Channel(error)) => {
            return Err(error.context(
                "could not open a channel to publish the approvals; nothing was approved",
            ));
        }
        Err(RepublishError::Unconfirmed { done, id, error }) => bail!(
            "approved {done} of {}, then RabbitMQ did not confirm {id} ({error}); the rest stay held, run the approval again",
            order.len()
        ),
        Err(RepublishError::Other(error)) => return Err(error),
    };
    println!(
        "approved {} held deletes ({} events replayed in order, with the users' events that waited behind them); the worker applies them even over the threshold and reports each outcome on {}",
        chosen.len(),
        done,
        topology.outcomes_exchange()
    );
    Ok(())
}

async fn reject(
    args: &RejectArgs,
    topology: &Topology,
    broker: &Broker,
    view: &DeadQueueView,
) -> Result<()> {
    let letters = in_order(view);
    let chosen = chosen(&letters, &args.ids, args.all)?;
    let ids: HashSet<&str> = chosen.iter().map(|letter| letter.id.as_str()).collect();
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "moss deletes reject asks before dropping; pass --yes to reject {} held deletes without asking",
                ids.len()
            );
        }
        eprint!(
            "drop {} held deletes for good (the accounts stay as they are)? [y/N] ",
            ids.len()
        );
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("could not read the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
            bail!("nothing was rejected");
        }
    }
    for (index, held) in view.held.iter().enumerate() {
        if ids.contains(held.letter.id.as_str()) {
            view.ack(index).await?;
        }
    }
    let released = release_quarantines(broker, topology, &chosen).await?;
    println!(
        "rejected {} held deletes; released the quarantine of {released} users",
        ids.len()
    );
    let subjects: HashSet<&str> = chosen
        .iter()
        .filter_map(|letter| letter.subject.as_deref())
        .collect();
    let waiting = letters
        .iter()
        .filter(|letter| {
            letter.error.class == "quarantined"
                && letter
                    .subject
                    .as_deref()
                    .is_some_and(|subject| subjects.contains(subject))
        })
        .count();
    if waiting > 0 {
        println!(
            "note: {waiting} later events of those users waited behind them and stay in the dead queue; replay them with `moss dlq replay --class quarantined --user SUBJECT`"
        );
    }
    Ok(())
}
