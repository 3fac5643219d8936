//! `moss watch ldap`: follows the directory and publishes what changes, through the producer's
//! ingest, so that administrators need no hook per change (docs/DIRECTORY.md).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use moss_producer::watch::{
    DisabledRule, LdapTls, LdapWatchSettings, OnlineAccountPolicy, PollSettings, WatchMode,
};
use moss_schemas::{DomainName, SkuPartNumber, UsageLocation};

use crate::commands::producer::DEFAULT_INGEST_ADDR;
use crate::config::{self, FileConfig, layered};

/// Which directory to watch.
#[derive(Debug, Subcommand)]
pub(crate) enum WatchCommand {
    /// Follow an OpenLDAP directory with RFC 4533 (syncprov's refreshAndPersist), or Active
    /// Directory by uSNChanged polling, and publish users, their aliases, disabling and groups
    /// as events. Resumes from its cookie (or watermark).
    Ldap(LdapArgs),
}

/// How the watcher learns of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// RFC 4533 refreshAndPersist (OpenLDAP with syncprov): the server pushes each change.
    Syncrepl,
    /// Poll for uSNChanged above the watermark and for tombstones (Active Directory).
    UsnPoll,
}

/// `moss watch ldap` settings (flags or environment).
#[derive(Debug, Args)]
pub(crate) struct LdapArgs {
    /// The directory, as ldap://host:389/, ldaps://host:636/ (TLS) or ldapi:// (a local socket).
    #[arg(long, env = "MOSS_LDAP_URL", value_name = "URL")]
    url: String,
    /// Upgrade the ldap:// connection with StartTLS before binding.
    #[arg(long, env = "MOSS_LDAP_STARTTLS")]
    starttls: bool,
    /// PEM file of the CA that signed the directory's certificate (ldaps:// or StartTLS); when
    /// unset, the system's trusted roots are used.
    #[arg(long, env = "MOSS_LDAP_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// syncrepl (OpenLDAP) or usn-poll (Active Directory).
    #[arg(long, env = "MOSS_LDAP_MODE", value_enum, default_value = "syncrepl")]
    mode: Mode,
    /// usn-poll: the attribute naming an object for good (objectGUID; entryUUID elsewhere).
    #[arg(
        long,
        env = "MOSS_LDAP_SUBJECT_ATTRIBUTE",
        default_value = "objectGUID"
    )]
    subject_attribute: String,
    /// usn-poll: the attribute that grows with every change.
    #[arg(
        long,
        env = "MOSS_LDAP_WATERMARK_ATTRIBUTE",
        default_value = "uSNChanged"
    )]
    watermark_attribute: String,
    /// usn-poll: seconds between polls.
    #[arg(
        long,
        env = "MOSS_LDAP_POLL_INTERVAL",
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    poll_interval: u64,
    /// usn-poll: where tombstones are (default CN=Deleted Objects,<defaultNamingContext>).
    #[arg(long, env = "MOSS_LDAP_DELETED_BASE", value_name = "DN")]
    deleted_base: Option<String>,
    /// The subtree to follow, e.g. dc=example,dc=org.
    #[arg(long, env = "MOSS_LDAP_BASE", value_name = "DN")]
    base: String,
    /// Who to bind as (needs read access to the subtree, entryUUID and entryCSN).
    #[arg(long, env = "MOSS_LDAP_BIND_DN", value_name = "DN")]
    bind_dn: String,
    /// File whose first line is the bind password.
    #[arg(long, env = "MOSS_LDAP_PASSWORD_FILE", value_name = "FILE")]
    password_file: PathBuf,
    /// objectClass of users.
    #[arg(long, env = "MOSS_LDAP_USER_CLASS", default_value = "inetOrgPerson")]
    user_class: String,
    /// objectClass of groups.
    #[arg(long, env = "MOSS_LDAP_GROUP_CLASS", default_value = "groupOfNames")]
    group_class: String,
    /// The logon name attribute.
    #[arg(long, env = "MOSS_LDAP_ACCOUNT_ATTRIBUTE", default_value = "uid")]
    account_attribute: String,
    /// The attribute whose addresses become mail aliases.
    #[arg(long, env = "MOSS_LDAP_ALIAS_ATTRIBUTE", default_value = "mail")]
    alias_attribute: String,
    /// The group member attribute (DNs).
    #[arg(long, env = "MOSS_LDAP_MEMBER_ATTRIBUTE", default_value = "member")]
    member_attribute: String,
    /// The attribute that marks a disabled user.
    #[arg(
        long,
        env = "MOSS_LDAP_DISABLED_ATTRIBUTE",
        default_value = "pwdAccountLockedTime"
    )]
    disabled_attribute: String,
    /// The value of the disabling attribute that means disabled; unset means "present at all".
    #[arg(long, env = "MOSS_LDAP_DISABLED_VALUE", value_name = "VALUE")]
    disabled_value: Option<String>,
    /// Ask for an online account <uid>@DOMAIN for every new user.
    #[arg(long, env = "MOSS_LDAP_UPN_DOMAIN", value_name = "DOMAIN")]
    upn_domain: Option<String>,
    /// Usage location of those accounts (ISO 3166 alpha-2).
    #[arg(
        long,
        env = "MOSS_LDAP_USAGE_LOCATION",
        value_name = "CC",
        requires = "upn_domain"
    )]
    usage_location: Option<String>,
    /// Licences (SKU part numbers, comma-separated) of those accounts.
    #[arg(
        long,
        env = "MOSS_LDAP_LICENSES",
        value_name = "SKUS",
        value_delimiter = ',',
        requires = "upn_domain"
    )]
    licenses: Vec<String>,
    /// Folder for moss's sled databases; the watcher keeps its cookie in `watch-ldap` there.
    #[arg(long, env = "MOSS_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The producer's ingest.
    #[arg(long, env = "MOSS_INGEST_ADDR", value_name = "ADDR")]
    ingest_addr: Option<String>,
    /// File holding the ingest's bearer token.
    #[arg(long, env = "MOSS_INGEST_TOKEN_FILE", value_name = "FILE")]
    ingest_token_file: Option<PathBuf>,
}

