//! From a directory entry to moss events: what an entry is (user or group), what moss last saw
//! of it, and the events that take the online side from the one to the other.
//!
//! Pure: no I/O, so that every rule of docs/DIRECTORY.md has a unit test here.

use std::collections::{BTreeSet, HashMap};

use moss_schemas::{
    AccountName, Description, DisplayName, DomainName, EmailAddress, EventData, GroupAdded,
    GroupMembersChanged, GroupName, GroupRemoved, MailAlias, OnlineAccount, PersonName, Reason,
    SkuPartNumber, Subject, Upn, UsageLocation, UserAdded, UserAliasAdded, UserAliasRemoved,
    UserDeactivated, UserReactivated, UserRemoved,
};
use serde::{Deserialize, Serialize};

/// When a directory entry counts as disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledRule {
    /// The attribute to look at (`pwdAccountLockedTime` by default; `userAccountControl` on
    /// Active Directory, where bit 2, ACCOUNTDISABLE, is tested).
    pub attribute: String,
    /// The value that means disabled (compared without case); `None` means "present at all".
    pub value: Option<String>,
}

impl DisabledRule {
    pub(crate) fn is_disabled(&self, attributes: &Attributes) -> bool {
        let values = attributes.values(&self.attribute);
        if self.attribute.eq_ignore_ascii_case("userAccountControl") {
            return values
                .iter()
                .filter_map(|value| value.trim().parse::<i64>().ok())
                .any(|flags| flags & 2 != 0);
        }
        match &self.value {
            None => !values.is_empty(),
            Some(wanted) => values
                .iter()
                .any(|value| value.eq_ignore_ascii_case(wanted)),
        }
    }
}

/// Online accounts for the users the watcher finds: each new user gets `<uid>@<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineAccountPolicy {
    /// The verified domain of the tenant the UPNs are made in.
    pub domain: DomainName,
    /// Where the accounts are used (licences need it).
    pub usage_location: UsageLocation,
    /// The licences every new account gets.
    pub licenses: Vec<SkuPartNumber>,
}

/// Which attributes mean what; the defaults suit OpenLDAP's inetOrgPerson and groupOfNames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryMapping {
    /// objectClass of users (`inetOrgPerson`).
    pub user_class: String,
    /// objectClass of groups (`groupOfNames`).
    pub group_class: String,
    /// The logon name (`uid`; `sAMAccountName` on Active Directory).
    pub account_attribute: String,
    /// Mail addresses that become aliases (`mail`; `proxyAddresses` on Active Directory, whose
    /// `smtp:` prefixes are dropped).
    pub alias_attribute: String,
    /// Group members, as DNs (`member`).
    pub member_attribute: String,
    /// When a user is disabled.
    pub disabled: DisabledRule,
    /// Online accounts for new users, if the watcher should ask for them.
    pub online_account: Option<OnlineAccountPolicy>,
}

impl Default for DirectoryMapping {
    fn default() -> DirectoryMapping {
        DirectoryMapping {
            user_class: "inetOrgPerson".to_owned(),
            group_class: "groupOfNames".to_owned(),
            account_attribute: "uid".to_owned(),
            alias_attribute: "mail".to_owned(),
            member_attribute: "member".to_owned(),
            disabled: DisabledRule {
                attribute: "pwdAccountLockedTime".to_owned(),
                value: None,
            },
            online_account: None,
        }
    }
}

impl DirectoryMapping {
    /// The search filter that selects users and groups.
    pub fn filter(&self) -> String {
        format!(
            "(|(objectClass={})(objectClass={}))",
            self.user_class, self.group_class
        )
    }

    /// The attributes the watcher asks for.
    pub fn attributes(&self) -> Vec<String> {
        vec![
            "objectClass".to_owned(),
            "entryCSN".to_owned(),
            "cn".to_owned(),
            "sn".to_owned(),
            "givenName".to_owned(),
            "displayName".to_owned(),
            "description".to_owned(),
            self.account_attribute.clone(),
            self.alias_attribute.clone(),
            self.member_attribute.clone(),
            self.disabled.attribute.clone(),
        ]
    }
}

/// An entry's attributes with names compared without case.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attributes(HashMap<String, Vec<String>>);

