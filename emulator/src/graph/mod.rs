//! Microsoft Graph v1.0: routing of one call (a top-level request or a `$batch` item) to the
//! users, licences, deleted-items and groups handlers, all under the world lock.

pub(crate) mod filter;
mod groups;
mod licences;
mod users;

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::reply::{Ctx, GraphError, Reply};
use crate::throttling::Cost;
use crate::world::{Caller, World};

/// One Graph call, decoded.
#[derive(Clone, Debug)]
pub(crate) struct GraphCall {
    pub(crate) method: Method,
    /// Path segments after `/v1.0`, percent-decoded.
    pub(crate) segments: Vec<String>,
    /// Query options, decoded, in order.
    pub(crate) query: Vec<(String, String)>,
    /// `ConsistencyLevel: eventual` was sent.
    pub(crate) eventual: bool,
    /// The JSON body; `Err` when a body was sent but does not parse.
    pub(crate) body: Result<Option<Value>, ()>,
}

impl GraphCall {
    /// A query option by name (`$filter`, `$select`...), case-insensitively.
    pub(crate) fn option(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this call changes the directory (and so counts against the write quota).
    pub(crate) fn is_write(&self) -> bool {
        self.method != Method::GET && self.method != Method::HEAD
    }

    /// Its resource-unit cost (§7.2).
    pub(crate) fn cost(&self) -> Cost {
        if self.is_write() {
            return Cost {
                resource_units: 1,
                write: true,
            };
        }
        let segments: Vec<&str> = self.segments.iter().map(String::as_str).collect();
        let base: i64 = match segments.as_slice() {
            ["users"] => 2,
            ["subscribedSkus", ..] => 3,
            ["groups", _, "members"] => 3,
            ["groups", _, "transitiveMembers"] => 5,
            ["users", _, "licenseDetails"] => 2,
            _ => 1,
        };
        let mut units = base;
        if self.option("$select").is_some() {
            units -= 1;
        }
        if self.option("$expand").is_some() {
            units += 1;
        }
        if self
            .option("$top")
            .and_then(|t| t.parse::<u32>().ok())
            .is_some_and(|t| t < 20)
        {
            units -= 1;
        }
        Cost {
            resource_units: u32::try_from(units.max(1)).unwrap_or(1),
            write: false,
        }
    }

    fn json_body(&self) -> Result<Map<String, Value>, GraphError> {
        match &self.body {
            Ok(Some(Value::Object(map))) => Ok(map.clone()),
            Ok(None) => Ok(Map::new()),
            _ => Err(unreadable_body()),
        }
    }
}

/// Graph's answer to a body that is not JSON.
pub(crate) fn unreadable_body() -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
    )
}

fn method_not_allowed() -> GraphError {
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
    )
}

fn unknown_segment(segment: &str) -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("Resource not found for the segment '{segment}'."),
    )
}

/// Splits `users('$x@y.com')` into `users` and the key, as Graph allows for UPNs starting with `$`.
fn expand_key_syntax(segments: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(segments.len() + 1);
    for segment in segments {
        if let Some(open) = segment.find("('")
            && segment.ends_with("')")
        {
            out.push(segment[..open].to_owned());
            out.push(segment[open + 2..segment.len() - 2].replace("''", "'"));
        } else {
            out.push(segment.clone());
        }
    }
    out
}

/// Runs one Graph call against the world.
pub(crate) fn handle(world: &mut World, ctx: &Ctx, caller: &Caller, call: &GraphCall) -> Reply {
    world.directory.settle(std::time::Instant::now());
    match route(world, ctx, caller, call) {
        Ok(reply) => reply,
        Err(error) => error.reply(ctx),
    }
}

