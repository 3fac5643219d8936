//! The tenant's objects: domains, SKUs, users (active and soft-deleted) and groups, with the
//! indexes that keep lookups cheap. Knows nothing of HTTP; the Graph and Exchange modules turn
//! its answers into wire messages.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::seed::{Seed, SkuSeed};

/// One domain of the tenant.
#[derive(Clone, Debug)]
pub(crate) struct Domain {
    pub(crate) name: String,
    pub(crate) verified: bool,
    pub(crate) default: bool,
}

/// One subscribed SKU and its current seat count.
#[derive(Clone, Debug)]
pub(crate) struct Sku {
    pub(crate) seed: SkuSeed,
    pub(crate) prepaid: u32,
    pub(crate) subscription_id: Uuid,
}

/// A licence held by a user.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AssignedLicense {
    pub(crate) sku_id: Uuid,
    pub(crate) disabled_plans: Vec<Uuid>,
}

/// A salted digest: the emulator never keeps a password in clear.
#[derive(Clone)]
pub(crate) struct PasswordDigest {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl std::fmt::Debug for PasswordDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordDigest(****)")
    }
}

impl PasswordDigest {
    pub(crate) fn of(password: &str) -> PasswordDigest {
        let salt: [u8; 16] = rand::rng().random();
        PasswordDigest {
            salt,
            digest: Self::hash(&salt, password),
        }
    }

    fn hash(salt: &[u8; 16], password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(salt);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    pub(crate) fn matches(&self, password: &str) -> bool {
        Self::hash(&self.salt, password) == self.digest
    }
}

/// An Exchange mailbox; exists from `ready_at` on.
#[derive(Clone, Debug)]
pub(crate) struct Mailbox {
    pub(crate) guid: Uuid,
    pub(crate) ready_at: Instant,
    pub(crate) provisioned: bool,
}

/// A user. `props` holds the Graph properties except `id` and `assignedLicenses`.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) id: Uuid,
    pub(crate) seq: u64,
    pub(crate) props: Map<String, Value>,
    pub(crate) licenses: Vec<AssignedLicense>,
    pub(crate) password: Option<PasswordDigest>,
    pub(crate) force_change_password: bool,
    pub(crate) deleted_at: Option<DateTime<Utc>>,
    pub(crate) visible_at: Instant,
    pub(crate) usage_location_settled_at: Instant,
    pub(crate) mailbox: Option<Mailbox>,
}

impl User {
    /// The UPN as stored.
    pub(crate) fn upn(&self) -> &str {
        self.props
            .get("userPrincipalName")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// A string property, if set.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.props.get(name).and_then(Value::as_str)
    }

