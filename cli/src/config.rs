//! Layered configuration: flags, then `MOSS_*` environment variables (both through clap), then an
//! optional TOML file (`--config` / `MOSS_CONFIG`), then defaults. Everything is checked here,
//! before any connection opens, and a bad value is reported with the name the operator typed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The TOML file: every key optional, unknown keys refused (a typo must not be silently ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) amqp_url: Option<String>,
    pub(crate) amqp_ca_file: Option<PathBuf>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) partitions: Option<u16>,
    pub(crate) topology_prefix: Option<String>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret_file: Option<PathBuf>,
    pub(crate) graph_url: Option<String>,
    pub(crate) login_url: Option<String>,
    pub(crate) exchange_url: Option<String>,
    pub(crate) seal_public_key: Option<String>,
    pub(crate) seal_public_key_file: Option<PathBuf>,
    pub(crate) seal_private_key_file: Option<PathBuf>,
    pub(crate) ingest_addr: Option<String>,
    pub(crate) ingest_token_file: Option<PathBuf>,
    pub(crate) metrics_addr: Option<String>,
    pub(crate) emulator_listen: Option<String>,
}

impl FileConfig {
    /// Loads the file named by `--config`, or an empty configuration when none was given.
    pub(crate) fn load(path: Option<&Path>) -> Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("the configuration file {} is not valid", path.display()))
    }
}

/// Picks the first value present: the flag or environment variable, then the file, then the default.
pub(crate) fn layered<T>(
    flag_or_env: Option<T>,
    file: Option<T>,
    default: impl FnOnce() -> T,
) -> T {
    flag_or_env.or(file).unwrap_or_else(default)
}

/// Parses a listen or connect address, naming the setting when it is not one.
pub(crate) fn socket_addr(value: &str, setting: &str) -> Result<std::net::SocketAddr> {
    value
        .parse()
        .with_context(|| format!("{setting} must be an address like 127.0.0.1:8480, not {value:?}"))
}

/// Settings every service command shares: where RabbitMQ and the data live, and the topology.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CommonArgs {
    /// RabbitMQ URL.
    #[arg(long, env = "MOSS_AMQP_URL", value_name = "URL")]
    pub(crate) amqp_url: Option<String>,
    /// PEM file of a CA to trust, besides the system's, for an amqps:// RabbitMQ.
    #[arg(long, env = "MOSS_AMQP_CA_FILE", value_name = "FILE")]
    pub(crate) amqp_ca_file: Option<PathBuf>,
    /// Folder for moss's sled databases (created 0700).
    #[arg(long, env = "MOSS_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Number of partition queues; must match across producers and workers.
    #[arg(long, env = "MOSS_PARTITIONS", value_name = "N")]
    pub(crate) partitions: Option<u16>,
    /// Prefix of every exchange and queue name.
    #[arg(long, env = "MOSS_TOPOLOGY_PREFIX", value_name = "PREFIX")]
    pub(crate) topology_prefix: Option<String>,
}

/// [`CommonArgs`] with the file and defaults applied, and checked.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub(crate) amqp_url: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) topology: moss_broker::Topology,
}

/// The default RabbitMQ URL (INTERFACES.md).
pub(crate) const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl CommonArgs {
    pub(crate) fn resolve(&self, file: &FileConfig) -> Result<Common> {
        let amqp_url = layered(self.amqp_url.clone(), file.amqp_url.clone(), || {
            DEFAULT_AMQP_URL.to_owned()
        });
        if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
            anyhow::bail!("MOSS_AMQP_URL must start with amqp:// or amqps://");
        }
        // Every connection this process opens (relay, worker, operator commands) trusts it.
        if let Some(ca_file) = self.amqp_ca_file.clone().or(file.amqp_ca_file.clone()) {
            moss_broker::trust_amqp_ca_file(&ca_file)?;
        }
        let data_dir = layered(self.data_dir.clone(), file.data_dir.clone(), || {
            PathBuf::from("./moss-data")
        });
        let partitions = layered(self.partitions, file.partitions, || 8);
        let prefix = layered(
            self.topology_prefix.clone(),
            file.topology_prefix.clone(),
            || "moss".to_owned(),
        );
        let prefix = moss_broker::TopologyPrefix::parse(&prefix)
            .context("MOSS_TOPOLOGY_PREFIX is not valid")?;
        let topology = moss_broker::Topology::new(prefix, partitions)
            .context("MOSS_PARTITIONS is not valid")?;
        Ok(Common {
            amqp_url,
            data_dir,
            topology,
        })
    }
}

/// Creates the data folder private to its owner (0700): it holds the outbox and ledger.
pub(crate) fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)
        .with_context(|| format!("could not create the data folder {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).with_context(|| {
        format!(
            "could not make the data folder {} private (0700)",
            path.display()
        )
    })
}

/// Reads a secret from a file (a token, a client secret): the first line, trimmed.
pub(crate) fn read_secret_file(path: &Path, setting: &str) -> Result<secrecy::SecretString> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("could not read {setting} from {}", path.display()))?,
    );
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'));
    match line {
        Some(line) => Ok(secrecy::SecretString::from(line.to_owned())),
        None => anyhow::bail!("{setting} file {} is empty", path.display()),
    }
}

/// The sealing (public) key from the flag, environment, file setting or a key file.
pub(crate) fn sealing_key(
    value: Option<String>,
    value_file: Option<PathBuf>,
    file: &FileConfig,
) -> Result<Option<moss_schemas::SealingKey>> {
    let text = match (
        value.or_else(|| file.seal_public_key.clone()),
        value_file.or_else(|| file.seal_public_key_file.clone()),
    ) {
        (Some(text), _) => text,
        (None, Some(path)) => crate::commands::keys::read_key_file(&path)?,
        (None, None) => return Ok(None),
    };
    moss_schemas::SealingKey::parse(text.trim())
        .map(Some)
        .context("MOSS_SEAL_PUBLIC_KEY is not an age X25519 public key (age1…); make a pair with `moss keys generate`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_file_is_read_and_an_unknown_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("moss.toml");
        std::fs::write(
            &good,
            "amqp_url = \"amqp://rabbit:5672/%2f\"\npartitions = 16\n",
        )
        .unwrap();
        let file = FileConfig::load(Some(&good)).unwrap();
        assert_eq!(file.partitions, Some(16));

        let typo = dir.path().join("typo.toml");
        std::fs::write(&typo, "amqp_ulr = \"amqp://rabbit\"\n").unwrap();
        let error = format!("{:#}", FileConfig::load(Some(&typo)).unwrap_err());
        assert!(error.contains("amqp_ulr"), "{error}");
    }

    #[test]
    fn a_flag_or_variable_wins_over_the_file_which_wins_over_the_default() {
        assert_eq!(layered(Some(1), Some(2), || 3), 1);
        assert_eq!(layered(None, Some(2), || 3), 2);
        assert_eq!(layered(None, None, || 3), 3);
    }
}