impl Attributes {
    pub(crate) fn new(attributes: HashMap<String, Vec<String>>) -> Attributes {
        let mut lowered: HashMap<String, Vec<String>> = HashMap::new();
        for (name, values) in attributes {
            lowered
                .entry(name.to_ascii_lowercase())
                .or_default()
                .extend(values);
        }
        Attributes(lowered)
    }

    pub(crate) fn values(&self, name: &str) -> &[String] {
        self.0
            .get(&name.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    pub(crate) fn first(&self, name: &str) -> Option<&str> {
        self.values(name).first().map(String::as_str)
    }
}

/// What moss last saw of a directory object, kept in the cursor so that a re-sent entry
/// (a refresh after a restart) produces no events and a change produces only its difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Seen {
    User {
        dn: String,
        disabled: bool,
        aliases: BTreeSet<String>,
        sequence: u64,
    },
    Group {
        dn: String,
        members: BTreeSet<String>,
        /// Member DNs not yet known to the watcher (normalised): when one of them appears, it
        /// is added to the group then, so the order entries arrive in does not matter.
        #[serde(default)]
        pending: BTreeSet<String>,
        sequence: u64,
    },
}

/// A DN as the watcher compares it: lower case, no spaces after commas.
pub(crate) fn normalise_dn(dn: &str) -> String {
    dn.split(',')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase()
}

impl Seen {
    pub(crate) fn dn(&self) -> &str {
        match self {
            Seen::User { dn, .. } | Seen::Group { dn, .. } => dn,
        }
    }

    pub(crate) fn sequence(&self) -> u64 {
        match self {
            Seen::User { sequence, .. } | Seen::Group { sequence, .. } => *sequence,
        }
    }
}

/// Why an entry could not become events (it is logged and skipped; the cursor keeps what it had).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MappingError {
    #[error("the entry {dn} is neither a {user_class} nor a {group_class}")]
    UnknownClass {
        dn: String,
        user_class: String,
        group_class: String,
    },
    #[error("the entry {dn} has no usable {attribute}: {reason}")]
    Attribute {
        dn: String,
        attribute: String,
        reason: String,
    },
}

/// The outcome of one entry: what to remember and the events to send, in order.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) seen: Seen,
    pub(crate) events: Vec<EventData>,
}

fn attribute_error(dn: &str, attribute: &str, reason: impl Into<String>) -> MappingError {
    MappingError::Attribute {
        dn: dn.to_owned(),
        attribute: attribute.to_owned(),
        reason: reason.into(),
    }
}

/// The events that bring the online side from `previous` to the entry as it is now.
/// `member_subject` resolves a member DN to the subject moss knows it by.
pub(crate) fn map_entry(
    mapping: &DirectoryMapping,
    dn: &str,
    attributes: &Attributes,
    previous: Option<&Seen>,
    sequence: u64,
    member_subject: &dyn Fn(&str) -> Option<Subject>,
) -> Result<Mapped, MappingError> {
    let classes = attributes.values("objectClass");
    let has_class = |wanted: &str| {
        classes
            .iter()
            .any(|class| class.eq_ignore_ascii_case(wanted))
    };
    if has_class(&mapping.group_class) {
        map_group(mapping, dn, attributes, previous, sequence, member_subject)
    } else if has_class(&mapping.user_class) {
        map_user(mapping, dn, attributes, previous, sequence)
    } else {
        Err(MappingError::UnknownClass {
            dn: dn.to_owned(),
            user_class: mapping.user_class.clone(),
            group_class: mapping.group_class.clone(),
        })
    }
}

fn aliases(
    mapping: &DirectoryMapping,
    dn: &str,
    attributes: &Attributes,
) -> Result<BTreeSet<String>, MappingError> {
    let mut found = BTreeSet::new();
    for value in attributes.values(&mapping.alias_attribute) {
        let (prefix, address) = match value.split_once(':') {
            Some((prefix, rest)) if !prefix.contains('@') => (Some(prefix), rest),
            _ => (None, value.as_str()),
        };
        // proxyAddresses also holds X500:, SIP: and other non-SMTP addresses.
        if prefix.is_some_and(|prefix| !prefix.eq_ignore_ascii_case("smtp")) {
            continue;
        }
        let address = EmailAddress::parse(address)
            .map_err(|error| attribute_error(dn, &mapping.alias_attribute, error.message))?;
        found.insert(address.to_string().to_ascii_lowercase());
    }
    Ok(found)
}

