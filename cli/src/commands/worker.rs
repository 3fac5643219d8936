//! `moss worker`: a worker alone. It joins every partition queue; with several workers, RabbitMQ's
//! single active consumer keeps one active per partition and the others on standby.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use secrecy::SecretString;

use crate::config::{self, CommonArgs, FileConfig, layered};

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArgs,
    /// Where the worker serves /metrics.
    #[arg(long, env = "MOSS_METRICS_ADDR", value_name = "ADDR")]
    pub(crate) metrics_addr: Option<String>,
    /// Names this worker's connection and consumers in RabbitMQ.
    #[arg(
        long,
        env = "MOSS_WORKER_NAME",
        default_value = "moss-worker",
        value_name = "NAME"
    )]
    pub(crate) worker_name: String,
    #[command(flatten)]
    pub(crate) delete_guard: DeleteGuardArgs,
}

/// The mass-delete guard: more deletes than this in the window are held for `moss deletes`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DeleteGuardArgs {
    /// User removals applied per window before the rest are held (Entra Connect's default: 500).
    #[arg(long, env = "MOSS_DELETE_THRESHOLD", default_value_t = 500, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) delete_threshold: u32,
    /// Deactivations (and unassignments) applied per window before the rest are held.
    #[arg(long, env = "MOSS_DEACTIVATE_THRESHOLD", default_value_t = 500, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) deactivate_threshold: u32,
    /// The sliding window, in seconds.
    #[arg(long, env = "MOSS_DELETE_WINDOW_SECS", default_value_t = 1800, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) delete_window_secs: u64,
    /// Also hold once this percentage of the mapped users would be passed (the lower limit wins).
    #[arg(long, env = "MOSS_DELETE_THRESHOLD_PERCENT", value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub(crate) delete_threshold_percent: Option<u8>,
}

impl DeleteGuardArgs {
    /// The worker's settings from these flags.
    pub(crate) fn settings(&self) -> moss_workers::DeleteGuardSettings {
        moss_workers::DeleteGuardSettings {
            removals: self.delete_threshold,
            deactivations: self.deactivate_threshold,
            window: std::time::Duration::from_secs(self.delete_window_secs),
            percent_of_mapped: self.delete_threshold_percent,
        }
    }
}

/// Where a worker serves /metrics unless told otherwise (INTERFACES.md).
pub(crate) const DEFAULT_WORKER_METRICS_ADDR: &str = "127.0.0.1:9481";

/// Which tenant to apply events to, and the key that opens sealed passwords.
#[derive(Debug, Clone, Args)]
pub(crate) struct TenantArgs {
    /// The Entra tenant id.
    #[arg(long, env = "MOSS_TENANT_ID", value_name = "GUID")]
    pub(crate) tenant_id: Option<String>,
    /// The app registration's client id.
    #[arg(long, env = "MOSS_CLIENT_ID", value_name = "GUID")]
    pub(crate) client_id: Option<String>,
    /// A file holding the app's client secret (preferred over MOSS_CLIENT_SECRET).
    #[arg(long, env = "MOSS_CLIENT_SECRET_FILE", value_name = "FILE")]
    pub(crate) client_secret_file: Option<PathBuf>,
    /// Microsoft Graph's base URL.
    #[arg(long, env = "MOSS_GRAPH_URL", value_name = "URL")]
    pub(crate) graph_url: Option<String>,
    /// The identity platform's base URL (token endpoint).
    #[arg(long, env = "MOSS_LOGIN_URL", value_name = "URL")]
    pub(crate) login_url: Option<String>,
    /// Exchange Online's base URL (admin API).
    #[arg(long, env = "MOSS_EXCHANGE_URL", value_name = "URL")]
    pub(crate) exchange_url: Option<String>,
    /// The private key (written by `moss keys generate`) that opens sealed passwords.
    #[arg(long, env = "MOSS_SEAL_PRIVATE_KEY_FILE", value_name = "FILE")]
    pub(crate) seal_private_key_file: Option<PathBuf>,
}

