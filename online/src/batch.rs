//! JSON batching (`POST /$batch`, §6): fan-out of membership and licence changes in batches of
//! at most 20, with per-item classes, a retry of only the throttled and transient items after
//! the longest item `Retry-After`, and 424s traced back to the item that really failed.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::Change;
use crate::client::{Call, OnlineClient, Operation};
use crate::error::{ErrorClass, Idempotency, OnlineError, classify_graph, graph_reply, graph_text};
use crate::identity::{SkuId, UserId, UserKey};
use crate::licences::AssignLicenceBody;
use crate::throttle::{ThrottleSignal, parse_retry_after};
use crate::users::{AccountState, UserProperty, select_list};

/// Graph's limit on requests in one batch.
pub const MAX_BATCH_ITEMS: usize = 20;

/// The method of a batch item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMethod {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl BatchMethod {
    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone)]
enum BatchBody {
    Json(Value),
    /// `{"@odata.id": "{graph}/directoryObjects/{id}"}`, written with the configured Graph base.
    MemberReference(Uuid),
}

/// One request inside a batch, built by the typed constructors below.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    id: String,
    method: BatchMethod,
    url: String,
    body: Option<BatchBody>,
    depends_on: Option<String>,
    idempotency: Idempotency,
    /// An assignLicense that also adds: "User does not have a corresponding license" then
    /// means the additions were not applied either, so it is not `AlreadyDone`.
    adds_licences: bool,
}

impl BatchRequest {
    fn new(id: impl Into<String>, method: BatchMethod, url: String) -> Self {
        Self {
            id: id.into(),
            method,
            url,
            body: None,
            depends_on: None,
            idempotency: Idempotency::Idempotent,
            adds_licences: false,
        }
    }

    /// `GET /users/{key}?$select=…`.
    pub fn get_user(id: impl Into<String>, key: &UserKey, select: &[UserProperty]) -> Self {
        let url = format!(
            "/users/{}?$select={}",
            key.path_segment(),
            select_list(select)
        );
        Self::new(id, BatchMethod::Get, url)
    }

    /// `PATCH /users/{key}` with `accountEnabled`.
    pub fn set_account_state(id: impl Into<String>, key: &UserKey, state: AccountState) -> Self {
        let mut request = Self::new(
            id,
            BatchMethod::Patch,
            format!("/users/{}", key.path_segment()),
        );
        request.body = Some(BatchBody::Json(
            json!({"accountEnabled": state == AccountState::Enabled}),
        ));
        request
    }

    /// `POST /users/{key}/revokeSignInSessions`.
    pub fn revoke_sign_in_sessions(id: impl Into<String>, key: &UserKey) -> Self {
        let url = format!("/users/{}/revokeSignInSessions", key.path_segment());
        let mut request = Self::new(id, BatchMethod::Post, url);
        // A bodiless action inside a batch still needs `"body":{}` and a Content-Type (§6).
        request.body = Some(BatchBody::Json(json!({})));
        request
    }

    /// `POST /users/{key}/assignLicense` with both arrays.
    pub fn assign_licenses(
        id: impl Into<String>,
        key: &UserKey,
        add: &[SkuId],
        remove: &[SkuId],
    ) -> Self {
        let url = format!("/users/{}/assignLicense", key.path_segment());
        let mut request = Self::new(id, BatchMethod::Post, url);
        let body = serde_json::to_value(AssignLicenceBody::new(add, remove)).unwrap_or(Value::Null);
        request.body = Some(BatchBody::Json(body));
        request.adds_licences = !add.is_empty();
        request
    }

    /// `DELETE /users/{key}`; 404 counts as done.
    pub fn delete_user(id: impl Into<String>, key: &UserKey) -> Self {
        Self::new(
            id,
            BatchMethod::Delete,
            format!("/users/{}", key.path_segment()),
        )
    }

