//! `moss emulator`: the Microsoft Online Services emulator alone (Graph v1.0, the token endpoint
//! and the Exchange Online admin API), for trying moss without a tenant and for tests.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::{self, FileConfig, layered};

#[derive(Debug, Args)]
pub(crate) struct EmulatorArgs {
    /// Where to listen.
    #[arg(long, env = "MOSS_EMULATOR_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// A TOML seed: tenant, domains, apps, SKUs, throttling and fault settings (see docs/EMULATOR.md).
    #[arg(long, value_name = "FILE")]
    seed: Option<PathBuf>,
}

/// Where the emulator listens unless told otherwise (INTERFACES.md).
pub(crate) const DEFAULT_EMULATOR_LISTEN: &str = "127.0.0.1:8490";

/// Loads the seed file, or the default seed.
pub(crate) fn load_seed(path: Option<&std::path::Path>) -> Result<moss_emulator::Seed> {
    match path {
        None => Ok(moss_emulator::Seed::default()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read the emulator seed {}", path.display()))?;
            moss_emulator::Seed::from_toml_str(&text)
                .with_context(|| format!("the emulator seed {} is not valid", path.display()))
        }
    }
}

pub(crate) async fn run(args: EmulatorArgs, file: &FileConfig) -> Result<()> {
    let listen = layered(args.listen, file.emulator_listen.clone(), || {
        DEFAULT_EMULATOR_LISTEN.to_owned()
    });
    let listen = config::socket_addr(&listen, "--listen")?;
    let seed = load_seed(args.seed.as_deref())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("could not listen on {listen}; is another emulator running there?")
        })?;
    let addr = listener
        .local_addr()
        .context("could not read the emulator's address")?;
    println!("emulator http://{addr}  (tenant: GET http://{addr}/_emulator/tenant)");
    let shutdown = crate::shutdown::on_signal();
    moss_emulator::run(seed, listener, async move { shutdown.cancelled().await })
        .await
        .context("the emulator stopped")?;
    Ok(())
}
