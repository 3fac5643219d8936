//! `moss watch ldap --mode usn-poll`: Active Directory's way to follow changes. AD does not
//! implement RFC 4533; instead every write bumps the object's `uSNChanged` on the domain
//! controller that holds it, and a deleted object becomes a tombstone (`isDeleted: TRUE`, moved
//! to `CN=Deleted Objects`, its `objectGUID` kept) that only the Show Deleted control shows.
//!
//! Each pass: read the DC's `highestCommittedUSN` (rootDSE) first, then every user and group
//! with `uSNChanged >= watermark` (paged, as AD answers at most 1000 entries per page), then the
//! tombstones with `uSNChanged >= watermark`; only when every read of the pass completed does the
//! watermark move to the `highestCommittedUSN` read before them. An entry seen again unchanged
//! produces no events (the watcher's last-seen records), so re-reading from an older watermark is
//! quiet; a read cut short leaves the watermark where it was, and only a tombstone removes.
//!
//! The watermark attribute is a setting: with anything but `uSNChanged` (the tests use
//! OpenLDAP's `entryCSN`) there is no `highestCommittedUSN`, and the new watermark is the largest
//! value the pass saw.

use std::cmp::Ordering;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::RawControl;
use ldap3::{Ldap, Scope, SearchEntry, ldap_escape};
use moss_schemas::Subject;

use super::ldap::{Session, SessionEnd, WatchError, WatchState, now_micros};
use super::mapping::Attributes;

/// OID of AD's Show Deleted control (LDAP_SERVER_SHOW_DELETED_OID).
const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";
const WATERMARK_KEY: &str = "watermark";
const WATERMARK_SERVER_KEY: &str = "watermark_server";
const PAGE_SIZE: i32 = 500;

/// What the polling mode needs beyond the common settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSettings {
    /// The attribute that names an object for good: `objectGUID` (16 bytes, AD's byte order)
    /// or a text UUID such as OpenLDAP's `entryUUID`.
    pub subject_attribute: String,
    /// The attribute that grows with every change: `uSNChanged` on AD.
    pub watermark_attribute: String,
    /// The pause between passes.
    pub interval: Duration,
    /// Where tombstones are; by default `CN=Deleted Objects,<defaultNamingContext>` from the
    /// rootDSE. Searched with the Show Deleted control.
    pub deleted_base: Option<String>,
}

impl Default for PollSettings {
    fn default() -> PollSettings {
        PollSettings {
            subject_attribute: "objectGUID".to_owned(),
            watermark_attribute: "uSNChanged".to_owned(),
            interval: Duration::from_secs(30),
            deleted_base: None,
        }
    }
}

impl PollSettings {
    pub(super) fn check(&self) -> Result<(), WatchError> {
        let attribute = |field: &'static str, value: &str| {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || character == '-')
            {
                return Err(WatchError::Setting {
                    field,
                    reason: format!("{value:?} is not an attribute name"),
                });
            }
            Ok(())
        };
        attribute("subject_attribute", &self.subject_attribute)?;
        attribute("watermark_attribute", &self.watermark_attribute)?;
        if self.interval.is_zero() {
            return Err(WatchError::Setting {
                field: "poll_interval",
                reason: "must be more than zero".to_owned(),
            });
        }
        Ok(())
    }

    fn uses_usn(&self) -> bool {
        self.watermark_attribute.eq_ignore_ascii_case("uSNChanged")
    }
}

/// One connection's worth of polling: passes until shutdown or a lost directory.
pub(super) async fn run_poll_session(
    session: &Session<'_>,
    poll: &PollSettings,
    state: &mut WatchState,
) -> Result<SessionEnd, WatchError> {
    let mut ldap = match session.connect().await? {
        Ok(ldap) => ldap,
        Err(end) => return Ok(end),
    };
    loop {
        match pass(session, poll, state, &mut ldap).await? {
            Pass::Done => {}
            Pass::End(end) => {
                let _ = ldap.unbind().await;
                return Ok(end);
            }
        }
        tokio::select! {
            () = session.shutdown.cancelled() => {
                let _ = ldap.unbind().await;
                return Ok(SessionEnd::Shutdown);
            }
            () = tokio::time::sleep(poll.interval) => {}
        }
    }
}