fn route(
    world: &mut World,
    ctx: &Ctx,
    caller: &Caller,
    call: &GraphCall,
) -> Result<Reply, GraphError> {
    let segments = expand_key_syntax(&call.segments);
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = &call.method;
    match path.as_slice() {
        ["users"] => match *method {
            Method::GET => users::list(world, ctx, caller, call),
            Method::POST => users::create(world, ctx, caller, call),
            _ => Err(method_not_allowed()),
        },
        ["users", key] => {
            if key.starts_with('$') && !call.segments.iter().any(|s| s.contains("('")) {
                return Err(GraphError::bad_request(format!(
                    "Invalid object identifier '{key}'."
                )));
            }
            match *method {
                Method::GET => users::get(world, ctx, caller, call, key),
                Method::PATCH => users::update(world, ctx, caller, call, key),
                Method::DELETE => users::delete(world, ctx, caller, key),
                _ => Err(method_not_allowed()),
            }
        }
        ["users", key, "assignLicense"] => match *method {
            Method::POST => licences::assign(world, ctx, caller, call, key),
            _ => Err(method_not_allowed()),
        },
        ["users", key, "licenseDetails"] => match *method {
            Method::GET => licences::details(world, ctx, caller, key),
            _ => Err(method_not_allowed()),
        },
        ["users", key, "revokeSignInSessions"] => match *method {
            Method::POST => users::revoke_sessions(world, ctx, caller, key),
            _ => Err(method_not_allowed()),
        },
        ["users", key, "memberOf"] => match *method {
            Method::GET => groups::member_of(world, ctx, caller, key),
            _ => Err(method_not_allowed()),
        },
        ["subscribedSkus"] => match *method {
            Method::GET => licences::subscribed_skus(world, ctx, caller, call, None),
            _ => Err(method_not_allowed()),
        },
        ["subscribedSkus", id] => match *method {
            Method::GET => licences::subscribed_skus(world, ctx, caller, call, Some(id)),
            _ => Err(method_not_allowed()),
        },
        ["domains"] => match *method {
            Method::GET => Ok(domains(world, ctx)),
            _ => Err(method_not_allowed()),
        },
        ["directory", "deletedItems"] => Err(GraphError::bad_request(
            "Invalid request. The type cast segment (e.g. microsoft.graph.user) is required to list deleted items.",
        )),
        ["directory", "deletedItems", "microsoft.graph.user"] => match *method {
            Method::GET => users::list_deleted(world, ctx, caller, call),
            _ => Err(method_not_allowed()),
        },
        ["directory", "deletedItems", id] => match *method {
            Method::GET => users::get_deleted(world, ctx, caller, id),
            Method::DELETE => users::purge(world, ctx, caller, id),
            _ => Err(method_not_allowed()),
        },
        ["directory", "deletedItems", id, "restore"] => match *method {
            Method::POST => users::restore(world, ctx, caller, call, id),
            _ => Err(method_not_allowed()),
        },
        ["groups"] => match *method {
            Method::GET => groups::list(world, ctx, caller, call),
            Method::POST => groups::create(world, ctx, caller, call),
            _ => Err(method_not_allowed()),
        },
        ["groups", id] => match *method {
            Method::GET => groups::get(world, ctx, caller, id),
            Method::PATCH => groups::update(world, ctx, caller, call, id),
            Method::DELETE => groups::delete(world, ctx, caller, id),
            _ => Err(method_not_allowed()),
        },
        ["groups", id, "members"] => match *method {
            Method::GET => groups::members(world, ctx, caller, id),
            _ => Err(method_not_allowed()),
        },
        ["groups", id, "members", "$ref"] => match *method {
            Method::POST => groups::add_member(world, ctx, caller, call, id),
            _ => Err(method_not_allowed()),
        },
        ["groups", id, "members", member, "$ref"] => match *method {
            Method::DELETE => groups::remove_member(world, ctx, caller, id, member),
            _ => Err(method_not_allowed()),
        },
        [] => Ok(Reply::ok(json!({
            "@odata.context": format!("{}/$metadata", ctx.graph_base()),
            "value": []
        }))),
        [first, ..] => Err(unknown_segment(first)),
    }
}

fn domains(world: &World, ctx: &Ctx) -> Reply {
    let value: Vec<Value> = world
        .directory
        .domains
        .iter()
        .map(|d| {
            json!({"id": d.name, "authenticationType": "Managed", "isDefault": d.default,
                   "isInitial": d.name.ends_with(".onmicrosoft.com"), "isRoot": true,
                   "isVerified": d.verified, "supportedServices": ["Email"]})
        })
        .collect();
    Reply::ok(json!({
        "@odata.context": format!("{}/$metadata#domains", ctx.graph_base()),
        "value": value
    }))
}

