//! One-off reads and writes of the directory for the operator's commands (`moss accounts
//! bulk-create --from-directory` lists its users, `moss accounts import` adds entries), with the
//! watcher's own settings: the same URL, TLS, bind and mapping, so that a command sees the
//! users as the watcher does (the same subject, user name, display name and disabled rule).
//!
//! Unlike the watcher, a command does not retry: a directory that cannot be reached, a bind
//! refused or a read cut short is one error naming the directory.

use std::collections::HashSet;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, Scope, SearchEntry, ldap_escape};
use moss_schemas::Subject;
use secrecy::{ExposeSecret, SecretString};

use super::ldap::WatchError;
use super::mapping::{Attributes, DirectoryMapping};
use super::poll::subject_from;
use super::tls::{LdapTls, certificate_rejected, connection_settings};

/// LDAP `invalidCredentials`.
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP `noSuchObject`.
const NO_SUCH_OBJECT: u32 = 32;
/// LDAP `entryAlreadyExists`.
const ALREADY_EXISTS: u32 = 68;
/// `LDAP_CAP_ACTIVE_DIRECTORY_OID`, in an Active Directory rootDSE's `supportedCapabilities`.
const ACTIVE_DIRECTORY_CAPABILITY: &str = "1.2.840.113556.1.4.800";
/// Entries a page (Active Directory answers at most 1000).
const PAGE_SIZE: i32 = 500;

/// A bound connection to the directory.
#[derive(Debug)]
pub struct Directory {
    ldap: Ldap,
    url: String,
}

/// A user of the directory as the watcher maps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// Its DN.
    pub dn: String,
    /// The subject moss knows it by (entryUUID, or the usn-poll subject attribute).
    pub subject: Subject,
    /// The logon name (the mapping's account attribute), as the directory holds it.
    pub account_name: String,
    /// `displayName`, else `cn`.
    pub display_name: Option<String>,
    /// Disabled by the mapping's rule.
    pub disabled: bool,
}

/// A user entry that cannot be listed as a [`DirectoryUser`], and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusableUser {
    /// Its DN.
    pub dn: String,
    /// What is missing or wrong.
    pub reason: String,
}

/// What became of one add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// The entry was added.
    Added,
    /// An entry with this DN exists already (nothing was changed).
    AlreadyPresent,
    /// The directory refused it: its LDAP result code and text.
    Failed {
        /// The LDAP result code.
        rc: u32,
        /// The server's diagnostic text.
        text: String,
    },
}

impl Directory {
    /// Connects (TLS as `tls` says) and binds as `bind_dn`; once, without retrying.
    pub async fn connect(
        url: &str,
        tls: &LdapTls,
        bind_dn: &str,
        password: &SecretString,
    ) -> Result<Directory, WatchError> {
        let settings = connection_settings(url, tls)?;
        let (connection, mut ldap) =
            LdapConnAsync::with_settings(settings, url)
                .await
                .map_err(|error| match certificate_rejected(&error) {
                    Some(reason) => WatchError::Certificate {
                        url: url.to_owned(),
                        reason,
                    },
                    None => WatchError::Directory {
                        url: url.to_owned(),
                        reason: format!("could not be reached: {error}"),
                    },
                })?;
        ldap3::drive!(connection);
        let failed = |reason: String| WatchError::Directory {
            url: url.to_owned(),
            reason,
        };
        match ldap.simple_bind(bind_dn, password.expose_secret()).await {
            Ok(result) if result.rc == 0 => Ok(Directory {
                ldap,
                url: url.to_owned(),
            }),
            Ok(result) if result.rc == INVALID_CREDENTIALS => Err(WatchError::Bind {
                bind_dn: bind_dn.to_owned(),
            }),
            Ok(result) => Err(failed(format!(
                "refused the bind as {bind_dn} (LDAP result {} {})",
                result.rc, result.text
            ))),
            Err(error) => Err(failed(format!("broke off the bind: {error}"))),
        }
    }

