//! `moss watch ldap`: follows an OpenLDAP directory with the content synchronisation protocol
//! (RFC 4533, refreshAndPersist, served by the syncprov overlay) and turns each reported change
//! into events.
//!
//! Safety rules (docs/DIRECTORY.md): only an explicit delete from the server (a delete state,
//! or a syncIdSet with refreshDeletes) removes anything; an entry that is merely absent, a
//! refresh cut short, a connection lost or a server stopped is "unknown" and produces nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use ldap3::controls::{
    EntryState, RawControl, RefreshMode, SyncInfo, SyncRequest, SyncState, parse_syncinfo,
};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, ResultEntry, Scope, SearchEntry};
use moss_schemas::{Envelope, EventData, GroupMembersChanged, Sequence, Source, Subject};
use moss_store::{Cursor, CursorWrite, Store, StoreError};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::csn::{cookie_micros, csn_micros};
use super::mapping::{Attributes, DirectoryMapping, Seen, map_entry, normalise_dn, removal};
use super::poll::{PollSettings, run_poll_session};
use super::sink::{Delivered, IngestSink};
use super::tls::{LdapTls, certificate_rejected, connection_settings};

/// OID of the Sync State control carried by each entry (RFC 4533 §2.2).
const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
/// `e-syncRefreshRequired`: the server cannot resume from our cookie and asks for a full refresh.
const SYNC_REFRESH_REQUIRED: u32 = 4096;
/// LDAP `invalidCredentials`.
const INVALID_CREDENTIALS: u32 = 49;
const COOKIE_KEY: &str = "cookie";
const OBJECT_PREFIX: &str = "object/";

/// How the watcher learns what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WatchMode {
    /// RFC 4533 refreshAndPersist (OpenLDAP's syncprov): the server pushes each change.
    #[default]
    Syncrepl,
    /// Active Directory's way: poll for entries whose `uSNChanged` (or another ever-growing
    /// attribute) passed the stored watermark, and for tombstones with the Show Deleted control.
    UsnPoll(PollSettings),
}

/// What the LDAP watcher needs, checked before it connects.
#[derive(Debug, Clone)]
pub struct LdapWatchSettings {
    /// The directory (`ldap://dc1.example.org:389/`).
    pub url: String,
    /// The subtree to follow (`ou=people,dc=example,dc=org`).
    pub base: String,
    /// Who the watcher binds as; it needs read access to the subtree and to entryUUID/entryCSN.
    pub bind_dn: String,
    /// The bind password (read from a file by the CLI; never logged).
    pub password: SecretString,
    /// Which attributes mean what.
    pub mapping: DirectoryMapping,
    /// The watcher's own database (`<data dir>/watch-ldap`): its cookie and what it last saw.
    pub store_path: PathBuf,
    /// The producer's ingest (`http://127.0.0.1:8480`).
    pub ingest_url: String,
    /// The ingest's bearer token, when it listens off loopback.
    pub ingest_token: Option<SecretString>,
    /// Longest wait between reconnection attempts.
    pub max_reconnect_delay: Duration,
    /// ldaps:// or StartTLS, and which CA to trust.
    pub tls: LdapTls,
    /// Change notification (syncrepl) or polling (Active Directory).
    pub mode: WatchMode,
}

impl LdapWatchSettings {
    /// Settings with the default mapping (inetOrgPerson, groupOfNames) and reconnect delay.
    pub fn new(
        url: String,
        base: String,
        bind_dn: String,
        password: SecretString,
        store_path: PathBuf,
        ingest_url: String,
    ) -> LdapWatchSettings {
        LdapWatchSettings {
            url,
            base,
            bind_dn,
            password,
            mapping: DirectoryMapping::default(),
            store_path,
            ingest_url,
            ingest_token: None,
            max_reconnect_delay: Duration::from_secs(5),
            tls: LdapTls::default(),
            mode: WatchMode::Syncrepl,
        }
    }
}

