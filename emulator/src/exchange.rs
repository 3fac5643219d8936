//! Exchange Online's admin REST API (`InvokeCommand`, §9.2): mailboxes (which exist only after an
//! Exchange-bearing licence has provisioned) and distribution groups, with Exchange's error shape.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::directory::{AddressOwner, ExchangeGroup, Group, User, bare_address, primary_address};
use crate::reply::{Ctx, Reply};
use crate::world::{Caller, World};

/// The fake domain controller named in not-found messages.
const DOMAIN_CONTROLLER: &str = "EMU0PR01A01DC001.EMUPR01A001.PROD.OUTLOOK.COM";

/// The `Rate-Limit-Limit` Exchange publishes; the emulator reports usage against it per clock
/// hour but does not refuse (use a fault plan for an Exchange 429).
const EXCHANGE_HOURLY_LIMIT: u32 = 30_000;

/// One `InvokeCommand` call.
#[derive(Clone, Debug)]
pub(crate) struct ExchangeCall {
    tenant: String,
    body: Result<Option<Value>, ()>,
    /// The cmdlet name, when the body names one.
    pub(crate) cmdlet: Option<String>,
}

impl ExchangeCall {
    /// Reads the cmdlet name out of the body.
    pub(crate) fn new(tenant: String, body: Result<Option<Value>, ()>) -> ExchangeCall {
        let cmdlet = body
            .as_ref()
            .ok()
            .and_then(|b| b.as_ref())
            .and_then(|b| b.pointer("/CmdletInput/CmdletName"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        ExchangeCall {
            tenant,
            body,
            cmdlet,
        }
    }

    /// `Get-*` cmdlets read; everything else writes.
    pub(crate) fn is_write(&self) -> bool {
        !self
            .cmdlet
            .as_deref()
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("get-"))
    }
}

/// An Exchange failure: the .NET exception type decides the status and `ExNNNNNN` code.
#[derive(Debug)]
struct CmdletError {
    exception: &'static str,
    text: String,
}

impl CmdletError {
    fn new(exception: &'static str, text: impl Into<String>) -> CmdletError {
        CmdletError {
            exception,
            text: text.into(),
        }
    }

    fn not_found(identity: &str) -> CmdletError {
        CmdletError::new(
            "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
            format!(
                "The operation couldn't be performed because object '{identity}' couldn't be found on '{DOMAIN_CONTROLLER}'."
            ),
        )
    }

    fn recipient_not_found(identity: &str) -> CmdletError {
        CmdletError::new(
            "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
            format!(
                "Couldn't find object \"{identity}\". Please make sure that it was spelled correctly or specify a different object."
            ),
        )
    }

    fn proxy_in_use(address: &str, owner: &str) -> CmdletError {
        CmdletError::new(
            "Microsoft.Exchange.Data.Directory.ProxyAddressExistsException",
            format!(
                "The proxy address \"{address}\" is already being used by the proxy addresses or LegacyExchangeDN of \"{owner}\". Please choose another proxy address."
            ),
        )
    }

    fn parameter(text: impl Into<String>) -> CmdletError {
        CmdletError::new(
            "System.Management.Automation.ParameterBindingException",
            text,
        )
    }

    fn reply(self) -> Reply {
        let short = self.exception.rsplit('.').next().unwrap_or(self.exception);
        let (status, code) = if short == "ManagementObjectNotFoundException" {
            (StatusCode::NOT_FOUND, "NotFound")
        } else {
            (StatusCode::BAD_REQUEST, "BadRequest")
        };
        let ex_code = match short {
            "ManagementObjectNotFoundException" => "Ex6F9304",
            "MemberAlreadyExistsException" => "ExB1D5A0",
            "MemberNotFoundException" => "Ex2C4A8E",
            "ADObjectAlreadyExistsException" => "Ex5E9A4D",
            "ProxyAddressExistsException" => "ExB4C9D8",
            "OperationRequiresGroupManagerException" => "Ex7A3E51",
            "ParameterBindingException" => "Ex8C7B12",
            "CommandNotFoundException" => "Ex1F0E9C",
            _ => "Ex0D2B77",
        };
        Reply::json(
            status,
            json!({"error": {
                "code": code,
                "message": "Error executing cmdlet",
                "details": [{"code": "Client", "target": "", "message": format!("{ex_code}|{}|{}", self.exception, self.text)}],
                "innererror": {
                    "message": "Error executing cmdlet",
                    "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                    "stacktrace": "",
                    "internalexception": {"message": self.text, "type": self.exception, "stacktrace": ""}
                }
            }}),
        )
        .with_header("x-ExceptionType", short)
        .with_header("x-ExceptionTargetType", "Microsoft.Exchange.Admin.OData.Core.ODataServiceException")
    }
}

/// The answer to an injected failure status on Exchange.
pub(crate) fn injected_failure(status: StatusCode) -> Reply {
    Reply::json(
        status,
        json!({"error": {"code": status.canonical_reason().unwrap_or("Error").replace(' ', ""),
                         "message": "The service is temporarily unavailable. Please try again later."}}),
    )
}

/// Parameters, looked up case-insensitively, with a record of which were used.
struct Parameters<'a> {
    map: &'a Map<String, Value>,
}