    /// The URL connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn failed(&self, reason: String) -> WatchError {
        WatchError::Directory {
            url: self.url.clone(),
            reason,
        }
    }

    /// Whether the server says it is Active Directory (its rootDSE's `supportedCapabilities`).
    pub async fn is_active_directory(&mut self) -> Result<bool, WatchError> {
        let (entries, _) = self
            .ldap
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                vec!["supportedCapabilities"],
            )
            .await
            .and_then(ldap3::SearchResult::success)
            .map_err(|error| self.failed(format!("could not read its rootDSE: {error}")))?;
        Ok(entries.into_iter().any(|entry| {
            SearchEntry::construct(entry)
                .attrs
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case("supportedCapabilities"))
                .flat_map(|(_, values)| values)
                .any(|value| value == ACTIVE_DIRECTORY_CAPABILITY)
        }))
    }

    /// Every user (`mapping.user_class`) under `base`, paged; `subject_attribute` names the
    /// subject (`entryUUID` for syncrepl, the usn-poll one otherwise). Entries without a usable
    /// subject or account name come back apart, with the reason.
    pub async fn users(
        &mut self,
        base: &str,
        mapping: &DirectoryMapping,
        subject_attribute: &str,
    ) -> Result<(Vec<DirectoryUser>, Vec<UnusableUser>), WatchError> {
        let filter = format!("(objectClass={})", mapping.user_class);
        let mut attributes = mapping.attributes();
        attributes.push(subject_attribute.to_owned());
        let entries = self.read_all(base, &filter, attributes).await?;
        let mut users = Vec::new();
        let mut unusable = Vec::new();
        for entry in entries {
            let text = entry
                .attrs
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(subject_attribute))
                .map(|(_, values)| values.clone())
                .unwrap_or_default();
            let binary = entry
                .bin_attrs
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(subject_attribute))
                .map(|(_, values)| values.clone())
                .unwrap_or_default();
            let dn = entry.dn.clone();
            let Some(subject) = subject_from(&text, &binary) else {
                unusable.push(UnusableUser {
                    dn,
                    reason: format!("no usable {subject_attribute}"),
                });
                continue;
            };
            let attributes = Attributes::new(entry.attrs);
            let Some(account_name) = attributes.first(&mapping.account_attribute) else {
                unusable.push(UnusableUser {
                    dn,
                    reason: format!("no {}", mapping.account_attribute),
                });
                continue;
            };
            users.push(DirectoryUser {
                dn: dn.clone(),
                subject,
                account_name: account_name.to_owned(),
                display_name: attributes
                    .first("displayName")
                    .or_else(|| attributes.first("cn"))
                    .map(str::to_owned),
                disabled: mapping.disabled.is_disabled(&attributes),
            });
        }
        Ok((users, unusable))
    }

    /// The DN of every entry under `base` whose `attribute` equals `value`.
    pub async fn find(
        &mut self,
        base: &str,
        attribute: &str,
        value: &str,
    ) -> Result<Vec<String>, WatchError> {
        let filter = format!("({attribute}={})", ldap_escape(value));
        let entries = self.read_all(base, &filter, vec!["1.1".to_owned()]).await?;
        Ok(entries.into_iter().map(|entry| entry.dn).collect())
    }

    /// The `entryUUID` of `dn` (OpenLDAP), if the entry exists.
    pub async fn entry_uuid(&mut self, dn: &str) -> Result<Option<String>, WatchError> {
        let found = self
            .ldap
            .search(dn, Scope::Base, "(objectClass=*)", vec!["entryUUID"])
            .await
            .map_err(|error| self.failed(format!("could not read {dn}: {error}")))?;
        if found.1.rc == NO_SUCH_OBJECT {
            return Ok(None);
        }
        let (entries, _) = found
            .success()
            .map_err(|error| self.failed(format!("could not read {dn}: {error}")))?;
        Ok(entries.into_iter().find_map(|entry| {
            SearchEntry::construct(entry)
                .attrs
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("entryUUID"))
                .and_then(|(_, values)| values.into_iter().next())
        }))
    }

    /// Adds one entry; an entry already at `dn` is reported, not touched. `Err` only when the
    /// connection itself broke (then whether the entry was added is unknown: read it back).
    pub async fn add(
        &mut self,
        dn: &str,
        attributes: &[(String, String)],
    ) -> Result<AddOutcome, WatchError> {
        let mut grouped: Vec<(String, HashSet<String>)> = Vec::new();
        for (name, value) in attributes {
            match grouped.iter_mut().find(|(have, _)| have == name) {
                Some((_, values)) => {
                    values.insert(value.clone());
                }
                None => grouped.push((name.clone(), HashSet::from([value.clone()]))),
            }
        }
        let result = self
            .ldap
            .add(dn, grouped)
            .await
            .map_err(|error| self.failed(format!("broke off while adding {dn}: {error}")))?;
        Ok(match result.rc {
            0 => AddOutcome::Added,
            ALREADY_EXISTS => AddOutcome::AlreadyPresent,
            rc => AddOutcome::Failed {
                rc,
                text: result.text,
            },
        })
    }

    /// Unbinds (best effort).
    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }

    async fn read_all(
        &mut self,
        base: &str,
        filter: &str,
        attributes: Vec<String>,
    ) -> Result<Vec<SearchEntry>, WatchError> {
        let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(PAGE_SIZE)),
        ];
        let url = self.url.clone();
        let failed = |reason: String| WatchError::Directory {
            url: url.clone(),
            reason,
        };
        let mut stream = self
            .ldap
            .streaming_search_with(adapters, base, Scope::Subtree, filter, attributes)
            .await
            .map_err(|error| failed(format!("refused the search under {base}: {error}")))?;
        let mut found = Vec::new();
        loop {
            match stream.next().await {
                Ok(Some(entry)) => found.push(SearchEntry::construct(entry)),
                Ok(None) => break,
                Err(error) => {
                    return Err(failed(format!(
                        "broke off the search under {base}: {error}"
                    )));
                }
            }
        }
        let result = stream.finish().await;
        if result.rc != 0 {
            return Err(failed(format!(
                "ended the search under {base} with LDAP result {} {}",
                result.rc, result.text
            )));
        }
        Ok(found)
    }
}
