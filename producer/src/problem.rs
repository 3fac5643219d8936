//! RFC 9457 problem details: the one shape every ingest error is answered in, so that a hook
//! can show an administrator which field was wrong and why.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One schema violation, as the ingest reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProblemViolation {
    /// RFC 6901 pointer into the request body, e.g. `/data/online_account/upn`.
    pub pointer: String,
    /// The rule that was broken, a short stable name such as `upn.format` or `required`.
    pub rule: String,
    /// What is wrong, in words.
    pub detail: String,
}

/// An `application/problem+json` body.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem; stable, so clients can branch on it.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A short summary that does not change from occurrence to occurrence.
    pub title: &'static str,
    /// The HTTP status, repeated in the body as RFC 9457 allows.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// Every schema violation found, when the problem is invalid input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemViolation>,
}

impl Problem {
    /// The body did not decode or broke the event schema.
    pub fn invalid_event(detail: String, errors: Vec<ProblemViolation>) -> Problem {
        Problem {
            kind: "https://moss.dev/problems/invalid-event",
            title: "The event is not valid",
            status: StatusCode::BAD_REQUEST.as_u16(),
            detail,
            errors,
        }
    }

    /// The body is larger than the ingest accepts.
    pub fn too_large(limit: usize) -> Problem {
        Problem {
            kind: "https://moss.dev/problems/too-large",
            title: "The request body is too large",
            status: StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
            detail: format!(
                "the ingest accepts at most {limit} bytes per request; send fewer events per batch"
            ),
            errors: Vec::new(),
        }
    }

    /// The content type is not one the ingest understands.
    pub fn unsupported_media_type(got: &str) -> Problem {
        Problem {
            kind: "https://moss.dev/problems/unsupported-media-type",
            title: "Unsupported content type",
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE.as_u16(),
            detail: format!(
                "content type {got:?} is not accepted; send application/cloudevents+json for one event or application/cloudevents-batch+json for a batch"
            ),
            errors: Vec::new(),
        }
    }

    /// The bearer token is missing or wrong.
    pub fn unauthorized() -> Problem {
        Problem {
            kind: "https://moss.dev/problems/unauthorized",
            title: "Authentication required",
            status: StatusCode::UNAUTHORIZED.as_u16(),
            detail: "send the ingest token as 'Authorization: Bearer <token>'".to_owned(),
            errors: Vec::new(),
        }
    }

    /// The outbox could not store the events durably; nothing was stored.
    pub fn not_stored(cause: &str) -> Problem {
        Problem {
            kind: "https://moss.dev/problems/not-stored",
            title: "The events could not be stored",
            status: StatusCode::SERVICE_UNAVAILABLE.as_u16(),
            detail: format!("nothing was stored ({cause}); retry later"),
            errors: Vec::new(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"moss-ingest\""),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
