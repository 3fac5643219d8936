//! The operator dashboard: a few server-rendered pages (overview, users, dead letters, held
//! deletes) with a little JavaScript that polls for live figures and posts the operator's
//! actions. `moss up` serves it, and so does `moss dashboard` next to a running installation.
//!
//! Like `moss status` and `moss dlq`, it works from RabbitMQ, the management API and the
//! services' `/metrics`, never from a worker's sled database. It binds its own queue to
//! `{prefix}.outcomes` to keep a recent history of what became of each event, and writes every
//! action taken on the page to that same exchange with the name of who took it.
//!
//! Access: loopback by default. On any other address `MOSS_DASHBOARD_TOKEN` is required, given as
//! a bearer token or as the password of HTTP basic auth (the browser asks for it). No secret is
//! ever put on a page: passwords in events are redacted, URLs are shown without credentials.

mod auth;
mod letters;
mod outcomes;
mod overview;
mod pages;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::{get, post};
use moss_broker::{Broker, Topology};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::config::{self, FileConfig};

/// Where the dashboard listens unless told otherwise (INTERFACES.md).
pub(crate) const DEFAULT_DASHBOARD_ADDR: &str = "127.0.0.1:8470";

/// The dashboard's own settings, shared by `moss up` and `moss dashboard`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DashboardArgs {
    /// Where the operator dashboard listens; `off` serves none. Off loopback it needs
    /// MOSS_DASHBOARD_TOKEN (or MOSS_DASHBOARD_TOKEN_FILE).
    #[arg(long, env = "MOSS_DASHBOARD_ADDR", value_name = "ADDR")]
    pub(crate) dashboard_addr: Option<String>,
    /// A file holding the dashboard's token (preferred over MOSS_DASHBOARD_TOKEN).
    #[arg(long, env = "MOSS_DASHBOARD_TOKEN_FILE", value_name = "FILE")]
    pub(crate) dashboard_token_file: Option<PathBuf>,
}

impl DashboardArgs {
    /// The address, or `None` for `off`.
    pub(crate) fn addr(&self) -> Result<Option<SocketAddr>> {
        let text = self
            .dashboard_addr
            .clone()
            .unwrap_or_else(|| DEFAULT_DASHBOARD_ADDR.to_owned());
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        config::socket_addr(&text, "MOSS_DASHBOARD_ADDR").map(Some)
    }

    /// The token, from the file or MOSS_DASHBOARD_TOKEN.
    pub(crate) fn token(&self) -> Result<Option<SecretString>> {
        if let Some(path) = &self.dashboard_token_file {
            return config::read_secret_file(path, "MOSS_DASHBOARD_TOKEN_FILE").map(Some);
        }
        Ok(std::env::var("MOSS_DASHBOARD_TOKEN")
            .ok()
            .filter(|token| !token.trim().is_empty())
            .map(|token| SecretString::from(token.trim().to_owned())))
    }
}

/// Everything the dashboard reads from.
#[derive(Debug, Clone)]
pub(crate) struct DashboardSettings {
    pub(crate) addr: SocketAddr,
    pub(crate) token: Option<SecretString>,
    pub(crate) amqp_url: String,
    pub(crate) topology: Topology,
    /// `host:port` of the worker's `/metrics`.
    pub(crate) worker_metrics: String,
    /// `host:port` of the producer's `/metrics`.
    pub(crate) producer_metrics: String,
    /// RabbitMQ's management API (optional: the dashboard says what it could not read).
    pub(crate) management_url: String,
    /// The tenant, to show a user's mapping; `None` shows it as unknown.
    pub(crate) online: Option<moss_online::OnlineConfig>,
}

