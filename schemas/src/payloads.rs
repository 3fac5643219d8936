//! The `data` of each event type. Each carries the state the online object should have after
//! the event, so applying it twice changes nothing. Unknown members are ignored on read.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::addresses::{EmailAddress, MailAlias, Upn};
use crate::event_type::EventType;
use crate::identifiers::Subject;
use crate::licensing::{SkuPartNumber, UsageLocation};
use crate::names::{AccountName, Description, DisplayName, GroupName, PersonName, Reason};
use crate::reader::{Field, Reader};
use crate::sealed::SealedSecret;
use crate::violation::child_pointer;

/// `moss.user.added.v1`: a directory user exists, and whether it should have an online
/// account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(extend("dependentRequired" = {"initial_password": ["online_account"]}))]
pub struct UserAdded {
    /// The directory logon name (sAMAccountName or uid).
    pub account_name: AccountName,
    /// The name shown in address lists.
    pub display_name: DisplayName,
    /// Given name; absent when the directory has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<PersonName>,
    /// Surname; absent when the directory has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surname: Option<PersonName>,
    /// The online account to create or link; absent when the user gets none (yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_account: Option<OnlineAccount>,
    /// The first password, sealed; only with `online_account`. Without one the worker sets a
    /// random password nobody is told, and the user's next password change brings theirs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_password: Option<SealedSecret>,
}

impl Field for UserAdded {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<UserAdded> {
        let object = reader.object(value, pointer)?;
        let account_name = reader.required(object, pointer, "account_name");
        let display_name = reader.required(object, pointer, "display_name");
        let given_name = reader.optional(object, pointer, "given_name");
        let surname = reader.optional(object, pointer, "surname");
        let online_account: Option<Option<OnlineAccount>> =
            reader.optional(object, pointer, "online_account");
        let initial_password: Option<Option<SealedSecret>> =
            reader.optional(object, pointer, "initial_password");
        let has_password = is_present(object, "initial_password");
        if has_password && !is_present(object, "online_account") {
            reader.report(
                &child_pointer(pointer, "initial_password"),
                "initial_password.without_online_account",
                "an initial password needs an online_account to set it on",
            );
            return None;
        }
        Some(UserAdded {
            account_name: account_name?,
            display_name: display_name?,
            given_name: given_name?,
            surname: surname?,
            online_account: online_account?,
            initial_password: initial_password?,
        })
    }
}

fn is_present(object: &Map<String, Value>, key: &str) -> bool {
    object.get(key).is_some_and(|value| !value.is_null())
}

/// An online account as it should be: its user principal name, where it is used, and exactly
/// these licences. Also the whole `data` of `moss.online_account.assigned.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct OnlineAccount {
    /// The online id; its domain must be a verified domain of the tenant. An existing account
    /// with this UPN is linked, otherwise one is created.
    pub upn: Upn,
    /// Where the user mainly uses the services; licence assignment needs it.
    pub usage_location: UsageLocation,
    /// Exactly the licences the account should hold, by SKU part number, each once (compared
    /// without case); `[]` for none.
    #[schemars(extend("uniqueItems" = true))]
    pub licenses: Vec<SkuPartNumber>,
}

impl Field for OnlineAccount {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<OnlineAccount> {
        let object = reader.object(value, pointer)?;
        let upn = reader.required(object, pointer, "upn");
        let usage_location = reader.required(object, pointer, "usage_location");
        let licenses = reader.unique_list(object, pointer, "licenses", |sku: &SkuPartNumber| {
            sku.clone()
        });
        Some(OnlineAccount {
            upn: upn?,
            usage_location: usage_location?,
            licenses: licenses?,
        })
    }
}

/// `moss.user.password_changed.v1`: the user's password is now this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct UserPasswordChanged {
    /// The new password, sealed.
    pub password: SealedSecret,
}

impl Field for UserPasswordChanged {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<UserPasswordChanged> {
        let object = reader.object(value, pointer)?;
        let password = reader.required(object, pointer, "password");
        Some(UserPasswordChanged {
            password: password?,
        })
    }
}

/// `moss.user.deactivated.v1`: sign-in is blocked, data is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct UserDeactivated {
    /// Why, for the audit trail.
    pub reason: Reason,
}

impl Field for UserDeactivated {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<UserDeactivated> {
        let object = reader.object(value, pointer)?;
        let reason = reader.required(object, pointer, "reason");
        Some(UserDeactivated { reason: reason? })
    }
}

/// Declares an event whose `data` is an empty object.
macro_rules! empty_payload {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
            pub struct $name {}

            impl Field for $name {
                fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<$name> {
                    reader.object(value, pointer)?;
                    Some($name {})
                }
            }
        )+
    };
}

