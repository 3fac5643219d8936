//! Exchange Online through the admin API's `InvokeCommand` (§9.2): mailbox aliases and
//! distribution groups, which Graph cannot write.

use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::Change;
use crate::client::{Call, OnlineClient, Operation};
use crate::error::{ErrorClass, Idempotency, OnlineError};
use crate::identity::{DisplayName, MailNickname, RecipientId, SmtpAddress};
use crate::throttle::{RequestKind, Service};
use crate::users::null_as_empty;

/// The OData type that marks a PowerShell hashtable parameter (`@{Add=…;Remove=…}`).
const GENERIC_HASH_TABLE: &str = "#Exchange.GenericHashTable";

/// Exchange's limit on a distribution group's `Name`.
const GROUP_NAME_LIMIT: usize = 64;

/// A mailbox, as `Get-Mailbox` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mailbox {
    /// `Identity`.
    pub identity: Option<String>,
    /// `Alias`.
    pub alias: Option<String>,
    /// `UserPrincipalName`.
    pub user_principal_name: Option<String>,
    /// `PrimarySmtpAddress`.
    pub primary_smtp_address: Option<String>,
    /// `EmailAddresses`: `SMTP:` marks the primary, `smtp:` the aliases.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub email_addresses: Vec<String>,
    /// The Entra object id of the owner.
    pub external_directory_object_id: Option<String>,
}

impl Mailbox {
    /// Whether `address` is one of the mailbox's addresses (compared case-insensitively, the
    /// `smtp:`/`SMTP:` prefix ignored).
    pub fn has_address(&self, address: &SmtpAddress) -> bool {
        self.email_addresses.iter().any(|proxy| {
            let bare = proxy
                .split_once(':')
                .map_or(proxy.as_str(), |(_, rest)| rest);
            bare.eq_ignore_ascii_case(address.as_str())
        })
    }
}

/// A distribution group, as `Get-DistributionGroup` / `New-DistributionGroup` return it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DistributionGroup {
    /// `Name` (unique in the tenant).
    pub name: String,
    /// `Alias`.
    pub alias: Option<String>,
    /// `DisplayName`.
    pub display_name: Option<String>,
    /// `PrimarySmtpAddress`.
    pub primary_smtp_address: Option<String>,
    /// `EmailAddresses`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub email_addresses: Vec<String>,
    /// Equal to the group's Graph id.
    pub external_directory_object_id: Option<String>,
    /// `Guid`.
    pub guid: Option<String>,
    /// `true`: only authenticated (internal) senders are accepted.
    pub require_sender_authentication_enabled: Option<bool>,
}

/// A member of a distribution group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DistributionGroupMember {
    /// `Name`.
    pub name: Option<String>,
    /// `PrimarySmtpAddress`.
    pub primary_smtp_address: Option<String>,
    /// The member's Entra object id.
    pub external_directory_object_id: Option<String>,
    /// e.g. `UserMailbox`, `MailUniversalDistributionGroup`.
    pub recipient_type: Option<String>,
}

/// Who may send to a distribution group. Exchange's default is internal only, so moss always
/// says which it wants (§9.2, §11.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderAuthentication {
    /// `RequireSenderAuthenticationEnabled = $true`: external senders are rejected.
    InternalOnly,
    /// `RequireSenderAuthenticationEnabled = $false`: external senders are accepted too.
    AcceptExternal,
}

impl SenderAuthentication {
    fn required(self) -> bool {
        self == Self::InternalOnly
    }
}

/// A distribution group to create.
#[derive(Debug, Clone)]
pub struct NewDistributionGroup {
    /// `Name`: unique, at most 64 characters.
    pub name: DisplayName,
    /// `Alias` (derived from the name by Exchange when absent).
    pub alias: Option<MailNickname>,
    /// `DisplayName`.
    pub display_name: Option<DisplayName>,
    /// `PrimarySmtpAddress`.
    pub primary_smtp_address: Option<SmtpAddress>,
    /// Initial `Members`.
    pub members: Vec<RecipientId>,
    /// `RequireSenderAuthenticationEnabled`, always sent.
    pub sender_authentication: SenderAuthentication,
    /// `Description` (Exchange Online only): what the group is for, shown in the address book
    /// and as the group's Graph `description`.
    pub description: Option<String>,
}

