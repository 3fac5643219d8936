//! `moss up`: everything on one machine in one command: the topology, the producer's ingest, a
//! worker, the directory watcher when `MOSS_LDAP_URL` is set, and — unless a tenant is
//! configured — the built-in emulator standing in for Microsoft,
//! with a development key pair for sealing passwords in the data dir. Ctrl-C stops it cleanly:
//! the ingest stops taking requests, in-flight events finish, the outboxes flush.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::commands::emulator::{DEFAULT_EMULATOR_LISTEN, load_seed};
use crate::commands::keys::{self, Overwrite, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE};
use crate::commands::producer::IngestArgs;
use crate::commands::worker::{DEFAULT_WORKER_METRICS_ADDR, TenantArgs};
use crate::config::{self, CommonArgs, FileConfig, layered};

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    ingest: IngestArgs,
    #[command(flatten)]
    tenant: TenantArgs,
    /// Where the emulator listens when no tenant is configured.
    #[arg(long, env = "MOSS_EMULATOR_LISTEN", value_name = "ADDR")]
    emulator_listen: Option<String>,
    /// Where the worker serves /metrics (MOSS_METRICS_ADDR is the producer's here).
    #[arg(long, env = "MOSS_WORKER_METRICS_ADDR", value_name = "ADDR")]
    worker_metrics_addr: Option<String>,
    /// A TOML seed for the emulator (see docs/EMULATOR.md).
    #[arg(long, value_name = "FILE")]
    emulator_seed: Option<PathBuf>,
    #[command(flatten)]
    dashboard: crate::dashboard::DashboardArgs,
}