empty_payload!(
    /// `moss.user.reactivated.v1`: sign-in is allowed again. `data` is `{}`.
    UserReactivated,
    /// `moss.user.removed.v1`: the online account is deleted (soft delete). `data` is `{}`.
    UserRemoved,
    /// `moss.online_account.unassigned.v1`: licences removed, sign-in blocked, mapping kept.
    /// `data` is `{}`.
    OnlineAccountUnassigned,
    /// `moss.group.removed.v1`: the distribution group is removed. `data` is `{}`.
    GroupRemoved,
);

/// `moss.user.alias_added.v1`: the user's mailbox answers to this address too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct UserAliasAdded {
    /// A secondary SMTP address in one of the tenant's accepted domains.
    pub address: EmailAddress,
}

/// `moss.user.alias_removed.v1`: the user's mailbox no longer answers to this address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct UserAliasRemoved {
    /// The secondary SMTP address to remove.
    pub address: EmailAddress,
}

impl Field for UserAliasAdded {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<UserAliasAdded> {
        let object = reader.object(value, pointer)?;
        let address = reader.required(object, pointer, "address");
        Some(UserAliasAdded { address: address? })
    }
}

impl Field for UserAliasRemoved {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<UserAliasRemoved> {
        let object = reader.object(value, pointer)?;
        let address = reader.required(object, pointer, "address");
        Some(UserAliasRemoved { address: address? })
    }
}

/// `moss.group.added.v1`: a distribution group exists with exactly this name, alias, sender
/// policy and these members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct GroupAdded {
    /// The group's name (Exchange `Name` and display name), unique in the tenant.
    pub name: GroupName,
    /// The Exchange alias; the primary address is alias@default-domain unless
    /// `primary_smtp_address` says otherwise.
    pub alias: MailAlias,
    /// The primary SMTP address, when it should not be derived from the alias.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_smtp_address: Option<EmailAddress>,
    /// What the group is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    /// Whether senders outside the organisation may mail the group (Exchange
    /// `RequireSenderAuthenticationEnabled` is its negation). Required: no silent default.
    pub allow_external_senders: bool,
    /// The members, as subjects of users or groups, each once; `[]` for none.
    #[schemars(extend("uniqueItems" = true))]
    pub members: Vec<Subject>,
}

impl Field for GroupAdded {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<GroupAdded> {
        let object = reader.object(value, pointer)?;
        let name = reader.required(object, pointer, "name");
        let alias = reader.required(object, pointer, "alias");
        let primary_smtp_address = reader.optional(object, pointer, "primary_smtp_address");
        let description = reader.optional(object, pointer, "description");
        let allow_external_senders = reader.required(object, pointer, "allow_external_senders");
        let members = reader.unique_list(object, pointer, "members", |subject: &Subject| *subject);
        Some(GroupAdded {
            name: name?,
            alias: alias?,
            primary_smtp_address: primary_smtp_address?,
            description: description?,
            allow_external_senders: allow_external_senders?,
            members: members?,
        })
    }
}

/// `moss.group.members_changed.v1`: these subjects are members now, those are not. Adding a
/// member twice or removing an absent one changes nothing, so the event is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct GroupMembersChanged {
    /// Subjects (users or groups) that are members after the event; `[]` for none.
    #[schemars(extend("uniqueItems" = true))]
    pub add: Vec<Subject>,
    /// Subjects that are not members after the event; `[]` for none. Never also in `add`.
    #[schemars(extend("uniqueItems" = true))]
    pub remove: Vec<Subject>,
}

impl Field for GroupMembersChanged {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<GroupMembersChanged> {
        let object = reader.object(value, pointer)?;
        let add = reader.unique_list(object, pointer, "add", |subject: &Subject| *subject);
        let remove = reader.unique_list(object, pointer, "remove", |subject: &Subject| *subject);
        let (add, remove) = (add?, remove?);
        let remove_pointer = child_pointer(pointer, "remove");
        let mut conflict = false;
        for (index, subject) in remove.iter().enumerate() {
            if add.contains(subject) {
                reader.report(
                    &child_pointer(&remove_pointer, &index.to_string()),
                    "members.conflict",
                    "is also in add; a subject is either added or removed",
                );
                conflict = true;
            }
        }
        (!conflict).then_some(GroupMembersChanged { add, remove })
    }
}

