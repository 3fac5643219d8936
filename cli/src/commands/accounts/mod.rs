//! `moss accounts`: online accounts as an administrator manages them. `bulk-create` proposes
//! an online account for every directory user that has none; `import` turns online accounts no
//! directory user is linked to into directory entries (LDIF and a temporary-password file);
//! `assign` and `unassign` give one user a new or existing account, or take it away.
//!
//! Each shows what it will do first, reading the tenant (domains, SKUs and seats, existing
//! accounts) through moss-online, and then publishes ordinary events through the producer's
//! ingest (`MOSS_INGEST_ADDR`), so that everything still passes the queue, the ledger and the
//! dead letters. A mistake (an unknown SKU, a domain the tenant has not accepted, a malformed
//! row) stops the command before anything is published.

mod assign;
mod bulk_create;
mod directory;
mod directory_users;
mod import;
pub(crate) mod ingest;
mod ldif;
mod tenant_view;

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::commands::worker::TenantArgs;
use crate::config::FileConfig;

#[derive(Debug, Subcommand)]
pub(crate) enum AccountsCommand {
    /// Propose an online account (user name @ domain) for every directory user without one,
    /// show the plan (creates, seats needed against free, conflicts), and publish it.
    BulkCreate(bulk_create::BulkCreateArgs),
    /// Online accounts no directory user is linked to become directory users: a preview, then
    /// an LDIF file and a temporary-password file (or the directory itself, when configured).
    Import(import::ImportArgs),
    /// Give one directory user a new or an existing online account, with licences.
    Assign(assign::AssignArgs),
    /// Take a user's online account away: licences freed, sign-in blocked, the link kept.
    Unassign(assign::UnassignArgs),
}

pub(crate) async fn run(command: AccountsCommand, file: &FileConfig) -> Result<()> {
    match command {
        AccountsCommand::BulkCreate(args) => bulk_create::run(args, file).await,
        AccountsCommand::Import(args) => import::run(args, file).await,
        AccountsCommand::Assign(args) => assign::run_assign(args, file).await,
        AccountsCommand::Unassign(args) => assign::run_unassign(args, file).await,
    }
}

/// The tenant to read (the same settings a worker uses).
#[derive(Debug, Args)]
pub(crate) struct TenantReadArgs {
    #[command(flatten)]
    tenant: TenantArgs,
}

impl TenantReadArgs {
    /// A client for the configured tenant.
    pub(crate) fn client(&self, file: &FileConfig) -> Result<moss_online::OnlineClient> {
        let config = self.tenant.online_config(file)?;
        moss_online::OnlineClient::new(config)
            .context("the tenant's settings are not usable (MOSS_GRAPH_URL, MOSS_LOGIN_URL)")
    }
}

/// Whether to go ahead: `--yes`, or a "y" typed at the terminal. Without a terminal and
/// without `--yes` it refuses rather than guess.
pub(crate) fn confirm(yes: bool, question: &str) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "standard input is not a terminal, so moss cannot ask; pass --yes to go ahead without asking (or --dry-run to see the plan only)"
        );
    }
    print!("{question} [y/N] ");
    std::io::stdout()
        .flush()
        .context("could not write the question")?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("could not read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