enum Pass {
    Done,
    End(SessionEnd),
}

/// What the rootDSE says of the server.
#[derive(Debug, Default)]
struct RootDse {
    highest_usn: Option<String>,
    naming_context: Option<String>,
    server: String,
}

async fn read_root_dse(ldap: &mut Ldap) -> Result<RootDse, String> {
    let found = ldap
        .search(
            "",
            Scope::Base,
            "(objectClass=*)",
            vec![
                "highestCommittedUSN",
                "defaultNamingContext",
                "dsServiceName",
            ],
        )
        .await
        .and_then(ldap3::SearchResult::success)
        .map_err(|error| format!("reading the rootDSE failed: {error}"))?;
    let Some(entry) = found.0.into_iter().next() else {
        return Ok(RootDse::default());
    };
    let attributes = Attributes::new(SearchEntry::construct(entry).attrs);
    let first = |name: &str| attributes.values(name).first().cloned();
    Ok(RootDse {
        highest_usn: first("highestCommittedUSN"),
        naming_context: first("defaultNamingContext"),
        server: first("dsServiceName").unwrap_or_default(),
    })
}

async fn pass(
    session: &Session<'_>,
    poll: &PollSettings,
    state: &mut WatchState,
    ldap: &mut Ldap,
) -> Result<Pass, WatchError> {
    let root = match read_root_dse(ldap).await {
        Ok(root) => root,
        Err(reason) => return Ok(Pass::End(SessionEnd::Lost(reason))),
    };
    // A USN is one domain controller's counter: after a move to another DC, start over from a
    // full read (quiet for what the watcher has seen) rather than compare numbers across DCs.
    let stored_server = state
        .read_key(WATERMARK_SERVER_KEY)?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let mut watermark = state
        .read_key(WATERMARK_KEY)?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    if poll.uses_usn() && stored_server.is_some_and(|server| server != root.server) {
        tracing::warn!(server = %root.server, "another domain controller answers; reading everything again (entries already seen produce no events)");
        watermark = None;
    }
    let next_watermark = if poll.uses_usn() {
        root.highest_usn.clone()
    } else {
        None
    };

    let mut greatest: Option<String> = None;
    let mapping = &session.settings.mapping;
    // On AD a computer is a `user` too; elsewhere "computer" may be no class at all, and a
    // filter on an unknown class matches nothing, so the exclusion is only made for AD's class.
    let computers = if mapping.user_class.eq_ignore_ascii_case("user") {
        "(!(objectClass=computer))"
    } else {
        ""
    };
    let changed_filter = match &watermark {
        Some(mark) => format!(
            "(&{}{computers}({}>={}))",
            mapping.filter(),
            poll.watermark_attribute,
            ldap_escape(mark)
        ),
        None => format!("(&{}{computers})", mapping.filter()),
    };
    let mut attributes = mapping.attributes();
    attributes.extend([
        poll.subject_attribute.clone(),
        poll.watermark_attribute.clone(),
        "isDeleted".to_owned(),
    ]);
    let entries = match read_all(
        ldap,
        &session.settings.base,
        &changed_filter,
        &attributes,
        false,
    )
    .await
    {
        Ok(entries) => entries,
        Err(reason) => return Ok(Pass::End(SessionEnd::Lost(reason))),
    };
    let mut entries: Vec<(Option<String>, SearchEntry)> = entries
        .into_iter()
        .map(|entry| (watermark_of(poll, &entry), entry))
        .collect();
    // The directory's own order of changes, as far as the watermark tells it.
    entries.sort_by(|(a, _), (b, _)| compare_marks(a.as_deref(), b.as_deref()));
    for (mark, entry) in entries {
        greatest = later(greatest, mark);
        // A tombstone shows here only when the followed base holds the deleted-objects
        // container and the server shows tombstones unasked; it is the tombstone search's.
        if entry.attrs.iter().any(|(name, values)| {
            name.eq_ignore_ascii_case("isDeleted")
                && values
                    .iter()
                    .any(|value| value.eq_ignore_ascii_case("TRUE"))
        }) {
            continue;
        }
        if let Some(end) = handle_entry(session, poll, state, entry).await? {
            return Ok(Pass::End(end));
        }
    }

    // Tombstones: only these remove anything.
    let deleted_base = poll.deleted_base.clone().or_else(|| {
        root.naming_context
            .as_ref()
            .map(|context| format!("CN=Deleted Objects,{context}"))
    });
    if let Some(deleted_base) = deleted_base {
        let tombstone_filter = match &watermark {
            Some(mark) => format!(
                "(&(isDeleted=TRUE)({}>={}))",
                poll.watermark_attribute,
                ldap_escape(mark)
            ),
            None => "(isDeleted=TRUE)".to_owned(),
        };
        let wanted = vec![
            poll.subject_attribute.clone(),
            poll.watermark_attribute.clone(),
            "isDeleted".to_owned(),
        ];
        match read_all(ldap, &deleted_base, &tombstone_filter, &wanted, true).await {
            Ok(tombstones) => {
                for entry in tombstones {
                    greatest = later(greatest, watermark_of(poll, &entry));
                    if let Some(end) = handle_entry(session, poll, state, entry).await? {
                        return Ok(Pass::End(end));
                    }
                }
            }
            Err(reason) if reason.contains(NO_SUCH_OBJECT) => {
                tracing::debug!(base = %deleted_base, "no deleted-objects container; no tombstones read");
            }
            Err(reason) => return Ok(Pass::End(SessionEnd::Lost(reason))),
        }
    }

    // Every read of the pass completed: move the watermark.
    if let Some(mark) = next_watermark.or(greatest)
        && watermark.as_deref() != Some(mark.as_str())
    {
        state
            .write_key(WATERMARK_KEY, Some(mark.clone().into_bytes()))
            .await?;
        if poll.uses_usn() {
            state
                .write_key(WATERMARK_SERVER_KEY, Some(root.server.clone().into_bytes()))
                .await?;
        }
        tracing::debug!(watermark = %mark, "poll pass complete");
    }
    Ok(Pass::Done)
}