impl TenantArgs {
    /// True when a real tenant is configured (otherwise `moss up` serves the emulator).
    pub(crate) fn configured(&self, file: &FileConfig) -> bool {
        self.tenant_id.is_some() || file.tenant_id.is_some()
    }

    /// The tenant's connection settings, every part required.
    pub(crate) fn online_config(&self, file: &FileConfig) -> Result<moss_online::OnlineConfig> {
        let tenant_id = self
            .tenant_id
            .clone()
            .or_else(|| file.tenant_id.clone())
            .context("no tenant is configured; set MOSS_TENANT_ID (or run `moss up`, which uses the emulator)")?;
        let client_id = self
            .client_id
            .clone()
            .or_else(|| file.client_id.clone())
            .context("MOSS_TENANT_ID is set but MOSS_CLIENT_ID is not; set the app registration's client id")?;
        let secret = match self
            .client_secret_file
            .clone()
            .or_else(|| file.client_secret_file.clone())
        {
            Some(path) => config::read_secret_file(&path, "MOSS_CLIENT_SECRET_FILE")?,
            None => std::env::var("MOSS_CLIENT_SECRET")
                .ok()
                .filter(|secret| !secret.is_empty())
                .map(SecretString::from)
                .context(
                    "no client secret is set; set MOSS_CLIENT_SECRET_FILE (or MOSS_CLIENT_SECRET)",
                )?,
        };
        let mut online = moss_online::OnlineConfig::new(tenant_id, client_id, secret);
        online.graph_url = layered(self.graph_url.clone(), file.graph_url.clone(), || {
            online.graph_url.clone()
        });
        online.login_url = layered(self.login_url.clone(), file.login_url.clone(), || {
            online.login_url.clone()
        });
        online.exchange_url = layered(self.exchange_url.clone(), file.exchange_url.clone(), || {
            online.exchange_url.clone()
        });
        Ok(online)
    }

    /// The key that opens sealed passwords, from its file.
    pub(crate) fn opening_key(
        &self,
        file: &FileConfig,
    ) -> Result<Option<moss_schemas::OpeningKey>> {
        let Some(path) = self
            .seal_private_key_file
            .clone()
            .or_else(|| file.seal_private_key_file.clone())
        else {
            return Ok(None);
        };
        let text = config::read_secret_file(&path, "MOSS_SEAL_PRIVATE_KEY_FILE")?;
        moss_schemas::OpeningKey::parse(&text)
            .map(Some)
            .with_context(|| {
                format!(
                    "{} holds no age private key (AGE-SECRET-KEY-1…)",
                    path.display()
                )
            })
    }
}

pub(crate) async fn run(args: WorkerArgs, file: &FileConfig) -> Result<()> {
    let common = args.common.resolve(file)?;
    let online = args.tenant.online_config(file)?;
    let opening_key = args.tenant.opening_key(file)?.context(
        "no private key is set; set MOSS_SEAL_PRIVATE_KEY_FILE to the moss-seal.key written by `moss keys generate`",
    )?;
    let metrics_addr = layered(args.metrics_addr, file.metrics_addr.clone(), || {
        DEFAULT_WORKER_METRICS_ADDR.to_owned()
    });
    let metrics_addr = config::socket_addr(&metrics_addr, "MOSS_METRICS_ADDR")?;
    config::private_dir(&common.data_dir)?;
    let mut settings = moss_workers::WorkerSettings::new(
        common.amqp_url,
        common.topology,
        common.data_dir.join("worker"),
        online.clone(),
        opening_key,
    );
    settings.worker_name = args.worker_name;
    settings.delete_guard = args.delete_guard.settings();
    let shutdown = crate::shutdown::on_signal();
    let running = moss_workers::start(settings, shutdown.clone())
        .await
        .context("the worker could not start")?;
    println!("worker consuming every partition (standby where another worker is active)");
    println!("metrics  http://{metrics_addr}/metrics");
    crate::worker_metrics::serve_while_running(running, metrics_addr, online, shutdown).await
}
