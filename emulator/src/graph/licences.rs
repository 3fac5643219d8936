//! `/subscribedSkus`, `assignLicense` and `licenseDetails`.

use std::time::Instant;

use axum::http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::users::{require, visible_user};
use super::{GraphCall, context_name, parse_select, project};
use crate::directory::{AssignedLicense, DEFAULT_USER_PROPERTIES, Sku};
use crate::reply::{Ctx, GraphError, Reply};
use crate::world::{Caller, World};

const READ_SKUS: &[&str] = &[
    "LicenseAssignment.Read.All",
    "LicenseAssignment.ReadWrite.All",
    "Organization.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const ASSIGN: &[&str] = &[
    "LicenseAssignment.ReadWrite.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
];
const READ_USER: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

const SKU_PROPERTIES: &[&str] = &[
    "id",
    "accountId",
    "accountName",
    "appliesTo",
    "capabilityStatus",
    "consumedUnits",
    "prepaidUnits",
    "servicePlans",
    "skuId",
    "skuPartNumber",
    "subscriptionIds",
];

fn sku_entity(world: &World, sku: &Sku) -> serde_json::Map<String, Value> {
    let tenant = world.directory.tenant_id;
    let value = json!({
        "accountName": world.directory.display_name,
        "accountId": tenant,
        "appliesTo": "User",
        "capabilityStatus": "Enabled",
        "consumedUnits": world.directory.consumed_units(sku.seed.sku_id),
        "id": format!("{tenant}_{}", sku.seed.sku_id),
        "prepaidUnits": {"enabled": sku.prepaid, "lockedOut": 0, "suspended": 0, "warning": 0},
        "servicePlans": sku.seed.service_plans.iter().map(|p| json!({
            "servicePlanId": p.service_plan_id, "servicePlanName": p.service_plan_name,
            "provisioningStatus": "Success", "appliesTo": "User"})).collect::<Vec<_>>(),
        "skuId": sku.seed.sku_id,
        "skuPartNumber": sku.seed.sku_part_number,
        "subscriptionIds": [sku.subscription_id],
    });
    value.as_object().cloned().unwrap_or_default()
}

pub(super) fn subscribed_skus(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
    id: Option<&str>,
) -> Result<Reply, GraphError> {
    require(world, caller, READ_SKUS)?;
    if call.option("$filter").is_some() {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            "The query specified in the URI is not valid. Query option 'Filter' is not allowed.",
        ));
    }
    let select = parse_select(call, SKU_PROPERTIES, "microsoft.graph.subscribedSku")?;
    let entities: Vec<serde_json::Map<String, Value>> = world
        .directory
        .skus
        .iter()
        .map(|sku| sku_entity(world, sku))
        .collect();
    let shape = |all: &serde_json::Map<String, Value>| match select.as_deref() {
        Some(names) => project(all, Some(names), &[]),
        None => all.clone(),
    };
    match id {
        None => Ok(Reply::ok(json!({
            "@odata.context": format!("{}/$metadata#{}", ctx.graph_base(), context_name("subscribedSkus", select.as_deref())),
            "value": entities.iter().map(|e| Value::Object(shape(e))).collect::<Vec<_>>(),
        }))),
        Some(id) => {
            let entity = entities
                .iter()
                .find(|e| e.get("id").and_then(Value::as_str) == Some(id))
                .ok_or_else(|| GraphError::not_found(id))?;
            let mut body = shape(entity);
            body.insert(
                "@odata.context".into(),
                json!(format!(
                    "{}/$metadata#subscribedSkus/$entity",
                    ctx.graph_base()
                )),
            );
            Ok(Reply::ok(Value::Object(body)))
        }
    }
}

fn invalid_licence_property(name: &str) -> GraphError {
    GraphError::bad_request(format!(
        "Invalid value specified for property '{name}' of resource 'User'."
    ))
}

fn parse_guid(value: &Value, property: &str) -> Result<Uuid, GraphError> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid_licence_property(property))
}

