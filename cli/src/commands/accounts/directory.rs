//! The directory the accounts commands read from (`bulk-create --from-directory`) and write to
//! (`import`), configured with the watcher's own settings (`MOSS_LDAP_*`, docs/DIRECTORY.md):
//! a directory is configured when `MOSS_LDAP_URL` (or `--ldap-url`) is set.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use moss_producer::watch::{Directory, DirectoryMapping, LdapTls};
use secrecy::SecretString;

/// Where the directory is and how to bind, as `moss watch ldap` has it.
#[derive(Debug, Args)]
pub(crate) struct DirectoryArgs {
    /// The directory (ldap://, ldaps:// or ldapi://); set means "configured".
    #[arg(long, env = "MOSS_LDAP_URL", value_name = "URL")]
    ldap_url: Option<String>,
    /// Upgrade the ldap:// connection with StartTLS before binding.
    #[arg(long, env = "MOSS_LDAP_STARTTLS")]
    ldap_starttls: bool,
    /// PEM file of the CA that signed the directory's certificate.
    #[arg(long, env = "MOSS_LDAP_CA_FILE", value_name = "FILE")]
    ldap_ca_file: Option<PathBuf>,
    /// Who to bind as (import: it needs the right to add entries under --base-dn).
    #[arg(long, env = "MOSS_LDAP_BIND_DN", value_name = "DN")]
    ldap_bind_dn: Option<String>,
    /// File whose first line is the bind password.
    #[arg(long, env = "MOSS_LDAP_PASSWORD_FILE", value_name = "FILE")]
    ldap_password_file: Option<PathBuf>,
    /// The subtree the watcher follows (bulk-create reads its users from it).
    #[arg(long, env = "MOSS_LDAP_BASE", value_name = "DN")]
    ldap_base: Option<String>,
    /// syncrepl (subjects are entryUUIDs) or usn-poll (subjects from MOSS_LDAP_SUBJECT_ATTRIBUTE).
    #[arg(
        long,
        env = "MOSS_LDAP_MODE",
        value_name = "MODE",
        default_value = "syncrepl"
    )]
    ldap_mode: String,
    /// usn-poll: the attribute naming an object for good.
    #[arg(
        long,
        env = "MOSS_LDAP_SUBJECT_ATTRIBUTE",
        value_name = "ATTRIBUTE",
        default_value = "objectGUID"
    )]
    ldap_subject_attribute: String,
    /// objectClass of users.
    #[arg(long, env = "MOSS_LDAP_USER_CLASS", default_value = "inetOrgPerson")]
    ldap_user_class: String,
    /// The logon name attribute.
    #[arg(long, env = "MOSS_LDAP_ACCOUNT_ATTRIBUTE", default_value = "uid")]
    ldap_account_attribute: String,
    /// The attribute that marks a disabled user.
    #[arg(
        long,
        env = "MOSS_LDAP_DISABLED_ATTRIBUTE",
        default_value = "pwdAccountLockedTime"
    )]
    ldap_disabled_attribute: String,
    /// The value of the disabling attribute that means disabled; unset means "present at all".
    #[arg(long, env = "MOSS_LDAP_DISABLED_VALUE", value_name = "VALUE")]
    ldap_disabled_value: Option<String>,
}

/// A configured directory, checked (password read, TLS settings consistent) but not connected.
#[derive(Debug)]
pub(crate) struct DirectorySettings {
    pub(crate) url: String,
    tls: LdapTls,
    bind_dn: String,
    password: SecretString,
    base: Option<String>,
    pub(crate) subject_attribute: String,
    pub(crate) mapping: DirectoryMapping,
}

impl DirectoryArgs {
    /// `None` when no directory is configured; otherwise every setting the connection needs,
    /// or one sentence naming the missing one.
    pub(crate) fn settings(&self) -> Result<Option<DirectorySettings>> {
        let Some(url) = self.ldap_url.clone().filter(|url| !url.trim().is_empty()) else {
            return Ok(None);
        };
        let Some(bind_dn) = self.ldap_bind_dn.clone() else {
            bail!(
                "a directory is configured (MOSS_LDAP_URL) but not who to bind as: set MOSS_LDAP_BIND_DN (or --ldap-bind-dn)"
            );
        };
        let Some(password_file) = &self.ldap_password_file else {
            bail!(
                "a directory is configured (MOSS_LDAP_URL) but no bind password: set MOSS_LDAP_PASSWORD_FILE (or --ldap-password-file)"
            );
        };
        if let Some(path) = &self.ldap_ca_file
            && !path.is_file()
        {
            bail!(
                "the CA file {} (MOSS_LDAP_CA_FILE) does not exist or is not a file",
                path.display()
            );
        }
        let subject_attribute = match self.ldap_mode.as_str() {
            "syncrepl" => "entryUUID".to_owned(),
            "usn-poll" => self.ldap_subject_attribute.clone(),
            other => bail!("MOSS_LDAP_MODE {other:?}: must be syncrepl or usn-poll"),
        };
        let mut mapping = DirectoryMapping::default();
        mapping.user_class.clone_from(&self.ldap_user_class);
        mapping
            .account_attribute
            .clone_from(&self.ldap_account_attribute);
        mapping
            .disabled
            .attribute
            .clone_from(&self.ldap_disabled_attribute);
        mapping.disabled.value.clone_from(&self.ldap_disabled_value);
        Ok(Some(DirectorySettings {
            url,
            tls: LdapTls {
                starttls: self.ldap_starttls,
                ca_file: self.ldap_ca_file.clone(),
            },
            bind_dn,
            password: crate::commands::watch::read_password(password_file)?,
            base: self.ldap_base.clone(),
            subject_attribute,
            mapping,
        }))
    }
}

impl DirectorySettings {
    /// Connects and binds once.
    pub(crate) async fn connect(&self) -> Result<Directory> {
        Directory::connect(&self.url, &self.tls, &self.bind_dn, &self.password)
            .await
            .map_err(anyhow::Error::from)
    }

    /// The subtree the watcher follows.
    pub(crate) fn base(&self) -> Result<&str> {
        match self.base.as_deref().map(str::trim) {
            Some(base) if !base.is_empty() => Ok(base),
            _ => bail!(
                "reading users from the directory needs the subtree the watcher follows: set MOSS_LDAP_BASE (or --ldap-base)"
            ),
        }
    }

    /// Whether `dn` lies in the subtree the watcher follows (unknown: `true`).
    pub(crate) fn watches(&self, dn: &str) -> bool {
        let normal = |text: &str| {
            text.split(',')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(",")
                .to_ascii_lowercase()
        };
        match self.base.as_deref() {
            Some(base) if !base.trim().is_empty() => {
                let (dn, base) = (normal(dn), normal(base));
                dn == base || dn.ends_with(&format!(",{base}"))
            }
            _ => true,
        }
    }
}