/// Changes to a distribution group; `None`/empty leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct DistributionGroupUpdate {
    /// `DisplayName`.
    pub display_name: Option<DisplayName>,
    /// `RequireSenderAuthenticationEnabled`.
    pub sender_authentication: Option<SenderAuthentication>,
    /// Secondary addresses to add.
    pub add_addresses: Vec<SmtpAddress>,
    /// Secondary addresses to remove.
    pub remove_addresses: Vec<SmtpAddress>,
}

/// `@{Add=…;Remove=…}` as the admin API takes it; keys with nothing to do are left out.
fn address_hash_table(add: &[SmtpAddress], remove: &[SmtpAddress]) -> Option<Value> {
    if add.is_empty() && remove.is_empty() {
        return None;
    }
    let mut table = Map::new();
    table.insert(
        "@odata.type".into(),
        Value::String(GENERIC_HASH_TABLE.into()),
    );
    let proxies = |addresses: &[SmtpAddress]| {
        Value::Array(
            addresses
                .iter()
                .map(|address| Value::String(address.as_secondary_proxy()))
                .collect(),
        )
    };
    if !add.is_empty() {
        table.insert("Add".into(), proxies(add));
    }
    if !remove.is_empty() {
        table.insert("Remove".into(), proxies(remove));
    }
    Some(Value::Object(table))
}

/// The body of a `New-DistributionGroup`.
fn new_group_parameters(group: &NewDistributionGroup) -> Map<String, Value> {
    let mut parameters = Map::new();
    parameters.insert("Name".into(), json!(group.name.as_str()));
    parameters.insert("Type".into(), json!("Distribution"));
    parameters.insert(
        "RequireSenderAuthenticationEnabled".into(),
        json!(group.sender_authentication.required()),
    );
    if let Some(alias) = &group.alias {
        parameters.insert("Alias".into(), json!(alias.as_str()));
    }
    if let Some(display_name) = &group.display_name {
        parameters.insert("DisplayName".into(), json!(display_name.as_str()));
    }
    if let Some(address) = &group.primary_smtp_address {
        parameters.insert("PrimarySmtpAddress".into(), json!(address.as_str()));
    }
    if let Some(description) = group.description.as_deref().filter(|text| !text.is_empty()) {
        // A multi-valued property in Exchange: sent as a one-element array.
        parameters.insert("Description".into(), json!([description]));
    }
    if !group.members.is_empty() {
        parameters.insert(
            "Members".into(),
            Value::Array(
                group
                    .members
                    .iter()
                    .map(|member| json!(member.as_str()))
                    .collect(),
            ),
        );
    }
    parameters
}

#[derive(Debug, Deserialize)]
struct InvokeReply {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(
        rename = "@adminapi.warnings",
        default,
        deserialize_with = "null_as_empty"
    )]
    warnings: Vec<String>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

fn rows<T: DeserializeOwned>(op: &Operation, values: Vec<Value>) -> Result<Vec<T>, OnlineError> {
    values
        .into_iter()
        .map(|value| {
            serde_json::from_value(value).map_err(|error| {
                let message =
                    format!("an Exchange result row does not have the expected shape ({error})");
                OnlineError::new(
                    op.name,
                    ErrorClass::Permanent {
                        status: 200,
                        code: "UnreadableResponse".into(),
                        message: message.clone(),
                        request_id: None,
                    },
                    message,
                )
                .with_client_request_id(op.client_request_id)
            })
        })
        .collect()
}

