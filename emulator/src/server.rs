//! The HTTP side: a hyper accept loop (so a fault can drop a connection without answering), the
//! entry handler that routes Microsoft's paths and `/_emulator/`, and the pipeline every Graph
//! call, `$batch` item and Exchange cmdlet goes through: authenticate, faults, throttling, the
//! handler under the world lock, commit-then-fail, the request log, the envelope headers.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt as _;
use uuid::Uuid;

use crate::exchange::{self, ExchangeCall};
use crate::faults::{AfterCommit, FaultAction, FaultBook};
use crate::graph::{self, GraphCall};
use crate::reply::{Ctx, GraphError, Reply, ReplyBody, injected_failure, too_many_requests};
use crate::request_log::{LoggedRequest, RequestLog};
use crate::throttling::Verdict;
use crate::world::{Audience, Caller, World};
use crate::{control, token};

/// State shared by every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Fixed for the emulator's life (a reset re-seeds the same tenant).
    pub(crate) tenant_id: Uuid,
    pub(crate) world: Mutex<World>,
    pub(crate) faults: Mutex<FaultBook>,
    pub(crate) log: Mutex<RequestLog>,
}

/// Locks a mutex, recovering from poisoning: a panicking handler must not take the emulator down.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Handed to the handler so a fault can close the connection it came on.
#[derive(Clone, Debug)]
struct ConnectionKill(Arc<Notify>);