    /// `POST /groups/{group}/members/$ref` (Microsoft 365 and security groups only; distribution
    /// groups go through Exchange).
    pub fn add_group_member(id: impl Into<String>, group: Uuid, member: UserId) -> Self {
        let mut request = Self::new(
            id,
            BatchMethod::Post,
            format!("/groups/{group}/members/$ref"),
        );
        request.body = Some(BatchBody::MemberReference(member.0));
        request
    }

    /// `DELETE /groups/{group}/members/{member}/$ref`; 404 counts as done.
    pub fn remove_group_member(id: impl Into<String>, group: Uuid, member: UserId) -> Self {
        Self::new(
            id,
            BatchMethod::Delete,
            format!("/groups/{group}/members/{member}/$ref"),
        )
    }

    /// Runs this request only after `other` succeeded; if `other` fails, this one answers 424.
    pub fn after(mut self, other: impl Into<String>) -> Self {
        self.depends_on = Some(other.into());
        self
    }

    /// The caller's id of this request.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn wire(&self, graph_base: &str) -> Value {
        let mut item = Map::new();
        item.insert("id".into(), Value::String(self.id.clone()));
        item.insert("method".into(), Value::String(self.method.as_str().into()));
        item.insert("url".into(), Value::String(self.url.clone()));
        if let Some(body) = &self.body {
            let body = match body {
                BatchBody::Json(value) => value.clone(),
                BatchBody::MemberReference(member) => {
                    json!({"@odata.id": format!("{graph_base}/directoryObjects/{member}")})
                }
            };
            item.insert(
                "headers".into(),
                json!({"Content-Type": "application/json"}),
            );
            item.insert("body".into(), body);
        }
        if let Some(other) = &self.depends_on {
            item.insert("dependsOn".into(), json!([other]));
        }
        Value::Object(item)
    }
}

/// A successful (or already applied) batch item.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItemReply {
    /// Applied now, or found already applied (404 on a delete, member already there, …).
    pub change: Change,
    /// The item's body, when it had one.
    pub body: Option<Value>,
}

/// What became of one batch request.
#[derive(Debug, Clone)]
pub struct BatchItemOutcome {
    /// The request's id.
    pub id: String,
    /// The item's final HTTP status (0 if no reply ever came for it).
    pub status: u16,
    /// The reply, or the classified failure. For a 424 the class is that of the root cause.
    pub result: Result<BatchItemReply, OnlineError>,
    /// For a 424: the id of the request whose failure stopped this one.
    pub failed_dependency: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BatchReplyBody {
    #[serde(default)]
    responses: Vec<ItemReply>,
}

#[derive(Debug, Deserialize)]
struct ItemReply {
    id: String,
    status: u16,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    body: Option<Value>,
}

impl ItemReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_str())
    }
}

fn batch_error(op: &Operation, detail: String) -> OnlineError {
    OnlineError::new(
        op.name,
        ErrorClass::Permanent {
            status: 0,
            code: "InvalidBatch".into(),
            message: detail.clone(),
            request_id: None,
        },
        detail,
    )
    .with_client_request_id(op.client_request_id)
}

