//! `/groups`: Microsoft 365 and security groups are writable; mail-enabled non-Unified groups
//! (distribution lists, mail-enabled security groups) belong to Exchange and are read-only here.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::users::{check_collection_options, parse_filter, require};
use super::{
    GraphCall, collection_page, context_name, page_size, parse_select, project, skip_offset,
};
use crate::directory::{DEFAULT_USER_PROPERTIES, Group};
use crate::reply::{Ctx, GraphError, Reply};
use crate::world::{Caller, World};

const READ: &[&str] = &[
    "Group.Read.All",
    "Group.ReadWrite.All",
    "GroupMember.Read.All",
    "GroupMember.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const WRITE: &[&str] = &[
    "Group.Create",
    "Group.ReadWrite.All",
    "Directory.ReadWrite.All",
];
const MEMBERS: &[&str] = &[
    "GroupMember.ReadWrite.All",
    "Group.ReadWrite.All",
    "Directory.ReadWrite.All",
];

const GROUP_PROPERTIES: &[&str] = &[
    "id",
    "createdDateTime",
    "deletedDateTime",
    "description",
    "displayName",
    "groupTypes",
    "mail",
    "mailEnabled",
    "mailNickname",
    "proxyAddresses",
    "securityEnabled",
    "visibility",
];
const FILTERABLE: &[&str] = &[
    "id",
    "displayName",
    "mail",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
    "groupTypes",
    "proxyAddresses",
];

fn cannot_update() -> GraphError {
    GraphError::bad_request(
        "Cannot Update a mail-enabled security groups and or distribution list.",
    )
}

fn refs_exist() -> GraphError {
    GraphError::bad_request(
        "One or more added object references already exist for the following modified properties: 'members'.",
    )
}

fn group_id(world: &World, key: &str) -> Result<Uuid, GraphError> {
    key.parse::<Uuid>()
        .ok()
        .filter(|id| world.directory.groups.contains_key(id))
        .ok_or_else(|| GraphError::not_found(key))
}

/// A group Graph may write: distribution lists belong to Exchange, and Graph refuses every
/// write to them with the real error.
fn writable_group_id(world: &World, key: &str) -> Result<Uuid, GraphError> {
    let id = group_id(world, key)?;
    if world
        .directory
        .groups
        .get(&id)
        .is_some_and(Group::is_exchange_managed)
    {
        return Err(cannot_update());
    }
    Ok(id)
}

/// The object id at the end of an `@odata.id` / `@odata.bind` URL.
fn referenced_id(reference: &str) -> Result<Uuid, GraphError> {
    let last = reference
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let known_collection = ["/directoryObjects/", "/users/", "/groups/"]
        .iter()
        .any(|c| reference.contains(c));
    match last.parse::<Uuid>() {
        Ok(id) if known_collection => Ok(id),
        _ => Err(GraphError::bad_request(format!(
            "Invalid object identifier '{last}'."
        ))),
    }
}

fn member_exists(world: &World, id: Uuid) -> bool {
    world
        .directory
        .users
        .get(&id)
        .is_some_and(|u| u.deleted_at.is_none())
        || world.directory.groups.contains_key(&id)
}

fn directory_object(world: &World, id: Uuid) -> Option<Value> {
    if let Some(user) = world
        .directory
        .users
        .get(&id)
        .filter(|u| u.deleted_at.is_none())
    {
        let mut entity = project(&user.all_properties(), None, DEFAULT_USER_PROPERTIES);
        entity.insert("@odata.type".into(), json!("#microsoft.graph.user"));
        return Some(Value::Object(entity));
    }
    world.directory.groups.get(&id).map(|g| {
        let mut entity = g.graph_properties();
        entity.insert("@odata.type".into(), json!("#microsoft.graph.group"));
        Value::Object(entity)
    })
}

