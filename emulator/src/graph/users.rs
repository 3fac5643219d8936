//! `/users`, `/users/{key}`, `revokeSignInSessions` and `/directory/deletedItems`.

use std::time::Instant;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::filter::Filter;
use super::{
    GraphCall, collection_page, context_name, page_size, parse_select, project, skip_offset,
};
use crate::directory::{
    AddressOwner, DEFAULT_USER_PROPERTIES, Directory, PasswordDigest, USER_PROPERTIES, User,
    graph_timestamp,
};
use crate::reply::{Ctx, GraphError, Reply};
use crate::world::{Caller, World};

const READ: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const CREATE: &[&str] = &[
    "User.Create",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
];
const UPDATE: &[&str] = &[
    "User.ReadUpdate.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
];
const ENABLE: &[&str] = &[
    "User.EnableDisableAccount.All",
    "User.ReadUpdate.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
];
const PASSWORD: &[&str] = &["User-PasswordProfile.ReadWrite.All"];
const DELETE: &[&str] = &["User.ReadWrite.All", "Directory.ReadWrite.All"];
const REVOKE: &[&str] = &[
    "User.RevokeSessions.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
];

/// Properties Graph refuses to set, with its read-only message.
const READ_ONLY: &[&str] = &[
    "proxyAddresses",
    "assignedLicenses",
    "createdDateTime",
    "deletedDateTime",
    "lastPasswordChangeDateTime",
    "signInSessionsValidFromDateTime",
    "creationType",
    "onPremisesSyncEnabled",
];

/// Properties a user's `$filter` may name.
const FILTERABLE: &[&str] = &[
    "id",
    "userPrincipalName",
    "mail",
    "displayName",
    "accountEnabled",
    "givenName",
    "surname",
    "mailNickname",
    "employeeId",
    "onPremisesImmutableId",
    "usageLocation",
    "jobTitle",
    "department",
    "companyName",
    "userType",
    "proxyAddresses",
    "assignedLicenses",
    "otherMails",
];

pub(super) fn require(world: &World, caller: &Caller, any_of: &[&str]) -> Result<(), GraphError> {
    if world.permits(caller, any_of) {
        Ok(())
    } else {
        Err(GraphError::forbidden())
    }
}

fn invalid_value(property: &str) -> GraphError {
    GraphError::bad_request(format!(
        "Invalid value specified for property '{property}' of resource 'User'."
    ))
}

fn upn_conflict() -> GraphError {
    let message =
        "Another object with the same value for property userPrincipalName already exists.";
    GraphError::bad_request(message).with_details(vec![json!({
        "code": "ObjectConflict", "message": message, "target": "userPrincipalName"
    })])
}

pub(super) fn proxy_conflict(owner: Uuid) -> GraphError {
    let message = "Another object with the same value for property proxyAddresses already exists.";
    GraphError::bad_request(message).with_details(vec![
        json!({"code": "ObjectConflict", "message": message, "target": "proxyAddresses"}),
        json!({"code": "ConflictingObjects", "message": format!("{owner}"), "target": "proxyAddresses"}),
    ])
}

fn weak_password() -> GraphError {
    GraphError::bad_request(
        "The specified password does not comply with password complexity requirements. Please provide a different password.",
    )
}

/// The default Entra password policy: 8–256 characters, three of four classes, no part of the
/// UPN's alias, none of a few banned words (matched literally, so the reference's own
/// `N3w-Passw0rd!x` example passes).
pub(crate) fn password_complies(password: &str, upn: &str) -> bool {
    const BANNED: &[&str] = &["password", "welcome", "qwerty", "letmein", "123456"];
    let length = password.chars().count();
    if !(8..=256).contains(&length) {
        return false;
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 3 {
        return false;
    }
    let lower = password.to_lowercase();
    let alias = upn.split('@').next().unwrap_or_default().to_lowercase();
    if alias.len() >= 3 && lower.contains(&alias) {
        return false;
    }
    !BANNED.iter().any(|b| lower.contains(b))
}

/// Checks a UPN's shape, then its domain.
pub(super) fn check_upn(directory: &Directory, upn: &str) -> Result<(), GraphError> {
    let invalid = || GraphError::bad_request("Property userPrincipalName is invalid.");
    let (alias, domain) = upn.rsplit_once('@').ok_or_else(invalid)?;
    let alias_ok = !alias.is_empty()
        && alias.len() <= 64
        && !alias.starts_with('.')
        && !alias.ends_with('.')
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "'.-_!#^~$".contains(c));
    let domain_ok = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !alias_ok || !domain_ok {
        return Err(invalid());
    }
    if !directory.domain_verified(domain) {
        return Err(GraphError::bad_request(
            "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
        ));
    }
    Ok(())
}