impl LdapArgs {
    /// Every setting checked before the watcher connects anywhere.
    pub(crate) fn settings(&self, file: &FileConfig) -> Result<LdapWatchSettings> {
        let password = read_password(&self.password_file)?;
        let data_dir = layered(self.data_dir.clone(), file.data_dir.clone(), || {
            PathBuf::from("./moss-data")
        });
        config::private_dir(&data_dir)?;
        let ingest_addr = layered(self.ingest_addr.clone(), file.ingest_addr.clone(), || {
            DEFAULT_INGEST_ADDR.to_owned()
        });
        let ingest_addr = config::socket_addr(&ingest_addr, "MOSS_INGEST_ADDR")?;
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
        let mut settings = LdapWatchSettings::new(
            self.url.clone(),
            self.base.clone(),
            self.bind_dn.clone(),
            password,
            data_dir.join("watch-ldap"),
            format!("http://{ingest_addr}"),
        );
        settings.ingest_token = token;
        settings.max_reconnect_delay = Duration::from_secs(30);
        settings.tls = LdapTls {
            starttls: self.starttls,
            ca_file: self.ca_file.clone(),
        };
        if let Some(path) = &self.ca_file
            && !path.is_file()
        {
            anyhow::bail!(
                "the CA file {} (MOSS_LDAP_CA_FILE) does not exist or is not a file",
                path.display()
            );
        }
        settings.mode = match self.mode {
            Mode::Syncrepl => WatchMode::Syncrepl,
            Mode::UsnPoll => WatchMode::UsnPoll(PollSettings {
                subject_attribute: self.subject_attribute.clone(),
                watermark_attribute: self.watermark_attribute.clone(),
                interval: Duration::from_secs(self.poll_interval),
                deleted_base: self.deleted_base.clone(),
            }),
        };
        let mapping = &mut settings.mapping;
        mapping.user_class.clone_from(&self.user_class);
        mapping.group_class.clone_from(&self.group_class);
        mapping
            .account_attribute
            .clone_from(&self.account_attribute);
        mapping.alias_attribute.clone_from(&self.alias_attribute);
        mapping.member_attribute.clone_from(&self.member_attribute);
        mapping.disabled = DisabledRule {
            attribute: self.disabled_attribute.clone(),
            value: self.disabled_value.clone(),
        };
        if let Some(domain) = &self.upn_domain {
            let domain = DomainName::parse(domain)
                .map_err(|error| anyhow::anyhow!("MOSS_LDAP_UPN_DOMAIN {}", error.message))?;
            let usage_location = UsageLocation::parse(self.usage_location.as_deref().unwrap_or(""))
                .map_err(|error| {
                    anyhow::anyhow!(
                        "MOSS_LDAP_USAGE_LOCATION is needed with MOSS_LDAP_UPN_DOMAIN: {}",
                        error.message
                    )
                })?;
            let licenses = self
                .licenses
                .iter()
                .filter(|sku| !sku.trim().is_empty())
                .map(|sku| {
                    SkuPartNumber::parse(sku.trim()).map_err(|error| {
                        anyhow::anyhow!("MOSS_LDAP_LICENSES {sku:?}: {}", error.message)
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            mapping.online_account = Some(OnlineAccountPolicy {
                domain,
                usage_location,
                licenses,
            });
        }
        Ok(settings)
    }
}

/// The first line of the password file, kept whole (a password may start or end with spaces).
pub(crate) fn read_password(path: &std::path::Path) -> Result<secrecy::SecretString> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
        format!(
            "could not read the LDAP bind password from {} (MOSS_LDAP_PASSWORD_FILE)",
            path.display()
        )
    })?);
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        anyhow::bail!("the LDAP bind password file {} is empty", path.display());
    }
    Ok(secrecy::SecretString::from(line.to_owned()))
}