const GRAPH_CONTENT_TYPE: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// Serves until `shutdown` completes; open connections finish their current request.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let router = axum::Router::new().fallback(entry).with_state(shared);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "emulator could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let mut stop = stop_rx.clone();
                connections.spawn(async move {
                    let kill = Arc::new(Notify::new());
                    let kill_handle = ConnectionKill(kill.clone());
                    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(kill_handle.clone());
                        router.clone().oneshot(request.map(Body::new))
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        // A drop fault: the connection future is dropped, the socket closes unanswered.
                        () = kill.notified() => {}
                        _ = stop.changed() => {
                            connection.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// What the pipeline decided for one call.
enum Outcome {
    Answer(Reply),
    Drop,
}

/// One call through the pipeline.
struct Attempt {
    ctx: Ctx,
    caller: Caller,
    api: Api,
    method: Method,
    /// Decoded path used for fault matching, e.g. `/v1.0/users/a@b.com`.
    match_path: String,
    /// The path as sent, for the log.
    log_path: String,
    query: Option<String>,
    client_sent_request_id: bool,
    batch: Option<(String, String)>,
}

enum Api {
    Graph(GraphCall),
    Exchange(ExchangeCall),
}

impl Attempt {
    fn is_write(&self) -> bool {
        match &self.api {
            Api::Graph(call) => call.is_write(),
            Api::Exchange(call) => call.is_write(),
        }
    }

    fn cmdlet(&self) -> Option<String> {
        match &self.api {
            Api::Exchange(call) => call.cmdlet.clone(),
            Api::Graph(_) => None,
        }
    }

    fn log(&self, shared: &Shared, status: Option<u16>, committed: bool, fault: Option<&str>) {
        let entry = LoggedRequest {
            seq: 0,
            time: chrono::Utc::now(),
            method: self.method.to_string(),
            path: self.log_path.clone(),
            query: self.query.clone(),
            status,
            request_id: self.ctx.request_id.clone(),
            client_request_id: self
                .client_sent_request_id
                .then(|| self.ctx.client_request_id.clone()),
            write: self.is_write(),
            committed,
            fault: fault.map(str::to_owned),
            cmdlet: self.cmdlet(),
            app_id: Some(self.caller.app_id),
            batch_request_id: self.batch.as_ref().map(|(r, _)| r.clone()),
            batch_item_id: self.batch.as_ref().map(|(_, i)| i.clone()),
        };
        lock(&shared.log).push(entry);
    }

    fn failure(
        &self,
        tenant_id: Uuid,
        status: StatusCode,
        retry_after: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut reply = match (&self.api, body) {
            (_, Some(body)) => Reply::json(status, body.clone()),
            (Api::Graph(_), None) if status == StatusCode::TOO_MANY_REQUESTS => too_many_requests(
                &self.ctx,
                1,
                &format!(
                    "Tenant_Application/ReadWrite/{}/{tenant_id}",
                    self.caller.app_id
                ),
                "ResourceUnitLimitExceeded",
            ),
            (Api::Graph(_), None) => injected_failure(&self.ctx, status),
            (Api::Exchange(_), None) => exchange::injected_failure(status),
        };
        if let Some(retry_after) = retry_after {
            reply
                .headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("Retry-After"));
            reply
                .headers
                .push(("Retry-After".into(), retry_after.to_owned()));
        }
        reply
    }
}

/// Faults, throttling, the handler, commit-then-fail and the log, for one authenticated call.
async fn run_attempt(shared: &Shared, attempt: &Attempt) -> Outcome {
    let triggered = lock(&shared.faults).trigger(
        attempt.method.as_str(),
        &attempt.match_path,
        attempt.cmdlet().as_deref(),
    );
    if triggered.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(triggered.latency_ms)).await;
    }
    let mut after_commit = None;
    match &triggered.action {
        Some(FaultAction::Status {
            status,
            retry_after,
            body,
        }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let reply = attempt.failure(
                shared.tenant_id,
                status,
                retry_after.as_deref(),
                body.as_ref(),
            );
            attempt.log(shared, Some(status.as_u16()), false, Some("status"));
            return Outcome::Answer(reply);
        }
        Some(FaultAction::Drop) => {
            attempt.log(shared, None, false, Some("drop"));
            return Outcome::Drop;
        }
        Some(FaultAction::CommitThenFail { then }) => after_commit = Some(then.clone()),
        Some(FaultAction::Latency { .. }) | None => {}
    }
    let mut reply = {
        let mut world = lock(&shared.world);
        match &attempt.api {
            Api::Graph(call) => {
                let cost = call.cost();
                let tenant_id = world.directory.tenant_id;
                let verdict =
                    world
                        .throttle
                        .admit(attempt.caller.app_id, tenant_id, cost, Instant::now());
                let mut reply = match verdict {
                    Verdict::Throttled {
                        retry_after_secs,
                        scope,
                        information,
                    } => too_many_requests(&attempt.ctx, retry_after_secs, &scope, information),
                    Verdict::Allowed { limit_percentage } => {
                        let mut reply =
                            graph::handle(&mut world, &attempt.ctx, &attempt.caller, call);
                        if let Some(percentage) = limit_percentage {
                            reply = reply.with_header(
                                "x-ms-throttle-limit-percentage",
                                format!("{percentage:.1}"),
                            );
                        }
                        reply
                    }
                };
                reply
                    .headers
                    .push(("x-ms-resource-unit".into(), cost.resource_units.to_string()));
                reply
            }
            Api::Exchange(call) => {
                exchange::handle(&mut world, &attempt.ctx, &attempt.caller, call)
            }
        }
    };
    let committed = attempt.is_write() && reply.status.is_success();
    match after_commit {
        Some(AfterCommit::Status {
            status,
            retry_after,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::GATEWAY_TIMEOUT);
            reply = attempt.failure(shared.tenant_id, status, retry_after.as_deref(), None);
            attempt.log(
                shared,
                Some(status.as_u16()),
                committed,
                Some("commit_then_fail"),
            );
            Outcome::Answer(reply)
        }
        Some(AfterCommit::Drop) => {
            attempt.log(shared, None, committed, Some("commit_then_drop"));
            Outcome::Drop
        }
        None => {
            attempt.log(shared, Some(reply.status.as_u16()), committed, None);
            Outcome::Answer(reply)
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn parse_json_body(body: &Bytes) -> Result<Option<Value>, ()> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|_| ())
}

/// Marks a response that must never be sent: the connection is to be dropped instead.
#[derive(Clone, Copy, Debug)]
struct DropConnection;

/// The one axum handler: everything arrives here. A drop never returns: the connection task,
/// told to stop, drops this future with the connection, so no byte of an answer is written.
async fn entry(state: State<Arc<Shared>>, request: Request) -> Response {
    let kill = request.extensions().get::<ConnectionKill>().cloned();
    let response = respond(state, request).await;
    if response.extensions().get::<DropConnection>().is_some()
        && let Some(ConnectionKill(notify)) = kill
    {
        notify.notify_one();
        std::future::pending::<()>().await;
    }
    response
}

async fn respond(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let host = header(&parts.headers, "host").unwrap_or_else(|| "127.0.0.1".to_owned());
    let request_id = Uuid::new_v4().to_string();
    let sent_client_request_id = header(&parts.headers, "client-request-id");
    let ctx = Ctx {
        client_request_id: sent_client_request_id
            .clone()
            .unwrap_or_else(|| request_id.clone()),
        request_id,
        base_url: format!("http://{host}"),
        now: chrono::Utc::now(),
    };
    if let Some(rest) = path.strip_prefix("/_emulator/") {
        return control::handle(&shared, &parts.method, rest, query.as_deref(), &body, &ctx).await;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let reply_for = |attempt_outcome: Outcome, graph_envelope: bool| match attempt_outcome {
        Outcome::Answer(reply) => finish(reply, &ctx, graph_envelope),
        Outcome::Drop => dropped(),
    };
    match segments.as_slice() {
        [tenant, "oauth2", "v2.0", "token"] => {
            if parts.method != Method::POST {
                return finish(
                    GraphError::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "Request_BadRequest",
                        "Method not allowed.",
                    )
                    .reply(&ctx),
                    &ctx,
                    false,
                );
            }
            let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
            let correlation = sent_client_request_id
                .clone()
                .filter(|c| c.parse::<Uuid>().is_ok())
                .unwrap_or_else(|| Uuid::new_v4().to_string());
            let reply = token::issue(
                &mut lock(&shared.world),
                &decode(tenant),
                &form,
                &correlation,
            );
            finish(reply, &ctx, false)
        }
        ["v1.0", rest @ ..] => {
            let caller = match authenticate(&shared, &parts.headers, Audience::Graph, &ctx) {
                Ok(caller) => caller,
                Err(reply) => return finish(reply, &ctx, true),
            };
            let graph_segments: Vec<String> = rest
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| decode(s))
                .collect();
            if graph_segments.len() == 1 && graph_segments[0] == "$batch" {
                if parts.method != Method::POST {
                    return finish(
                        GraphError::new(
                            StatusCode::METHOD_NOT_ALLOWED,
                            "Request_BadRequest",
                            "Specified HTTP method is not allowed for the request target.",
                        )
                        .reply(&ctx),
                        &ctx,
                        true,
                    );
                }
                let outcome = batch(
                    &shared,
                    &ctx,
                    &caller,
                    &body,
                    &parts.headers,
                    &path,
                    query.as_deref(),
                )
                .await;
                return reply_for(outcome, true);
            }
            let call = GraphCall {
                method: parts.method.clone(),
                segments: graph_segments.clone(),
                query: query_pairs(query.as_deref()),
                eventual: header(&parts.headers, "consistencylevel")
                    .is_some_and(|v| v.eq_ignore_ascii_case("eventual")),
                body: parse_json_body(&body),
            };
            let attempt = Attempt {
                ctx: ctx.clone(),
                caller,
                match_path: format!("/v1.0/{}", graph_segments.join("/")),
                api: Api::Graph(call),
                method: parts.method.clone(),
                log_path: path.clone(),
                query: query.clone(),
                client_sent_request_id: sent_client_request_id.is_some(),
                batch: None,
            };
            let outcome = run_attempt(&shared, &attempt).await;
            reply_for(outcome, true)
        }
        ["adminapi", "beta", tenant, "InvokeCommand"] => {
            let caller = match authenticate(&shared, &parts.headers, Audience::Exchange, &ctx) {
                Ok(caller) => caller,
                Err(reply) => return finish(reply, &ctx, false),
            };
            let call = ExchangeCall::new(decode(tenant), parse_json_body(&body));
            let attempt = Attempt {
                ctx: ctx.clone(),
                caller,
                match_path: path.clone(),
                api: Api::Exchange(call),
                method: parts.method.clone(),
                log_path: path.clone(),
                query: query.clone(),
                client_sent_request_id: sent_client_request_id.is_some(),
                batch: None,
            };
            let outcome = run_attempt(&shared, &attempt).await;
            reply_for(outcome, false)
        }
        _ => finish(
            GraphError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("No Microsoft Online Services endpoint is emulated at '{path}'."),
            )
            .reply(&ctx),
            &ctx,
            false,
        ),
    }
}

