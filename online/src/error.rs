//! Error classes, and how a reply from Microsoft is sorted into one.
//!
//! The class is decided from the status and `error.code` first, then from the few documented
//! message texts (directory errors mostly share `Request_BadRequest`, so the text is the only
//! discriminator, wire reference §2), and for Exchange from the .NET exception type inside
//! `details[0].message`, never from Exchange's generic outer message.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::throttle::ThrottleSignal;

/// What kind of failure this is, which decides what the worker does (ARCHITECTURE.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// 429, or 503 with `Retry-After`: wait as told, lower the rate, retry.
    Throttled {
        /// How long the service asked to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// 5xx, timeout or connection failure on a call that is safe to repeat: back off and retry.
    Transient,
    /// The tenant configuration is wrong (bad secret, unknown app or tenant, lost permission):
    /// pause everything and tell the operator.
    Configuration,
    /// The change was already in place (delete → 404, member already there, licence already
    /// gone): success.
    AlreadyDone,
    /// Someone else holds the name (a UPN or proxy address taken by another object).
    Conflict,
    /// The SKU has no free seats: not retryable until seats are bought or freed.
    NoSeats,
    /// A write may or may not have been applied (504, timeout or reset after sending): read the
    /// state before repeating it.
    OutcomeUnknown,
    /// This event cannot succeed as it is: dead-letter it with the reason.
    Permanent {
        /// The HTTP status (0 when no response arrived).
        status: u16,
        /// `error.code` (or the token endpoint's `error`, or a short name moss gives).
        code: String,
        /// The discriminating text (for Exchange, the text inside `details[0].message`).
        message: String,
        /// The server's `request-id`, for Microsoft support.
        request_id: Option<String>,
    },
}