/// Why the watcher stopped for good (a lost directory connection is not one: it reconnects).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A setting is unusable.
    #[error("invalid watcher setting {field}: {reason}")]
    Setting {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The watcher's database could not be opened, read or written.
    #[error("the watcher's cursor at {path} failed")]
    Store {
        /// The database folder.
        path: PathBuf,
        /// What the store said.
        #[source]
        source: StoreError,
    },
    /// The directory's TLS certificate is not trusted (or not for this host name).
    #[error(
        "the directory at {url} presented a certificate moss does not trust ({reason}); check the CA file (MOSS_LDAP_CA_FILE) and that the URL's host name is in the certificate"
    )]
    Certificate {
        /// The directory.
        url: String,
        /// What the TLS library said.
        reason: String,
    },
    /// The directory refused the bind credentials.
    #[error("the directory refused the bind as {bind_dn}; check the bind DN and the password file")]
    Bind {
        /// Who the watcher tried to bind as.
        bind_dn: String,
    },
    /// The directory could not be reached, or refused a read (an operator command's one-off
    /// connection; the watcher itself reconnects instead).
    #[error("the directory at {url} {reason}")]
    Directory {
        /// The directory.
        url: String,
        /// What failed, as a phrase ("could not be reached: …").
        reason: String,
    },
    /// The producer's ingest refused the events (a moss bug or a version mismatch).
    #[error("the producer refused the watcher's events with status {status}: {detail}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The problem body.
        detail: String,
    },
}

/// How one connection to the directory ended, short of a fatal error.
#[derive(Debug)]
pub(super) enum SessionEnd {
    Shutdown,
    /// The server cannot resume from the cookie: refresh from scratch, now.
    RefreshRequired,
    /// The connection broke or the server went away: try again after a pause.
    Lost(String),
}

/// The watcher's memory: the cookie and what it last saw of each object, mirrored in the cursor.
#[derive(Debug)]
pub(super) struct WatchState {
    pub(super) cursor: Cursor,
    pub(super) path: PathBuf,
    cookie: Option<Vec<u8>>,
    pub(super) seen: HashMap<String, Seen>,
    subjects_by_dn: HashMap<String, String>,
}

impl WatchState {
    fn load(store: &Store, path: PathBuf) -> Result<WatchState, WatchError> {
        let failed = |source| WatchError::Store {
            path: path.clone(),
            source,
        };
        let cursor = store.cursor("ldap").map_err(failed)?;
        let cookie = cursor.get(COOKIE_KEY).map_err(failed)?;
        let mut seen = HashMap::new();
        let mut subjects_by_dn = HashMap::new();
        for (key, value) in cursor.scan_prefix(OBJECT_PREFIX).map_err(failed)? {
            let subject = key.trim_start_matches(OBJECT_PREFIX).to_owned();
            let record: Seen =
                serde_json::from_slice(&value).map_err(|source| WatchError::Store {
                    path: path.clone(),
                    source: StoreError::Decode {
                        record: "watcher object",
                        source,
                    },
                })?;
            subjects_by_dn.insert(normalise_dn(record.dn()), subject.clone());
            seen.insert(subject, record);
        }
        Ok(WatchState {
            cursor,
            path,
            cookie,
            seen,
            subjects_by_dn,
        })
    }