/// Checks the bearer token for an API; the error is that API's 401/403.
fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    audience: Audience,
    ctx: &Ctx,
) -> Result<Caller, Reply> {
    let graph_401 = |message: &str| {
        GraphError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message)
            .reply(ctx)
            .with_header("WWW-Authenticate", "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"")
    };
    let exchange_401 = || {
        Reply::empty(StatusCode::UNAUTHORIZED).with_header(
            "WWW-Authenticate",
            "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", error=\"invalid_token\"",
        )
    };
    let reject = |message: &str| match audience {
        Audience::Graph => graph_401(message),
        Audience::Exchange => exchange_401(),
    };
    let token = header(headers, "authorization")
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(reject("Access token is empty."));
    };
    let world = lock(&shared.world);
    let Some(issued) = world.tokens.get(&token) else {
        return Err(reject(
            "IDX14100: JWT is not well formed, there are no dots (.). The token needs to be in JWS or JWE Compact Serialization Format.",
        ));
    };
    if issued.expires_at <= Instant::now() {
        return Err(reject("Lifetime validation failed, the token is expired."));
    }
    if issued.audience != audience {
        return Err(reject("Access token validation failure. Invalid audience."));
    }
    if audience == Audience::Exchange
        && world.seed.enforce_roles
        && !issued.roles.iter().any(|r| r == "Exchange.ManageAsApp")
    {
        // captured from the real service: a 403 whose body is NUL bytes
        return Err(Reply {
            status: StatusCode::FORBIDDEN,
            headers: Vec::new(),
            body: ReplyBody::Bytes(vec![0; 16], "application/octet-stream"),
        });
    }
    Ok(Caller {
        app_id: issued.app_id,
        roles: issued.roles.clone(),
    })
}

