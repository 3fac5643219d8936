//! `moss`: the one binary. It parses the command line, loads settings, starts tracing and hands
//! over to a library's `run`. Every operator mistake ends as one plain sentence on stderr and a
//! non-zero exit, never a panic or a stack trace.

/// jemalloc instead of glibc's malloc: the worker, the producer and the emulator allocate and
/// free small buffers (request and response bodies, JSON, AMQP frames) for every event, and
/// glibc's allocator took a seventh of a busy worker's CPU (see docs/PERFORMANCE.md).
/// Its options are compiled in (`.cargo/config.toml`: freed pages go back to the system within
/// a second instead of ten, which keeps a worker's peak memory where it was with glibc).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod commands;
mod config;
mod dashboard;
mod figures;
mod held_deletes;
mod logging;
mod operate;
mod shutdown;
mod worker_metrics;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// moss keeps Microsoft Online Services accounts (Entra ID users, licences, Exchange Online aliases
/// and distribution groups) in step with an on-premises directory.
#[derive(Debug, Parser)]
#[command(name = "moss", version, about, propagate_version = true)]
struct Cli {
    /// A TOML file with settings; flags and MOSS_* environment variables take precedence over it.
    #[arg(long, global = true, env = "MOSS_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, env = "MOSS_LOG_FORMAT", value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything on one machine: topology, producer, a worker, and the emulator unless a tenant is configured.
    Up(commands::up::UpArgs),
    /// A worker alone: joins the partition queues and applies events to the tenant.
    Worker(commands::worker::WorkerArgs),
    /// The producer alone: HTTP ingest and the outbox relay to RabbitMQ.
    Producer(commands::producer::ProducerArgs),
    /// The Microsoft Online Services emulator alone (Graph, token endpoint, Exchange admin).
    Emulator(commands::emulator::EmulatorArgs),
    /// Hand one event to the producer; exits 0 only once it is stored durably.
    Publish(commands::publish::PublishArgs),
    /// Keys for sealing passwords between producer and workers.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// What an operator watches: partitions, dead letters, backlog, rates, circuit, last errors.
    Status(commands::status::StatusArgs),
    /// The dead letters: list, show, replay (in order, keeping event ids), purge.
    #[command(subcommand)]
    Dlq(commands::dlq::DlqCommand),
    /// Removals and deactivations held by the mass-delete guard: pending, approve, reject.
    #[command(subcommand)]
    Deletes(commands::deletes::DeletesCommand),
    /// Email addresses of a user's mailbox: add, remove (checked against the tenant first).
    #[command(subcommand)]
    Aliases(commands::aliases::AliasesCommand),
    /// Distribution groups: add, members, user (one user's memberships), remove.
    #[command(subcommand)]
    Groups(commands::groups::GroupsCommand),
    /// Online accounts: bulk-create, import into the directory, assign, unassign.
    #[command(subcommand)]
    Accounts(commands::accounts::AccountsCommand),
    /// The tenant's licences: SKUs with units bought, used and free.
    Licenses(commands::licenses::LicensesArgs),
    /// Follow the directory and publish what changes (users, aliases, disabling, groups).
    #[command(subcommand)]
    Watch(commands::watch::WatchCommand),
    /// Measure moss on this machine against a plain RabbitMQ loop in the same run.
    Bench(commands::bench::BenchArgs),
    /// The operator dashboard alone (moss up serves it too): overview, users, dead letters, held deletes.
    Dashboard(commands::dashboard::DashboardArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moss: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let file = config::FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Keys(command) => commands::keys::run(command),
        Command::Up(args) => {
            logging::init(cli.log_format);
            runtime()?.block_on(commands::up::run(args, &file))
        }
        Command::Worker(args) => {
            logging::init(cli.log_format);
            runtime()?.block_on(commands::worker::run(args, &file))
        }
        Command::Producer(args) => {
            logging::init(cli.log_format);
            runtime()?.block_on(commands::producer::run(args, &file))
        }
        Command::Emulator(args) => {
            logging::init(cli.log_format);
            runtime()?.block_on(commands::emulator::run(args, &file))
        }
        Command::Publish(args) => runtime()?.block_on(commands::publish::run(args, &file)),
        Command::Status(args) => runtime()?.block_on(commands::status::run(args, &file)),
        Command::Dlq(command) => runtime()?.block_on(commands::dlq::run(command, &file)),
        Command::Deletes(command) => runtime()?.block_on(commands::deletes::run(command, &file)),
        Command::Aliases(command) => runtime()?.block_on(commands::aliases::run(command, &file)),
        Command::Groups(command) => runtime()?.block_on(commands::groups::run(command, &file)),
        Command::Accounts(command) => runtime()?.block_on(commands::accounts::run(command, &file)),
        Command::Licenses(args) => runtime()?.block_on(commands::licenses::run(args, &file)),
        Command::Watch(command) => {
            logging::init(cli.log_format);
            runtime()?.block_on(commands::watch::run(command, &file))
        }
        Command::Bench(args) => runtime()?.block_on(commands::bench::run(args, &file)),
        Command::Dashboard(args) => {
            logging::init(cli.log_format);
            runtime()?.block_on(commands::dashboard::run(args, &file))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}