const NO_SUCH_OBJECT: &str = "rc=32";

/// Every entry a paged search returns; `Err` when the read did not complete (then nothing of
/// what is missing may be taken as gone).
async fn read_all(
    ldap: &mut Ldap,
    base: &str,
    filter: &str,
    attributes: &[String],
    show_deleted: bool,
) -> Result<Vec<SearchEntry>, String> {
    let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(PAGE_SIZE)),
    ];
    if show_deleted {
        // Not critical: a server without it (OpenLDAP) ignores it and shows no tombstones,
        // which removes nothing.
        ldap.with_controls(vec![RawControl {
            ctype: SHOW_DELETED_OID.to_owned(),
            crit: false,
            val: None,
        }]);
    }
    let mut stream = ldap
        .streaming_search_with(adapters, base, Scope::Subtree, filter, attributes.to_vec())
        .await
        .map_err(|error| format!("the poll search under {base} failed: {error}"))?;
    let mut found = Vec::new();
    loop {
        match stream.next().await {
            Ok(Some(entry)) => {
                let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    SearchEntry::construct(entry)
                }))
                .map_err(|_| "the directory sent an entry that could not be decoded".to_owned())?;
                found.push(decoded);
            }
            Ok(None) => break,
            Err(error) => return Err(format!("the poll search under {base} broke: {error}")),
        }
    }
    let result = stream.finish().await;
    if result.rc != 0 {
        return Err(format!(
            "the poll search under {base} ended with rc={} {}",
            result.rc, result.text
        ));
    }
    Ok(found)
}