impl ErrorClass {
    /// Whether the client itself retries this class within an operation's budget.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Transient)
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::Transient => "transient",
            Self::Configuration => "configuration",
            Self::AlreadyDone => "already_done",
            Self::Conflict => "conflict",
            Self::NoSeats => "no_seats",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::Permanent { .. } => "permanent",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the service answered, stripped to what is safe and useful to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceReply {
    /// HTTP status.
    pub status: u16,
    /// `error.code` (Graph, Exchange outer code) or `error` (token endpoint).
    pub code: String,
    /// The discriminating message: Graph `error.message`, the Exchange text inside
    /// `details[0].message`, or the first line of the token endpoint's `error_description`.
    pub message: String,
    /// For Exchange, the short .NET exception type (`MemberAlreadyExistsException`).
    pub exception_type: Option<String>,
    /// `error.details[0].target`, when Graph names the property (`userPrincipalName`).
    pub target: Option<String>,
    /// The server's `request-id` header (or the token endpoint's `trace_id`).
    pub request_id: Option<String>,
}

impl fmt::Display for ServiceReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if !self.code.is_empty() {
            write!(f, " {}", self.code)?;
        }
        if let Some(exception) = &self.exception_type {
            write!(f, " {exception}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// A failed call to Microsoft: its class, the reply and the ids to find it in logs.
///
/// One type rather than a variant per class, because every failure carries the same
/// correlation context (`client-request-id`, `request-id`, throttle headers); callers branch on
/// [`OnlineError::class`]. It never holds a secret: request bodies are never copied into it.
/// Boxed inside, so that `Result<_, OnlineError>` stays one pointer wide.
#[derive(Debug, Clone)]
pub struct OnlineError(Box<ErrorDetail>);

#[derive(Debug, Clone)]
struct ErrorDetail {
    operation: &'static str,
    class: ErrorClass,
    detail: String,
    reply: Option<ServiceReply>,
    client_request_id: Option<Uuid>,
    throttle: ThrottleSignal,
}

impl fmt::Display for OnlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.0;
        write!(
            f,
            "{} failed ({}): {}",
            inner.operation, inner.class, inner.detail
        )?;
        let mut ids = Vec::new();
        if let Some(request_id) = self.request_id() {
            ids.push(format!("request-id {request_id}"));
        }
        if let Some(client_request_id) = inner.client_request_id {
            ids.push(format!("client-request-id {client_request_id}"));
        }
        if !ids.is_empty() {
            write!(f, " ({})", ids.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for OnlineError {}

impl OnlineError {
    pub(crate) fn new(
        operation: &'static str,
        class: ErrorClass,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(ErrorDetail {
            operation,
            class,
            detail: detail.into(),
            reply: None,
            client_request_id: None,
            throttle: ThrottleSignal::default(),
        }))
    }

    pub(crate) fn from_reply(
        operation: &'static str,
        class: ErrorClass,
        reply: ServiceReply,
        throttle: ThrottleSignal,
        client_request_id: Uuid,
    ) -> Self {
        Self(Box::new(ErrorDetail {
            operation,
            class,
            detail: reply.to_string(),
            reply: Some(reply),
            client_request_id: Some(client_request_id),
            throttle,
        }))
    }

    pub(crate) fn with_client_request_id(mut self, id: Uuid) -> Self {
        self.0.client_request_id.get_or_insert(id);
        self
    }

    pub(crate) fn with_class(mut self, class: ErrorClass) -> Self {
        self.0.class = class;
        self
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = detail.into();
        self
    }

    /// The class the caller branches on.
    pub fn class(&self) -> &ErrorClass {
        &self.0.class
    }

    /// The logical operation that failed, e.g. `create user`.
    pub fn operation(&self) -> &'static str {
        self.0.operation
    }

    /// The one-sentence reason, without the operation, class and ids.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// The reply that decided the class, when one arrived.
    pub fn reply(&self) -> Option<&ServiceReply> {
        self.0.reply.as_ref()
    }

    /// The server's `request-id` of the attempt that decided the class.
    pub fn request_id(&self) -> Option<&str> {
        self.0
            .reply
            .as_ref()
            .and_then(|reply| reply.request_id.as_deref())
    }

    /// The operation's `client-request-id`, the same on all its attempts.
    pub fn client_request_id(&self) -> Option<Uuid> {
        self.0.client_request_id
    }

    /// The throttle headers of the last reply, for the caller's pacing.
    pub fn throttle(&self) -> &ThrottleSignal {
        &self.0.throttle
    }

    /// How long the service asked to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.0.class {
            ErrorClass::Throttled { retry_after } => *retry_after,
            _ => self.0.throttle.retry_after,
        }
    }

    /// Whether the reply was a 404 (`Request_ResourceNotFound`, Exchange `NotFound`).
    pub fn is_not_found(&self) -> bool {
        self.0
            .reply
            .as_ref()
            .is_some_and(|reply| reply.status == 404)
    }
}

/// Whether repeating a request after an unanswered attempt is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Repeating it cannot do harm (GET, PATCH, DELETE, assignLicense, member add/remove).
    Idempotent,
    /// Repeating it can create a second object (POST /users, New-DistributionGroup).
    NotIdempotent,
}

/// Graph message texts that decide a class (§3.1, §4.2, §8, §9); matched as substrings.
pub(crate) mod graph_text {
    pub(crate) const UPN_TAKEN: &str =
        "Another object with the same value for property userPrincipalName already exists";
    pub(crate) const PROXY_TAKEN: &str =
        "Another object with the same value for property proxyAddresses already exists";
    pub(crate) const CONFLICTING_OBJECT: &str =
        "A conflicting object with one or more of the specified property values is present";
    pub(crate) const NO_SEATS: &str = "does not have any available licenses";
    pub(crate) const LICENCE_ABSENT: &str = "User does not have a corresponding license";
    pub(crate) const REFERENCE_EXISTS: &str = "One or more added object references already exist";
    pub(crate) const REFERENCE_ABSENT: &str = "One or more removed object references do not exist";
    pub(crate) const USAGE_LOCATION: &str =
        "License assignment cannot be done for user with invalid usage location";
}

/// Exchange .NET exception types that decide a class (§9.2); compared on the last segment.
mod exchange_type {
    pub(super) const NOT_FOUND: &str = "ManagementObjectNotFoundException";
    pub(super) const MEMBER_EXISTS: &str = "MemberAlreadyExistsException";
    pub(super) const MEMBER_ABSENT: &str = "MemberNotFoundException";
    pub(super) const OBJECT_EXISTS: &str = "ADObjectAlreadyExistsException";
    pub(super) const PROXY_EXISTS: &str = "ProxyAddressExistsException";
}