impl DashboardSettings {
    /// Settings from the dashboard's arguments and the installation's (`moss dashboard`).
    pub(crate) fn check(&self) -> Result<()> {
        if !self.addr.ip().is_loopback() && self.token.is_none() {
            bail!(
                "the dashboard would listen on {}, which is not loopback: set MOSS_DASHBOARD_TOKEN (or MOSS_DASHBOARD_TOKEN_FILE) so that only operators get in, or listen on 127.0.0.1",
                self.addr
            );
        }
        Ok(())
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    settings: DashboardSettings,
    broker: Broker,
    letters: letters::Letters,
    outcomes: outcomes::History,
    overview: overview::Rates,
    http: reqwest::Client,
    online: Option<moss_online::OnlineClient>,
}

/// A dashboard being served.
#[derive(Debug)]
pub(crate) struct RunningDashboard {
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl RunningDashboard {
    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until `shutdown` stopped it, then closes its connection.
    pub(crate) async fn wait(self) {
        let _ = self.server.await;
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
        let _ = self.shared.broker.close().await;
    }
}

/// Binds, connects to RabbitMQ, starts following the outcomes and serves until `shutdown`.
pub(crate) async fn start(
    settings: DashboardSettings,
    shutdown: CancellationToken,
) -> Result<RunningDashboard> {
    settings.check()?;
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| {
            format!(
                "could not serve the dashboard on {} (MOSS_DASHBOARD_ADDR); is something else listening there?",
                settings.addr
            )
        })?;
    let addr = listener
        .local_addr()
        .context("could not read the dashboard's address")?;
    let broker = crate::operate::connection::connect(
        &settings.amqp_url,
        &settings.topology,
        "moss-dashboard",
    )
    .await?;
    let online = match &settings.online {
        Some(online) => Some(
            moss_online::OnlineClient::new(online.clone())
                .context("the tenant's settings are not usable by the dashboard")?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared {
        letters: letters::Letters::default(),
        outcomes: outcomes::History::default(),
        overview: overview::Rates::default(),
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .build()
            .context("could not start an HTTP client")?,
        online,
        broker,
        settings,
    });
    let tasks = vec![
        tokio::spawn(outcomes::follow(Arc::clone(&shared), shutdown.clone())),
        tokio::spawn(letters::refresh_every(
            Arc::clone(&shared),
            shutdown.clone(),
        )),
    ];
    let router = router(Arc::clone(&shared));
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(error) = axum::serve(listener, service)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
        {
            tracing::error!(error = %error, "the dashboard stopped serving");
        }
    });
    Ok(RunningDashboard {
        addr,
        server,
        tasks,
        shared,
    })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(pages::overview_page))
        .route("/fragment/overview", get(pages::overview_fragment))
        .route("/api/overview", get(overview::api))
        .route("/users", get(pages::users_page))
        .route("/dead-letters", get(pages::letters_page))
        .route("/fragment/dead-letters", get(pages::letters_fragment))
        .route("/dead-letters/{id}", get(pages::letter_page))
        .route("/held-deletes", get(pages::held_page))
        .route("/api/preview", post(letters::preview))
        .route("/api/confirm", post(letters::confirm))
        .route("/static/dashboard.js", get(pages::script))
        .route("/static/dashboard.css", get(pages::style))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            auth::require,
        ))
        .with_state(shared)
}

/// `moss dashboard`: the dashboard alone, next to a running installation.
#[derive(Debug, clap::Args)]
pub(crate) struct StandaloneArgs {
    #[command(flatten)]
    pub(crate) common: crate::config::CommonArgs,
    #[command(flatten)]
    pub(crate) dashboard: DashboardArgs,
    #[command(flatten)]
    pub(crate) tenant: crate::commands::worker::TenantArgs,
    /// RabbitMQ's management API; credentials from this URL, else from MOSS_AMQP_URL.
    #[arg(long, env = "MOSS_MANAGEMENT_URL", value_name = "URL")]
    pub(crate) management_url: Option<String>,
    /// The worker's metrics address (its MOSS_METRICS_ADDR).
    #[arg(long, env = "MOSS_WORKER_METRICS_ADDR", value_name = "ADDR")]
    pub(crate) worker_metrics_addr: Option<String>,
    /// The producer's metrics address.
    #[arg(long, env = "MOSS_PRODUCER_METRICS_ADDR", value_name = "ADDR")]
    pub(crate) producer_metrics_addr: Option<String>,
}

impl StandaloneArgs {
    pub(crate) fn settings(&self, file: &FileConfig) -> Result<Option<DashboardSettings>> {
        let common = self.common.resolve(file)?;
        let Some(addr) = self.dashboard.addr()? else {
            return Ok(None);
        };
        let online = if self.tenant.configured(file) {
            Some(self.tenant.online_config(file)?)
        } else {
            None
        };
        Ok(Some(DashboardSettings {
            addr,
            token: self.dashboard.token()?,
            amqp_url: common.amqp_url,
            topology: common.topology,
            worker_metrics: self
                .worker_metrics_addr
                .clone()
                .unwrap_or_else(|| crate::commands::worker::DEFAULT_WORKER_METRICS_ADDR.to_owned()),
            producer_metrics: self.producer_metrics_addr.clone().unwrap_or_else(|| {
                file.metrics_addr
                    .clone()
                    .unwrap_or_else(|| "127.0.0.1:9480".to_owned())
            }),
            management_url: self
                .management_url
                .clone()
                .unwrap_or_else(|| crate::operate::management::DEFAULT_MANAGEMENT_URL.to_owned()),
            online,
        }))
    }
}