    /// Stores the object's new state and the cookie in one flushed batch, then mirrors them.
    pub(super) async fn remember(
        &mut self,
        subject: &str,
        object: Option<Seen>,
        cookie: Option<Vec<u8>>,
    ) -> Result<(), WatchError> {
        let mut writes = Vec::new();
        let key = format!("{OBJECT_PREFIX}{subject}");
        match &object {
            Some(seen) => writes.push(CursorWrite::Set {
                key,
                value: serde_json::to_vec(seen).unwrap_or_default(),
            }),
            None => writes.push(CursorWrite::Remove { key }),
        }
        if let Some(value) = &cookie {
            writes.push(CursorWrite::Set {
                key: COOKIE_KEY.to_owned(),
                value: value.clone(),
            });
        }
        let cursor = self.cursor.clone();
        let written = tokio::task::spawn_blocking(move || cursor.write_all(&writes)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(WatchError::Store {
                    path: self.path.clone(),
                    source,
                });
            }
            Err(join) => {
                return Err(WatchError::Store {
                    path: self.path.clone(),
                    source: StoreError::Engine {
                        operation: "write a cursor",
                        detail: join.to_string(),
                    },
                });
            }
        }
        if let Some(previous) = self.seen.remove(subject) {
            self.subjects_by_dn.remove(&normalise_dn(previous.dn()));
        }
        if let Some(seen) = object {
            self.subjects_by_dn
                .insert(normalise_dn(seen.dn()), subject.to_owned());
            self.seen.insert(subject.to_owned(), seen);
        }
        if cookie.is_some() {
            self.cookie = cookie;
        }
        Ok(())
    }

    /// Writes (or removes, with `None`) one of the watcher's own keys, flushed.
    pub(super) async fn write_key(
        &self,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), WatchError> {
        let write = match value {
            Some(value) => CursorWrite::Set {
                key: key.to_owned(),
                value,
            },
            None => CursorWrite::Remove {
                key: key.to_owned(),
            },
        };
        let cursor = self.cursor.clone();
        tokio::task::spawn_blocking(move || cursor.write_all(&[write]))
            .await
            .map_err(|join| WatchError::Store {
                path: self.path.clone(),
                source: StoreError::Engine {
                    operation: "write a cursor",
                    detail: join.to_string(),
                },
            })?
            .map_err(|source| WatchError::Store {
                path: self.path.clone(),
                source,
            })
    }

    /// Reads one of the watcher's own keys.
    pub(super) fn read_key(&self, key: &str) -> Result<Option<Vec<u8>>, WatchError> {
        self.cursor.get(key).map_err(|source| WatchError::Store {
            path: self.path.clone(),
            source,
        })
    }

    async fn remember_cookie(&mut self, cookie: Option<Vec<u8>>) -> Result<(), WatchError> {
        if cookie.is_none() || cookie == self.cookie {
            return Ok(());
        }
        let mut writes = Vec::new();
        if let Some(value) = &cookie {
            writes.push(CursorWrite::Set {
                key: COOKIE_KEY.to_owned(),
                value: value.clone(),
            });
        }
        let cursor = self.cursor.clone();
        let written = tokio::task::spawn_blocking(move || cursor.write_all(&writes)).await;
        match written {
            Ok(Ok(())) => {
                self.cookie = cookie;
                Ok(())
            }
            Ok(Err(source)) => Err(WatchError::Store {
                path: self.path.clone(),
                source,
            }),
            Err(join) => Err(WatchError::Store {
                path: self.path.clone(),
                source: StoreError::Engine {
                    operation: "write a cursor",
                    detail: join.to_string(),
                },
            }),
        }
    }
}