fn map_user(
    mapping: &DirectoryMapping,
    dn: &str,
    attributes: &Attributes,
    previous: Option<&Seen>,
    sequence: u64,
) -> Result<Mapped, MappingError> {
    let disabled = mapping.disabled.is_disabled(attributes);
    let aliases = aliases(mapping, dn, attributes)?;
    let mut events = Vec::new();
    let (was_disabled, had_aliases) = match previous {
        Some(Seen::User {
            disabled, aliases, ..
        }) => (*disabled, aliases.clone()),
        // A first sight (or an object that was a group and is now a user) starts from nothing.
        _ => {
            events.push(EventData::UserAdded(user_added(mapping, dn, attributes)?));
            (false, BTreeSet::new())
        }
    };
    if disabled && !was_disabled {
        let reason = Reason::parse(&format!(
            "disabled in the directory ({})",
            mapping.disabled.attribute
        ))
        .map_err(|error| attribute_error(dn, &mapping.disabled.attribute, error.message))?;
        events.push(EventData::UserDeactivated(UserDeactivated { reason }));
    } else if !disabled && was_disabled {
        events.push(EventData::UserReactivated(UserReactivated {}));
    }
    for address in aliases.difference(&had_aliases) {
        let address = EmailAddress::parse(address)
            .map_err(|error| attribute_error(dn, &mapping.alias_attribute, error.message))?;
        events.push(EventData::UserAliasAdded(UserAliasAdded { address }));
    }
    for address in had_aliases.difference(&aliases) {
        if let Ok(address) = EmailAddress::parse(address) {
            events.push(EventData::UserAliasRemoved(UserAliasRemoved { address }));
        }
    }
    Ok(Mapped {
        seen: Seen::User {
            dn: dn.to_owned(),
            disabled,
            aliases,
            sequence,
        },
        events,
    })
}

fn user_added(
    mapping: &DirectoryMapping,
    dn: &str,
    attributes: &Attributes,
) -> Result<UserAdded, MappingError> {
    let account = attributes
        .first(&mapping.account_attribute)
        .ok_or_else(|| attribute_error(dn, &mapping.account_attribute, "it is missing"))?;
    let account_name = AccountName::parse(account)
        .map_err(|error| attribute_error(dn, &mapping.account_attribute, error.message))?;
    let display = attributes
        .first("displayName")
        .or_else(|| attributes.first("cn"))
        .unwrap_or(account);
    let display_name = DisplayName::parse(display)
        .map_err(|error| attribute_error(dn, "displayName", error.message))?;
    let person = |name: &str| {
        attributes
            .first(name)
            .and_then(|value| PersonName::parse(value).ok())
    };
    let online_account = match &mapping.online_account {
        None => None,
        Some(policy) => {
            let upn = Upn::parse(&format!("{account}@{}", policy.domain))
                .map_err(|error| attribute_error(dn, &mapping.account_attribute, error.message))?;
            Some(OnlineAccount {
                upn,
                usage_location: policy.usage_location.clone(),
                licenses: policy.licenses.clone(),
            })
        }
    };
    Ok(UserAdded {
        account_name,
        display_name,
        given_name: person("givenName"),
        surname: person("sn"),
        online_account,
        initial_password: None,
    })
}