fn check_mail_nickname(nickname: &str) -> Result<(), GraphError> {
    let ok = !nickname.is_empty()
        && nickname.len() <= 64
        && !nickname.starts_with('.')
        && !nickname.ends_with('.')
        && nickname
            .chars()
            .all(|c| c.is_ascii_graphic() && !"@()\\[]\";:<>,".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid_value("mailNickname"))
    }
}

fn check_usage_location(location: &str) -> Result<(), GraphError> {
    if location.len() == 2 && location.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(invalid_value("usageLocation"))
    }
}

/// Validates the settable properties of a POST or PATCH body; `@odata.*` annotations and `id`
/// are ignored.
fn accept_properties(body: &Map<String, Value>) -> Result<Map<String, Value>, GraphError> {
    let mut accepted = Map::new();
    for (name, value) in body {
        if name.contains('@') || name == "id" {
            continue;
        }
        if READ_ONLY.contains(&name.as_str()) {
            return Err(GraphError::bad_request(format!(
                "Property '{name}' is read-only and cannot be set."
            )));
        }
        if !USER_PROPERTIES.contains(&name.as_str()) && !name.starts_with("extension_") {
            return Err(GraphError::bad_request(format!(
                "Property '{name}' does not exist as a declared property or extension property."
            )));
        }
        let type_ok = match name.as_str() {
            "accountEnabled" => value.is_boolean(),
            "businessPhones" | "otherMails" => value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
            "passwordProfile" => value.is_object(),
            _ => value.is_string() || value.is_null(),
        };
        if !type_ok {
            return Err(invalid_value(name));
        }
        accepted.insert(name.clone(), value.clone());
    }
    Ok(accepted)
}

/// Reads `passwordProfile`: `(password, forceChange)`; password absent is `None`.
fn password_profile(value: &Value) -> Result<(Option<String>, Option<bool>), GraphError> {
    let password = match value.get("password") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p.clone()),
        Some(_) => return Err(invalid_value("passwordProfile")),
    };
    let force = value
        .get("forceChangePasswordNextSignIn")
        .and_then(Value::as_bool);
    Ok((password, force))
}

/// Makes an address the primary SMTP (`SMTP:`) entry, demoting the old primary.
pub(crate) fn set_primary_address(user: &mut User, address: &str) {
    let mut addresses: Vec<String> = user
        .proxy_addresses()
        .into_iter()
        .filter(|a| !a.eq_ignore_ascii_case(&format!("smtp:{address}")))
        .map(|a| match a.strip_prefix("SMTP:") {
            Some(rest) => format!("smtp:{rest}"),
            None => a,
        })
        .collect();
    addresses.insert(0, format!("SMTP:{address}"));
    user.props.insert("proxyAddresses".into(), json!(addresses));
    user.props.insert("mail".into(), json!(address));
}