/// Follows the directory until `shutdown` is cancelled, reconnecting (with backoff) whenever
/// the directory goes away. Returns `Err` only for what waiting cannot cure.
pub async fn run_ldap(
    settings: LdapWatchSettings,
    shutdown: CancellationToken,
) -> Result<(), WatchError> {
    let connection = connection_settings(&settings.url, &settings.tls)?;
    if let WatchMode::UsnPoll(poll) = &settings.mode {
        poll.check()?;
    }
    if settings.base.trim().is_empty() {
        return Err(WatchError::Setting {
            field: "base",
            reason: "must not be empty".to_owned(),
        });
    }
    let source = Source::parse(&format!("moss-watch/{}", settings.url)).map_err(|error| {
        WatchError::Setting {
            field: "url",
            reason: error.message,
        }
    })?;
    let store = Store::open(&settings.store_path).map_err(|source| WatchError::Store {
        path: settings.store_path.clone(),
        source,
    })?;
    let mut state = WatchState::load(&store, settings.store_path.clone())?;
    tracing::info!(
        url = %settings.url,
        base = %settings.base,
        known_objects = state.seen.len(),
        resuming = state.cookie.is_some(),
        mode = match settings.mode { WatchMode::Syncrepl => "syncrepl", WatchMode::UsnPoll(_) => "usn-poll" },
        tls = settings.url.starts_with("ldaps://") || settings.tls.starttls,
        "directory watcher starting"
    );
    let sink = IngestSink::new(&settings.ingest_url, settings.ingest_token.clone());
    let mut delay = Duration::from_millis(200);
    loop {
        let session = Session {
            settings: &settings,
            connection: &connection,
            source: &source,
            sink: &sink,
            shutdown: &shutdown,
        };
        let ended = match &settings.mode {
            WatchMode::Syncrepl => session.run(&mut state).await?,
            WatchMode::UsnPoll(poll) => run_poll_session(&session, poll, &mut state).await?,
        };
        match ended {
            SessionEnd::Shutdown => break,
            SessionEnd::RefreshRequired => {
                tracing::warn!(
                    "the directory cannot resume from the stored cookie; refreshing in full (known entries produce no events)"
                );
                let cursor = state.cursor.clone();
                let path = state.path.clone();
                tokio::task::spawn_blocking(move || {
                    cursor.write_all(&[CursorWrite::Remove {
                        key: COOKIE_KEY.to_owned(),
                    }])
                })
                .await
                .map_err(|join| WatchError::Store {
                    path: path.clone(),
                    source: StoreError::Engine {
                        operation: "write a cursor",
                        detail: join.to_string(),
                    },
                })?
                .map_err(|source| WatchError::Store { path, source })?;
                state.cookie = None;
            }
            SessionEnd::Lost(reason) => {
                tracing::warn!(reason = %reason, retry_in_ms = delay.as_millis() as u64, "lost the directory; nothing is treated as deleted; reconnecting");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(settings.max_reconnect_delay);
                continue;
            }
        }
        delay = Duration::from_millis(200);
    }
    if let Err(error) = store.flush() {
        tracing::error!(error = %error, "final flush of the watcher's cursor failed");
    }
    Ok(())
}

pub(super) struct Session<'a> {
    pub(super) settings: &'a LdapWatchSettings,
    connection: &'a LdapConnSettings,
    pub(super) source: &'a Source,
    sink: &'a IngestSink,
    pub(super) shutdown: &'a CancellationToken,
}