impl Parameters<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    fn text(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }

    fn required(&self, cmdlet: &str, name: &str) -> Result<String, CmdletError> {
        self.text(name).filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            CmdletError::parameter(format!(
                "Cannot process command because of one or more missing mandatory parameters: {name}. ({cmdlet})"
            ))
        })
    }

    /// `Description`: a multi-valued string property, sent as a string or an array of them.
    fn description(&self) -> Option<String> {
        let lines = self.list("Description");
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(|v| match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => {
                Some(s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("$true"))
            }
            _ => None,
        })
    }

    fn list(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    fn check_known(&self, cmdlet: &str, known: &[&str]) -> Result<(), CmdletError> {
        const COMMON: &[&str] = &[
            "Confirm",
            "ErrorAction",
            "WarningAction",
            "Verbose",
            "Debug",
            "WhatIf",
            "DomainController",
        ];
        for key in self.map.keys() {
            if key.starts_with('@') {
                continue;
            }
            if !known
                .iter()
                .chain(COMMON)
                .any(|k| k.eq_ignore_ascii_case(key))
            {
                return Err(CmdletError::parameter(format!(
                    "A parameter cannot be found that matches parameter name '{key}'. ({cmdlet})"
                )));
            }
        }
        Ok(())
    }
}

/// Adds the `X@odata.type` siblings Exchange sends for collections and GUIDs.
fn annotated(fields: Vec<(&str, Value)>) -> Value {
    let mut map = Map::new();
    for (name, value) in fields {
        if value.is_array() {
            map.insert(format!("{name}@odata.type"), json!("#Collection(String)"));
        }
        if name == "Guid" {
            map.insert("Guid@odata.type".into(), json!("#Guid"));
        }
        map.insert(name.to_owned(), value);
    }
    Value::Object(map)
}

fn mailbox_object(user: &User) -> Value {
    let alias = user.text("mailNickname").unwrap_or_default().to_owned();
    let addresses = user.proxy_addresses();
    annotated(vec![
        ("Identity", json!(alias)),
        ("Name", json!(alias)),
        ("Alias", json!(alias)),
        ("DisplayName", json!(user.text("displayName"))),
        ("UserPrincipalName", json!(user.upn())),
        ("PrimarySmtpAddress", json!(primary_address(&addresses))),
        ("EmailAddresses", json!(addresses)),
        ("ExternalDirectoryObjectId", json!(user.id)),
        ("RecipientType", json!("UserMailbox")),
        ("RecipientTypeDetails", json!("UserMailbox")),
        ("Guid", json!(user.mailbox.as_ref().map(|m| m.guid))),
    ])
}

fn group_object(group: &Group) -> Value {
    let exchange = group.exchange.as_ref();
    let security = exchange.is_some_and(|e| e.security);
    annotated(vec![
        ("Identity", json!(exchange.map(|e| e.name.clone()))),
        ("Name", json!(exchange.map(|e| e.name.clone()))),
        ("DisplayName", json!(group.display_name)),
        ("Alias", json!(group.mail_nickname)),
        ("PrimarySmtpAddress", json!(group.mail())),
        ("EmailAddresses", json!(group.proxy_addresses)),
        ("ExternalDirectoryObjectId", json!(group.id)),
        (
            "RequireSenderAuthenticationEnabled",
            json!(exchange.is_some_and(|e| e.require_sender_authentication)),
        ),
        (
            "ManagedBy",
            json!(exchange.map(|e| e.managed_by.clone()).unwrap_or_default()),
        ),
        (
            "MemberJoinRestriction",
            json!(exchange.map(|e| e.member_join_restriction.clone())),
        ),
        (
            "MemberDepartRestriction",
            json!(exchange.map(|e| e.member_depart_restriction.clone())),
        ),
        (
            "GroupType",
            json!(if security {
                "Universal, SecurityEnabled"
            } else {
                "Universal"
            }),
        ),
        (
            "RecipientType",
            json!(if security {
                "MailUniversalSecurityGroup"
            } else {
                "MailUniversalDistributionGroup"
            }),
        ),
        (
            "RecipientTypeDetails",
            json!(if security {
                "MailUniversalSecurityGroup"
            } else {
                "MailUniversalDistributionGroup"
            }),
        ),
        ("Guid", json!(exchange.map(|e| e.guid))),
    ])
}