    /// `proxyAddresses` as stored (`SMTP:` primary, `smtp:` secondary).
    pub(crate) fn proxy_addresses(&self) -> Vec<String> {
        self.props
            .get("proxyAddresses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether an Exchange mailbox exists now.
    pub(crate) fn has_mailbox(&self) -> bool {
        self.mailbox.as_ref().is_some_and(|m| m.provisioned)
    }

    /// Every Graph property, unset ones as `null` (or `[]` for collections).
    pub(crate) fn all_properties(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        for name in USER_PROPERTIES {
            let value = match *name {
                "id" => continue,
                "assignedLicenses" => Value::Array(
                    self.licenses
                        .iter()
                        .map(|l| json!({"disabledPlans": l.disabled_plans, "skuId": l.sku_id}))
                        .collect(),
                ),
                "deletedDateTime" => self
                    .deleted_at
                    .map(|d| json!(graph_timestamp(d)))
                    .unwrap_or(Value::Null),
                "passwordProfile" => Value::Null,
                name if COLLECTION_PROPERTIES.contains(&name) => {
                    self.props.get(name).cloned().unwrap_or_else(|| json!([]))
                }
                name => self.props.get(name).cloned().unwrap_or(Value::Null),
            };
            out.insert((*name).to_owned(), value);
        }
        for (name, value) in &self.props {
            if name.starts_with("extension_") {
                out.insert(name.clone(), value.clone());
            }
        }
        out
    }
}

/// Properties Graph returns for a user without `$select`.
pub(crate) const DEFAULT_USER_PROPERTIES: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// Every user property the emulator knows.
pub(crate) const USER_PROPERTIES: &[&str] = &[
    "id",
    "accountEnabled",
    "ageGroup",
    "assignedLicenses",
    "businessPhones",
    "city",
    "companyName",
    "country",
    "createdDateTime",
    "creationType",
    "deletedDateTime",
    "department",
    "displayName",
    "employeeHireDate",
    "employeeId",
    "employeeType",
    "faxNumber",
    "givenName",
    "jobTitle",
    "lastPasswordChangeDateTime",
    "mail",
    "mailNickname",
    "mobilePhone",
    "officeLocation",
    "onPremisesImmutableId",
    "onPremisesSyncEnabled",
    "otherMails",
    "passwordPolicies",
    "passwordProfile",
    "postalCode",
    "preferredLanguage",
    "proxyAddresses",
    "signInSessionsValidFromDateTime",
    "state",
    "streetAddress",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
];

/// Collection-valued user properties (`[]` when unset).
pub(crate) const COLLECTION_PROPERTIES: &[&str] = &[
    "businessPhones",
    "otherMails",
    "proxyAddresses",
    "assignedLicenses",
];

/// A group: Microsoft 365, security, or an Exchange-managed distribution list.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) id: Uuid,
    pub(crate) seq: u64,
    pub(crate) display_name: String,
    pub(crate) description: Option<String>,
    pub(crate) mail_nickname: String,
    pub(crate) mail_enabled: bool,
    pub(crate) security_enabled: bool,
    pub(crate) group_types: Vec<String>,
    pub(crate) proxy_addresses: Vec<String>,
    pub(crate) members: Vec<Uuid>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) exchange: Option<ExchangeGroup>,
}

/// What Exchange keeps for a distribution group beyond Graph's view.
#[derive(Clone, Debug)]
pub(crate) struct ExchangeGroup {
    pub(crate) guid: Uuid,
    pub(crate) name: String,
    pub(crate) require_sender_authentication: bool,
    pub(crate) managed_by: Vec<String>,
    pub(crate) member_join_restriction: String,
    pub(crate) member_depart_restriction: String,
    pub(crate) security: bool,
}

impl Group {
    /// The primary SMTP address (`mail`).
    pub(crate) fn mail(&self) -> Option<String> {
        primary_address(&self.proxy_addresses)
    }

    /// Graph cannot write mail-enabled non-Unified groups: Exchange owns them.
    pub(crate) fn is_exchange_managed(&self) -> bool {
        self.mail_enabled && !self.group_types.iter().any(|t| t == "Unified")
    }