pub(super) fn list(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
) -> Result<Reply, GraphError> {
    require(world, caller, READ)?;
    let want_count = check_collection_options(call)?;
    let select = parse_select(call, GROUP_PROPERTIES, "microsoft.graph.group")?;
    let filter = parse_filter(call, FILTERABLE, "Group")?;
    let top = page_size(call)?;
    let offset = skip_offset(call)?;
    let matching: Vec<Map<String, Value>> = world
        .directory
        .group_order
        .values()
        .filter_map(|id| world.directory.groups.get(id))
        .map(Group::graph_properties)
        .filter(|g| filter.as_ref().is_none_or(|f| f.matches(g)))
        .collect();
    let total = matching.len();
    let window: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(top + 1)
        .map(|g| match select.as_deref() {
            Some(names) => Value::Object(project(g, Some(names), &[])),
            None => Value::Object(g.clone()),
        })
        .collect();
    let has_more = window.len() > top;
    let items = window.into_iter().take(top).collect();
    Ok(collection_page(
        ctx,
        call,
        &context_name("groups", select.as_deref()),
        items,
        has_more,
        offset,
        want_count.then_some(total),
    ))
}

pub(super) fn get(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, READ)?;
    let id = group_id(world, key)?;
    let mut entity = world
        .directory
        .groups
        .get(&id)
        .map(Group::graph_properties)
        .unwrap_or_default();
    entity.insert(
        "@odata.context".into(),
        json!(format!("{}/$metadata#groups/$entity", ctx.graph_base())),
    );
    Ok(Reply::ok(Value::Object(entity)))
}

fn invalid_group_value(property: &str) -> GraphError {
    GraphError::bad_request(format!(
        "Invalid value specified for property '{property}' of resource 'Group'."
    ))
}

/// Resolves `members@odata.bind`: at most 20, every object must exist.
fn bound_members(world: &World, body: &Map<String, Value>) -> Result<Vec<Uuid>, GraphError> {
    let Some(binds) = body.get("members@odata.bind") else {
        return Ok(Vec::new());
    };
    let Some(binds) = binds.as_array() else {
        return Err(invalid_group_value("members@odata.bind"));
    };
    if binds.len() > 20 {
        return Err(GraphError::bad_request(
            "Too many references are being added in a single request. The maximum is 20.",
        ));
    }
    let mut ids = Vec::new();
    for bind in binds {
        let id = referenced_id(bind.as_str().unwrap_or_default())?;
        if !member_exists(world, id) {
            return Err(GraphError::not_found(&id.to_string()));
        }
        ids.push(id);
    }
    Ok(ids)
}