/// A recipient: a provisioned mailbox or a mail-enabled group.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Recipient {
    Mailbox(Uuid),
    Group(Uuid),
}

fn find_mailbox(world: &World, identity: &str) -> Option<Uuid> {
    let wanted = identity.trim();
    let lower = bare_address(wanted);
    world
        .directory
        .users
        .values()
        .filter(|u| u.deleted_at.is_none() && u.has_mailbox())
        .find(|u| {
            u.id.to_string().eq_ignore_ascii_case(wanted)
                || u.mailbox
                    .as_ref()
                    .is_some_and(|m| m.guid.to_string().eq_ignore_ascii_case(wanted))
                || u.upn().eq_ignore_ascii_case(wanted)
                || u.text("mailNickname")
                    .is_some_and(|a| a.eq_ignore_ascii_case(wanted))
                || u.text("displayName")
                    .is_some_and(|a| a.eq_ignore_ascii_case(wanted))
                || u.proxy_addresses().iter().any(|a| bare_address(a) == lower)
        })
        .map(|u| u.id)
}

fn find_group(world: &World, identity: &str) -> Option<Uuid> {
    let wanted = identity.trim();
    let lower = bare_address(wanted);
    world
        .directory
        .groups
        .values()
        .filter(|g| g.is_exchange_managed())
        .find(|g| {
            g.id.to_string().eq_ignore_ascii_case(wanted)
                || g.exchange.as_ref().is_some_and(|e| {
                    e.guid.to_string().eq_ignore_ascii_case(wanted)
                        || e.name.eq_ignore_ascii_case(wanted)
                })
                || g.mail_nickname.eq_ignore_ascii_case(wanted)
                || g.display_name.eq_ignore_ascii_case(wanted)
                || g.proxy_addresses.iter().any(|a| bare_address(a) == lower)
        })
        .map(|g| g.id)
}

fn find_recipient(world: &World, identity: &str) -> Option<Recipient> {
    find_mailbox(world, identity)
        .map(Recipient::Mailbox)
        .or_else(|| find_group(world, identity).map(Recipient::Group))
}

fn recipient_object(world: &World, id: Uuid) -> Option<Value> {
    if let Some(user) = world
        .directory
        .users
        .get(&id)
        .filter(|u| u.deleted_at.is_none())
    {
        return Some(mailbox_object(user));
    }
    world.directory.groups.get(&id).map(group_object)
}

/// Normalises an address for `EmailAddresses`: bare addresses become secondary `smtp:`.
fn proxy_form(address: &str) -> String {
    if address.len() > 5 && address[..5].eq_ignore_ascii_case("smtp:") {
        address.to_owned()
    } else {
        format!("smtp:{address}")
    }
}

/// Checks an address's domain is accepted and that nobody else holds it.
fn check_address(world: &World, address: &str, owner: AddressOwner) -> Result<(), CmdletError> {
    let bare = bare_address(address);
    let domain = bare.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    if !world.directory.domain_verified(domain) {
        return Err(CmdletError::new(
            "Microsoft.Exchange.Data.DataValidationException",
            format!(
                "The proxy address \"{address}\" is invalid. The domain \"{domain}\" isn't an accepted domain for your organization."
            ),
        ));
    }
    match world.directory.address_owner(&bare) {
        Some(other) if other != owner => Err(CmdletError::proxy_in_use(
            address,
            &world.directory.owner_name(other),
        )),
        _ => Ok(()),
    }
}