pub(crate) async fn run(args: UpArgs, file: &FileConfig) -> Result<()> {
    let common = args.common.resolve(file)?;
    config::private_dir(&common.data_dir)?;
    let shutdown = crate::shutdown::on_signal();

    // Sealing keys: configured ones, or a development pair kept in the data dir.
    let dev_keys = common.data_dir.join("keys");
    let configured_public = config::sealing_key(
        args.ingest.seal_public_key.clone(),
        args.ingest.seal_public_key_file.clone(),
        file,
    )?;
    let configured_private = args.tenant.opening_key(file)?;
    let (sealing_key, opening_key) = match (configured_public, configured_private) {
        (Some(public), Some(private)) => (public, private),
        (None, None) => {
            if !dev_keys.join(PRIVATE_KEY_FILE).exists() {
                keys::generate(&dev_keys, Overwrite::Refuse)?;
            }
            let private = config::read_secret_file(
                &dev_keys.join(PRIVATE_KEY_FILE),
                "the development private key",
            )?;
            let opening = moss_schemas::OpeningKey::parse(&private).with_context(|| {
                format!(
                    "{} holds no age private key",
                    dev_keys.join(PRIVATE_KEY_FILE).display()
                )
            })?;
            let public = moss_schemas::SealingKey::parse(&keys::read_key_file(
                &dev_keys.join(PUBLIC_KEY_FILE),
            )?)
            .with_context(|| {
                format!(
                    "{} holds no age public key",
                    dev_keys.join(PUBLIC_KEY_FILE).display()
                )
            })?;
            (public, opening)
        }
        _ => anyhow::bail!(
            "set both MOSS_SEAL_PUBLIC_KEY(_FILE) and MOSS_SEAL_PRIVATE_KEY_FILE, or neither (then `moss up` makes a development pair)"
        ),
    };

    // The tenant: configured, or the emulator.
    let mut emulator = None;
    let online = if args.tenant.configured(file) {
        args.tenant.online_config(file)?
    } else {
        let listen = layered(
            args.emulator_listen.clone(),
            file.emulator_listen.clone(),
            || DEFAULT_EMULATOR_LISTEN.to_owned(),
        );
        let listen = config::socket_addr(&listen, "MOSS_EMULATOR_LISTEN")?;
        let seed = load_seed(args.emulator_seed.as_deref())?;
        let running = moss_emulator::Emulator::start(seed, listen)
            .await
            .with_context(|| {
                format!(
                    "could not start the emulator on {listen}; is something else listening there?"
                )
            })?;
        let tenant = running.tenant();
        let online = moss_online::OnlineConfig::new(
            tenant.tenant_id.to_string(),
            tenant.client_id.to_string(),
            secrecy::SecretString::from(tenant.client_secret.clone()),
        )
        .with_single_base_url(&running.base_url());
        emulator = Some(running);
        online
    };

    // The directory watcher, when MOSS_LDAP_URL is set; checked before anything starts.
    let watch_settings = crate::commands::watch::settings_from_environment(file)?;

    let mut producer_settings = args.ingest.settings(&common, file, Some(sealing_key))?;
    if producer_settings.metrics_addr.is_none() {
        producer_settings.metrics_addr =
            Some(config::socket_addr("127.0.0.1:9480", "MOSS_METRICS_ADDR")?);
    }
    let producer = moss_producer::start(producer_settings, shutdown.clone())
        .await
        .context("the producer could not start")?;
    let worker_metrics_addr = config::socket_addr(
        args.worker_metrics_addr
            .as_deref()
            .unwrap_or(DEFAULT_WORKER_METRICS_ADDR),
        "MOSS_WORKER_METRICS_ADDR",
    )?;
    let worker_settings = moss_workers::WorkerSettings::new(
        common.amqp_url.clone(),
        common.topology.clone(),
        common.data_dir.join("worker"),
        online.clone(),
        opening_key,
    );
    let worker = match moss_workers::start(worker_settings, shutdown.clone()).await {
        Ok(worker) => worker,
        Err(error) => {
            producer.shutdown().await;
            return Err(anyhow::Error::new(error).context("the worker could not start"));
        }
    };

    let watcher = watch_settings.map(|mut settings| {
        // Whatever MOSS_INGEST_ADDR said, the watcher posts to the ingest this process serves.
        settings.ingest_url = format!("http://{}", producer.ingest_addr());
        let described = format!("{} under {}", settings.url, settings.base);
        let watch_shutdown = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = moss_producer::watch::run_ldap(settings, watch_shutdown).await {
                tracing::error!(error = %error, "the directory watcher stopped");
            }
        });
        (described, task)
    });

    // The operator dashboard, reading what the others serve.
    let dashboard = match args.dashboard.addr()? {
        None => None,
        Some(addr) => {
            let settings = crate::dashboard::DashboardSettings {
                addr,
                token: args.dashboard.token()?,
                amqp_url: common.amqp_url.clone(),
                topology: common.topology.clone(),
                worker_metrics: worker_metrics_addr.to_string(),
                producer_metrics: producer
                    .metrics_addr()
                    .map_or_else(|| "127.0.0.1:9480".to_owned(), |addr| addr.to_string()),
                management_url: std::env::var("MOSS_MANAGEMENT_URL").unwrap_or_else(|_| {
                    crate::operate::management::DEFAULT_MANAGEMENT_URL.to_owned()
                }),
                online: Some(online.clone()),
            };
            match crate::dashboard::start(settings, shutdown.clone()).await {
                Ok(dashboard) => Some(dashboard),
                Err(error) => {
                    shutdown.cancel();
                    let _ = worker.wait().await;
                    producer.wait().await;
                    return Err(error.context("the dashboard could not start"));
                }
            }
        }
    };

    println!("moss is up (Ctrl-C stops it)");
    println!("  ingest    http://{}/v1/events", producer.ingest_addr());
    if let Some(addr) = producer.metrics_addr() {
        println!(
            "  metrics   http://{addr}/metrics (producer), http://{worker_metrics_addr}/metrics (worker)"
        );
    }
    println!(
        "  rabbitmq  {} (queues {}.*)",
        moss_broker::redact_url(&common.amqp_url),
        common.topology.prefix().as_str()
    );
    println!("  data      {}", common.data_dir.display());
    if let Some(dashboard) = &dashboard {
        println!("  dashboard http://{}/", dashboard.addr());
    }
    if let Some((described, _)) = &watcher {
        println!("  watching  {described}");
    }
    if let Some(emulator) = &emulator {
        let tenant = emulator.tenant();
        println!(
            "  emulator  {} (tenant {}, domain {})",
            emulator.base_url(),
            tenant.tenant_id,
            tenant.default_domain
        );
        println!("            state: {}/_emulator/state", emulator.base_url());
    }
    println!(
        "try:  moss publish user-added --subject $(cat /proc/sys/kernel/random/uuid) --account-name ana --display-name 'Ana Silva' --upn ana@{} --usage-location PT",
        emulator
            .as_ref()
            .map(|e| e.tenant().default_domain)
            .unwrap_or_else(|| "your-domain".to_owned())
    );

    let worker_result = crate::worker_metrics::serve_while_running(
        worker,
        worker_metrics_addr,
        online,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    if let Some((_, task)) = watcher {
        let _ = task.await;
    }
    producer.wait().await;
    if let Some(dashboard) = dashboard {
        dashboard.wait().await;
    }
    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }
    worker_result
}