fn map_group(
    mapping: &DirectoryMapping,
    dn: &str,
    attributes: &Attributes,
    previous: Option<&Seen>,
    sequence: u64,
    member_subject: &dyn Fn(&str) -> Option<Subject>,
) -> Result<Mapped, MappingError> {
    let mut members = BTreeSet::new();
    let mut pending = BTreeSet::new();
    for member in attributes.values(&mapping.member_attribute) {
        match member_subject(member) {
            Some(subject) => {
                members.insert(subject.to_string());
            }
            // groupOfNames needs a member even when empty, so directories list placeholders
            // (the group's own DN, a dummy): those never resolve and are never named online.
            None if normalise_dn(member) == normalise_dn(dn) => {}
            None => {
                tracing::debug!(group = %dn, member = %member, "group member not known to the watcher yet");
                pending.insert(normalise_dn(member));
            }
        }
    }
    let subjects = |set: &BTreeSet<String>| -> Vec<Subject> {
        set.iter()
            .filter_map(|text| Subject::parse(text).ok())
            .collect()
    };
    let mut events = Vec::new();
    match previous {
        Some(Seen::Group {
            members: had_members,
            ..
        }) => {
            let add = subjects(&members.difference(had_members).cloned().collect());
            let remove = subjects(&had_members.difference(&members).cloned().collect());
            if !add.is_empty() || !remove.is_empty() {
                events.push(EventData::GroupMembersChanged(GroupMembersChanged {
                    add,
                    remove,
                }));
            }
        }
        _ => {
            let cn = attributes
                .first("cn")
                .ok_or_else(|| attribute_error(dn, "cn", "it is missing"))?;
            let name =
                GroupName::parse(cn).map_err(|error| attribute_error(dn, "cn", error.message))?;
            let alias_text: String = cn
                .chars()
                .filter(|character| character.is_ascii_alphanumeric() || "-_".contains(*character))
                .collect();
            let alias = MailAlias::parse(&alias_text)
                .map_err(|error| attribute_error(dn, "cn", error.message))?;
            let description = attributes
                .first("description")
                .and_then(|text| Description::parse(text).ok());
            events.push(EventData::GroupAdded(GroupAdded {
                name,
                alias,
                primary_smtp_address: None,
                description,
                allow_external_senders: false,
                members: subjects(&members),
            }));
        }
    }
    Ok(Mapped {
        seen: Seen::Group {
            dn: dn.to_owned(),
            members,
            pending,
            sequence,
        },
        events,
    })
}