/// Applies an `EmailAddresses` value (a GenericHashTable of add/remove, or a full list) to a
/// proxy address list.
fn apply_email_addresses(
    world: &World,
    current: &[String],
    value: &Value,
    owner: AddressOwner,
) -> Result<Vec<String>, CmdletError> {
    let mut addresses = current.to_vec();
    match value {
        Value::Object(table) => {
            let entries = |key: &str| -> Vec<String> {
                table
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                    .flat_map(|(_, v)| match v {
                        Value::Array(items) => items
                            .iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect(),
                        Value::String(s) => vec![s.clone()],
                        _ => Vec::new(),
                    })
                    .collect()
            };
            for removal in entries("Remove") {
                let bare = bare_address(&removal);
                addresses.retain(|a| bare_address(a) != bare || a.starts_with("SMTP:"));
            }
            for addition in entries("Add") {
                let proxy = proxy_form(&addition);
                check_address(world, &proxy, owner)?;
                let bare = bare_address(&proxy);
                if proxy.starts_with("SMTP:") {
                    addresses.retain(|a| bare_address(a) != bare);
                    for a in &mut addresses {
                        if let Some(rest) = a.strip_prefix("SMTP:") {
                            *a = format!("smtp:{rest}");
                        }
                    }
                    addresses.insert(0, proxy);
                } else if !addresses.iter().any(|a| bare_address(a) == bare) {
                    addresses.push(proxy);
                }
            }
        }
        Value::Array(items) => {
            let wanted: Vec<String> = items
                .iter()
                .filter_map(|i| i.as_str().map(proxy_form))
                .collect();
            for address in &wanted {
                check_address(world, address, owner)?;
            }
            if wanted.iter().filter(|a| a.starts_with("SMTP:")).count() != 1 {
                return Err(CmdletError::new(
                    "Microsoft.Exchange.Data.DataValidationException",
                    "The e-mail address list must contain exactly one primary SMTP address (prefix \"SMTP:\").",
                ));
            }
            addresses = wanted;
        }
        _ => {
            return Err(CmdletError::parameter(
                "Cannot bind parameter 'EmailAddresses'. The value is not a hashtable or a list.",
            ));
        }
    }
    Ok(addresses)
}

fn manager_check(parameters: &Parameters<'_>) -> Result<(), CmdletError> {
    if parameters.flag("BypassSecurityGroupManagerCheck") == Some(true) {
        Ok(())
    } else {
        Err(CmdletError::new(
            "Microsoft.Exchange.Configuration.Tasks.OperationRequiresGroupManagerException",
            "You don't have sufficient permissions. This operation can only be performed by a manager of the group.",
        ))
    }
}

/// What a cmdlet returns: objects and warnings.
type CmdletResult = Result<(Vec<Value>, Vec<String>), CmdletError>;

/// Runs one `InvokeCommand`.
pub(crate) fn handle(world: &mut World, ctx: &Ctx, _caller: &Caller, call: &ExchangeCall) -> Reply {
    world.directory.settle(std::time::Instant::now());
    let tenant_known = call
        .tenant
        .parse::<Uuid>()
        .is_ok_and(|t| t == world.directory.tenant_id)
        || world.directory.domain_verified(&call.tenant);
    let hour = ctx.now.timestamp() / 3600;
    if world.exchange_calls.0 != hour {
        world.exchange_calls = (hour, 0);
    }
    world.exchange_calls.1 = world.exchange_calls.1.saturating_add(1);
    let remaining = EXCHANGE_HOURLY_LIMIT.saturating_sub(world.exchange_calls.1);
    let reset = chrono::DateTime::from_timestamp((hour + 1) * 3600, 0)
        .unwrap_or(ctx.now)
        .format("%Y-%m-%dT%H:%M:%S.0000000Z")
        .to_string();
    let decorate = |reply: Reply| {
        reply
            .with_header("Rate-Limit-Limit", EXCHANGE_HOURLY_LIMIT.to_string())
            .with_header("Rate-Limit-Remaining", remaining.to_string())
            .with_header("Rate-Limit-Reset", reset.clone())
            .with_header("X-CalculatedBETarget", DOMAIN_CONTROLLER)
    };
    if !tenant_known {
        return decorate(CmdletError::not_found(&call.tenant).reply());
    }
    let body = match &call.body {
        Ok(Some(body)) => body,
        _ => return decorate(CmdletError::parameter("The request body must be {\"CmdletInput\":{\"CmdletName\":...,\"Parameters\":{...}}}.").reply()),
    };
    let Some(cmdlet) = call.cmdlet.as_deref() else {
        return decorate(CmdletError::parameter("CmdletInput.CmdletName is missing.").reply());
    };
    let empty = Map::new();
    let map = body
        .pointer("/CmdletInput/Parameters")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let parameters = Parameters { map };
    let result = match cmdlet.to_ascii_lowercase().as_str() {
        "get-mailbox" => get_mailbox(world, &parameters),
        "set-mailbox" => set_mailbox(world, &parameters),
        "get-distributiongroup" => get_distribution_group(world, &parameters),
        "new-distributiongroup" => new_distribution_group(world, ctx, &parameters),
        "set-distributiongroup" => set_distribution_group(world, &parameters),
        "remove-distributiongroup" => remove_distribution_group(world, &parameters),
        "get-distributiongroupmember" => get_members(world, &parameters),
        "add-distributiongroupmember" => add_member(world, &parameters),
        "remove-distributiongroupmember" => remove_member(world, &parameters),
        "update-distributiongroupmember" => update_members(world, &parameters),
        _ => Err(CmdletError::new(
            "System.Management.Automation.CommandNotFoundException",
            format!(
                "The term '{cmdlet}' is not recognized as the name of a cmdlet, function, script file, or operable program."
            ),
        )),
    };
    let reply = match result {
        Ok((value, warnings)) => Reply::ok(json!({
            "@odata.context": format!("{}/adminapi/beta/{}/$metadata#Collection(Exchange.GenericHashTable)", ctx.base_url, call.tenant),
            "adminapi.warnings@odata.type": "#Collection(String)",
            "@adminapi.warnings": warnings,
            "value": value,
        })),
        Err(error) => error.reply(),
    };
    decorate(reply)
}