pub(super) fn create(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
) -> Result<Reply, GraphError> {
    require(world, caller, CREATE)?;
    let body = call.json_body()?;
    let mut props = accept_properties(&body)?;
    for name in [
        "accountEnabled",
        "displayName",
        "mailNickname",
        "userPrincipalName",
    ] {
        match props.get(name) {
            None | Some(Value::Null) => return Err(invalid_value(name)),
            Some(Value::String(s)) if s.trim().is_empty() => return Err(invalid_value(name)),
            _ => {}
        }
    }
    let (password, force_change) = match props.remove("passwordProfile") {
        Some(profile) => password_profile(&profile)?,
        None => (None, None),
    };
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Err(GraphError::bad_request(
            "Property passwordProfile.password value is required but is empty or missing.",
        ));
    };
    let upn = props
        .get("userPrincipalName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    check_upn(&world.directory, &upn)?;
    check_mail_nickname(
        props
            .get("mailNickname")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )?;
    if let Some(location) = props.get("usageLocation").and_then(Value::as_str) {
        check_usage_location(location)?;
        props.insert("usageLocation".into(), json!(location.to_ascii_uppercase()));
    }
    if world
        .directory
        .upn_index
        .contains_key(&upn.to_ascii_lowercase())
    {
        return Err(upn_conflict());
    }
    let mail = props.get("mail").and_then(Value::as_str).map(str::to_owned);
    if let Some(mail) = &mail
        && let Some(AddressOwner::User(owner) | AddressOwner::Group(owner)) =
            world.directory.address_owner(mail)
    {
        return Err(proxy_conflict(owner));
    }
    if !password_complies(&password, &upn) {
        return Err(weak_password());
    }
    props.insert("createdDateTime".into(), json!(graph_timestamp(ctx.now)));
    props.insert(
        "lastPasswordChangeDateTime".into(),
        json!(graph_timestamp(ctx.now)),
    );
    props.entry("userType").or_insert(json!("Member"));
    let visible_at = Instant::now() + world.replication_delay();
    let id = world
        .directory
        .insert_user(props, Some(PasswordDigest::of(&password)), visible_at);
    let tenant_id = world.directory.tenant_id;
    let user = world
        .directory
        .users
        .get_mut(&id)
        .ok_or_else(|| GraphError::not_found(&upn))?;
    user.force_change_password = force_change.unwrap_or(true);
    if let Some(mail) = mail {
        set_primary_address(user, &mail);
    }
    let mut entity = project(&user.all_properties(), None, DEFAULT_USER_PROPERTIES);
    entity.insert(
        "@odata.context".into(),
        json!(format!("{}/$metadata#users/$entity", ctx.graph_base())),
    );
    let location = format!(
        "{}/v2/{tenant_id}/directoryObjects/{id}/Microsoft.DirectoryServices.User",
        ctx.base_url
    );
    Ok(Reply::json(StatusCode::CREATED, Value::Object(entity)).with_header("Location", location))
}

/// An active user visible to reads (replication delay honoured), or the 404.
pub(super) fn visible_user<'w>(world: &'w World, key: &str) -> Result<&'w User, GraphError> {
    world
        .directory
        .active_user_id(key)
        .and_then(|id| world.directory.users.get(&id))
        .filter(|u| u.visible_at <= Instant::now())
        .ok_or_else(|| GraphError::not_found(key))
}

pub(super) fn get(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, READ)?;
    let select = parse_select(call, USER_PROPERTIES, "microsoft.graph.user")?;
    let user = visible_user(world, key)?;
    let mut entity = project(
        &user.all_properties(),
        select.as_deref(),
        DEFAULT_USER_PROPERTIES,
    );
    entity.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/$metadata#{}/$entity",
            ctx.graph_base(),
            context_name("users", select.as_deref())
        )),
    );
    Ok(Reply::ok(Value::Object(entity)))
}

/// Parses `$filter` for a collection, enforcing advanced-query rules.
pub(super) fn parse_filter(
    call: &GraphCall,
    filterable: &[&str],
    resource: &str,
) -> Result<Option<Filter>, GraphError> {
    let Some(raw) = call.option("$filter") else {
        return Ok(None);
    };
    let filter = Filter::parse(raw).map_err(|problem| {
        let super::filter::FilterProblem::Syntax(text) = problem;
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Invalid filter clause: {text}"),
        )
    })?;
    for property in filter.properties() {
        if !filterable.contains(&property) && !property.starts_with("extension_") {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "Request_UnsupportedQuery",
                format!(
                    "Unsupported or invalid query filter clause specified for property '{property}' of resource '{resource}'."
                ),
            ));
        }
    }
    if !call.eventual
        && let Some(operator) = filter.advanced_operator()
    {
        return Err(advanced_needed(operator));
    }
    Ok(Some(filter))
}

fn advanced_needed(operator: &str) -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
        format!(
            "Operator '{operator}' is not supported because the 'ConsistencyLevel:eventual' header is missing. Refer to https://aka.ms/graph-docs/advanced-queries for more information"
        ),
    )
}