/// Parses `$select` against a set of known properties; `None` when absent.
pub(crate) fn parse_select(
    call: &GraphCall,
    known: &[&str],
    type_name: &str,
) -> Result<Option<Vec<String>>, GraphError> {
    let Some(raw) = call.option("$select") else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let canonical = known.iter().find(|k| k.eq_ignore_ascii_case(name));
        match canonical {
            Some(k) => names.push((*k).to_owned()),
            None if name.starts_with("extension_") => names.push(name.to_owned()),
            None => {
                return Err(GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("Could not find a property named '{name}' on type '{type_name}'."),
                ));
            }
        }
    }
    Ok(Some(names))
}

/// Keeps only the selected properties (or the defaults); `id` is always kept.
pub(crate) fn project(
    all: &Map<String, Value>,
    select: Option<&[String]>,
    defaults: &[&str],
) -> Map<String, Value> {
    let mut out = Map::new();
    match select {
        Some(names) => {
            if let Some(id) = all.get("id") {
                out.insert("id".into(), id.clone());
            }
            for name in names {
                out.insert(name.clone(), all.get(name).cloned().unwrap_or(Value::Null));
            }
        }
        None => {
            for name in defaults {
                out.insert(
                    (*name).to_owned(),
                    all.get(*name).cloned().unwrap_or(Value::Null),
                );
            }
        }
    }
    out
}

/// The `@odata.context` suffix for a projection: `users` or `users(id,displayName)`.
pub(crate) fn context_name(set: &str, select: Option<&[String]>) -> String {
    match select {
        Some(names) if !names.is_empty() => format!("{set}({})", names.join(",")),
        _ => set.to_owned(),
    }
}

/// Parses `$top`: 1..=999, else Graph's page-size error.
pub(crate) fn page_size(call: &GraphCall) -> Result<usize, GraphError> {
    match call.option("$top") {
        None => Ok(100),
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if (1..=999).contains(&n) => Ok(n),
            _ => Err(GraphError::bad_request(format!(
                "Invalid page size specified: '{raw}'. Must be between 1 and 999 inclusive."
            ))),
        },
    }
}

/// Decodes an opaque `$skiptoken` into an offset.
pub(crate) fn skip_offset(call: &GraphCall) -> Result<usize, GraphError> {
    use base64::Engine as _;
    let Some(token) = call.option("$skiptoken") else {
        return Ok(0);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("moss-page:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| GraphError::bad_request("Invalid skip token."))
}

/// The absolute next link: the original options (minus any skip token) plus a new one.
pub(crate) fn next_link(ctx: &Ctx, call: &GraphCall, offset: usize) -> String {
    use base64::Engine as _;
    const VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b',')
        .remove(b'$');
    let token =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("moss-page:{offset}"));
    let mut query: Vec<String> = call
        .query
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(k, VALUE),
                percent_encoding::utf8_percent_encode(v, VALUE)
            )
        })
        .collect();
    query.push(format!("$skiptoken={token}"));
    let path: Vec<String> = call
        .segments
        .iter()
        .map(|s| percent_encoding::utf8_percent_encode(s, VALUE).to_string())
        .collect();
    format!(
        "{}/{}?{}",
        ctx.graph_base(),
        path.join("/"),
        query.join("&")
    )
}

/// A page of a collection: `value`, `@odata.context`, and `@odata.nextLink` when more remain.
pub(crate) fn collection_page(
    ctx: &Ctx,
    call: &GraphCall,
    context: &str,
    items: Vec<Value>,
    has_more: bool,
    offset: usize,
    count: Option<usize>,
) -> Reply {
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!("{}/$metadata#{context}", ctx.graph_base())),
    );
    if let Some(count) = count {
        body.insert("@odata.count".into(), json!(count));
    }
    let returned = items.len();
    body.insert("value".into(), Value::Array(items));
    if has_more {
        body.insert(
            "@odata.nextLink".into(),
            json!(next_link(ctx, call, offset + returned)),
        );
    }
    Reply::ok(Value::Object(body))
}