fn result_size(parameters: &Parameters<'_>) -> usize {
    match parameters.text("ResultSize") {
        Some(s) if s.eq_ignore_ascii_case("unlimited") => usize::MAX,
        Some(s) => s.parse().unwrap_or(1000),
        None => 1000,
    }
}

fn get_mailbox(world: &World, parameters: &Parameters<'_>) -> CmdletResult {
    parameters.check_known(
        "Get-Mailbox",
        &["Identity", "ResultSize", "RecipientTypeDetails", "Filter"],
    )?;
    if let Some(identity) = parameters.text("Identity") {
        let id = find_mailbox(world, &identity).ok_or_else(|| CmdletError::not_found(&identity))?;
        let user = world
            .directory
            .users
            .get(&id)
            .ok_or_else(|| CmdletError::not_found(&identity))?;
        return Ok((vec![mailbox_object(user)], Vec::new()));
    }
    let value = world
        .directory
        .user_order
        .values()
        .filter_map(|id| world.directory.users.get(id))
        .filter(|u| u.deleted_at.is_none() && u.has_mailbox())
        .take(result_size(parameters))
        .map(mailbox_object)
        .collect();
    Ok((value, Vec::new()))
}

fn set_mailbox(world: &mut World, parameters: &Parameters<'_>) -> CmdletResult {
    parameters.check_known(
        "Set-Mailbox",
        &[
            "Identity",
            "EmailAddresses",
            "DisplayName",
            "HiddenFromAddressListsEnabled",
            "Force",
        ],
    )?;
    let identity = parameters.required("Set-Mailbox", "Identity")?;
    let id = find_mailbox(world, &identity).ok_or_else(|| CmdletError::not_found(&identity))?;
    let current = world
        .directory
        .users
        .get(&id)
        .map(User::proxy_addresses)
        .unwrap_or_default();
    let addresses = match parameters.get("EmailAddresses") {
        Some(value) => apply_email_addresses(world, &current, value, AddressOwner::User(id))?,
        None => current.clone(),
    };
    let display_name = parameters.text("DisplayName");
    let user = world
        .directory
        .users
        .get_mut(&id)
        .ok_or_else(|| CmdletError::not_found(&identity))?;
    let mut changed = addresses != current;
    if let Some(name) = display_name
        && user.text("displayName") != Some(name.as_str())
    {
        user.props.insert("displayName".into(), json!(name));
        changed = true;
    }
    if !changed {
        return Ok((Vec::new(), vec![no_change(&identity)]));
    }
    user.props
        .insert("mail".into(), json!(primary_address(&addresses)));
    user.props.insert("proxyAddresses".into(), json!(addresses));
    Ok((Vec::new(), Vec::new()))
}

fn no_change(identity: &str) -> String {
    format!(
        "The command completed successfully but no settings of '{identity}' have been modified."
    )
}