/// A response marked for dropping; `entry` never lets it out.
fn dropped() -> Response {
    let mut response = Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .header("connection", "close")
        .body(Body::empty())
        .unwrap_or_default();
    response.extensions_mut().insert(DropConnection);
    response
}

/// Turns a reply into an HTTP response with Microsoft's envelope headers.
fn finish(reply: Reply, ctx: &Ctx, graph_envelope: bool) -> Response {
    let mut builder = Response::builder().status(reply.status);
    let headers = builder.headers_mut();
    if let Some(headers) = headers {
        let mut put = |name: &str, value: &str| {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        };
        put("request-id", &ctx.request_id);
        put("client-request-id", &ctx.client_request_id);
        if graph_envelope {
            put(
                "x-ms-ags-diagnostic",
                r#"{"ServerInfo":{"DataCenter":"Local Emulator","Slice":"E","Ring":"5","ScaleUnit":"000","RoleInstance":"MOSS-EMULATOR"}}"#,
            );
            put("OData-Version", "4.0");
            put("Cache-Control", "no-cache");
            put("Strict-Transport-Security", "max-age=31536000");
        }
        for (name, value) in &reply.headers {
            put(name, value);
        }
        match &reply.body {
            ReplyBody::Json(_) => put("Content-Type", GRAPH_CONTENT_TYPE),
            ReplyBody::PlainJson(_) => put("Content-Type", "application/json; charset=utf-8"),
            ReplyBody::Bytes(_, content_type) => put("Content-Type", content_type),
            ReplyBody::Empty => {}
        }
    }
    let body = match reply.body {
        ReplyBody::Empty => Body::empty(),
        ReplyBody::Json(value) | ReplyBody::PlainJson(value) => Body::from(value.to_string()),
        ReplyBody::Bytes(bytes, _) => Body::from(bytes),
    };
    builder.body(body).unwrap_or_default()
}