/// Common query checks for directory collections: no `$skip`, `$count` and `$search` need
/// advanced mode.
pub(super) fn check_collection_options(call: &GraphCall) -> Result<bool, GraphError> {
    if call.option("$skip").is_some() {
        return Err(GraphError::bad_request(
            "'$skip' is not supported by the service.",
        ));
    }
    let count = call
        .option("$count")
        .is_some_and(|c| c.eq_ignore_ascii_case("true"));
    if count && !call.eventual {
        return Err(GraphError::bad_request(
            "$count is not currently supported.",
        ));
    }
    if call.option("$search").is_some() && !call.eventual {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
        ));
    }
    Ok(count)
}

/// `$search="displayName:adele"` style terms, all of which must match.
fn search_matches(search: &str, object: &Map<String, Value>) -> bool {
    let trimmed = search.trim().trim_matches('"');
    trimmed.split("\" AND \"").all(|term| {
        let (property, text) = term.split_once(':').unwrap_or(("displayName", term));
        object
            .get(property)
            .and_then(Value::as_str)
            .is_some_and(|v| v.to_lowercase().contains(&text.to_lowercase()))
    })
}

/// `$orderby` on one property, `asc` or `desc`.
fn order_by(
    call: &GraphCall,
    items: &mut [Map<String, Value>],
    filtered: bool,
) -> Result<(), GraphError> {
    let Some(raw) = call.option("$orderby") else {
        return Ok(());
    };
    if filtered && !call.eventual {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            "Sorting not supported for current query.",
        ));
    }
    let mut parts = raw.split_whitespace();
    let property = parts.next().unwrap_or("displayName").to_owned();
    let descending = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
    items.sort_by(|a, b| {
        let key = |m: &Map<String, Value>| {
            m.get(&property)
                .and_then(Value::as_str)
                .map(str::to_lowercase)
                .unwrap_or_default()
        };
        let ordering = key(a).cmp(&key(b));
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
    Ok(())
}

pub(super) fn list(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
) -> Result<Reply, GraphError> {
    require(world, caller, READ)?;
    let want_count = check_collection_options(call)?;
    let select = parse_select(call, USER_PROPERTIES, "microsoft.graph.user")?;
    let filter = parse_filter(call, FILTERABLE, "User")?;
    let top = page_size(call)?;
    let offset = skip_offset(call)?;
    let search = call.option("$search");
    let now = Instant::now();
    let needs_all = want_count || call.option("$orderby").is_some();
    let mut matching: Vec<Map<String, Value>> = Vec::new();
    let mut total = 0usize;
    for id in world.directory.user_order.values() {
        let Some(user) = world.directory.users.get(id) else {
            continue;
        };
        if user.deleted_at.is_some() || user.visible_at > now {
            continue;
        }
        if filter.is_some() || search.is_some() {
            let all = user.all_properties();
            if filter.as_ref().is_some_and(|f| !f.matches(&all))
                || search.is_some_and(|s| !search_matches(s, &all))
            {
                continue;
            }
        }
        total += 1;
        if needs_all || (total > offset && total <= offset + top + 1) {
            matching.push(user.all_properties());
        }
        if !needs_all && total > offset + top + 1 {
            break;
        }
    }
    let window: Vec<Map<String, Value>> = if needs_all {
        order_by(call, &mut matching, filter.is_some())?;
        matching.into_iter().skip(offset).collect()
    } else {
        matching
    };
    let has_more = window.len() > top;
    let items: Vec<Value> = window
        .iter()
        .take(top)
        .map(|all| Value::Object(project(all, select.as_deref(), DEFAULT_USER_PROPERTIES)))
        .collect();
    Ok(collection_page(
        ctx,
        call,
        &context_name("users", select.as_deref()),
        items,
        has_more,
        offset,
        want_count.then_some(total),
    ))
}

pub(super) fn update(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
    key: &str,
) -> Result<Reply, GraphError> {
    let body = call.json_body()?;
    let only_enable = body
        .keys()
        .filter(|k| !k.contains('@'))
        .all(|k| k == "accountEnabled");
    require(world, caller, if only_enable { ENABLE } else { UPDATE })?;
    if body.contains_key("passwordProfile") {
        require(world, caller, PASSWORD)?;
    }
    let id = world
        .directory
        .active_user_id(key)
        .ok_or_else(|| GraphError::not_found(key))?;
    let mut props = accept_properties(&body)?;
    if let Some(name) = props.get("displayName")
        && name.as_str().is_none_or(|n| n.trim().is_empty())
    {
        return Err(invalid_value("displayName"));
    }
    let current_upn = world
        .directory
        .users
        .get(&id)
        .map(|u| u.upn().to_owned())
        .unwrap_or_default();
    let new_upn = match props.get("userPrincipalName") {
        Some(Value::String(upn)) => {
            check_upn(&world.directory, upn)?;
            if let Some(owner) = world.directory.upn_index.get(&upn.to_ascii_lowercase())
                && *owner != id
            {
                return Err(upn_conflict());
            }
            Some(upn.clone())
        }
        Some(_) => return Err(invalid_value("userPrincipalName")),
        None => None,
    };
    if let Some(nickname) = props.get("mailNickname") {
        check_mail_nickname(nickname.as_str().unwrap_or_default())?;
    }
    if let Some(Value::String(location)) = props.get("usageLocation") {
        check_usage_location(location)?;
        let upper = location.to_ascii_uppercase();
        props.insert("usageLocation".into(), json!(upper));
    }
    let mail = match props.remove("mail") {
        Some(Value::String(mail)) => {
            match world.directory.address_owner(&mail) {
                Some(AddressOwner::User(owner)) if owner == id => {}
                Some(AddressOwner::User(owner) | AddressOwner::Group(owner)) => {
                    return Err(proxy_conflict(owner));
                }
                None => {}
            }
            Some(Some(mail))
        }
        Some(_) => Some(None),
        None => None,
    };
    let profile = match props.remove("passwordProfile") {
        Some(profile) => Some(password_profile(&profile)?),
        None => None,
    };
    if let Some((Some(password), _)) = &profile
        && !password_complies(password, new_upn.as_deref().unwrap_or(&current_upn))
    {
        return Err(weak_password());
    }
    let settled_at = Instant::now() + world.replication_delay();
    let user = world
        .directory
        .users
        .get_mut(&id)
        .ok_or_else(|| GraphError::not_found(key))?;
    if props.contains_key("usageLocation") {
        user.usage_location_settled_at = settled_at;
    }
    for (name, value) in props {
        user.props.insert(name, value);
    }
    match mail {
        Some(Some(mail)) => set_primary_address(user, &mail),
        Some(None) => {
            user.props.insert("mail".into(), Value::Null);
        }
        None => {}
    }
    if let Some((password, force)) = profile {
        if let Some(password) = password {
            user.password = Some(PasswordDigest::of(&password));
            user.props.insert(
                "lastPasswordChangeDateTime".into(),
                json!(graph_timestamp(ctx.now)),
            );
        }
        if let Some(force) = force {
            user.force_change_password = force;
        }
    }
    if new_upn.is_some() {
        world.directory.reindex_upn(id, &current_upn);
    }
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub(super) fn delete(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, DELETE)?;
    let id = world
        .directory
        .active_user_id(key)
        .ok_or_else(|| GraphError::not_found(key))?;
    world.directory.soft_delete_user(id, ctx.now);
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub(super) fn revoke_sessions(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, REVOKE)?;
    let id = world
        .directory
        .active_user_id(key)
        .ok_or_else(|| GraphError::not_found(key))?;
    if let Some(user) = world.directory.users.get_mut(&id) {
        user.props.insert(
            "signInSessionsValidFromDateTime".into(),
            json!(graph_timestamp(ctx.now)),
        );
    }
    Ok(Reply::ok(json!({
        "@odata.context": format!("{}/$metadata#Edm.Boolean", ctx.graph_base()),
        "value": true
    })))
}

fn deleted_entity(user: &User, select: Option<&[String]>) -> Map<String, Value> {
    let all = user.all_properties();
    let mut entity = project(&all, select, DEFAULT_USER_PROPERTIES);
    if select.is_none() {
        entity.insert(
            "deletedDateTime".into(),
            all.get("deletedDateTime").cloned().unwrap_or(Value::Null),
        );
    }
    entity
}

pub(super) fn list_deleted(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
) -> Result<Reply, GraphError> {
    require(world, caller, READ)?;
    check_collection_options(call)?;
    let select = parse_select(call, USER_PROPERTIES, "microsoft.graph.user")?;
    let filter = parse_filter(call, FILTERABLE, "User")?;
    let top = page_size(call)?;
    let offset = skip_offset(call)?;
    let matching: Vec<Value> = world
        .directory
        .user_order
        .values()
        .filter_map(|id| world.directory.users.get(id))
        .filter(|u| u.deleted_at.is_some())
        .filter(|u| {
            filter
                .as_ref()
                .is_none_or(|f| f.matches(&u.all_properties()))
        })
        .skip(offset)
        .take(top + 1)
        .map(|u| Value::Object(deleted_entity(u, select.as_deref())))
        .collect();
    let has_more = matching.len() > top;
    let items = matching.into_iter().take(top).collect();
    let context = format!(
        "directory/deletedItems/{}",
        context_name("microsoft.graph.user", select.as_deref())
    );
    Ok(collection_page(
        ctx, call, &context, items, has_more, offset, None,
    ))
}

fn deleted_user_id(world: &World, key: &str) -> Result<Uuid, GraphError> {
    key.parse::<Uuid>()
        .ok()
        .filter(|id| {
            world
                .directory
                .users
                .get(id)
                .is_some_and(|u| u.deleted_at.is_some())
        })
        .ok_or_else(|| GraphError::not_found(key))
}

pub(super) fn get_deleted(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, READ)?;
    let id = deleted_user_id(world, key)?;
    let user = world
        .directory
        .users
        .get(&id)
        .ok_or_else(|| GraphError::not_found(key))?;
    let mut entity = deleted_entity(user, None);
    entity.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/$metadata#directoryObjects/$entity",
            ctx.graph_base()
        )),
    );
    entity.insert("@odata.type".into(), json!("#microsoft.graph.user"));
    Ok(Reply::ok(Value::Object(entity)))
}