fn get_distribution_group(world: &World, parameters: &Parameters<'_>) -> CmdletResult {
    parameters.check_known(
        "Get-DistributionGroup",
        &["Identity", "ResultSize", "Filter"],
    )?;
    if let Some(identity) = parameters.text("Identity") {
        let id = find_group(world, &identity).ok_or_else(|| CmdletError::not_found(&identity))?;
        return Ok((
            world
                .directory
                .groups
                .get(&id)
                .map(group_object)
                .into_iter()
                .collect(),
            Vec::new(),
        ));
    }
    let value = world
        .directory
        .group_order
        .values()
        .filter_map(|id| world.directory.groups.get(id))
        .filter(|g| g.is_exchange_managed())
        .take(result_size(parameters))
        .map(group_object)
        .collect();
    Ok((value, Vec::new()))
}

fn alias_from(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(*c))
        .collect()
}

fn restriction(
    parameters: &Parameters<'_>,
    name: &str,
    default: &str,
) -> Result<String, CmdletError> {
    match parameters.text(name) {
        None => Ok(default.to_owned()),
        Some(v) => ["Open", "Closed", "ApprovalRequired"]
            .iter()
            .find(|r| r.eq_ignore_ascii_case(&v))
            .map(|r| (*r).to_owned())
            .ok_or_else(|| {
                CmdletError::parameter(format!(
                    "Cannot bind parameter '{name}'. Cannot convert value \"{v}\"."
                ))
            }),
    }
}

fn new_distribution_group(
    world: &mut World,
    ctx: &Ctx,
    parameters: &Parameters<'_>,
) -> CmdletResult {
    parameters.check_known(
        "New-DistributionGroup",
        &[
            "Name",
            "Alias",
            "DisplayName",
            "PrimarySmtpAddress",
            "Members",
            "ManagedBy",
            "Type",
            "RequireSenderAuthenticationEnabled",
            "MemberJoinRestriction",
            "MemberDepartRestriction",
            "CopyOwnerToMember",
            "Description",
            "Notes",
            "OrganizationalUnit",
            "IgnoreNamingPolicy",
        ],
    )?;
    let name = parameters.required("New-DistributionGroup", "Name")?;
    if name.chars().count() > 64 {
        return Err(CmdletError::new(
            "Microsoft.Exchange.Data.DataValidationException",
            format!(
                "The length of the property is too long. The maximum length is 64 and the length of the value provided is {}.",
                name.chars().count()
            ),
        ));
    }
    let alias = parameters
        .text("Alias")
        .unwrap_or_else(|| alias_from(&name));
    if alias.is_empty() || alias.chars().count() > 64 {
        return Err(CmdletError::new(
            "Microsoft.Exchange.Data.DataValidationException",
            format!("The alias \"{alias}\" is not valid."),
        ));
    }
    let taken = world.directory.groups.values().any(|g| {
        g.exchange
            .as_ref()
            .is_some_and(|e| e.name.eq_ignore_ascii_case(&name))
            || g.mail_nickname.eq_ignore_ascii_case(&alias)
    });
    if taken {
        return Err(CmdletError::new(
            "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException",
            format!("The object '{name}' already exists."),
        ));
    }
    let primary = parameters
        .text("PrimarySmtpAddress")
        .unwrap_or_else(|| format!("{alias}@{}", world.directory.default_domain()));
    let id = Uuid::new_v4();
    check_address(world, &format!("SMTP:{primary}"), AddressOwner::Group(id))?;
    let mut members = Vec::new();
    for member in parameters.list("Members") {
        match find_recipient(world, &member) {
            Some(Recipient::Mailbox(m) | Recipient::Group(m)) => {
                if !members.contains(&m) {
                    members.push(m);
                }
            }
            None => return Err(CmdletError::recipient_not_found(&member)),
        }
    }
    let security = match parameters.text("Type") {
        None => false,
        Some(t) if t.eq_ignore_ascii_case("Distribution") => false,
        Some(t) if t.eq_ignore_ascii_case("Security") => true,
        Some(t) => {
            return Err(CmdletError::parameter(format!(
                "Cannot bind parameter 'Type'. Cannot convert value \"{t}\"."
            )));
        }
    };
    let group = Group {
        id,
        seq: 0,
        display_name: parameters
            .text("DisplayName")
            .unwrap_or_else(|| name.clone()),
        // `Description` (multi-valued, Exchange Online only) is what Graph shows as the
        // group's description; `Notes` is kept for callers that used it before.
        description: parameters
            .description()
            .or_else(|| parameters.text("Notes")),
        mail_nickname: alias,
        mail_enabled: true,
        security_enabled: security,
        group_types: Vec::new(),
        proxy_addresses: vec![format!("SMTP:{primary}")],
        members,
        created_at: ctx.now,
        exchange: Some(ExchangeGroup {
            guid: Uuid::new_v4(),
            name,
            require_sender_authentication: parameters
                .flag("RequireSenderAuthenticationEnabled")
                .unwrap_or(true),
            managed_by: parameters.list("ManagedBy"),
            member_join_restriction: restriction(parameters, "MemberJoinRestriction", "Closed")?,
            member_depart_restriction: restriction(
                parameters,
                "MemberDepartRestriction",
                if security { "Closed" } else { "Open" },
            )?,
            security,
        }),
    };
    let id = world.directory.insert_group(group);
    Ok((
        world
            .directory
            .groups
            .get(&id)
            .map(group_object)
            .into_iter()
            .collect(),
        Vec::new(),
    ))
}