async fn handle_entry(
    session: &Session<'_>,
    poll: &PollSettings,
    state: &mut WatchState,
    entry: SearchEntry,
) -> Result<Option<SessionEnd>, WatchError> {
    let Some(subject) = subject_from(
        entry
            .attrs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&poll.subject_attribute))
            .map_or(&[][..], |(_, values)| values.as_slice()),
        entry
            .bin_attrs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&poll.subject_attribute))
            .map_or(&[][..], |(_, values)| values.as_slice()),
    ) else {
        tracing::warn!(dn = %entry.dn, attribute = %poll.subject_attribute, "an entry without a usable subject attribute; ignored");
        return Ok(None);
    };
    let dn = entry.dn.clone();
    let attributes = Attributes::new(entry.attrs);
    if is_tombstone(&attributes) {
        return session
            .remove_subject(state, subject, Some(now_micros()), None)
            .await;
    }
    // AD's uSNChanged is a counter on another scale than the password hook's clock (µs), so the
    // sequence is the time the watcher read the change: later reads order after earlier ones
    // and after a password change published before them.
    session
        .apply_entry(state, subject, &dn, &attributes, now_micros(), None)
        .await
}

/// `isDeleted: TRUE`: the object is a tombstone.
pub(crate) fn is_tombstone(attributes: &Attributes) -> bool {
    attributes
        .values("isDeleted")
        .iter()
        .any(|value| value.eq_ignore_ascii_case("TRUE"))
}

/// The subject an entry's identifying attribute gives: AD's binary `objectGUID` (the first three
/// fields little-endian, as Windows shows them) or a UUID in text (`entryUUID`).
pub(crate) fn subject_from(text: &[String], binary: &[Vec<u8>]) -> Option<Subject> {
    let uuid = if let Some(bytes) = binary.first() {
        uuid::Uuid::from_slice_le(bytes).ok()?
    } else {
        let value = text.first()?;
        match uuid::Uuid::parse_str(value.trim()) {
            Ok(uuid) => uuid,
            // A GUID whose 16 bytes happen to be valid UTF-8 arrives as text.
            Err(_) => uuid::Uuid::from_slice_le(value.as_bytes()).ok()?,
        }
    };
    Subject::try_from(uuid).ok()
}

fn watermark_of(poll: &PollSettings, entry: &SearchEntry) -> Option<String> {
    entry
        .attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&poll.watermark_attribute))
        .and_then(|(_, values)| {
            values
                .iter()
                .cloned()
                .max_by(|a, b| compare_marks(Some(a), Some(b)))
        })
}

/// Watermarks compare as numbers when both are (USNs), otherwise as text (CSNs and generalized
/// times have a fixed width, so text order is time order).
fn compare_marks(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            _ => a.cmp(b),
        },
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