impl Session<'_> {
    /// Connects (with TLS when configured) and binds; `Ok(Err(end))` when the session ends
    /// before it began (shutdown, or a directory that is not there now).
    pub(super) async fn connect(&self) -> Result<Result<Ldap, SessionEnd>, WatchError> {
        let connected = tokio::select! {
            () = self.shutdown.cancelled() => return Ok(Err(SessionEnd::Shutdown)),
            connected = LdapConnAsync::with_settings(self.connection.clone(), &self.settings.url) => connected,
        };
        let (connection, mut ldap) = match connected {
            Ok(pair) => pair,
            Err(error) => {
                if let Some(reason) = certificate_rejected(&error) {
                    return Err(WatchError::Certificate {
                        url: self.settings.url.clone(),
                        reason,
                    });
                }
                return Ok(Err(SessionEnd::Lost(format!("cannot connect: {error}"))));
            }
        };
        ldap3::drive!(connection);
        match ldap
            .simple_bind(
                &self.settings.bind_dn,
                self.settings.password.expose_secret(),
            )
            .await
        {
            Ok(result) if result.rc == 0 => Ok(Ok(ldap)),
            Ok(result) if result.rc == INVALID_CREDENTIALS => Err(WatchError::Bind {
                bind_dn: self.settings.bind_dn.clone(),
            }),
            Ok(result) => Ok(Err(SessionEnd::Lost(format!(
                "bind failed with result {} {}",
                result.rc, result.text
            )))),
            Err(error) => Ok(Err(SessionEnd::Lost(format!("bind failed: {error}")))),
        }
    }

    async fn run(&self, state: &mut WatchState) -> Result<SessionEnd, WatchError> {
        let mut ldap = match self.connect().await? {
            Ok(ldap) => ldap,
            Err(end) => return Ok(end),
        };
        let request = SyncRequest {
            mode: RefreshMode::RefreshAndPersist,
            cookie: state.cookie.clone(),
            reload_hint: false,
        };
        let mut control = RawControl::from(request);
        control.crit = true;
        let filter = self.settings.mapping.filter();
        let attributes = self.settings.mapping.attributes();
        let started = ldap
            .with_controls(vec![control])
            .streaming_search(&self.settings.base, Scope::Subtree, &filter, attributes)
            .await;
        let mut stream = match started {
            Ok(stream) => stream,
            Err(error) => return Ok(SessionEnd::Lost(format!("sync search failed: {error}"))),
        };
        loop {
            let next = tokio::select! {
                () = self.shutdown.cancelled() => {
                    let _ = ldap.unbind().await;
                    return Ok(SessionEnd::Shutdown);
                }
                next = stream.next() => next,
            };
            match next {
                Ok(Some(entry)) => {
                    if let Some(end) = self.handle(state, entry).await? {
                        return Ok(end);
                    }
                }
                Ok(None) => {
                    let result = stream.finish().await;
                    if result.rc == SYNC_REFRESH_REQUIRED {
                        return Ok(SessionEnd::RefreshRequired);
                    }
                    return Ok(SessionEnd::Lost(format!(
                        "the sync search ended with result {} {}",
                        result.rc, result.text
                    )));
                }
                Err(error) => {
                    return Ok(SessionEnd::Lost(format!("the sync search broke: {error}")));
                }
            }
        }
    }

    /// One message of the sync search; `Some` ends the session.
    async fn handle(
        &self,
        state: &mut WatchState,
        entry: ResultEntry,
    ) -> Result<Option<SessionEnd>, WatchError> {
        let Some(message) = decode(entry) else {
            return Ok(Some(SessionEnd::Lost(
                "the directory sent a sync message that could not be decoded".to_owned(),
            )));
        };
        match message {
            SyncMessage::Other => Ok(None),
            SyncMessage::WithoutState => {
                tracing::warn!("an entry came without a sync state control; ignored");
                Ok(None)
            }
            SyncMessage::Info(SyncInfo::NewCookie(cookie)) => {
                state.remember_cookie(Some(cookie)).await?;
                Ok(None)
            }
            SyncMessage::Info(
                SyncInfo::RefreshDelete { cookie, .. } | SyncInfo::RefreshPresent { cookie, .. },
            ) => {
                state.remember_cookie(cookie).await?;
                Ok(None)
            }
            SyncMessage::Info(SyncInfo::SyncIdSet {
                cookie,
                refresh_deletes,
                sync_uuids,
            }) => {
                if refresh_deletes {
                    for uuid in sync_uuids {
                        if let Some(end) = self.deleted(state, &uuid, None).await? {
                            return Ok(Some(end));
                        }
                    }
                }
                // A present set (refresh_deletes false) only lists what still exists:
                // absence from it is never taken as a delete.
                state.remember_cookie(cookie).await?;
                Ok(None)
            }
            SyncMessage::Entry {
                state: sync_state,
                entry,
            } => match (sync_state.state, entry) {
                (EntryState::Present, _) => Ok(None),
                (EntryState::Delete, _) => {
                    self.deleted(state, &sync_state.entry_uuid, sync_state.cookie)
                        .await
                }
                (EntryState::Add | EntryState::Modify, Some(found)) => {
                    self.changed(state, &sync_state.entry_uuid, found, sync_state.cookie)
                        .await
                }
                (EntryState::Add | EntryState::Modify, None) => Ok(None),
            },
        }
    }

    async fn changed(
        &self,
        state: &mut WatchState,
        uuid: &[u8],
        found: SearchEntry,
        cookie: Option<Vec<u8>>,
    ) -> Result<Option<SessionEnd>, WatchError> {
        let Some(subject) = subject_of(uuid) else {
            tracing::warn!(dn = %found.dn, "an entry with an unusable entryUUID; ignored");
            return Ok(None);
        };
        let attributes = Attributes::new(found.attrs);
        let csn = attributes
            .values("entryCSN")
            .iter()
            .filter_map(|csn| csn_micros(csn))
            .max()
            .unwrap_or_else(now_micros);
        self.apply_entry(state, subject, &found.dn, &attributes, csn, cookie)
            .await
    }

    /// Maps one entry as it is now against what the watcher last saw of `subject`, publishes
    /// the difference and remembers the entry (with `cookie`, when given). `observed` is the
    /// change's own place in time (µs); the sequence never goes below the last one used + 1.
    pub(super) async fn apply_entry(
        &self,
        state: &mut WatchState,
        subject: Subject,
        dn: &str,
        attributes: &Attributes,
        observed: u64,
        cookie: Option<Vec<u8>>,
    ) -> Result<Option<SessionEnd>, WatchError> {
        let key = subject.to_string();
        let previous = state.seen.get(&key);
        let base = observed.max(previous.map_or(0, |seen| seen.sequence() + 1));
        let lookup = |dn: &str| {
            state
                .subjects_by_dn
                .get(&normalise_dn(dn))
                .and_then(|subject| Subject::parse(subject).ok())
        };
        let mapped = match map_entry(
            &self.settings.mapping,
            dn,
            attributes,
            previous,
            base,
            &lookup,
        ) {
            Ok(mapped) => mapped,
            Err(error) => {
                tracing::warn!(error = %error, "directory entry skipped");
                state.remember_cookie(cookie).await?;
                return Ok(None);
            }
        };
        let count = mapped.events.len() as u64;
        let mut seen = mapped.seen;
        set_sequence(&mut seen, base + count.saturating_sub(1));
        let events: Vec<Envelope> = mapped
            .events
            .into_iter()
            .zip(0u64..)
            .map(|(data, offset)| {
                Envelope::new(self.source.clone(), subject, Sequence(base + offset), data)
            })
            .collect();
        if self.publish(events).await? == Delivered::Interrupted {
            return Ok(Some(SessionEnd::Shutdown));
        }
        let user_dn = match &seen {
            Seen::User { dn, .. } => Some(normalise_dn(dn)),
            Seen::Group { .. } => None,
        };
        state.remember(&key, Some(seen), cookie).await?;
        match user_dn {
            Some(dn) => self.join_waiting_groups(state, &dn, subject).await,
            None => Ok(None),
        }
    }

    /// Adds a user that just appeared to the groups that named it before the watcher knew it.
    async fn join_waiting_groups(
        &self,
        state: &mut WatchState,
        user_dn: &str,
        user: Subject,
    ) -> Result<Option<SessionEnd>, WatchError> {
        let waiting: Vec<(String, Seen)> = state
            .seen
            .iter()
            .filter(|(_, seen)| matches!(seen, Seen::Group { pending, .. } if pending.contains(user_dn)))
            .map(|(key, seen)| (key.clone(), seen.clone()))
            .collect();
        for (group_key, mut group) in waiting {
            let Seen::Group {
                members,
                pending,
                sequence,
                ..
            } = &mut group
            else {
                continue;
            };
            let Ok(group_subject) = Subject::parse(&group_key) else {
                continue;
            };
            pending.remove(user_dn);
            members.insert(user.to_string());
            *sequence = (*sequence + 1).max(now_micros());
            let event = Envelope::new(
                self.source.clone(),
                group_subject,
                Sequence(*sequence),
                EventData::GroupMembersChanged(GroupMembersChanged {
                    add: vec![user],
                    remove: Vec::new(),
                }),
            );
            if self.publish(vec![event]).await? == Delivered::Interrupted {
                return Ok(Some(SessionEnd::Shutdown));
            }
            state.remember(&group_key, Some(group), None).await?;
        }
        Ok(None)
    }

    async fn deleted(
        &self,
        state: &mut WatchState,
        uuid: &[u8],
        cookie: Option<Vec<u8>>,
    ) -> Result<Option<SessionEnd>, WatchError> {
        let Some(subject) = subject_of(uuid) else {
            return Ok(None);
        };
        let observed = cookie.as_deref().and_then(cookie_micros);
        self.remove_subject(state, subject, observed, cookie).await
    }

    /// Publishes the removal of `subject`, when the watcher knows it, and forgets it. Called only
    /// on the directory's explicit word that the object is gone.
    pub(super) async fn remove_subject(
        &self,
        state: &mut WatchState,
        subject: Subject,
        observed: Option<u64>,
        cookie: Option<Vec<u8>>,
    ) -> Result<Option<SessionEnd>, WatchError> {
        let key = subject.to_string();
        let Some(previous) = state.seen.get(&key) else {
            tracing::debug!(subject = %key, "the directory deleted an object moss never saw");
            state.remember_cookie(cookie).await?;
            return Ok(None);
        };
        let sequence = observed
            .unwrap_or_else(now_micros)
            .max(previous.sequence() + 1);
        let event = Envelope::new(
            self.source.clone(),
            subject,
            Sequence(sequence),
            removal(previous),
        );
        if self.publish(vec![event]).await? == Delivered::Interrupted {
            return Ok(Some(SessionEnd::Shutdown));
        }
        state.remember(&key, None, cookie).await?;
        Ok(None)
    }

    async fn publish(&self, events: Vec<Envelope>) -> Result<Delivered, WatchError> {
        for event in &events {
            tracing::info!(subject = %event.subject, r#type = %event.event_type(), sequence = event.sequence.value(), "directory change");
        }
        self.sink.deliver(events, self.shutdown).await
    }
}

