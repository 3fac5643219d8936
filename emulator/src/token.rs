//! The identity platform's v2.0 token endpoint, client-credentials grant only (§1).

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::reply::{Reply, ReplyBody};
use crate::world::{ALL_ROLES, Audience, IssuedToken, World};

/// An AADSTS error in the identity platform's shape.
fn aadsts(status: StatusCode, error: &str, code: u32, text: &str, correlation_id: &str) -> Reply {
    let now = chrono::Utc::now();
    let timestamp = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let trace_id = Uuid::new_v4().to_string();
    let description = format!(
        "AADSTS{code}: {text}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
    );
    Reply {
        status,
        headers: Vec::new(),
        body: ReplyBody::PlainJson(json!({
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })),
    }
}

/// Answers `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) fn issue(
    world: &mut World,
    tenant: &str,
    form: &[(String, String)],
    correlation_id: &str,
) -> Reply {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let bad = |error: &str, code: u32, text: &str| {
        aadsts(StatusCode::BAD_REQUEST, error, code, text, correlation_id)
    };

    let tenant_known = tenant
        .parse::<Uuid>()
        .is_ok_and(|id| id == world.directory.tenant_id)
        || world.directory.domain_verified(tenant);
    if !tenant_known {
        return bad(
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    }
    let Some(grant_type) = field("grant_type") else {
        return bad(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    };
    if grant_type != "client_credentials" {
        return bad(
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant_type}'."),
        );
    }
    let Some(client_id) = field("client_id") else {
        return bad(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(scope) = field("scope") else {
        return bad(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    let app = client_id
        .parse::<Uuid>()
        .ok()
        .and_then(|id| world.seed.apps.iter().find(|a| a.client_id == id));
    let Some(app) = app else {
        return aadsts(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                world.directory.display_name
            ),
            correlation_id,
        );
    };
    let Some(secret) = field("client_secret") else {
        return aadsts(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            correlation_id,
        );
    };
    if secret != app.client_secret.expose() {
        return aadsts(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
            correlation_id,
        );
    }
    let Some(resource) = scope.trim().strip_suffix("/.default") else {
        return bad(
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    let audience = match resource.trim_end_matches('/') {
        "https://graph.microsoft.com" | "00000003-0000-0000-c000-000000000000" => Audience::Graph,
        "https://outlook.office365.com"
        | "https://outlook.office.com"
        | "00000002-0000-0ff1-ce00-000000000000" => Audience::Exchange,
        _ => {
            return bad(
                "invalid_scope",
                70011,
                &format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            );
        }
    };
    let roles: Vec<String> = match &app.roles {
        Some(roles) => roles.clone(),
        None => ALL_ROLES.iter().map(|r| (*r).to_owned()).collect(),
    };
    let lifetime = world.seed.token_lifetime_secs;
    let app_id = app.client_id;
    let token = unsigned_jwt(
        world.directory.tenant_id,
        app_id,
        audience,
        &roles,
        lifetime,
    );
    world.tokens.insert(
        token.clone(),
        IssuedToken {
            app_id,
            audience,
            expires_at: Instant::now() + Duration::from_secs(lifetime),
            roles,
        },
    );
    Reply {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: ReplyBody::PlainJson(json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        })),
    }
}

/// An unsigned JWT carrying the claims Graph tokens carry; clients must treat it as opaque.
fn unsigned_jwt(
    tenant_id: Uuid,
    app_id: Uuid,
    audience: Audience,
    roles: &[String],
    lifetime: u64,
) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = chrono::Utc::now().timestamp();
    let aud = match audience {
        Audience::Graph => "https://graph.microsoft.com",
        Audience::Exchange => "https://outlook.office365.com",
    };
    let header = json!({"typ": "JWT", "alg": "none"});
    let claims: Value = json!({
        "aud": aud, "iss": format!("https://sts.windows.net/{tenant_id}/"),
        "iat": now, "nbf": now, "exp": now + i64::try_from(lifetime).unwrap_or(3599),
        "appid": app_id, "azp": app_id, "tid": tenant_id, "roles": roles,
        "uti": Uuid::new_v4(), "ver": "1.0",
    });
    format!(
        "{}.{}.",
        engine.encode(header.to_string()),
        engine.encode(claims.to_string())
    )
}
