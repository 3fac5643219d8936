//! `moss producer`: the HTTP ingest and the outbox relay, alone.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::{self, CommonArgs, FileConfig, layered};

#[derive(Debug, Args)]
pub(crate) struct ProducerArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) ingest: IngestArgs,
}

/// The ingest's own settings, shared with `moss up`.
#[derive(Debug, Clone, Args)]
pub(crate) struct IngestArgs {
    /// Where the HTTP ingest listens.
    #[arg(long, env = "MOSS_INGEST_ADDR", value_name = "ADDR")]
    pub(crate) ingest_addr: Option<String>,
    /// File holding the bearer token the ingest requires (required off loopback).
    #[arg(long, env = "MOSS_INGEST_TOKEN_FILE", value_name = "FILE")]
    pub(crate) ingest_token_file: Option<PathBuf>,
    /// Where /metrics is served besides the ingest address.
    #[arg(long, env = "MOSS_METRICS_ADDR", value_name = "ADDR")]
    pub(crate) metrics_addr: Option<String>,
    /// The workers' public key (age1…), to seal passwords with.
    #[arg(long, env = "MOSS_SEAL_PUBLIC_KEY", value_name = "KEY")]
    pub(crate) seal_public_key: Option<String>,
    /// A file holding the workers' public key (as written by `moss keys generate`).
    #[arg(long, env = "MOSS_SEAL_PUBLIC_KEY_FILE", value_name = "FILE")]
    pub(crate) seal_public_key_file: Option<PathBuf>,
}

/// Where the ingest listens unless told otherwise (INTERFACES.md).
pub(crate) const DEFAULT_INGEST_ADDR: &str = "127.0.0.1:8480";

impl IngestArgs {
    /// Builds the producer's settings; `default_sealing_key` is what `moss up` offers when none is set.
    pub(crate) fn settings(
        &self,
        common: &config::Common,
        file: &FileConfig,
        default_sealing_key: Option<moss_schemas::SealingKey>,
    ) -> Result<moss_producer::ProducerSettings> {
        let sealing_key = match config::sealing_key(self.seal_public_key.clone(), self.seal_public_key_file.clone(), file)? {
            Some(key) => key,
            None => default_sealing_key.context(
                "no sealing key is set; set MOSS_SEAL_PUBLIC_KEY (or MOSS_SEAL_PUBLIC_KEY_FILE) to the workers' public key from `moss keys generate`",
            )?,
        };
        let ingest_addr = layered(self.ingest_addr.clone(), file.ingest_addr.clone(), || {
            DEFAULT_INGEST_ADDR.to_owned()
        });
        let ingest_addr = config::socket_addr(&ingest_addr, "MOSS_INGEST_ADDR")?;
        let metrics_addr = match self
            .metrics_addr
            .clone()
            .or_else(|| file.metrics_addr.clone())
        {
            Some(addr) => Some(config::socket_addr(&addr, "MOSS_METRICS_ADDR")?),
            None => None,
        };
        let token = match self
            .ingest_token_file
            .clone()
            .or_else(|| file.ingest_token_file.clone())
        {
            Some(path) => Some(config::read_secret_file(&path, "MOSS_INGEST_TOKEN_FILE")?),
            None => std::env::var("MOSS_INGEST_TOKEN")
                .ok()
                .filter(|token| !token.is_empty())
                .map(secrecy::SecretString::from),
        };
        config::private_dir(&common.data_dir)?;
        let mut settings = moss_producer::ProducerSettings::new(
            common.data_dir.join("producer"),
            common.amqp_url.clone(),
            common.topology.clone(),
            sealing_key,
        );
        settings.ingest_addr = ingest_addr;
        settings.metrics_addr = metrics_addr;
        settings.ingest_token = token;
        Ok(settings)
    }
}

pub(crate) async fn run(args: ProducerArgs, file: &FileConfig) -> Result<()> {
    let common = args.common.resolve(file)?;
    let mut settings = args.ingest.settings(&common, file, None)?;
    if settings.metrics_addr.is_none() {
        settings.metrics_addr = Some(config::socket_addr("127.0.0.1:9480", "MOSS_METRICS_ADDR")?);
    }
    let shutdown = crate::shutdown::on_signal();
    let running = moss_producer::start(settings, shutdown)
        .await
        .context("the producer could not start")?;
    println!("ingest   http://{}/v1/events", running.ingest_addr());
    if let Some(addr) = running.metrics_addr() {
        println!("metrics  http://{addr}/metrics");
    }
    running.wait().await;
    Ok(())
}