/// The typed `data` of an event; its variant determines the CloudEvents `type`, so the two can
/// never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventData {
    /// `moss.user.added.v1`
    UserAdded(UserAdded),
    /// `moss.user.password_changed.v1`
    UserPasswordChanged(UserPasswordChanged),
    /// `moss.user.deactivated.v1`
    UserDeactivated(UserDeactivated),
    /// `moss.user.reactivated.v1`
    UserReactivated(UserReactivated),
    /// `moss.user.removed.v1`
    UserRemoved(UserRemoved),
    /// `moss.online_account.assigned.v1`
    OnlineAccountAssigned(OnlineAccount),
    /// `moss.online_account.unassigned.v1`
    OnlineAccountUnassigned(OnlineAccountUnassigned),
    /// `moss.user.alias_added.v1`
    UserAliasAdded(UserAliasAdded),
    /// `moss.user.alias_removed.v1`
    UserAliasRemoved(UserAliasRemoved),
    /// `moss.group.added.v1`
    GroupAdded(GroupAdded),
    /// `moss.group.members_changed.v1`
    GroupMembersChanged(GroupMembersChanged),
    /// `moss.group.removed.v1`
    GroupRemoved(GroupRemoved),
}

impl EventData {
    /// The CloudEvents `type` this data belongs to.
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::UserAdded(_) => EventType::UserAdded,
            EventData::UserPasswordChanged(_) => EventType::UserPasswordChanged,
            EventData::UserDeactivated(_) => EventType::UserDeactivated,
            EventData::UserReactivated(_) => EventType::UserReactivated,
            EventData::UserRemoved(_) => EventType::UserRemoved,
            EventData::OnlineAccountAssigned(_) => EventType::OnlineAccountAssigned,
            EventData::OnlineAccountUnassigned(_) => EventType::OnlineAccountUnassigned,
            EventData::UserAliasAdded(_) => EventType::UserAliasAdded,
            EventData::UserAliasRemoved(_) => EventType::UserAliasRemoved,
            EventData::GroupAdded(_) => EventType::GroupAdded,
            EventData::GroupMembersChanged(_) => EventType::GroupMembersChanged,
            EventData::GroupRemoved(_) => EventType::GroupRemoved,
        }
    }

    /// Reads the `data` of an event of `event_type`, reporting every violation to `reader`.
    pub(crate) fn read(
        reader: &mut Reader,
        event_type: EventType,
        value: &Value,
        pointer: &str,
    ) -> Option<EventData> {
        Some(match event_type {
            EventType::UserAdded => EventData::UserAdded(Field::read(reader, value, pointer)?),
            EventType::UserPasswordChanged => {
                EventData::UserPasswordChanged(Field::read(reader, value, pointer)?)
            }
            EventType::UserDeactivated => {
                EventData::UserDeactivated(Field::read(reader, value, pointer)?)
            }
            EventType::UserReactivated => {
                EventData::UserReactivated(Field::read(reader, value, pointer)?)
            }
            EventType::UserRemoved => EventData::UserRemoved(Field::read(reader, value, pointer)?),
            EventType::OnlineAccountAssigned => {
                EventData::OnlineAccountAssigned(Field::read(reader, value, pointer)?)
            }
            EventType::OnlineAccountUnassigned => {
                EventData::OnlineAccountUnassigned(Field::read(reader, value, pointer)?)
            }
            EventType::UserAliasAdded => {
                EventData::UserAliasAdded(Field::read(reader, value, pointer)?)
            }
            EventType::UserAliasRemoved => {
                EventData::UserAliasRemoved(Field::read(reader, value, pointer)?)
            }
            EventType::GroupAdded => EventData::GroupAdded(Field::read(reader, value, pointer)?),
            EventType::GroupMembersChanged => {
                EventData::GroupMembersChanged(Field::read(reader, value, pointer)?)
            }
            EventType::GroupRemoved => {
                EventData::GroupRemoved(Field::read(reader, value, pointer)?)
            }
        })
    }
}

impl Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            EventData::UserAdded(data) => data.serialize(serializer),
            EventData::UserPasswordChanged(data) => data.serialize(serializer),
            EventData::UserDeactivated(data) => data.serialize(serializer),
            EventData::UserReactivated(data) => data.serialize(serializer),
            EventData::UserRemoved(data) => data.serialize(serializer),
            EventData::OnlineAccountAssigned(data) => data.serialize(serializer),
            EventData::OnlineAccountUnassigned(data) => data.serialize(serializer),
            EventData::UserAliasAdded(data) => data.serialize(serializer),
            EventData::UserAliasRemoved(data) => data.serialize(serializer),
            EventData::GroupAdded(data) => data.serialize(serializer),
            EventData::GroupMembersChanged(data) => data.serialize(serializer),
            EventData::GroupRemoved(data) => data.serialize(serializer),
        }
    }
}