/// Checks ids and dependencies, then packs dependency groups whole into chunks of ≤ 20.
fn plan_chunks(op: &Operation, requests: &[BatchRequest]) -> Result<Vec<Vec<usize>>, OnlineError> {
    let mut index_of = HashMap::new();
    for (index, request) in requests.iter().enumerate() {
        if request.id.is_empty() {
            return Err(batch_error(
                op,
                format!("batch request {index} has an empty id"),
            ));
        }
        if index_of.insert(request.id.to_lowercase(), index).is_some() {
            return Err(batch_error(
                op,
                format!("batch request id {} is used twice", request.id),
            ));
        }
    }
    // The group of an item is the root of its dependency chain.
    let root_of = |mut index: usize| -> Result<usize, OnlineError> {
        let mut seen = HashSet::new();
        while let Some(other) = &requests[index].depends_on {
            if !seen.insert(index) {
                return Err(batch_error(
                    op,
                    format!("batch request {} depends on itself", requests[index].id),
                ));
            }
            index = *index_of.get(&other.to_lowercase()).ok_or_else(|| {
                batch_error(
                    op,
                    format!(
                        "batch request {} depends on unknown id {other}",
                        requests[index].id
                    ),
                )
            })?;
        }
        Ok(index)
    };
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for index in 0..requests.len() {
        let root = root_of(index)?;
        match groups
            .iter_mut()
            .find(|(group_root, _)| *group_root == root)
        {
            Some((_, members)) => members.push(index),
            None => groups.push((root, vec![index])),
        }
    }
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    for (_, members) in groups {
        if members.len() > MAX_BATCH_ITEMS {
            return Err(batch_error(
                op,
                format!(
                    "a dependency chain of {} requests does not fit one batch of {MAX_BATCH_ITEMS}",
                    members.len()
                ),
            ));
        }
        match chunks.last_mut() {
            Some(chunk) if chunk.len() + members.len() <= MAX_BATCH_ITEMS => chunk.extend(members),
            _ => chunks.push(members),
        }
    }
    Ok(chunks)
}

impl OnlineClient {
    /// Sends `requests` through `$batch`, splitting them into batches of at most 20 (a request
    /// and what depends on it stay together). Throttled and transient items are sent again,
    /// alone, after the longest item `Retry-After`, within the operation's retry budget.
    /// Outcomes come back in the order of `requests`. `Err` only when a whole batch failed.
    pub async fn batch(
        &self,
        requests: Vec<BatchRequest>,
    ) -> Result<Vec<BatchItemOutcome>, OnlineError> {
        let mut op = self.operation("batch");
        let mut pending: Vec<usize> = (0..requests.len()).collect();
        let mut outcomes: Vec<Option<BatchItemOutcome>> = vec![None; requests.len()];
        loop {
            let in_round: HashSet<String> = pending
                .iter()
                .map(|&index| requests[index].id.to_lowercase())
                .collect();
            let round: Vec<BatchRequest> = pending
                .iter()
                .map(|&index| {
                    let mut request = requests[index].clone();
                    // A dependency that succeeded in an earlier round is not sent again.
                    if request
                        .depends_on
                        .as_ref()
                        .is_some_and(|other| !in_round.contains(&other.to_lowercase()))
                    {
                        request.depends_on = None;
                    }
                    request
                })
                .collect();
            let chunks = plan_chunks(&op, &round)?;
            for chunk in chunks {
                let items: Vec<(usize, &BatchRequest)> = chunk
                    .iter()
                    .map(|&position| (pending[position], &round[position]))
                    .collect();
                for (index, outcome) in self.send_batch(&mut op, &items).await? {
                    outcomes[index] = Some(outcome);
                }
            }
            resolve_dependencies(&requests, &mut outcomes);

            let retry: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&index| {
                    outcomes[index]
                        .as_ref()
                        .is_some_and(|outcome| matches!(&outcome.result, Err(error) if error.class().is_retryable()))
                })
                .collect();
            if retry.is_empty() {
                break;
            }
            let longest_wait = retry
                .iter()
                .filter_map(|&index| outcomes[index].as_ref())
                .filter_map(|outcome| outcome.result.as_ref().err())
                .filter_map(OnlineError::retry_after)
                .max();
            let representative = retry
                .iter()
                .find_map(|&index| {
                    outcomes[index]
                        .as_ref()
                        .and_then(|outcome| outcome.result.as_ref().err())
                })
                .cloned();
            let Some(representative) = representative else {
                break;
            };
            let representative = match longest_wait {
                Some(wait) => representative.with_class(ErrorClass::Throttled {
                    retry_after: Some(wait),
                }),
                None => representative,
            };
            if self
                .wait_before_retry(&mut op, representative)
                .await
                .is_err()
            {
                break;
            }
            pending = retry;
        }
        Ok(outcomes
            .into_iter()
            .zip(&requests)
            .map(|(outcome, request)| {
                outcome.unwrap_or_else(|| BatchItemOutcome {
                    id: request.id.clone(),
                    status: 0,
                    result: Err(OnlineError::new(
                        op.name,
                        ErrorClass::Transient,
                        "the batch reply had no item for this id",
                    )
                    .with_client_request_id(op.client_request_id)),
                    failed_dependency: None,
                })
            })
            .collect())
    }

    async fn send_batch(
        &self,
        op: &mut Operation,
        items: &[(usize, &BatchRequest)],
    ) -> Result<Vec<(usize, BatchItemOutcome)>, OnlineError> {
        let graph_base = self.graph_base();
        let body = json!({"requests": items.iter().map(|(_, request)| request.wire(&graph_base)).collect::<Vec<_>>()});
        let all_idempotent = items
            .iter()
            .all(|(_, request)| request.idempotency == Idempotency::Idempotent);
        let mut call = Call::graph(Method::POST, self.graph_url("$batch", &[])).json(&body);
        if all_idempotent {
            call = call.idempotent();
        }
        let reply: BatchReplyBody = self.send(op, &call).await?.json(op)?;
        let mut by_id: HashMap<String, ItemReply> = reply
            .responses
            .into_iter()
            .map(|item| (item.id.to_lowercase(), item))
            .collect();
        Ok(items
            .iter()
            .map(|&(index, request)| {
                let outcome = match by_id.remove(&request.id.to_lowercase()) {
                    Some(item) => item_outcome(op, request, &item),
                    None => BatchItemOutcome {
                        id: request.id.clone(),
                        status: 0,
                        result: Err(OnlineError::new(
                            op.name,
                            ErrorClass::Transient,
                            "the batch reply had no item for this id",
                        )
                        .with_client_request_id(op.client_request_id)),
                        failed_dependency: None,
                    },
                };
                (index, outcome)
            })
            .collect())
    }
}