/// A sync search message, decoded.
enum SyncMessage {
    Info(SyncInfo),
    Entry {
        state: SyncState,
        entry: Option<SearchEntry>,
    },
    WithoutState,
    /// A referral: the watcher follows one server.
    Other,
}

/// Decodes a message; `None` when it is malformed. ldap3's decoders panic on malformed BER
/// rather than return an error, so a broken server message is caught here and treated like a
/// lost connection (reconnect, resume from the cookie), never allowed to take the watcher down.
fn decode(entry: ResultEntry) -> Option<SyncMessage> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        if entry.is_ref() {
            return SyncMessage::Other;
        }
        if entry.is_intermediate() {
            return SyncMessage::Info(parse_syncinfo(entry));
        }
        let sync_state = entry
            .1
            .iter()
            .find(|control| control.1.ctype == SYNC_STATE_OID && control.1.val.is_some())
            .map(|control| control.1.parse::<SyncState>());
        match sync_state {
            None => SyncMessage::WithoutState,
            Some(state) => {
                let entry = match state.state {
                    EntryState::Add | EntryState::Modify => Some(SearchEntry::construct(entry)),
                    EntryState::Present | EntryState::Delete => None,
                };
                SyncMessage::Entry { state, entry }
            }
        }
    }))
    .ok()
}

fn set_sequence(seen: &mut Seen, value: u64) {
    match seen {
        Seen::User { sequence, .. } | Seen::Group { sequence, .. } => *sequence = value,
    }
}

fn subject_of(uuid: &[u8]) -> Option<Subject> {
    let uuid = uuid::Uuid::from_slice(uuid).ok()?;
    Subject::try_from(uuid).ok()
}

pub(super) fn now_micros() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use ldap3::asn1::{PL, StructureTag, TagClass};

    use super::*;

    #[test]
    fn a_malformed_sync_message_is_a_lost_session_not_a_crash() {
        let garbage = ResultEntry::new(StructureTag {
            class: TagClass::Application,
            id: 25,
            payload: PL::P(vec![1, 2, 3]),
        });
        assert!(decode(garbage).is_none());
    }

    #[test]
    fn distinguished_names_compare_without_case_or_spaces_after_commas() {
        assert_eq!(
            normalise_dn("uid=Ana, ou=People,dc=Example,dc=org"),
            "uid=ana,ou=people,dc=example,dc=org"
        );
    }
}