fn later(current: Option<String>, candidate: Option<String>) -> Option<String> {
    match compare_marks(current.as_deref(), candidate.as_deref()) {
        Ordering::Less => candidate,
        _ => current,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::watch::mapping::{DirectoryMapping, DisabledRule, Seen, map_entry, removal};

    #[test]
    fn an_object_guid_in_ad_byte_order_becomes_the_subject_windows_shows() {
        // Get-ADUser shows ObjectGUID 3f2504e0-4f89-11d3-9a0c-0305e82c3301 for these bytes.
        let bytes = vec![
            0xe0, 0x04, 0x25, 0x3f, 0x89, 0x4f, 0xd3, 0x11, 0x9a, 0x0c, 0x03, 0x05, 0xe8, 0x2c,
            0x33, 0x01,
        ];
        let subject = subject_from(&[], &[bytes]).unwrap();
        assert_eq!(subject.to_string(), "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        // The same GUID as text (entryUUID, or a GUID that came as valid UTF-8).
        let text = subject_from(&["3f2504e0-4f89-11d3-9a0c-0305e82c3301".to_owned()], &[]);
        assert_eq!(text, Some(subject));
        assert_eq!(subject_from(&[], &[vec![1, 2, 3]]), None, "not 16 bytes");
        assert_eq!(subject_from(&[], &[vec![0; 16]]), None, "the nil GUID");
    }

    #[test]
    fn an_ad_user_maps_with_the_ad_attributes() {
        let mapping = DirectoryMapping {
            user_class: "user".into(),
            group_class: "group".into(),
            account_attribute: "sAMAccountName".into(),
            alias_attribute: "proxyAddresses".into(),
            member_attribute: "member".into(),
            disabled: DisabledRule {
                attribute: "userAccountControl".into(),
                value: None,
            },
            online_account: None,
        };
        let entry = |control: &str| {
            let pairs: HashMap<String, Vec<String>> = [
                (
                    "objectClass",
                    vec!["top", "person", "organizationalPerson", "user"],
                ),
                ("sAMAccountName", vec!["ana"]),
                ("displayName", vec!["Ana Silva"]),
                ("userAccountControl", vec![control]),
                ("proxyAddresses", vec!["SMTP:ana@example.org", "x500:/o=Ex"]),
                ("uSNChanged", vec!["41234"]),
            ]
            .into_iter()
            .map(|(name, values)| {
                (
                    name.to_owned(),
                    values.into_iter().map(str::to_owned).collect(),
                )
            })
            .collect();
            Attributes::new(pairs)
        };
        let dn = "CN=Ana Silva,OU=Staff,DC=example,DC=org";
        // 512 = NORMAL_ACCOUNT; 514 = NORMAL_ACCOUNT | ACCOUNTDISABLE (bit 2).
        let first = map_entry(&mapping, dn, &entry("512"), None, 1, &|_| None).unwrap();
        let kinds: Vec<&str> = first
            .events
            .iter()
            .map(|event| event.event_type().as_str())
            .collect();
        assert_eq!(kinds, ["moss.user.added.v1", "moss.user.alias_added.v1"]);
        let disabled =
            map_entry(&mapping, dn, &entry("514"), Some(&first.seen), 2, &|_| None).unwrap();
        let kinds: Vec<&str> = disabled
            .events
            .iter()
            .map(|event| event.event_type().as_str())
            .collect();
        assert_eq!(kinds, ["moss.user.deactivated.v1"]);
        // 66050 = 514 | DONT_EXPIRE_PASSWORD: still disabled, nothing new.
        let still = map_entry(
            &mapping,
            dn,
            &entry("66050"),
            Some(&disabled.seen),
            3,
            &|_| None,
        )
        .unwrap();
        assert!(still.events.is_empty());
        assert!(matches!(still.seen, Seen::User { disabled: true, .. }));
        assert_eq!(
            removal(&still.seen).event_type().as_str(),
            "moss.user.removed.v1"
        );
    }

    #[test]
    fn a_tombstone_is_recognised_by_is_deleted() {
        let tombstone = Attributes::new(HashMap::from([(
            "isDeleted".to_owned(),
            vec!["TRUE".to_owned()],
        )]));
        assert!(is_tombstone(&tombstone));
        assert!(!is_tombstone(&Attributes::new(HashMap::new())));
    }

    #[test]
    fn watermarks_compare_as_numbers_when_they_are_usns_and_as_text_otherwise() {
        assert_eq!(compare_marks(Some("9"), Some("10")), Ordering::Less);
        assert_eq!(
            compare_marks(
                Some("20261129005747.520097Z#000000#000#000000"),
                Some("20261129005748.000001Z#000000#000#000000")
            ),
            Ordering::Less
        );
        assert_eq!(
            later(Some("10".into()), Some("9".into())),
            Some("10".into())
        );
        assert_eq!(later(None, Some("9".into())), Some("9".into()));
    }

    #[test]
    fn poll_settings_name_what_is_wrong() {
        let bad = PollSettings {
            watermark_attribute: "uSNChanged)(x=*".into(),
            ..PollSettings::default()
        };
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("watermark_attribute")
        );
        let zero = PollSettings {
            interval: Duration::ZERO,
            ..PollSettings::default()
        };
        assert!(
            zero.check()
                .unwrap_err()
                .to_string()
                .contains("poll_interval")
        );
    }
}