pub(super) fn purge(
    world: &mut World,
    _ctx: &Ctx,
    caller: &Caller,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, DELETE)?;
    let id = deleted_user_id(world, key)?;
    world.directory.purge_user(id);
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub(super) fn restore(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, DELETE)?;
    let body = call.json_body()?;
    let id = deleted_user_id(world, key)?;
    let conflict = || {
        GraphError::bad_request(
            "A conflicting object with one or more of the specified property values is present in the directory.",
        )
    };
    let old_upn = world
        .directory
        .users
        .get(&id)
        .map(|u| u.upn().to_owned())
        .unwrap_or_default();
    let new_upn = match body.get("newUserPrincipalName") {
        Some(Value::String(upn)) => {
            check_upn(&world.directory, upn)?;
            Some(upn.clone())
        }
        None | Some(Value::Null) => None,
        Some(_) => return Err(invalid_value("newUserPrincipalName")),
    };
    let upn = new_upn.clone().unwrap_or_else(|| old_upn.clone());
    if world
        .directory
        .upn_index
        .contains_key(&upn.to_ascii_lowercase())
    {
        return Err(conflict());
    }
    let reconcile = body
        .get("autoReconcileProxyConflict")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let addresses = world
        .directory
        .users
        .get(&id)
        .map(User::proxy_addresses)
        .unwrap_or_default();
    let clashing: Vec<String> = addresses
        .iter()
        .filter(|a| world.directory.address_owner(a).is_some())
        .cloned()
        .collect();
    if !clashing.is_empty() && !reconcile {
        return Err(conflict());
    }
    let user = world
        .directory
        .users
        .get_mut(&id)
        .ok_or_else(|| GraphError::not_found(key))?;
    user.deleted_at = None;
    if let Some(upn) = new_upn {
        user.props.insert("userPrincipalName".into(), json!(upn));
    }
    if !clashing.is_empty() {
        let kept: Vec<String> = addresses
            .into_iter()
            .filter(|a| !clashing.contains(a))
            .collect();
        let mail = crate::directory::primary_address(&kept);
        user.props.insert("proxyAddresses".into(), json!(kept));
        user.props.insert("mail".into(), json!(mail));
    }
    let mut entity = project(&user.all_properties(), None, DEFAULT_USER_PROPERTIES);
    world
        .directory
        .upn_index
        .insert(upn.to_ascii_lowercase(), id);
    entity.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/$metadata#directoryObjects/$entity",
            ctx.graph_base()
        )),
    );
    entity.insert("@odata.type".into(), json!("#microsoft.graph.user"));
    Ok(Reply::ok(Value::Object(entity)))
}