fn set_distribution_group(world: &mut World, parameters: &Parameters<'_>) -> CmdletResult {
    parameters.check_known(
        "Set-DistributionGroup",
        &[
            "Identity",
            "RequireSenderAuthenticationEnabled",
            "PrimarySmtpAddress",
            "EmailAddresses",
            "DisplayName",
            "ManagedBy",
            "BypassSecurityGroupManagerCheck",
            "Name",
            "Alias",
            "MemberJoinRestriction",
            "MemberDepartRestriction",
            "HiddenFromAddressListsEnabled",
        ],
    )?;
    let identity = parameters.required("Set-DistributionGroup", "Identity")?;
    let id = find_group(world, &identity).ok_or_else(|| CmdletError::not_found(&identity))?;
    manager_check(parameters)?;
    let current = world
        .directory
        .groups
        .get(&id)
        .map(|g| g.proxy_addresses.clone())
        .unwrap_or_default();
    let mut addresses = match parameters.get("EmailAddresses") {
        Some(value) => apply_email_addresses(world, &current, value, AddressOwner::Group(id))?,
        None => current.clone(),
    };
    if let Some(primary) = parameters.text("PrimarySmtpAddress") {
        let table = json!({"Add": [format!("SMTP:{primary}")]});
        addresses = apply_email_addresses(world, &addresses, &table, AddressOwner::Group(id))?;
    }
    let join = parameters
        .text("MemberJoinRestriction")
        .map(|_| restriction(parameters, "MemberJoinRestriction", "Closed"))
        .transpose()?;
    let depart = parameters
        .text("MemberDepartRestriction")
        .map(|_| restriction(parameters, "MemberDepartRestriction", "Open"))
        .transpose()?;
    let group = world
        .directory
        .groups
        .get_mut(&id)
        .ok_or_else(|| CmdletError::not_found(&identity))?;
    let before = format!("{group:?}");
    group.proxy_addresses = addresses;
    if let Some(name) = parameters.text("DisplayName") {
        group.display_name = name;
    }
    if let Some(alias) = parameters.text("Alias") {
        group.mail_nickname = alias;
    }
    if let Some(exchange) = group.exchange.as_mut() {
        if let Some(flag) = parameters.flag("RequireSenderAuthenticationEnabled") {
            exchange.require_sender_authentication = flag;
        }
        if parameters.get("ManagedBy").is_some() {
            exchange.managed_by = parameters.list("ManagedBy");
        }
        if let Some(name) = parameters.text("Name") {
            exchange.name = name;
        }
        if let Some(join) = join {
            exchange.member_join_restriction = join;
        }
        if let Some(depart) = depart {
            exchange.member_depart_restriction = depart;
        }
    }
    if format!("{group:?}") == before {
        return Ok((Vec::new(), vec![no_change(&identity)]));
    }
    Ok((Vec::new(), Vec::new()))
}

fn remove_distribution_group(world: &mut World, parameters: &Parameters<'_>) -> CmdletResult {
    parameters.check_known(
        "Remove-DistributionGroup",
        &["Identity", "BypassSecurityGroupManagerCheck"],
    )?;
    let identity = parameters.required("Remove-DistributionGroup", "Identity")?;
    let id = find_group(world, &identity).ok_or_else(|| CmdletError::not_found(&identity))?;
    manager_check(parameters)?;
    world.directory.remove_group(id);
    Ok((Vec::new(), Vec::new()))
}

