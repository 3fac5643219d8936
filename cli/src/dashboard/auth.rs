//! Who may use the dashboard. With no token (only allowed on loopback) anyone who can reach the
//! loopback address can; with a token, every request must carry it: `Authorization: Bearer
//! TOKEN`, or basic auth with the token as password (the user name then names the operator in
//! the outcomes stream). Actions also need the `X-Moss-Action` header, which a form on another
//! site cannot send: a browser holding basic-auth credentials is not tricked into replaying.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use secrecy::ExposeSecret;

use super::Shared;

/// The header every action must carry.
pub(crate) const ACTION_HEADER: &str = "x-moss-action";

/// Who made a request, as written into the outcomes stream.
#[derive(Debug, Clone)]
pub(crate) struct Operator(pub(crate) String);

pub(crate) async fn require(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let operator = match &shared.settings.token {
        None => Operator(format!("local operator ({})", peer.ip())),
        Some(token) => match presented(request.headers(), token.expose_secret()) {
            Presented::Valid(name) => Operator(name),
            Presented::Missing => {
                return refuse(
                    "this dashboard needs a token: basic auth with the token as password, or Authorization: Bearer TOKEN",
                );
            }
            Presented::Wrong => {
                tracing::warn!(peer = %peer, "the dashboard refused a request with a wrong token");
                return refuse("the dashboard token is not right");
            }
        },
    };
    if request.method() == Method::POST && !request.headers().contains_key(ACTION_HEADER) {
        return (
            StatusCode::FORBIDDEN,
            "actions are taken from the dashboard's own page (the X-Moss-Action header is missing); nothing was changed",
        )
            .into_response();
    }
    request.extensions_mut().insert(operator);
    next.run(request).await
}

fn refuse(message: &'static str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"moss dashboard\", charset=\"UTF-8\"",
        )],
        message,
    )
        .into_response()
}

#[derive(Debug, PartialEq, Eq)]
enum Presented {
    Valid(String),
    Missing,
    Wrong,
}

fn presented(headers: &HeaderMap, token: &str) -> Presented {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return Presented::Missing;
    };
    let value = value.trim();
    if let Some(bearer) = strip_scheme(value, "bearer") {
        return if same(bearer.trim(), token) {
            Presented::Valid("bearer token holder".to_owned())
        } else {
            Presented::Wrong
        };
    }
    if let Some(basic) = strip_scheme(value, "basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let Some(decoded) = decoded else {
            return Presented::Wrong;
        };
        let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
        return if same(password, token) {
            let user: String = user.chars().filter(|c| !c.is_control()).take(64).collect();
            Presented::Valid(if user.is_empty() {
                "token holder".to_owned()
            } else {
                user
            })
        } else {
            Presented::Wrong
        };
    }
    Presented::Wrong
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// Compares without stopping at the first difference, so the time taken does not tell how much
/// of a guess was right.
fn same(given: &str, token: &str) -> bool {
    let (given, token) = (given.as_bytes(), token.as_bytes());
    let mut difference = u8::from(given.len() != token.len());
    for (index, byte) in token.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(0);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn bearer_and_basic_tokens_are_checked_and_name_the_operator() {
        assert_eq!(presented(&HeaderMap::new(), "s3cret"), Presented::Missing);
        assert_eq!(
            presented(&with("Bearer s3cret"), "s3cret"),
            Presented::Valid("bearer token holder".into())
        );
        assert_eq!(presented(&with("Bearer s3cre"), "s3cret"), Presented::Wrong);
        assert_eq!(
            presented(&with("Bearer s3cretX"), "s3cret"),
            Presented::Wrong
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("ana:s3cret");
        assert_eq!(
            presented(&with(&format!("Basic {basic}")), "s3cret"),
            Presented::Valid("ana".into())
        );
        let wrong = base64::engine::general_purpose::STANDARD.encode("ana:guess");
        assert_eq!(
            presented(&with(&format!("basic {wrong}")), "s3cret"),
            Presented::Wrong
        );
        assert_eq!(presented(&with("Digest x"), "s3cret"), Presented::Wrong);
    }
}