pub(super) fn create(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
) -> Result<Reply, GraphError> {
    require(world, caller, WRITE)?;
    let body = call.json_body()?;
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let display_name = text("displayName")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| invalid_group_value("displayName"))?;
    let mail_nickname = text("mailNickname")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| invalid_group_value("mailNickname"))?;
    let mail_enabled = body
        .get("mailEnabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| invalid_group_value("mailEnabled"))?;
    let security_enabled = body
        .get("securityEnabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| invalid_group_value("securityEnabled"))?;
    let group_types: Vec<String> = body
        .get("groupTypes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let unified = group_types.iter().any(|t| t == "Unified");
    if mail_enabled && !unified {
        return Err(GraphError::bad_request(
            "Cannot Create a mail-enabled security groups and or distribution list.",
        ));
    }
    let members = bound_members(world, &body)?;
    let proxy_addresses = if unified {
        let address = format!("{mail_nickname}@{}", world.directory.default_domain());
        if let Some(owner) = world.directory.address_owner(&address) {
            let (crate::directory::AddressOwner::User(id)
            | crate::directory::AddressOwner::Group(id)) = owner;
            return Err(super::users::proxy_conflict(id));
        }
        vec![format!("SMTP:{address}")]
    } else {
        Vec::new()
    };
    let group = Group {
        id: Uuid::new_v4(),
        seq: 0,
        display_name,
        description: text("description"),
        mail_nickname,
        mail_enabled,
        security_enabled,
        group_types,
        proxy_addresses,
        members,
        created_at: ctx.now,
        exchange: None,
    };
    let id = world.directory.insert_group(group);
    let mut entity = world
        .directory
        .groups
        .get(&id)
        .map(Group::graph_properties)
        .unwrap_or_default();
    entity.insert(
        "@odata.context".into(),
        json!(format!("{}/$metadata#groups/$entity", ctx.graph_base())),
    );
    Ok(Reply::json(StatusCode::CREATED, Value::Object(entity)))
}

pub(super) fn update(
    world: &mut World,
    _ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
    key: &str,
) -> Result<Reply, GraphError> {
    require(
        world,
        caller,
        WRITE
            .iter()
            .chain(MEMBERS)
            .copied()
            .collect::<Vec<_>>()
            .as_slice(),
    )?;
    let body = call.json_body()?;
    let id = writable_group_id(world, key)?;
    let new_members = bound_members(world, &body)?;
    let group = world
        .directory
        .groups
        .get_mut(&id)
        .ok_or_else(|| GraphError::not_found(key))?;
    if new_members.iter().any(|m| group.members.contains(m)) {
        return Err(refs_exist());
    }
    for (name, value) in &body {
        match name.as_str() {
            "displayName" => match value.as_str() {
                Some(n) if !n.trim().is_empty() => group.display_name = n.to_owned(),
                _ => return Err(invalid_group_value("displayName")),
            },
            "description" => group.description = value.as_str().map(str::to_owned),
            _ => {}
        }
    }
    group.members.extend(new_members);
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub(super) fn delete(
    world: &mut World,
    _ctx: &Ctx,
    caller: &Caller,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, WRITE)?;
    let id = writable_group_id(world, key)?;
    world.directory.remove_group(id);
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub(super) fn members(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, READ)?;
    let id = group_id(world, key)?;
    let members = world
        .directory
        .groups
        .get(&id)
        .map(|g| g.members.clone())
        .unwrap_or_default();
    let value: Vec<Value> = members
        .iter()
        .filter_map(|m| directory_object(world, *m))
        .collect();
    Ok(Reply::ok(json!({
        "@odata.context": format!("{}/$metadata#directoryObjects", ctx.graph_base()),
        "value": value,
    })))
}

pub(super) fn add_member(
    world: &mut World,
    _ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, MEMBERS)?;
    let body = call.json_body()?;
    let id = writable_group_id(world, key)?;
    let reference = body
        .get("@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            GraphError::bad_request("Invalid value specified for property '@odata.id'.")
        })?;
    let member = referenced_id(reference)?;
    if !member_exists(world, member) {
        return Err(GraphError::not_found(&member.to_string()));
    }
    let group = world
        .directory
        .groups
        .get_mut(&id)
        .ok_or_else(|| GraphError::not_found(key))?;
    if group.members.contains(&member) {
        return Err(refs_exist());
    }
    group.members.push(member);
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub(super) fn remove_member(
    world: &mut World,
    _ctx: &Ctx,
    caller: &Caller,
    key: &str,
    member: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, MEMBERS)?;
    let id = writable_group_id(world, key)?;
    let member_id = member
        .parse::<Uuid>()
        .map_err(|_| GraphError::not_found(member))?;
    let group = world
        .directory
        .groups
        .get_mut(&id)
        .ok_or_else(|| GraphError::not_found(key))?;
    let before = group.members.len();
    group.members.retain(|m| *m != member_id);
    if group.members.len() == before {
        return Err(GraphError::not_found(member));
    }
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub(super) fn member_of(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, READ)?;
    let user = super::users::visible_user(world, key)?;
    let user_id = user.id;
    let value: Vec<Value> = world
        .directory
        .group_order
        .values()
        .filter_map(|id| world.directory.groups.get(id))
        .filter(|g| g.members.contains(&user_id))
        .map(|g| {
            let mut entity = g.graph_properties();
            entity.insert("@odata.type".into(), json!("#microsoft.graph.group"));
            Value::Object(entity)
        })
        .collect();
    Ok(Reply::ok(json!({
        "@odata.context": format!("{}/$metadata#directoryObjects", ctx.graph_base()),
        "value": value,
    })))
}
