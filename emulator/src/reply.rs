//! What a handler answers, before the server adds the envelope headers; and Graph's error body.

use axum::http::StatusCode;
use serde_json::{Value, json};

/// The per-request facts every handler may need to write its answer.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    /// The server-made GUID sent back as `request-id`.
    pub(crate) request_id: String,
    /// The caller's `client-request-id`, or `request_id` when it sent none.
    pub(crate) client_request_id: String,
    /// `scheme://host:port` as the caller addressed us, for absolute links.
    pub(crate) base_url: String,
    /// When the request arrived.
    pub(crate) now: chrono::DateTime<chrono::Utc>,
}

impl Ctx {
    /// `innerError.date`: Graph writes it without a timezone or fraction.
    pub(crate) fn graph_date(&self) -> String {
        self.now.format("%Y-%m-%dT%H:%M:%S").to_string()
    }

    /// The absolute Graph base, e.g. `http://127.0.0.1:8490/v1.0`.
    pub(crate) fn graph_base(&self) -> String {
        format!("{}/v1.0", self.base_url)
    }
}

/// The body of a reply.
#[derive(Clone, Debug)]
pub(crate) enum ReplyBody {
    /// No body (204, or an Exchange 401).
    Empty,
    /// A Graph or Exchange JSON document.
    Json(Value),
    /// A token endpoint answer (plain `application/json`).
    PlainJson(Value),
    /// Raw bytes with a content type (the NUL-byte 403 of Exchange).
    Bytes(Vec<u8>, &'static str),
}

/// A handler's answer.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: ReplyBody,
}

impl Reply {
    /// A JSON answer with a status.
    pub(crate) fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Json(body),
        }
    }

    /// `200` with a JSON body.
    pub(crate) fn ok(body: Value) -> Reply {
        Reply::json(StatusCode::OK, body)
    }

    /// An empty answer (204 and friends).
    pub(crate) fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Empty,
        }
    }

    /// Adds a header.
    pub(crate) fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The JSON body, if any (for `$batch` items and tests).
    pub(crate) fn json_body(&self) -> Option<&Value> {
        match &self.body {
            ReplyBody::Json(v) | ReplyBody::PlainJson(v) => Some(v),
            _ => None,
        }
    }
}

/// A Graph error being built: `{"error":{code,message,details?,innerError}}`.
#[derive(Debug)]
pub(crate) struct GraphError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Vec<Value>>,
}

impl GraphError {
    /// A Graph error with a status, an `error.code` and the verbatim message.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// `400 Request_BadRequest`, the directory's generic validation error.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        GraphError::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    /// `404 Request_ResourceNotFound` for the key as given in the path.
    pub(crate) fn not_found(key: &str) -> Self {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    /// `403 Authorization_RequestDenied`.
    pub(crate) fn forbidden() -> Self {
        GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    /// Adds `details[]`.
    pub(crate) fn with_details(mut self, details: Vec<Value>) -> Self {
        self.details = Some(details);
        self
    }

    /// The finished reply, with `innerError` filled from the request.
    pub(crate) fn reply(self, ctx: &Ctx) -> Reply {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
        });
        if let Some(details) = self.details {
            error["details"] = Value::Array(details);
        }
        error["innerError"] = json!({
            "date": ctx.graph_date(),
            "request-id": ctx.request_id,
            "client-request-id": ctx.client_request_id,
        });
        Reply::json(self.status, json!({ "error": error }))
    }
}

/// Graph's 429 body and headers (§7.1); the scope and reason go into the throttle headers.
pub(crate) fn too_many_requests(
    ctx: &Ctx,
    retry_after_secs: u64,
    scope: &str,
    information: &str,
) -> Reply {
    Reply::json(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"error": {
            "code": "TooManyRequests",
            "message": "Please retry again later.",
            "innerError": {
                "code": "429",
                "date": ctx.graph_date(),
                "message": "Please retry after",
                "request-id": ctx.request_id,
                "client-request-id": ctx.client_request_id,
                "status": "429",
            }
        }}),
    )
    .with_header("Retry-After", retry_after_secs.to_string())
    .with_header("x-ms-throttle-scope", scope)
    .with_header("x-ms-throttle-information", information)
}

/// The default Graph body for an injected failure status.
pub(crate) fn injected_failure(ctx: &Ctx, status: StatusCode) -> Reply {
    match status.as_u16() {
        503 => GraphError::new(status, "serviceNotAvailable", "Service unavailable.").reply(ctx),
        504 => GraphError::new(
            status,
            "GatewayTimeout",
            "The gateway did not receive a response in time.",
        )
        .reply(ctx),
        500 => GraphError::new(status, "UnknownError", "").reply(ctx),
        _ => GraphError::new(status, "UnknownError", "Injected failure.").reply(ctx),
    }
}