/// `moss up`'s way to the watcher: [`LdapArgs`] read from the environment alone.
#[derive(Debug, clap::Parser)]
struct LdapFromEnvironment {
    #[command(flatten)]
    args: LdapArgs,
}

/// The watcher's settings when `MOSS_LDAP_URL` is set (then every other required `MOSS_LDAP_*`
/// must be too), or `None` when no directory is configured.
pub(crate) fn settings_from_environment(file: &FileConfig) -> Result<Option<LdapWatchSettings>> {
    if std::env::var_os("MOSS_LDAP_URL").is_none() {
        return Ok(None);
    }
    let parsed = <LdapFromEnvironment as clap::Parser>::try_parse_from(["moss up"]).map_err(|error| {
        // clap names the missing flags one per line ("  --base <DN>"); each is a MOSS_LDAP_* variable here.
        let text = error.to_string();
        let missing: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("--"))
            .map(|line| line.split_whitespace().next().unwrap_or(line))
            .collect();
        let missing = if missing.is_empty() {
            text.lines().next().unwrap_or_default().to_owned()
        } else {
            format!("missing {}", missing.join(", "))
        };
        anyhow::anyhow!(
            "MOSS_LDAP_URL is set, so moss up watches the directory, but its settings are incomplete ({missing}); set MOSS_LDAP_BASE, MOSS_LDAP_BIND_DN and MOSS_LDAP_PASSWORD_FILE too"
        )
    })?;
    parsed.args.settings(file).map(Some)
}

pub(crate) async fn run(command: WatchCommand, file: &FileConfig) -> Result<()> {
    match command {
        WatchCommand::Ldap(args) => {
            let settings = args.settings(file)?;
            let shutdown = crate::shutdown::on_signal();
            println!("watching {} under {}", settings.url, settings.base);
            moss_producer::watch::run_ldap(settings, shutdown)
                .await
                .context("the directory watcher stopped")
        }
    }
}