/// The event for an object the directory deleted.
pub(crate) fn removal(previous: &Seen) -> EventData {
    match previous {
        Seen::User { .. } => EventData::UserRemoved(UserRemoved {}),
        Seen::Group { .. } => EventData::GroupRemoved(GroupRemoved {}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &[&str])]) -> Attributes {
        Attributes::new(
            pairs
                .iter()
                .map(|(name, values)| {
                    (
                        (*name).to_owned(),
                        values.iter().map(|value| (*value).to_owned()).collect(),
                    )
                })
                .collect(),
        )
    }

    fn ana(extra: &[(&str, &[&str])]) -> Attributes {
        let mut pairs: Vec<(&str, &[&str])> = vec![
            ("objectClass", &["top", "inetOrgPerson"]),
            ("uid", &["ana"]),
            ("cn", &["Ana Silva"]),
            ("sn", &["Silva"]),
            ("givenName", &["Ana"]),
        ];
        pairs.extend_from_slice(extra);
        entry(&pairs)
    }

    fn types(mapped: &Mapped) -> Vec<&'static str> {
        mapped
            .events
            .iter()
            .map(|event| event.event_type().as_str())
            .collect()
    }

    const DN: &str = "uid=ana,ou=people,dc=example,dc=org";

    #[test]
    fn a_new_user_is_added_with_its_aliases() {
        let mapping = DirectoryMapping::default();
        let mapped = map_entry(
            &mapping,
            DN,
            &ana(&[("mail", &["ana@example.org"])]),
            None,
            7,
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            types(&mapped),
            ["moss.user.added.v1", "moss.user.alias_added.v1"]
        );
        let EventData::UserAdded(added) = &mapped.events[0] else {
            panic!("not added")
        };
        assert_eq!(added.account_name.to_string(), "ana");
        assert_eq!(added.display_name.to_string(), "Ana Silva");
    }

    #[test]
    fn an_entry_seen_before_without_change_gives_no_events() {
        let mapping = DirectoryMapping::default();
        let first = map_entry(&mapping, DN, &ana(&[]), None, 7, &|_| None).unwrap();
        let again = map_entry(&mapping, DN, &ana(&[]), Some(&first.seen), 8, &|_| None).unwrap();
        assert!(again.events.is_empty());
    }

    #[test]
    fn the_disabling_attribute_deactivates_and_its_removal_reactivates() {
        let mapping = DirectoryMapping::default();
        let first = map_entry(&mapping, DN, &ana(&[]), None, 1, &|_| None).unwrap();
        let locked = map_entry(
            &mapping,
            DN,
            &ana(&[("pwdAccountLockedTime", &["000001010000Z"])]),
            Some(&first.seen),
            2,
            &|_| None,
        )
        .unwrap();
        assert_eq!(types(&locked), ["moss.user.deactivated.v1"]);
        let unlocked =
            map_entry(&mapping, DN, &ana(&[]), Some(&locked.seen), 3, &|_| None).unwrap();
        assert_eq!(types(&unlocked), ["moss.user.reactivated.v1"]);
    }

    #[test]
    fn active_directory_disables_by_the_account_control_bit() {
        let rule = DisabledRule {
            attribute: "userAccountControl".into(),
            value: None,
        };
        assert!(rule.is_disabled(&entry(&[("userAccountControl", &["514"])])));
        assert!(!rule.is_disabled(&entry(&[("userAccountControl", &["512"])])));
    }

    #[test]
    fn changed_mail_values_become_alias_events_and_non_smtp_proxies_are_ignored() {
        let mapping = DirectoryMapping {
            alias_attribute: "proxyAddresses".into(),
            ..DirectoryMapping::default()
        };
        let first = map_entry(
            &mapping,
            DN,
            &ana(&[("proxyAddresses", &["SMTP:ana@example.org", "X500:/o=x"])]),
            None,
            1,
            &|_| None,
        )
        .unwrap();
        let changed = map_entry(
            &mapping,
            DN,
            &ana(&[("proxyAddresses", &["smtp:a.silva@example.org"])]),
            Some(&first.seen),
            2,
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            types(&changed),
            ["moss.user.alias_added.v1", "moss.user.alias_removed.v1"]
        );
    }

    #[test]
    fn group_members_are_named_by_subject_and_changes_are_differences() {
        let mapping = DirectoryMapping::default();
        let ana = Subject::parse("a3489550-7fdb-1041-8691-b7be9ab4015a").unwrap();
        let bob = Subject::parse("b3489550-7fdb-1041-8691-b7be9ab4015a").unwrap();
        let (ana_for_lookup, bob_for_lookup) = (ana, bob);
        let lookup = move |dn: &str| match dn {
            "uid=ana" => Some(ana_for_lookup),
            "uid=bob" => Some(bob_for_lookup),
            _ => None,
        };
        let group = |members: &[&str]| {
            let mut pairs: Vec<(&str, &[&str])> =
                vec![("objectClass", &["groupOfNames"]), ("cn", &["staff"])];
            pairs.push(("member", members));
            entry(&pairs)
        };
        let first = map_entry(
            &mapping,
            "cn=staff",
            &group(&["uid=ana", "cn=dummy"]),
            None,
            1,
            &lookup,
        )
        .unwrap();
        let EventData::GroupAdded(added) = &first.events[0] else {
            panic!("not added")
        };
        assert_eq!(added.members, vec![ana]);
        let changed = map_entry(
            &mapping,
            "cn=staff",
            &group(&["uid=bob"]),
            Some(&first.seen),
            2,
            &lookup,
        )
        .unwrap();
        let EventData::GroupMembersChanged(change) = &changed.events[0] else {
            panic!("not changed")
        };
        assert_eq!(
            (change.add.clone(), change.remove.clone()),
            (vec![bob], vec![ana])
        );
        assert_eq!(
            removal(&changed.seen).event_type().as_str(),
            "moss.group.removed.v1"
        );
    }

    #[test]
    fn a_user_without_a_logon_name_is_an_error_naming_the_attribute() {
        let mapping = DirectoryMapping::default();
        let error = map_entry(
            &mapping,
            DN,
            &entry(&[("objectClass", &["inetOrgPerson"]), ("cn", &["X"])]),
            None,
            1,
            &|_| None,
        )
        .unwrap_err();
        assert!(error.to_string().contains("uid"), "{error}");
    }

    #[test]
    fn unknown_members_wait_and_the_group_itself_as_placeholder_is_ignored() {
        let mapping = DirectoryMapping::default();
        let group = entry(&[
            ("objectClass", &["groupOfNames"]),
            ("cn", &["late"]),
            ("member", &["cn=late,ou=groups", "uid=Erin, ou=people"]),
        ]);
        let mapped = map_entry(&mapping, "cn=late,ou=groups", &group, None, 1, &|_| None).unwrap();
        let Seen::Group {
            members, pending, ..
        } = &mapped.seen
        else {
            panic!("not a group")
        };
        assert!(members.is_empty());
        assert_eq!(pending.iter().collect::<Vec<_>>(), ["uid=erin,ou=people"]);
    }
}