/// Exchange's proxy-clash text, for when the type is not one moss knows (§9.2).
const EXCHANGE_PROXY_TAKEN: &str = "is already being used by the proxy addresses";

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Reads a Graph error body (`{"error":{code,message,details,innerError}}`).
pub(crate) fn graph_reply(
    status: StatusCode,
    body: &[u8],
    request_id: Option<String>,
) -> ServiceReply {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = parsed.get("error").cloned().unwrap_or(Value::Null);
    let first_detail = error.get("details").and_then(|details| details.get(0));
    let inner_request_id = error
        .get("innerError")
        .or_else(|| error.get("innererror"))
        .and_then(|inner| text(inner, "request-id"));
    ServiceReply {
        status: status.as_u16(),
        code: text(&error, "code").unwrap_or_default(),
        message: text(&error, "message").unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no error body")
                .to_owned()
        }),
        exception_type: None,
        target: first_detail
            .and_then(|detail| text(detail, "target"))
            .filter(|target| !target.is_empty()),
        request_id: request_id.or(inner_request_id),
    }
}

/// Reads an Exchange admin API error body. The outer `message` ("Error executing cmdlet",
/// "Invalid Operation") is dropped: the text and type come from `details[0].message`
/// (`ExNNNN|<type>|<text>` or a JSON `{Message,TypeName}`), else from
/// `innererror.internalexception`, else from the `x-ExceptionType` header.
pub(crate) fn exchange_reply(
    status: StatusCode,
    body: &[u8],
    request_id: Option<String>,
    exception_header: Option<String>,
) -> ServiceReply {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = parsed.get("error").cloned().unwrap_or(Value::Null);
    let detail_message = error
        .get("details")
        .and_then(|details| details.get(0))
        .and_then(|detail| text(detail, "message"));
    let internal = error
        .get("innererror")
        .or_else(|| error.get("innerError"))
        .and_then(|inner| inner.get("internalexception"));

    let (mut exception_type, mut message) = detail_message
        .as_deref()
        .map(split_exchange_detail)
        .unwrap_or((None, None));
    if exception_type.is_none() {
        exception_type = internal.and_then(|internal| text(internal, "type"));
    }
    if message.is_none() {
        message = internal.and_then(|internal| text(internal, "message"));
    }
    if exception_type.is_none() {
        exception_type = exception_header;
    }
    ServiceReply {
        status: status.as_u16(),
        code: text(&error, "code").unwrap_or_default(),
        message: message.unwrap_or_else(|| {
            format!(
                "{} (no exception text in the reply)",
                status.canonical_reason().unwrap_or("error")
            )
        }),
        exception_type: exception_type.map(|full| short_type_name(&full).to_owned()),
        target: None,
        request_id,
    }
}

/// Splits `ExNNNN|<type>|<text>` or `{"Message":…,"TypeName":…}` into (type, text).
fn split_exchange_detail(detail: &str) -> (Option<String>, Option<String>) {
    if let Ok(json) = serde_json::from_str::<Value>(detail)
        && json.is_object()
    {
        return (text(&json, "TypeName"), text(&json, "Message"));
    }
    let mut parts = detail.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_code), Some(exception), Some(message)) => {
            (Some(exception.to_owned()), Some(message.to_owned()))
        }
        _ => (None, Some(detail.to_owned())),
    }
}

fn short_type_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full).trim()
}

