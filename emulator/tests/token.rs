//! The token endpoint and bearer checks.

mod client;

use client::{Session, form, token_request};
use moss_emulator::Emulator;
use reqwest::StatusCode;

fn assert_aadsts(answer: &client::Answer, status: StatusCode, error: &str, code: u64) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.body["error"], error);
    assert_eq!(answer.body["error_codes"][0], code);
    let description = answer.body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(description.contains("\r\nTrace ID: "));
    assert!(description.contains("\r\nCorrelation ID: "));
    assert!(description.contains("\r\nTimestamp: "));
    for field in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(answer.body[field].is_string(), "{field} missing");
    }
    assert_eq!(
        answer.body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
}

#[tokio::test]
async fn a_good_secret_gets_a_bearer_token_with_integer_lifetimes() {
    let emulator = Emulator::start_for_tests().await.unwrap();
    let tenant = emulator.tenant();
    let http = reqwest::Client::new();
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &tenant.client_id.to_string()),
        ("client_secret", &tenant.client_secret),
        ("scope", "https://graph.microsoft.com/.default"),
    ]);
    // a verified domain works in place of the tenant id
    let answer = token_request(&http, &emulator, "contoso.onmicrosoft.com", body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["token_type"], "Bearer");
    assert!(answer.body["expires_in"].is_u64());
    assert!(answer.body["ext_expires_in"].is_u64());
    assert!(
        answer.body["access_token"]
            .as_str()
            .unwrap()
            .starts_with("ey")
    );
    assert!(answer.body.get("refresh_token").is_none());
    emulator.shutdown().await;
}

#[tokio::test]
async fn token_errors_have_the_aadsts_shape() {
    let emulator = Emulator::start_for_tests().await.unwrap();
    let tenant = emulator.tenant();
    let http = reqwest::Client::new();
    let tid = tenant.tenant_id.to_string();
    let client_id = tenant.client_id.to_string();
    let good = |secret: &str, scope: &str, client: &str| {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
            ("scope", scope),
        ])
    };
    let scope = "https://graph.microsoft.com/.default";

    let bad_secret = token_request(
        &http,
        &emulator,
        &tid,
        good("wrong-secret", scope, &client_id),
    )
    .await;
    assert_aadsts(
        &bad_secret,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000215,
    );
    assert!(
        bad_secret.body["error_description"]
            .as_str()
            .unwrap()
            .contains("Invalid client secret provided.")
    );
    assert!(!bad_secret.body.to_string().contains(&tenant.client_secret));

    let unknown_app = token_request(
        &http,
        &emulator,
        &tid,
        good(
            &tenant.client_secret,
            scope,
            "11111111-2222-3333-4444-555555555555",
        ),
    )
    .await;
    assert_aadsts(
        &unknown_app,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
    );

    let unknown_tenant = token_request(
        &http,
        &emulator,
        "99999999-9999-9999-9999-999999999999",
        good(&tenant.client_secret, scope, &client_id),
    )
    .await;
    assert_aadsts(
        &unknown_tenant,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
    );

    let no_default = token_request(
        &http,
        &emulator,
        &tid,
        good(
            &tenant.client_secret,
            "https://graph.microsoft.com/User.Read.All",
            &client_id,
        ),
    )
    .await;
    assert_aadsts(
        &no_default,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        1002012,
    );

    let unknown_resource = token_request(
        &http,
        &emulator,
        &tid,
        good(
            &tenant.client_secret,
            "https://example.com/.default",
            &client_id,
        ),
    )
    .await;
    assert_aadsts(
        &unknown_resource,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        70011,
    );

    let missing = token_request(&http, &emulator, &tid, form(&[("client_id", &client_id)])).await;
    assert_aadsts(&missing, StatusCode::BAD_REQUEST, "invalid_request", 900144);
    emulator.shutdown().await;
}

#[tokio::test]
async fn graph_calls_without_a_valid_token_get_invalid_authentication_token() {
    let session = Session::start().await;
    let url = format!("{}/v1.0/users", session.emulator.base_url());
    let none = client::answer(session.http.get(&url).send().await.unwrap()).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.error_code(), "InvalidAuthenticationToken");
    assert_eq!(none.error_message(), "Access token is empty.");
    assert!(none.header("request-id").is_some());

    let garbage = client::answer(
        session
            .http
            .get(&url)
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(garbage.error_code(), "InvalidAuthenticationToken");

    session.emulator.expire_tokens();
    let expired = session.get("/users").await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        expired.error_message(),
        "Lifetime validation failed, the token is expired."
    );

    // a fresh token works again
    let fresh = Session::with_token_refresh(&session).await;
    assert_eq!(fresh.status, StatusCode::OK);
}

#[tokio::test]
async fn an_exchange_token_is_not_accepted_by_graph() {
    let session = Session::start().await;
    let exchange_token = client::token_for(
        &session.http,
        &session.emulator,
        "https://outlook.office365.com/.default",
    )
    .await;
    let answer = client::answer(
        session
            .http
            .get(format!("{}/v1.0/users", session.emulator.base_url()))
            .bearer_auth(exchange_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.error_message(),
        "Access token validation failure. Invalid audience."
    );
}

#[tokio::test]
async fn enforced_roles_answer_403_insufficient_privileges() {
    let mut seed = moss_emulator::Seed::for_tests();
    seed.enforce_roles = true;
    seed.apps[0].roles = Some(vec!["User.ReadWrite.All".into()]);
    let session = Session::with(Emulator::start_for_tests_with(seed).await.unwrap()).await;
    let id = session.create_user("rolecheck", Some("US")).await;
    // User.ReadWrite.All alone may not reset passwords
    let answer = session
        .patch(
            &format!("/users/{id}"),
            serde_json::json!({"passwordProfile": {"password": "N3w-Passw0rd!x"}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.error_code(), "Authorization_RequestDenied");
    assert_eq!(
        answer.error_message(),
        "Insufficient privileges to complete the operation."
    );
    let skus = session.get("/subscribedSkus").await;
    assert_eq!(skus.status, StatusCode::FORBIDDEN);
}