fn item_outcome(op: &Operation, request: &BatchRequest, item: &ItemReply) -> BatchItemOutcome {
    let status = item.status;
    let succeeded = |change| BatchItemOutcome {
        id: request.id.clone(),
        status,
        result: Ok(BatchItemReply {
            change,
            body: item.body.clone(),
        }),
        failed_dependency: None,
    };
    if (200..300).contains(&status) {
        return succeeded(Change::Applied);
    }
    let http_status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body_bytes = item
        .body
        .as_ref()
        .map(|body| serde_json::to_vec(body).unwrap_or_default())
        .unwrap_or_default();
    let reply = graph_reply(
        http_status,
        &body_bytes,
        item.header("request-id").map(str::to_owned),
    );
    let throttle = ThrottleSignal {
        retry_after: item
            .header("retry-after")
            .and_then(|value| parse_retry_after(value, Utc::now())),
        limit_percentage: item
            .header("x-ms-throttle-limit-percentage")
            .and_then(|value| value.parse().ok()),
        scope: item.header("x-ms-throttle-scope").map(str::to_owned),
        information: item.header("x-ms-throttle-information").map(str::to_owned),
        ..ThrottleSignal::default()
    };
    let mut class = classify_graph(&reply, &throttle, request.idempotency);
    if request.method == BatchMethod::Delete && status == 404 {
        class = ErrorClass::AlreadyDone;
    }
    if class == ErrorClass::AlreadyDone
        && request.adds_licences
        && reply.message.contains(graph_text::LICENCE_ABSENT)
    {
        // The removal half was a no-op but the whole call failed, additions included.
        class = ErrorClass::Permanent {
            status,
            code: reply.code.clone(),
            message: reply.message.clone(),
            request_id: reply.request_id.clone(),
        };
    }
    if class == ErrorClass::AlreadyDone {
        return succeeded(Change::AlreadyDone);
    }
    BatchItemOutcome {
        id: request.id.clone(),
        status,
        result: Err(OnlineError::from_reply(
            op.name,
            class,
            reply,
            throttle,
            op.client_request_id,
        )),
        failed_dependency: None,
    }
}