/// The class of a failed Graph reply.
pub(crate) fn classify_graph(
    reply: &ServiceReply,
    throttle: &ThrottleSignal,
    idempotency: Idempotency,
) -> ErrorClass {
    if let Some(class) = classify_by_status(reply, throttle, idempotency) {
        return class;
    }
    let message = reply.message.as_str();
    match (reply.status, reply.code.as_str()) {
        (409, "Request_MultipleObjectsWithSameKeyValue") => ErrorClass::Conflict,
        (400, "Request_BadRequest") if message.contains(graph_text::NO_SEATS) => {
            ErrorClass::NoSeats
        }
        (400, "Request_BadRequest")
            if message.contains(graph_text::LICENCE_ABSENT)
                || message.contains(graph_text::REFERENCE_EXISTS)
                || message.contains(graph_text::REFERENCE_ABSENT) =>
        {
            ErrorClass::AlreadyDone
        }
        (400, "Request_BadRequest")
            if message.contains(graph_text::UPN_TAKEN)
                || message.contains(graph_text::PROXY_TAKEN)
                || message.contains(graph_text::CONFLICTING_OBJECT) =>
        {
            ErrorClass::Conflict
        }
        _ => permanent(reply),
    }
}

/// The class of a failed Exchange admin API reply, from the exception type first.
pub(crate) fn classify_exchange(
    reply: &ServiceReply,
    throttle: &ThrottleSignal,
    idempotency: Idempotency,
) -> ErrorClass {
    if reply.status == 403 {
        // The captured case is an app without an Exchange role: every call fails alike.
        return ErrorClass::Configuration;
    }
    if let Some(class) = classify_by_status(reply, throttle, idempotency) {
        return class;
    }
    match reply.exception_type.as_deref() {
        Some(exchange_type::MEMBER_EXISTS | exchange_type::MEMBER_ABSENT) => {
            ErrorClass::AlreadyDone
        }
        Some(exchange_type::OBJECT_EXISTS | exchange_type::PROXY_EXISTS) => ErrorClass::Conflict,
        Some(exchange_type::NOT_FOUND) => permanent(reply),
        _ if reply.message.contains(EXCHANGE_PROXY_TAKEN) => ErrorClass::Conflict,
        _ => permanent(reply),
    }
}

/// Status-only decisions shared by Graph and Exchange; `None` when the body must decide.
fn classify_by_status(
    reply: &ServiceReply,
    throttle: &ThrottleSignal,
    idempotency: Idempotency,
) -> Option<ErrorClass> {
    let status = reply.status;
    Some(match status {
        429 => ErrorClass::Throttled {
            retry_after: throttle.retry_after,
        },
        401 => ErrorClass::Configuration,
        408 | 500..=599 if idempotency == Idempotency::NotIdempotent => ErrorClass::OutcomeUnknown,
        503 if throttle.retry_after.is_some() => ErrorClass::Throttled {
            retry_after: throttle.retry_after,
        },
        408 | 500..=599 => ErrorClass::Transient,
        _ => return None,
    })
}

fn permanent(reply: &ServiceReply) -> ErrorClass {
    ErrorClass::Permanent {
        status: reply.status,
        code: reply
            .exception_type
            .clone()
            .filter(|_| reply.code.is_empty())
            .unwrap_or_else(|| reply.code.clone()),
        message: reply.message.clone(),
        request_id: reply.request_id.clone(),
    }
}

/// Reads an AADSTS error body: `error`, the first line of `error_description`, `trace_id`.
pub(crate) fn token_reply(status: StatusCode, body: &[u8]) -> ServiceReply {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let description = text(&parsed, "error_description").unwrap_or_default();
    ServiceReply {
        status: status.as_u16(),
        code: text(&parsed, "error").unwrap_or_default(),
        message: description
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        exception_type: None,
        target: None,
        request_id: text(&parsed, "trace_id"),
    }
}