fn get_members(world: &World, parameters: &Parameters<'_>) -> CmdletResult {
    parameters.check_known("Get-DistributionGroupMember", &["Identity", "ResultSize"])?;
    let identity = parameters.required("Get-DistributionGroupMember", "Identity")?;
    let id = find_group(world, &identity).ok_or_else(|| CmdletError::not_found(&identity))?;
    let members = world
        .directory
        .groups
        .get(&id)
        .map(|g| g.members.clone())
        .unwrap_or_default();
    let value = members
        .iter()
        .filter_map(|m| recipient_object(world, *m))
        .take(result_size(parameters))
        .collect();
    Ok((value, Vec::new()))
}

fn group_name(world: &World, id: Uuid) -> String {
    world.directory.owner_name(AddressOwner::Group(id))
}

fn add_member(world: &mut World, parameters: &Parameters<'_>) -> CmdletResult {
    parameters.check_known(
        "Add-DistributionGroupMember",
        &["Identity", "Member", "BypassSecurityGroupManagerCheck"],
    )?;
    let identity = parameters.required("Add-DistributionGroupMember", "Identity")?;
    let member = parameters.required("Add-DistributionGroupMember", "Member")?;
    let id = find_group(world, &identity).ok_or_else(|| CmdletError::not_found(&identity))?;
    manager_check(parameters)?;
    let Some(Recipient::Mailbox(member_id) | Recipient::Group(member_id)) =
        find_recipient(world, &member)
    else {
        return Err(CmdletError::recipient_not_found(&member));
    };
    let name = group_name(world, id);
    let group = world
        .directory
        .groups
        .get_mut(&id)
        .ok_or_else(|| CmdletError::not_found(&identity))?;
    if group.members.contains(&member_id) {
        return Err(CmdletError::new(
            "Microsoft.Exchange.Management.Tasks.MemberAlreadyExistsException",
            format!("The recipient \"{member}\" is already a member of the group \"{name}\"."),
        ));
    }
    group.members.push(member_id);
    Ok((Vec::new(), Vec::new()))
}

fn remove_member(world: &mut World, parameters: &Parameters<'_>) -> CmdletResult {
    parameters.check_known(
        "Remove-DistributionGroupMember",
        &["Identity", "Member", "BypassSecurityGroupManagerCheck"],
    )?;
    let identity = parameters.required("Remove-DistributionGroupMember", "Identity")?;
    let member = parameters.required("Remove-DistributionGroupMember", "Member")?;
    let id = find_group(world, &identity).ok_or_else(|| CmdletError::not_found(&identity))?;
    manager_check(parameters)?;
    let member_id = find_recipient(world, &member);
    let name = group_name(world, id);
    let group = world
        .directory
        .groups
        .get_mut(&id)
        .ok_or_else(|| CmdletError::not_found(&identity))?;
    let position = member_id.and_then(|m| {
        let (Recipient::Mailbox(m) | Recipient::Group(m)) = m;
        group.members.iter().position(|x| *x == m)
    });
    match position {
        Some(index) => {
            group.members.remove(index);
            Ok((Vec::new(), Vec::new()))
        }
        None => Err(CmdletError::new(
            "Microsoft.Exchange.Management.Tasks.MemberNotFoundException",
            format!("The recipient \"{member}\" isn't a member of the group \"{name}\"."),
        )),
    }
}

fn update_members(world: &mut World, parameters: &Parameters<'_>) -> CmdletResult {
    parameters.check_known(
        "Update-DistributionGroupMember",
        &["Identity", "Members", "BypassSecurityGroupManagerCheck"],
    )?;
    let identity = parameters.required("Update-DistributionGroupMember", "Identity")?;
    let id = find_group(world, &identity).ok_or_else(|| CmdletError::not_found(&identity))?;
    manager_check(parameters)?;
    let mut members = Vec::new();
    for member in parameters.list("Members") {
        match find_recipient(world, &member) {
            Some(Recipient::Mailbox(m) | Recipient::Group(m)) => {
                if !members.contains(&m) {
                    members.push(m);
                }
            }
            None => return Err(CmdletError::recipient_not_found(&member)),
        }
    }
    if let Some(group) = world.directory.groups.get_mut(&id) {
        group.members = members;
    }
    Ok((Vec::new(), Vec::new()))
}