/// `POST /v1.0/$batch` (§6).
async fn batch(
    shared: &Shared,
    ctx: &Ctx,
    caller: &Caller,
    body: &Bytes,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
) -> Outcome {
    let bad = |message: String| {
        Outcome::Answer(GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", message).reply(ctx))
    };
    let outer_log = |status: u16| {
        lock(&shared.log).push(LoggedRequest {
            seq: 0,
            time: chrono::Utc::now(),
            method: "POST".into(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            status: Some(status),
            request_id: ctx.request_id.clone(),
            client_request_id: header(headers, "client-request-id"),
            write: false,
            committed: false,
            fault: None,
            cmdlet: None,
            app_id: Some(caller.app_id),
            batch_request_id: None,
            batch_item_id: None,
        });
    };
    let parsed: Option<Vec<Value>> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("requests").and_then(Value::as_array).cloned());
    let Some(requests) = parsed else {
        outer_log(400);
        return bad("Invalid batch payload format.".into());
    };
    if requests.len() > 20 {
        outer_log(400);
        return bad("Number of requests inside batch exceeds the limit.".into());
    }
    struct Item {
        id: String,
        method: Method,
        url: String,
        headers: Map<String, Value>,
        body: Option<Value>,
        depends_on: Vec<String>,
    }
    let mut items = Vec::new();
    for request in &requests {
        let Some(id) = request.get("id").and_then(Value::as_str).map(str::to_owned) else {
            outer_log(400);
            return bad("Invalid batch payload format. Every request needs a string 'id'.".into());
        };
        if items.iter().any(|i: &Item| i.id.eq_ignore_ascii_case(&id)) {
            outer_log(400);
            return bad(format!("Batch request contains duplicate id '{id}'."));
        }
        let method = request
            .get("method")
            .and_then(Value::as_str)
            .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok());
        let url = request
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (Some(method), Some(url)) = (method, url) else {
            outer_log(400);
            return bad(format!(
                "Invalid batch payload format. Request '{id}' needs 'method' and 'url'."
            ));
        };
        if url.starts_with("http://") || url.starts_with("https://") {
            outer_log(400);
            return bad(format!(
                "Invalid request URL '{url}': batch request URLs must be relative."
            ));
        }
        let item_headers = request
            .get("headers")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let item_body = request.get("body").cloned().filter(|b| !b.is_null());
        let has_content_type = item_headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"));
        if item_body.is_some() && !has_content_type {
            outer_log(400);
            return bad(format!(
                "Write request id : {id} does not contain Content-Type header or body."
            ));
        }
        let depends_on: Vec<String> = request
            .get("dependsOn")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        items.push(Item {
            id,
            method,
            url,
            headers: item_headers,
            body: item_body,
            depends_on,
        });
    }
    for item in &items {
        if let Some(missing) = item
            .depends_on
            .iter()
            .find(|d| !items.iter().any(|i| &i.id == *d))
        {
            outer_log(400);
            return bad(format!(
                "Request dependency id '{missing}' of request '{}' does not exist in the batch.",
                item.id
            ));
        }
    }
    let mut statuses: std::collections::HashMap<String, u16> = std::collections::HashMap::new();
    let mut responses: Vec<Value> = Vec::new();
    let mut pending: Vec<&Item> = items.iter().collect();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|i| i.depends_on.iter().all(|d| statuses.contains_key(d)))
            .unwrap_or(0);
        let item = pending.remove(ready);
        let failed_dependency = item
            .depends_on
            .iter()
            .find(|d| statuses.get(*d).is_none_or(|s| !(200..300).contains(s)));
        if let Some(dependency) = failed_dependency {
            statuses.insert(item.id.clone(), 424);
            responses.push(json!({
                "id": item.id, "status": 424, "headers": {"Content-Type": "application/json"},
                "body": {"error": {"code": "FailedDependency",
                                   "message": format!("Dependent request with id '{dependency}' failed."),
                                   "innerError": {"date": ctx.graph_date(), "request-id": ctx.request_id,
                                                  "client-request-id": ctx.client_request_id}}}
            }));
            continue;
        }
        let relative = item.url.trim_start_matches('/');
        let relative = relative.strip_prefix("v1.0/").unwrap_or(relative);
        let (item_path, item_query) = match relative.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (relative.to_owned(), None),
        };
        let segments: Vec<String> = item_path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        let item_header = |name: &str| {
            item.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str())
                .map(str::to_owned)
        };
        let item_request_id = Uuid::new_v4().to_string();
        let item_client_request_id = item_header("client-request-id");
        let item_ctx = Ctx {
            client_request_id: item_client_request_id
                .clone()
                .unwrap_or_else(|| ctx.client_request_id.clone()),
            request_id: item_request_id,
            base_url: ctx.base_url.clone(),
            now: chrono::Utc::now(),
        };
        if segments.first().is_some_and(|s| s == "$batch") {
            statuses.insert(item.id.clone(), 400);
            let error = GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Nested batch requests are not supported.",
            )
            .reply(&item_ctx);
            responses.push(json!({"id": item.id, "status": 400, "headers": {"Content-Type": "application/json"}, "body": error.json_body()}));
            continue;
        }
        let call = GraphCall {
            method: item.method.clone(),
            segments: segments.clone(),
            query: query_pairs(item_query.as_deref()),
            eventual: item_header("ConsistencyLevel")
                .is_some_and(|v| v.eq_ignore_ascii_case("eventual")),
            body: Ok(item.body.clone()),
        };
        let attempt = Attempt {
            ctx: item_ctx,
            caller: caller.clone(),
            match_path: format!("/v1.0/{}", segments.join("/")),
            api: Api::Graph(call),
            method: item.method.clone(),
            log_path: format!("/v1.0/{item_path}"),
            query: item_query,
            client_sent_request_id: item_client_request_id.is_some(),
            batch: Some((ctx.request_id.clone(), item.id.clone())),
        };
        let reply = match run_attempt(shared, &attempt).await {
            Outcome::Answer(reply) => reply,
            Outcome::Drop => {
                outer_log(0);
                return Outcome::Drop;
            }
        };
        statuses.insert(item.id.clone(), reply.status.as_u16());
        let mut item_headers = Map::new();
        for (name, value) in &reply.headers {
            let keep = [
                "retry-after",
                "location",
                "x-ms-throttle-scope",
                "x-ms-throttle-information",
                "x-ms-throttle-limit-percentage",
            ];
            if keep.contains(&name.to_ascii_lowercase().as_str()) {
                item_headers.insert(name.clone(), json!(value));
            }
        }
        let mut response = json!({"id": item.id, "status": reply.status.as_u16()});
        if let Some(body) = reply.json_body() {
            item_headers.insert("Content-Type".into(), json!(GRAPH_CONTENT_TYPE));
            response["body"] = body.clone();
        }
        response["headers"] = Value::Object(item_headers);
        responses.push(response);
    }
    if lock(&shared.world).seed.shuffle_batch_responses {
        use rand::seq::SliceRandom as _;
        responses.shuffle(&mut rand::rng());
    }
    outer_log(200);
    Outcome::Answer(Reply::ok(json!({ "responses": responses })))
}