/// The class of a failed token request: any 4xx (bad secret, unknown app or tenant, bad scope)
/// means the tenant settings are wrong; throttling and outages are retried like any call.
pub(crate) fn classify_token(reply: &ServiceReply, throttle: &ThrottleSignal) -> ErrorClass {
    match reply.status {
        400..=499 if reply.status != 429 && reply.status != 408 => ErrorClass::Configuration,
        _ => classify_by_status(reply, throttle, Idempotency::Idempotent)
            .unwrap_or_else(|| permanent(reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(status: u16, body: &str) -> ErrorClass {
        let reply = graph_reply(StatusCode::from_u16(status).unwrap(), body.as_bytes(), None);
        classify_graph(&reply, &ThrottleSignal::default(), Idempotency::Idempotent)
    }

    fn graph_error(code: &str, message: &str) -> String {
        serde_json::json!({"error":{"code":code,"message":message,
            "innerError":{"date":"2025-02-13T10:17:05","request-id":"93b6","client-request-id":"e70c"}}})
        .to_string()
    }

    #[test]
    fn a_taken_upn_is_a_conflict() {
        let body = serde_json::json!({"error":{"code":"Request_BadRequest",
            "message":"Another object with the same value for property userPrincipalName already exists.",
            "details":[{"code":"ObjectConflict","message":"Another object with the same value for property userPrincipalName already exists.","target":"userPrincipalName"}],
            "innerError":{"date":"2025-02-13T10:17:05","request-id":"93b6","client-request-id":"e70c"}}})
        .to_string();
        let reply = graph_reply(StatusCode::BAD_REQUEST, body.as_bytes(), None);
        assert_eq!(reply.target.as_deref(), Some("userPrincipalName"));
        assert_eq!(reply.request_id.as_deref(), Some("93b6"));
        assert_eq!(graph(400, &body), ErrorClass::Conflict);
    }

    #[test]
    fn a_taken_proxy_address_is_a_conflict() {
        let body = graph_error(
            "Request_BadRequest",
            "Another object with the same value for property proxyAddresses already exists.",
        );
        assert_eq!(graph(400, &body), ErrorClass::Conflict);
    }

    #[test]
    fn a_sku_without_free_seats_is_no_seats() {
        let body = graph_error(
            "Request_BadRequest",
            "Subscription with SKU c7df2760-2c81-4ef7-b578-5b5392b571df does not have any available licenses.",
        );
        assert_eq!(graph(400, &body), ErrorClass::NoSeats);
    }

    #[test]
    fn removing_a_licence_the_user_lacks_is_already_done() {
        let body = graph_error(
            "Request_BadRequest",
            "User does not have a corresponding license.",
        );
        assert_eq!(graph(400, &body), ErrorClass::AlreadyDone);
    }

    #[test]
    fn adding_an_existing_member_is_already_done() {
        let body = graph_error(
            "Request_BadRequest",
            "One or more added object references already exist for the following modified properties: 'members'.",
        );
        assert_eq!(graph(400, &body), ErrorClass::AlreadyDone);
    }

    #[test]
    fn an_unknown_sku_is_permanent_and_keeps_the_text() {
        let body = graph_error(
            "Request_BadRequest",
            "License c7df2760-2c81-4ef7-b578-5b5392b571df does not correspond to a valid company License.",
        );
        match graph(400, &body) {
            ErrorClass::Permanent {
                status,
                code,
                message,
                request_id,
            } => {
                assert_eq!(status, 400);
                assert_eq!(code, "Request_BadRequest");
                assert!(message.contains("does not correspond to a valid company License"));
                assert_eq!(request_id.as_deref(), Some("93b6"));
            }
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_user_is_permanent_with_status_404() {
        let body = graph_error(
            "Request_ResourceNotFound",
            "Resource 'a@contoso.example' does not exist or one of its queried reference-property objects are not present.",
        );
        assert!(matches!(
            graph(404, &body),
            ErrorClass::Permanent { status: 404, .. }
        ));
    }

    #[test]
    fn a_directory_409_is_a_conflict() {
        let body = graph_error(
            "Request_MultipleObjectsWithSameKeyValue",
            "A conflicting object with one or more of the specified property values is present in the directory.",
        );
        assert_eq!(graph(409, &body), ErrorClass::Conflict);
    }

    #[test]
    fn a_429_is_throttled_with_its_retry_after() {
        let body = graph_error("TooManyRequests", "Please retry again later.");
        let reply = graph_reply(StatusCode::TOO_MANY_REQUESTS, body.as_bytes(), None);
        let throttle = ThrottleSignal {
            retry_after: Some(Duration::from_secs(10)),
            ..ThrottleSignal::default()
        };
        assert_eq!(
            classify_graph(&reply, &throttle, Idempotency::NotIdempotent),
            ErrorClass::Throttled {
                retry_after: Some(Duration::from_secs(10))
            }
        );
    }

    #[test]
    fn a_503_with_retry_after_is_throttled_and_without_it_transient() {
        let body = graph_error("serviceNotAvailable", "Service unavailable");
        let reply = graph_reply(StatusCode::SERVICE_UNAVAILABLE, body.as_bytes(), None);
        let asked = ThrottleSignal {
            retry_after: Some(Duration::from_secs(2)),
            ..ThrottleSignal::default()
        };
        assert!(matches!(
            classify_graph(&reply, &asked, Idempotency::Idempotent),
            ErrorClass::Throttled { .. }
        ));
        assert_eq!(
            classify_graph(&reply, &ThrottleSignal::default(), Idempotency::Idempotent),
            ErrorClass::Transient
        );
    }

    #[test]
    fn a_504_on_a_create_is_outcome_unknown() {
        let body = graph_error("GatewayTimeout", "Gateway timeout");
        let reply = graph_reply(StatusCode::GATEWAY_TIMEOUT, body.as_bytes(), None);
        assert_eq!(
            classify_graph(
                &reply,
                &ThrottleSignal::default(),
                Idempotency::NotIdempotent
            ),
            ErrorClass::OutcomeUnknown
        );
        assert_eq!(
            classify_graph(&reply, &ThrottleSignal::default(), Idempotency::Idempotent),
            ErrorClass::Transient
        );
    }

    #[test]
    fn an_expired_token_twice_is_configuration() {
        let body = graph_error(
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
        );
        assert_eq!(graph(401, &body), ErrorClass::Configuration);
    }

    #[test]
    fn an_error_body_that_is_not_json_still_has_a_class() {
        assert_eq!(
            graph(502, "<html>bad gateway</html>"),
            ErrorClass::Transient
        );
        assert!(matches!(
            graph(400, ""),
            ErrorClass::Permanent { status: 400, .. }
        ));
    }

    fn exchange(status: u16, exception: &str, text: &str) -> (ServiceReply, ErrorClass) {
        let body = serde_json::json!({"error":{"code": if status == 404 {"NotFound"} else {"BadRequest"},
            "message":"Error executing cmdlet",
            "details":[{"code":"Client","target":"","message":format!("Ex6F9304|{exception}|{text}")}],
            "innererror":{"message":"Error executing cmdlet","type":"Microsoft.Exchange.Admin.OData.Core.ODataServiceException","stacktrace":"",
              "internalexception":{"message":text,"type":exception,"stacktrace":""}}}})
        .to_string();
        let reply = exchange_reply(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            Some("r1".into()),
            None,
        );
        let class = classify_exchange(&reply, &ThrottleSignal::default(), Idempotency::Idempotent);
        (reply, class)
    }

    #[test]
    fn an_exchange_member_already_there_is_already_done() {
        let (reply, class) = exchange(
            400,
            "Microsoft.Exchange.Management.Tasks.MemberAlreadyExistsException",
            "The recipient \"a@contoso.example\" is already a member of the group \"sales\".",
        );
        assert_eq!(
            reply.exception_type.as_deref(),
            Some("MemberAlreadyExistsException")
        );
        assert_eq!(class, ErrorClass::AlreadyDone);
    }

    #[test]
    fn an_exchange_member_not_there_is_already_done() {
        let (_, class) = exchange(
            400,
            "Microsoft.Exchange.Management.Tasks.MemberNotFoundException",
            "The recipient \"a@contoso.example\" isn't a member of the group \"sales\".",
        );
        assert_eq!(class, ErrorClass::AlreadyDone);
    }

    #[test]
    fn an_exchange_object_that_exists_is_a_conflict() {
        let (_, class) = exchange(
            400,
            "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException",
            "The object 'sales' already exists.",
        );
        assert_eq!(class, ErrorClass::Conflict);
    }

    #[test]
    fn an_exchange_not_found_keeps_the_inner_text_not_the_generic_outer_message() {
        let (reply, class) = exchange(
            404,
            "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
            "The operation couldn't be performed because object 'sales@contoso.example' couldn't be found on 'AM0PR01A01DC001'.",
        );
        assert!(
            reply
                .message
                .starts_with("The operation couldn't be performed")
        );
        assert!(!reply.to_string().contains("Error executing cmdlet"));
        assert!(matches!(class, ErrorClass::Permanent { status: 404, .. }));
    }

    #[test]
    fn an_exchange_proxy_clash_is_a_conflict_by_its_text() {
        let (_, class) = exchange(
            400,
            "Microsoft.Exchange.Management.Tasks.RecipientTaskException",
            "The proxy address \"smtp:a@contoso.example\" is already being used by the proxy addresses or LegacyExchangeDN of \"b\". Please choose another proxy address.",
        );
        assert_eq!(class, ErrorClass::Conflict);
    }

    #[test]
    fn an_exchange_detail_in_json_form_is_understood() {
        let detail = r#"{"Message":"The object 'sales' already exists.","TypeName":"Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException"}"#;
        let body = serde_json::json!({"error":{"code":"BadRequest","message":"Invalid Operation",
            "details":[{"code":"Client","target":"","message":detail}]}})
        .to_string();
        let reply = exchange_reply(StatusCode::BAD_REQUEST, body.as_bytes(), None, None);
        assert_eq!(reply.message, "The object 'sales' already exists.");
        assert_eq!(
            classify_exchange(
                &reply,
                &ThrottleSignal::default(),
                Idempotency::NotIdempotent
            ),
            ErrorClass::Conflict
        );
    }

    #[test]
    fn an_exchange_403_with_a_nul_body_is_configuration() {
        let reply = exchange_reply(StatusCode::FORBIDDEN, &[0, 0, 0], None, None);
        assert_eq!(
            classify_exchange(&reply, &ThrottleSignal::default(), Idempotency::Idempotent),
            ErrorClass::Configuration
        );
    }

    #[test]
    fn a_wrong_client_secret_is_configuration() {
        let body = serde_json::json!({"error":"invalid_client",
            "error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'x'.\r\nTrace ID: 255d\r\nCorrelation ID: fb3d\r\nTimestamp: 2016-01-09 02:02:12Z",
            "error_codes":[7000215],"timestamp":"2016-01-09 02:02:12Z","trace_id":"255d","correlation_id":"fb3d",
            "error_uri":"https://login.microsoftonline.com/error?code=7000215"})
        .to_string();
        let reply = token_reply(StatusCode::UNAUTHORIZED, body.as_bytes());
        assert_eq!(reply.code, "invalid_client");
        assert!(reply.message.starts_with("AADSTS7000215"));
        assert!(!reply.message.contains("Trace ID"));
        assert_eq!(
            classify_token(&reply, &ThrottleSignal::default()),
            ErrorClass::Configuration
        );
    }

    #[test]
    fn an_unknown_tenant_is_configuration_and_a_token_outage_is_transient() {
        let body = serde_json::json!({"error":"invalid_request","error_description":"AADSTS90002: Tenant 'x' not found."}).to_string();
        let reply = token_reply(StatusCode::BAD_REQUEST, body.as_bytes());
        assert_eq!(
            classify_token(&reply, &ThrottleSignal::default()),
            ErrorClass::Configuration
        );
        let outage = token_reply(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(
            classify_token(&outage, &ThrottleSignal::default()),
            ErrorClass::Transient
        );
    }

    #[test]
    fn the_error_message_carries_both_ids_and_the_class() {
        let reply = graph_reply(
            StatusCode::BAD_REQUEST,
            graph_error(
                "Request_BadRequest",
                "Property userPrincipalName is invalid.",
            )
            .as_bytes(),
            Some("req-1".into()),
        );
        let class = classify_graph(&reply, &ThrottleSignal::default(), Idempotency::Idempotent);
        let id = Uuid::nil();
        let error =
            OnlineError::from_reply("create user", class, reply, ThrottleSignal::default(), id);
        let text = error.to_string();
        assert!(text.starts_with("create user failed (permanent): HTTP 400 Request_BadRequest"));
        assert!(text.contains("request-id req-1"));
        assert!(text.contains(&format!("client-request-id {id}")));
    }
}