pub(super) fn assign(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, ASSIGN)?;
    let body = call.json_body()?;
    let id = world
        .directory
        .active_user_id(key)
        .ok_or_else(|| GraphError::not_found(key))?;
    let (Some(Value::Array(add)), Some(Value::Array(remove))) =
        (body.get("addLicenses"), body.get("removeLicenses"))
    else {
        let missing = if matches!(body.get("addLicenses"), Some(Value::Array(_))) {
            "removeLicenses"
        } else {
            "addLicenses"
        };
        return Err(invalid_licence_property(missing));
    };
    let mut additions = Vec::new();
    for item in add {
        let sku_id = parse_guid(item.get("skuId").unwrap_or(&Value::Null), "addLicenses")?;
        let disabled_plans = match item.get("disabledPlans") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(plans)) => plans
                .iter()
                .map(|p| parse_guid(p, "disabledPlans"))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(invalid_licence_property("disabledPlans")),
        };
        additions.push(AssignedLicense {
            sku_id,
            disabled_plans,
        });
    }
    let removals = remove
        .iter()
        .map(|v| parse_guid(v, "removeLicenses"))
        .collect::<Result<Vec<_>, _>>()?;
    for sku_id in additions
        .iter()
        .map(|a| a.sku_id)
        .chain(removals.iter().copied())
    {
        if world.directory.sku(sku_id).is_none() {
            return Err(GraphError::bad_request(format!(
                "License {sku_id} does not correspond to a valid company License."
            )));
        }
    }
    for addition in &additions {
        let plans: Vec<Uuid> = world
            .directory
            .sku(addition.sku_id)
            .map(|s| {
                s.seed
                    .service_plans
                    .iter()
                    .map(|p| p.service_plan_id)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(unknown) = addition.disabled_plans.iter().find(|p| !plans.contains(p)) {
            return Err(GraphError::bad_request(format!(
                "The service plan {unknown} is not part of the license {}.",
                addition.sku_id
            )));
        }
    }
    let user = world
        .directory
        .users
        .get(&id)
        .ok_or_else(|| GraphError::not_found(key))?;
    if removals
        .iter()
        .any(|sku_id| !user.licenses.iter().any(|l| l.sku_id == *sku_id))
    {
        return Err(GraphError::bad_request(
            "User does not have a corresponding license.",
        ));
    }
    let now = Instant::now();
    if !additions.is_empty()
        && (user.text("usageLocation").is_none() || user.usage_location_settled_at > now)
    {
        return Err(GraphError::bad_request(
            "License assignment cannot be done for user with invalid usage location.",
        ));
    }
    for addition in &additions {
        let already = user.licenses.iter().any(|l| l.sku_id == addition.sku_id);
        let sku = world.directory.sku(addition.sku_id);
        if !already
            && let Some(sku) = sku
            && world.directory.consumed_units(addition.sku_id) >= sku.prepaid
        {
            return Err(GraphError::bad_request(format!(
                "Subscription with SKU {} does not have any available licenses.",
                addition.sku_id
            )));
        }
    }
    let brings_mailbox = additions
        .iter()
        .any(|a| world.directory.sku_brings_mailbox(a.sku_id));
    let ready_at = now + world.mailbox_delay();
    let user = world
        .directory
        .users
        .get_mut(&id)
        .ok_or_else(|| GraphError::not_found(key))?;
    user.licenses.retain(|l| !removals.contains(&l.sku_id));
    for addition in additions {
        match user
            .licenses
            .iter_mut()
            .find(|l| l.sku_id == addition.sku_id)
        {
            Some(existing) => existing.disabled_plans = addition.disabled_plans,
            None => user.licenses.push(addition),
        }
    }
    let mut entity = project(&user.all_properties(), None, DEFAULT_USER_PROPERTIES);
    entity.insert(
        "assignedLicenses".into(),
        user.all_properties()
            .get("assignedLicenses")
            .cloned()
            .unwrap_or(json!([])),
    );
    if brings_mailbox {
        world.directory.schedule_mailbox(id, ready_at);
        world.directory.settle(now);
    }
    entity.insert(
        "@odata.context".into(),
        json!(format!("{}/$metadata#users/$entity", ctx.graph_base())),
    );
    Ok(Reply::ok(Value::Object(entity)))
}

pub(super) fn details(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    key: &str,
) -> Result<Reply, GraphError> {
    require(world, caller, READ_USER)?;
    let user = visible_user(world, key)?;
    let value: Vec<Value> = user
        .licenses
        .iter()
        .filter_map(|licence| {
            let sku = world.directory.sku(licence.sku_id)?;
            use base64::Engine as _;
            let detail_id = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("{}_{}_{}", user.id, world.directory.tenant_id, sku.seed.sku_id));
            Some(json!({
                "id": detail_id,
                "skuId": sku.seed.sku_id,
                "skuPartNumber": sku.seed.sku_part_number,
                "servicePlans": sku.seed.service_plans.iter().map(|p| json!({
                    "servicePlanId": p.service_plan_id,
                    "servicePlanName": p.service_plan_name,
                    "provisioningStatus": if licence.disabled_plans.contains(&p.service_plan_id) { "Disabled" } else { "Success" },
                    "appliesTo": "User",
                })).collect::<Vec<_>>(),
            }))
        })
        .collect();
    Ok(Reply::ok(json!({
        "@odata.context": format!("{}/$metadata#users('{}')/licenseDetails", ctx.graph_base(), user.id),
        "value": value,
    })))
}