    /// The Graph representation.
    pub(crate) fn graph_properties(&self) -> Map<String, Value> {
        let value = json!({
            "id": self.id,
            "createdDateTime": graph_timestamp(self.created_at),
            "description": self.description,
            "displayName": self.display_name,
            "groupTypes": self.group_types,
            "mail": self.mail(),
            "mailEnabled": self.mail_enabled,
            "mailNickname": self.mail_nickname,
            "proxyAddresses": self.proxy_addresses,
            "securityEnabled": self.security_enabled,
            "deletedDateTime": null,
            "visibility": if self.group_types.iter().any(|t| t == "Unified") { json!("Public") } else { Value::Null },
        });
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// The `SMTP:` entry of a proxy address list, without its prefix.
pub(crate) fn primary_address(addresses: &[String]) -> Option<String> {
    addresses
        .iter()
        .find(|a| a.starts_with("SMTP:"))
        .map(|a| a[5..].to_owned())
}

/// An address without its `smtp:` prefix, lower-cased, for comparisons.
pub(crate) fn bare_address(address: &str) -> String {
    let lower = address.to_ascii_lowercase();
    lower
        .strip_prefix("smtp:")
        .map(str::to_owned)
        .unwrap_or(lower)
}

/// Graph's timestamp format for properties (`2025-02-13T10:17:05Z`).
pub(crate) fn graph_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Who owns an address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum AddressOwner {
    User(Uuid),
    Group(Uuid),
}

/// The whole tenant.
#[derive(Debug)]
pub(crate) struct Directory {
    pub(crate) tenant_id: Uuid,
    pub(crate) display_name: String,
    pub(crate) domains: Vec<Domain>,
    pub(crate) skus: Vec<Sku>,
    pub(crate) users: HashMap<Uuid, User>,
    /// Active users by lower-case UPN.
    pub(crate) upn_index: HashMap<String, Uuid>,
    /// All users (active and deleted) in creation order.
    pub(crate) user_order: BTreeMap<u64, Uuid>,
    pub(crate) groups: HashMap<Uuid, Group>,
    pub(crate) group_order: BTreeMap<u64, Uuid>,
    pending_mailboxes: Vec<Uuid>,
    next_seq: u64,
    last_purge_check: Instant,
    retention: chrono::Duration,
}

impl Directory {
    /// A directory holding exactly what the seed says.
    pub(crate) fn from_seed(seed: &Seed) -> Directory {
        let mut directory = Directory {
            tenant_id: seed.tenant_id,
            display_name: seed.tenant_display_name.clone(),
            domains: seed
                .domains
                .iter()
                .map(|d| Domain {
                    name: d.name.to_ascii_lowercase(),
                    verified: d.verified,
                    default: d.default,
                })
                .collect(),
            skus: seed
                .skus
                .iter()
                .map(|s| Sku {
                    seed: s.clone(),
                    prepaid: s.prepaid_enabled,
                    subscription_id: Uuid::new_v4(),
                })
                .collect(),
            users: HashMap::new(),
            upn_index: HashMap::new(),
            user_order: BTreeMap::new(),
            groups: HashMap::new(),
            group_order: BTreeMap::new(),
            pending_mailboxes: Vec::new(),
            next_seq: 0,
            last_purge_check: Instant::now(),
            retention: chrono::Duration::days(i64::from(seed.deleted_item_retention_days)),
        };
        let now = Instant::now();
        for user in &seed.users {
            let (alias, _) = user
                .user_principal_name
                .rsplit_once('@')
                .unwrap_or((&user.user_principal_name, ""));
            let mut props = Map::new();
            props.insert("userPrincipalName".into(), json!(user.user_principal_name));
            props.insert("displayName".into(), json!(user.display_name));
            props.insert(
                "mailNickname".into(),
                json!(
                    user.mail_nickname
                        .clone()
                        .unwrap_or_else(|| alias.to_owned())
                ),
            );
            props.insert("accountEnabled".into(), json!(user.account_enabled));
            if let Some(location) = &user.usage_location {
                props.insert("usageLocation".into(), json!(location));
            }
            if let Some(employee_id) = &user.employee_id {
                props.insert("employeeId".into(), json!(employee_id));
            }
            props.insert("createdDateTime".into(), json!(graph_timestamp(Utc::now())));
            let licenses: Vec<AssignedLicense> = user
                .licenses
                .iter()
                .filter_map(|part| {
                    directory
                        .skus
                        .iter()
                        .find(|s| &s.seed.sku_part_number == part)
                })
                .map(|s| AssignedLicense {
                    sku_id: s.seed.sku_id,
                    disabled_plans: Vec::new(),
                })
                .collect();
            let exchange = licenses
                .iter()
                .any(|l| directory.sku_brings_mailbox(l.sku_id));
            let id = directory.insert_user(props, None, now);
            if let Some(created) = directory.users.get_mut(&id) {
                created.licenses = licenses;
            }
            if exchange {
                directory.schedule_mailbox(id, now);
            }
        }
        directory.settle(now);
        directory
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Adds an active user and indexes its UPN; returns its new id.
    pub(crate) fn insert_user(
        &mut self,
        props: Map<String, Value>,
        password: Option<PasswordDigest>,
        visible_at: Instant,
    ) -> Uuid {
        let id = Uuid::new_v4();
        let seq = self.next_seq();
        let user = User {
            id,
            seq,
            props,
            licenses: Vec::new(),
            password,
            force_change_password: false,
            deleted_at: None,
            visible_at,
            usage_location_settled_at: visible_at,
            mailbox: None,
        };
        self.upn_index.insert(user.upn().to_ascii_lowercase(), id);
        self.user_order.insert(seq, id);
        self.users.insert(id, user);
        id
    }

    /// An active user by id or UPN (case-insensitive).
    pub(crate) fn active_user_id(&self, key: &str) -> Option<Uuid> {
        if let Ok(id) = key.parse::<Uuid>()
            && self.users.get(&id).is_some_and(|u| u.deleted_at.is_none())
        {
            return Some(id);
        }
        self.upn_index.get(&key.to_ascii_lowercase()).copied()
    }

    /// Re-indexes a user's UPN after a change.
    pub(crate) fn reindex_upn(&mut self, id: Uuid, old_upn: &str) {
        self.upn_index.remove(&old_upn.to_ascii_lowercase());
        if let Some(user) = self.users.get(&id)
            && user.deleted_at.is_none()
        {
            self.upn_index.insert(user.upn().to_ascii_lowercase(), id);
        }
    }

    /// Soft-deletes a user: its UPN and addresses become free.
    pub(crate) fn soft_delete_user(&mut self, id: Uuid, now: DateTime<Utc>) {
        if let Some(user) = self.users.get_mut(&id) {
            user.deleted_at = Some(now);
            let upn = user.upn().to_ascii_lowercase();
            self.upn_index.remove(&upn);
        }
        for group in self.groups.values_mut() {
            group.members.retain(|m| *m != id);
        }
    }

    /// Removes a user for good.
    pub(crate) fn purge_user(&mut self, id: Uuid) {
        if let Some(user) = self.users.remove(&id) {
            self.user_order.remove(&user.seq);
        }
    }

    /// Adds a group; returns its id.
    pub(crate) fn insert_group(&mut self, mut group: Group) -> Uuid {
        group.seq = self.next_seq();
        let id = group.id;
        self.group_order.insert(group.seq, id);
        self.groups.insert(id, group);
        id
    }

    /// Deletes a group (no soft delete for groups in this emulator).
    pub(crate) fn remove_group(&mut self, id: Uuid) {
        if let Some(group) = self.groups.remove(&id) {
            self.group_order.remove(&group.seq);
        }
        for group in self.groups.values_mut() {
            group.members.retain(|m| *m != id);
        }
    }

    /// Whether a domain is verified (so it may carry UPNs and addresses).
    pub(crate) fn domain_verified(&self, domain: &str) -> bool {
        self.domains
            .iter()
            .any(|d| d.verified && d.name.eq_ignore_ascii_case(domain))
    }

    /// The default domain.
    pub(crate) fn default_domain(&self) -> String {
        self.domains
            .iter()
            .find(|d| d.default)
            .or_else(|| self.domains.iter().find(|d| d.verified))
            .map(|d| d.name.clone())
            .unwrap_or_default()
    }

    /// Adds (or verifies) a domain.
    pub(crate) fn add_verified_domain(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        if let Some(domain) = self.domains.iter_mut().find(|d| d.name == name) {
            domain.verified = true;
        } else {
            self.domains.push(Domain {
                name,
                verified: true,
                default: false,
            });
        }
    }

    /// A SKU by id.
    pub(crate) fn sku(&self, sku_id: Uuid) -> Option<&Sku> {
        self.skus.iter().find(|s| s.seed.sku_id == sku_id)
    }

    /// Whether a licence of this SKU brings a mailbox.
    pub(crate) fn sku_brings_mailbox(&self, sku_id: Uuid) -> bool {
        self.sku(sku_id).is_some_and(|s| s.seed.exchange)
    }

    /// Seats in use: licences held by active users.
    pub(crate) fn consumed_units(&self, sku_id: Uuid) -> u32 {
        let count = self
            .users
            .values()
            .filter(|u| u.deleted_at.is_none() && u.licenses.iter().any(|l| l.sku_id == sku_id))
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Starts mailbox provisioning for a user, if none is under way.
    pub(crate) fn schedule_mailbox(&mut self, id: Uuid, ready_at: Instant) {
        if let Some(user) = self.users.get_mut(&id)
            && user.mailbox.is_none()
        {
            user.mailbox = Some(Mailbox {
                guid: Uuid::new_v4(),
                ready_at,
                provisioned: false,
            });
            self.pending_mailboxes.push(id);
        }
    }

    /// Brings time-driven state up to date: mailboxes whose provisioning has finished, and
    /// deleted items past retention.
    pub(crate) fn settle(&mut self, now: Instant) {
        if !self.pending_mailboxes.is_empty() {
            let pending = std::mem::take(&mut self.pending_mailboxes);
            for id in pending {
                let Some(user) = self.users.get_mut(&id) else {
                    continue;
                };
                let Some(mailbox) = user.mailbox.as_mut() else {
                    continue;
                };
                if mailbox.ready_at > now {
                    self.pending_mailboxes.push(id);
                    continue;
                }
                mailbox.provisioned = true;
                let upn = user.upn().to_owned();
                if user.proxy_addresses().is_empty() {
                    let primary = user.text("mail").map(str::to_owned).unwrap_or(upn);
                    user.props
                        .insert("proxyAddresses".into(), json!([format!("SMTP:{primary}")]));
                    user.props.insert("mail".into(), json!(primary));
                }
            }
        }
        if now.duration_since(self.last_purge_check) >= Duration::from_secs(1) {
            self.last_purge_check = now;
            let limit = Utc::now() - self.retention;
            let expired: Vec<Uuid> = self
                .users
                .values()
                .filter(|u| u.deleted_at.is_some_and(|d| d <= limit))
                .map(|u| u.id)
                .collect();
            for id in expired {
                self.purge_user(id);
            }
        }
    }

    /// Forces the retention check now (tests set a zero-day retention).
    pub(crate) fn purge_expired_now(&mut self) {
        self.last_purge_check = Instant::now() - Duration::from_secs(2);
        self.settle(Instant::now());
    }

    /// Who, among active users and groups, already holds an address (compared without prefix).
    pub(crate) fn address_owner(&self, address: &str) -> Option<AddressOwner> {
        let wanted = bare_address(address);
        for user in self.users.values().filter(|u| u.deleted_at.is_none()) {
            let mail = user.text("mail").map(bare_address);
            if mail.as_deref() == Some(wanted.as_str())
                || user
                    .proxy_addresses()
                    .iter()
                    .any(|a| bare_address(a) == wanted)
            {
                return Some(AddressOwner::User(user.id));
            }
        }
        for group in self.groups.values() {
            if group
                .proxy_addresses
                .iter()
                .any(|a| bare_address(a) == wanted)
            {
                return Some(AddressOwner::Group(group.id));
            }
        }
        None
    }

    /// The display name of an address owner, for Exchange's clash message.
    pub(crate) fn owner_name(&self, owner: AddressOwner) -> String {
        match owner {
            AddressOwner::User(id) => self
                .users
                .get(&id)
                .map(|u| u.text("mailNickname").unwrap_or(u.upn()).to_owned())
                .unwrap_or_default(),
            AddressOwner::Group(id) => self
                .groups
                .get(&id)
                .map(|g| {
                    g.exchange
                        .as_ref()
                        .map(|e| e.name.clone())
                        .unwrap_or_else(|| g.display_name.clone())
                })
                .unwrap_or_default(),
        }
    }
}