impl OnlineClient {
    /// Runs one cmdlet and returns every result row, following `@odata.nextLink` with GET.
    async fn invoke(
        &self,
        op: &mut Operation,
        cmdlet: &str,
        parameters: Map<String, Value>,
        idempotency: Idempotency,
    ) -> Result<Vec<Value>, OnlineError> {
        let kind = if cmdlet.starts_with("Get-") {
            RequestKind::Read
        } else {
            RequestKind::Write
        };
        let body = json!({"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}});
        let mut call = Call {
            service: Service::Exchange,
            method: Method::POST,
            url: self.exchange_invoke_url(),
            body: None,
            idempotency,
            kind,
        }
        .json(&body);
        let mut values = Vec::new();
        loop {
            let reply: InvokeReply = self.send(op, &call).await?.json(op)?;
            if !reply.warnings.is_empty() {
                tracing::debug!(
                    operation = op.name,
                    client_request_id = %op.client_request_id,
                    cmdlet,
                    warnings = ?reply.warnings,
                    "exchange warnings"
                );
            }
            values.extend(reply.value);
            let Some(next) = reply.next_link else {
                return Ok(values);
            };
            call = Call {
                service: Service::Exchange,
                method: Method::GET,
                url: self.next_page_url(op, &next, Service::Exchange)?,
                body: None,
                idempotency: Idempotency::Idempotent,
                kind: RequestKind::Read,
            };
            op.restart_budget(self.retry_policy());
        }
    }

    /// `Get-Mailbox`; `None` while the mailbox does not exist (not licensed, or still being
    /// provisioned, §9.2).
    pub async fn get_mailbox(
        &self,
        identity: &RecipientId,
    ) -> Result<Option<Mailbox>, OnlineError> {
        let mut op = self.operation("get mailbox");
        let parameters = Map::from_iter([("Identity".to_owned(), json!(identity.as_str()))]);
        match self
            .invoke(&mut op, "Get-Mailbox", parameters, Idempotency::Idempotent)
            .await
        {
            Ok(values) => Ok(rows(&op, values)?.into_iter().next()),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Adds and removes secondary SMTP addresses (aliases) of a mailbox, with the
    /// `EmailAddresses @{Add=…;Remove=…}` hashtable. A missing mailbox is a 404 `Permanent`
    /// (check [`OnlineClient::get_mailbox`] first while provisioning runs).
    pub async fn set_mailbox_email_addresses(
        &self,
        identity: &RecipientId,
        add: &[SmtpAddress],
        remove: &[SmtpAddress],
    ) -> Result<(), OnlineError> {
        let Some(addresses) = address_hash_table(add, remove) else {
            return Ok(());
        };
        let mut op = self.operation("set mailbox addresses");
        let parameters = Map::from_iter([
            ("Identity".to_owned(), json!(identity.as_str())),
            ("EmailAddresses".to_owned(), addresses),
        ]);
        self.invoke(&mut op, "Set-Mailbox", parameters, Idempotency::Idempotent)
            .await
            .map(drop)
    }

    /// `New-DistributionGroup` with `RequireSenderAuthenticationEnabled` always explicit. Not
    /// idempotent: a lost reply is `OutcomeUnknown`, and a name already taken is `Conflict`;
    /// the caller reads the group (`get_distribution_group`) to tell its own from another's.
    pub async fn new_distribution_group(
        &self,
        group: &NewDistributionGroup,
    ) -> Result<DistributionGroup, OnlineError> {
        let mut op = self.operation("create distribution group");
        if group.name.as_str().chars().count() > GROUP_NAME_LIMIT {
            let message = format!("Name must be at most {GROUP_NAME_LIMIT} characters");
            return Err(OnlineError::new(
                op.name,
                ErrorClass::Permanent {
                    status: 0,
                    code: "InvalidField".into(),
                    message: message.clone(),
                    request_id: None,
                },
                message,
            ));
        }
        let values = self
            .invoke(
                &mut op,
                "New-DistributionGroup",
                new_group_parameters(group),
                Idempotency::NotIdempotent,
            )
            .await?;
        if let Some(created) = rows::<DistributionGroup>(&op, values)?.into_iter().next() {
            return Ok(created);
        }
        let identity = RecipientId::parse(group.name.as_str())
            .map_err(|error| OnlineError::new(op.name, ErrorClass::Transient, error.to_string()))?;
        self.get_distribution_group(&identity)
            .await?
            .ok_or_else(|| {
                OnlineError::new(
                    op.name,
                    ErrorClass::Transient,
                    format!(
                        "group {} was created but cannot be read back yet",
                        group.name.as_str()
                    ),
                )
                .with_client_request_id(op.client_request_id)
            })
    }

    /// `Get-DistributionGroup`; `None` when it does not exist.
    pub async fn get_distribution_group(
        &self,
        identity: &RecipientId,
    ) -> Result<Option<DistributionGroup>, OnlineError> {
        let mut op = self.operation("get distribution group");
        let parameters = Map::from_iter([("Identity".to_owned(), json!(identity.as_str()))]);
        match self
            .invoke(
                &mut op,
                "Get-DistributionGroup",
                parameters,
                Idempotency::Idempotent,
            )
            .await
        {
            Ok(values) => Ok(rows(&op, values)?.into_iter().next()),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every distribution group of the tenant (`Get-DistributionGroup -ResultSize Unlimited`).
    pub async fn list_distribution_groups(&self) -> Result<Vec<DistributionGroup>, OnlineError> {
        let mut op = self.operation("list distribution groups");
        let parameters = Map::from_iter([("ResultSize".to_owned(), json!("Unlimited"))]);
        let values = self
            .invoke(
                &mut op,
                "Get-DistributionGroup",
                parameters,
                Idempotency::Idempotent,
            )
            .await?;
        rows(&op, values)
    }

    /// `Set-DistributionGroup` with `BypassSecurityGroupManagerCheck` (moss is never in
    /// `ManagedBy`). An empty update sends nothing.
    pub async fn set_distribution_group(
        &self,
        identity: &RecipientId,
        update: &DistributionGroupUpdate,
    ) -> Result<(), OnlineError> {
        let mut parameters = Map::new();
        if let Some(display_name) = &update.display_name {
            parameters.insert("DisplayName".into(), json!(display_name.as_str()));
        }
        if let Some(sender_authentication) = update.sender_authentication {
            parameters.insert(
                "RequireSenderAuthenticationEnabled".into(),
                json!(sender_authentication.required()),
            );
        }
        if let Some(addresses) = address_hash_table(&update.add_addresses, &update.remove_addresses)
        {
            parameters.insert("EmailAddresses".into(), addresses);
        }
        if parameters.is_empty() {
            return Ok(());
        }
        parameters.insert("Identity".into(), json!(identity.as_str()));
        parameters.insert("BypassSecurityGroupManagerCheck".into(), json!(true));
        let mut op = self.operation("set distribution group");
        self.invoke(
            &mut op,
            "Set-DistributionGroup",
            parameters,
            Idempotency::Idempotent,
        )
        .await
        .map(drop)
    }

    /// `Remove-DistributionGroup`; a group that is already gone counts as done.
    pub async fn remove_distribution_group(
        &self,
        identity: &RecipientId,
    ) -> Result<Change, OnlineError> {
        let mut op = self.operation("remove distribution group");
        let parameters = Map::from_iter([
            ("Identity".to_owned(), json!(identity.as_str())),
            ("BypassSecurityGroupManagerCheck".to_owned(), json!(true)),
            ("Confirm".to_owned(), json!(false)),
        ]);
        match self
            .invoke(
                &mut op,
                "Remove-DistributionGroup",
                parameters,
                Idempotency::Idempotent,
            )
            .await
        {
            Ok(_) => Ok(Change::Applied),
            Err(error) if error.is_not_found() => Ok(Change::AlreadyDone),
            Err(error) => Err(error),
        }
    }

    /// `Add-DistributionGroupMember`; a member already there counts as done.
    pub async fn add_distribution_group_member(
        &self,
        group: &RecipientId,
        member: &RecipientId,
    ) -> Result<Change, OnlineError> {
        let mut op = self.operation("add distribution group member");
        let parameters = Map::from_iter([
            ("Identity".to_owned(), json!(group.as_str())),
            ("Member".to_owned(), json!(member.as_str())),
            ("BypassSecurityGroupManagerCheck".to_owned(), json!(true)),
        ]);
        match self
            .invoke(
                &mut op,
                "Add-DistributionGroupMember",
                parameters,
                Idempotency::Idempotent,
            )
            .await
        {
            Ok(_) => Ok(Change::Applied),
            Err(error) if error.class() == &ErrorClass::AlreadyDone => Ok(Change::AlreadyDone),
            Err(error) => Err(error),
        }
    }

    /// `Remove-DistributionGroupMember`; a member not there (or a 404) counts as done.
    pub async fn remove_distribution_group_member(
        &self,
        group: &RecipientId,
        member: &RecipientId,
    ) -> Result<Change, OnlineError> {
        let mut op = self.operation("remove distribution group member");
        let parameters = Map::from_iter([
            ("Identity".to_owned(), json!(group.as_str())),
            ("Member".to_owned(), json!(member.as_str())),
            ("BypassSecurityGroupManagerCheck".to_owned(), json!(true)),
            ("Confirm".to_owned(), json!(false)),
        ]);
        match self
            .invoke(
                &mut op,
                "Remove-DistributionGroupMember",
                parameters,
                Idempotency::Idempotent,
            )
            .await
        {
            Ok(_) => Ok(Change::Applied),
            Err(error) if error.class() == &ErrorClass::AlreadyDone || error.is_not_found() => {
                Ok(Change::AlreadyDone)
            }
            Err(error) => Err(error),
        }
    }

    /// `Get-DistributionGroupMember -ResultSize Unlimited`. A missing group is a 404 `Permanent`.
    pub async fn get_distribution_group_members(
        &self,
        group: &RecipientId,
    ) -> Result<Vec<DistributionGroupMember>, OnlineError> {
        let mut op = self.operation("list distribution group members");
        let parameters = Map::from_iter([
            ("Identity".to_owned(), json!(group.as_str())),
            ("ResultSize".to_owned(), json!("Unlimited")),
        ]);
        let values = self
            .invoke(
                &mut op,
                "Get-DistributionGroupMember",
                parameters,
                Idempotency::Idempotent,
            )
            .await?;
        rows(&op, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> SmtpAddress {
        SmtpAddress::parse(text).unwrap()
    }

    #[test]
    fn aliases_travel_as_a_generic_hash_table() {
        let table = address_hash_table(
            &[address("a.vance@contoso.example")],
            &[address("old@contoso.example")],
        )
        .unwrap();
        assert_eq!(
            table,
            json!({"@odata.type":"#Exchange.GenericHashTable",
                   "Add":["smtp:a.vance@contoso.example"],"Remove":["smtp:old@contoso.example"]})
        );
        assert_eq!(address_hash_table(&[], &[]), None);
    }

    #[test]
    fn a_new_group_always_states_its_sender_authentication() {
        let group = NewDistributionGroup {
            name: DisplayName::parse("Sales").unwrap(),
            alias: Some(MailNickname::parse("sales").unwrap()),
            display_name: None,
            primary_smtp_address: None,
            members: vec![RecipientId::parse("adele@contoso.example").unwrap()],
            sender_authentication: SenderAuthentication::AcceptExternal,
            description: Some("Everyone who sells".into()),
        };
        let parameters = Value::Object(new_group_parameters(&group));
        assert_eq!(parameters["RequireSenderAuthenticationEnabled"], false);
        assert_eq!(parameters["Members"], json!(["adele@contoso.example"]));
        assert_eq!(parameters["Type"], "Distribution");
        assert_eq!(parameters["Description"], json!(["Everyone who sells"]));
        assert!(parameters.get("DisplayName").is_none());
    }

    #[test]
    fn a_mailbox_row_reads_with_its_odata_type_siblings() {
        let mailbox: Mailbox = serde_json::from_value(json!({
            "Identity":"adele","Alias":"adele","PrimarySmtpAddress":"adele@contoso.example",
            "EmailAddresses@odata.type":"#Collection(String)",
            "EmailAddresses":["SMTP:adele@contoso.example","smtp:a.vance@contoso.example"],
            "ExternalDirectoryObjectId":"8b0c"}))
        .unwrap();
        assert!(mailbox.has_address(&address("A.Vance@contoso.example")));
        assert!(!mailbox.has_address(&address("other@contoso.example")));
    }
}