/// Gives every 424 the class and reason of the item that really failed (§6, §11.12).
fn resolve_dependencies(requests: &[BatchRequest], outcomes: &mut [Option<BatchItemOutcome>]) {
    let index_of: HashMap<String, usize> = requests
        .iter()
        .enumerate()
        .map(|(index, request)| (request.id.to_lowercase(), index))
        .collect();
    for index in 0..requests.len() {
        if outcomes[index].as_ref().map(|outcome| outcome.status) != Some(424) {
            continue;
        }
        let mut root = index;
        let mut hops = 0;
        while let Some(other) = &requests[root].depends_on
            && let Some(&next) = index_of.get(&other.to_lowercase())
            && hops <= requests.len()
        {
            root = next;
            hops += 1;
            if outcomes[root].as_ref().map(|outcome| outcome.status) != Some(424) {
                break;
            }
        }
        let Some(root_error) = outcomes[root]
            .as_ref()
            .and_then(|outcome| outcome.result.as_ref().err())
            .cloned()
        else {
            continue;
        };
        let root_id = requests[root].id.clone();
        if let Some(outcome) = outcomes[index].as_mut()
            && let Err(error) = &outcome.result
        {
            let detail = format!("depends on request {root_id}, which failed: {root_error}");
            outcome.result = Err(error
                .clone()
                .with_class(root_error.class().clone())
                .with_detail(detail));
            outcome.failed_dependency = Some(root_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OnlineConfig;
    use secrecy::SecretString;

    fn operation() -> Operation {
        let config = OnlineConfig::new("t", "app", SecretString::from("s"))
            .with_single_base_url("http://127.0.0.1:9");
        OnlineClient::new(config).unwrap().operation("batch")
    }

    fn user(n: u128) -> UserKey {
        UserKey::Id(UserId(Uuid::from_u128(n)))
    }

    #[test]
    fn forty_five_requests_go_in_three_batches() {
        let requests: Vec<_> = (0..45)
            .map(|n| BatchRequest::delete_user(n.to_string(), &user(n)))
            .collect();
        let chunks = plan_chunks(&operation(), &requests).unwrap();
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![20, 20, 5]
        );
    }

    #[test]
    fn a_dependency_chain_stays_in_one_batch() {
        let mut requests: Vec<_> = (0..19)
            .map(|n| BatchRequest::delete_user(n.to_string(), &user(n)))
            .collect();
        requests.push(BatchRequest::set_account_state(
            "block",
            &user(99),
            AccountState::Disabled,
        ));
        requests.push(BatchRequest::revoke_sign_in_sessions("revoke", &user(99)).after("block"));
        let chunks = plan_chunks(&operation(), &requests).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1], vec![19, 20]);
    }

    #[test]
    fn duplicate_ids_and_unknown_dependencies_are_refused() {
        let twice = vec![
            BatchRequest::delete_user("a", &user(1)),
            BatchRequest::delete_user("A", &user(2)),
        ];
        assert!(plan_chunks(&operation(), &twice).is_err());
        let dangling = vec![BatchRequest::delete_user("a", &user(1)).after("zz")];
        assert!(plan_chunks(&operation(), &dangling).is_err());
    }

    #[test]
    fn a_bodiless_action_carries_an_empty_body_and_a_content_type() {
        let wire = BatchRequest::revoke_sign_in_sessions("1", &user(1))
            .wire("https://graph.microsoft.com/v1.0");
        assert_eq!(wire["body"], json!({}));
        assert_eq!(wire["headers"]["Content-Type"], "application/json");
        let member =
            BatchRequest::add_group_member("2", Uuid::from_u128(7), UserId(Uuid::from_u128(8)))
                .wire("https://graph.microsoft.com/v1.0");
        assert_eq!(
            member["body"]["@odata.id"],
            format!(
                "https://graph.microsoft.com/v1.0/directoryObjects/{}",
                Uuid::from_u128(8)
            )
        );
    }

    fn item(id: &str, status: u16, headers: &Value, body: &Value) -> ItemReply {
        serde_json::from_value(
            json!({"id": id, "status": status, "headers": headers.clone(), "body": body.clone()}),
        )
        .unwrap()
    }

    #[test]
    fn a_throttled_item_carries_its_retry_after() {
        let op = operation();
        let request = BatchRequest::delete_user("1", &user(1));
        let outcome = item_outcome(
            &op,
            &request,
            &item(
                "1",
                429,
                &json!({"Retry-After": "7"}),
                &json!({"error":{"code":"TooManyRequests","message":"Please retry again later."}}),
            ),
        );
        let error = outcome.result.unwrap_err();
        assert_eq!(error.retry_after(), Some(std::time::Duration::from_secs(7)));
        assert!(error.class().is_retryable());
    }

    #[test]
    fn a_delete_item_that_finds_nothing_is_already_done() {
        let op = operation();
        let request =
            BatchRequest::remove_group_member("1", Uuid::from_u128(1), UserId(Uuid::from_u128(2)));
        let outcome = item_outcome(
            &op,
            &request,
            &item(
                "1",
                404,
                &json!({}),
                &json!({"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist or one of its queried reference-property objects are not present."}}),
            ),
        );
        assert_eq!(outcome.result.unwrap().change, Change::AlreadyDone);
    }

    #[test]
    fn a_licence_removal_already_done_does_not_hide_failed_additions() {
        let op = operation();
        let sku = SkuId(Uuid::from_u128(5));
        let absent = json!({"error":{"code":"Request_BadRequest","message":"User does not have a corresponding license."}});
        let remove_only = BatchRequest::assign_licenses("1", &user(1), &[], &[sku]);
        let outcome = item_outcome(&op, &remove_only, &item("1", 400, &json!({}), &absent));
        assert_eq!(outcome.result.unwrap().change, Change::AlreadyDone);
        let both = BatchRequest::assign_licenses("2", &user(1), &[sku], &[sku]);
        let outcome = item_outcome(&op, &both, &item("2", 400, &json!({}), &absent));
        assert!(matches!(
            outcome.result.unwrap_err().class(),
            ErrorClass::Permanent { .. }
        ));
    }

    #[test]
    fn a_failed_dependency_takes_the_class_of_its_root_cause() {
        let op = operation();
        let requests = vec![
            BatchRequest::set_account_state("block", &user(1), AccountState::Disabled),
            BatchRequest::revoke_sign_in_sessions("revoke", &user(1)).after("block"),
        ];
        let mut outcomes = vec![
            Some(item_outcome(
                &op,
                &requests[0],
                &item(
                    "block",
                    403,
                    &json!({}),
                    &json!({"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}),
                ),
            )),
            Some(item_outcome(
                &op,
                &requests[1],
                &item(
                    "revoke",
                    424,
                    &json!({}),
                    &json!({"error":{"code":"FailedDependency","message":"Failed dependency"}}),
                ),
            )),
        ];
        resolve_dependencies(&requests, &mut outcomes);
        let revoke = outcomes[1].as_ref().unwrap();
        assert_eq!(revoke.failed_dependency.as_deref(), Some("block"));
        let error = revoke.result.as_ref().unwrap_err();
        assert!(matches!(
            error.class(),
            ErrorClass::Permanent { status: 403, .. }
        ));
        assert!(error.to_string().contains("depends on request block"));
    }
}
