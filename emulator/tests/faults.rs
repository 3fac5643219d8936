//! Fault plans, the request log and the /_emulator controls.

mod client;

use client::Session;
use moss_emulator::{AfterCommit, FaultAction, FaultPlan};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn user_body(alias: &str) -> Value {
    json!({"accountEnabled": true, "displayName": alias, "mailNickname": alias,
           "userPrincipalName": format!("{alias}@contoso.com"),
           "passwordProfile": {"password": "xWwvJ]6NMw+bWH-d"}})
}

#[tokio::test]
async fn a_status_fault_answers_without_touching_state() {
    let session = Session::start().await;
    session.emulator.install_fault(FaultPlan {
        method: Some("POST".into()),
        path: "/v1.0/users".into(),
        cmdlet: None,
        action: FaultAction::Status {
            status: 503,
            retry_after: Some("2".into()),
            body: None,
        },
        count: Some(1),
        probability: None,
    });
    let failed = session.post("/users", user_body("faulty")).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed.header("retry-after"), Some("2"));
    assert_eq!(failed.error_code(), "serviceNotAvailable");
    assert!(session.emulator.user("faulty@contoso.com").is_none());
    // the fault was counted once
    assert_eq!(
        session.post("/users", user_body("faulty")).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn an_injected_429_carries_the_throttle_headers() {
    let session = Session::start().await;
    session.emulator.install_fault(FaultPlan {
        method: None,
        path: "/v1.0/users/*".into(),
        cmdlet: None,
        action: FaultAction::Status {
            status: 429,
            retry_after: Some("7".into()),
            body: None,
        },
        count: None,
        probability: None,
    });
    let throttled = session.get("/users/someone%40contoso.com").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.header("retry-after"), Some("7"));
    assert_eq!(throttled.error_code(), "TooManyRequests");
    assert_eq!(throttled.error_message(), "Please retry again later.");
    assert!(throttled.header("x-ms-throttle-scope").is_some());
    assert!(throttled.header("x-ms-throttle-information").is_some());
    assert_eq!(session.get("/users").await.status, StatusCode::OK);
}

#[tokio::test]
async fn commit_then_fail_applies_the_write_and_the_retry_meets_it() {
    let session = Session::start().await;
    session.emulator.install_fault(FaultPlan {
        method: Some("POST".into()),
        path: "/v1.0/users".into(),
        cmdlet: None,
        action: FaultAction::CommitThenFail {
            then: AfterCommit::Status {
                status: 504,
                retry_after: None,
            },
        },
        count: Some(1),
        probability: None,
    });
    let lost = session
        .graph_with(
            reqwest::Method::POST,
            "/users",
            Some(user_body("twice")),
            &[("client-request-id", "11111111-0000-4000-8000-000000000000")],
        )
        .await;
    assert_eq!(lost.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(session.emulator.user("twice@contoso.com").is_some());
    let retry = session.post("/users", user_body("twice")).await;
    assert_eq!(
        retry.error_message(),
        "Another object with the same value for property userPrincipalName already exists."
    );

    let writes = session.emulator.writes();
    let first = writes
        .iter()
        .find(|w| w.client_request_id.as_deref() == Some("11111111-0000-4000-8000-000000000000"))
        .unwrap();
    assert!(first.committed);
    assert_eq!(first.status, Some(504));
    assert_eq!(first.fault.as_deref(), Some("commit_then_fail"));
    assert!(!first.request_id.is_empty());
}

#[tokio::test]
async fn drop_faults_close_the_connection_unanswered() {
    let session = Session::start().await;
    let id = session.create_user("dropme", None).await;
    session.emulator.install_fault(FaultPlan {
        method: Some("DELETE".into()),
        path: "/v1.0/users/*".into(),
        cmdlet: None,
        action: FaultAction::CommitThenFail {
            then: AfterCommit::Drop,
        },
        count: Some(1),
        probability: None,
    });
    let error = session
        .http
        .delete(format!("{}/v1.0/users/{id}", session.emulator.base_url()))
        .bearer_auth(&session.token)
        .send()
        .await;
    assert!(
        error.is_err(),
        "expected a dropped connection, got {error:?}"
    );
    // committed: the retry meets its own delete
    assert_eq!(
        session.delete(&format!("/users/{id}")).await.status,
        StatusCode::NOT_FOUND
    );

    session.emulator.install_fault(FaultPlan {
        method: Some("GET".into()),
        path: "/v1.0/subscribedSkus".into(),
        cmdlet: None,
        action: FaultAction::Drop,
        count: Some(1),
        probability: None,
    });
    let url = format!("{}/v1.0/subscribedSkus", session.emulator.base_url());
    assert!(
        session
            .http
            .get(&url)
            .bearer_auth(&session.token)
            .send()
            .await
            .is_err()
    );
    assert_eq!(session.get("/subscribedSkus").await.status, StatusCode::OK);
}

#[tokio::test]
async fn latency_faults_delay_the_answer() {
    let session = Session::start().await;
    session.emulator.install_fault(FaultPlan {
        method: None,
        path: "/v1.0/users".into(),
        cmdlet: None,
        action: FaultAction::Latency { ms: 300 },
        count: Some(1),
        probability: None,
    });
    let started = std::time::Instant::now();
    assert_eq!(session.get("/users").await.status, StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

#[tokio::test]
async fn the_emulator_endpoints_control_tenant_faults_log_and_reset() {
    let session = Session::start().await;
    let base = session.emulator.base_url();
    let http = &session.http;
    let tenant: Value = http
        .get(format!("{base}/_emulator/tenant"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        tenant["tenant_id"],
        session.emulator.tenant().tenant_id.to_string()
    );
    assert_eq!(
        tenant["client_secret"],
        session.emulator.tenant().client_secret
    );
    assert!(
        tenant["domains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["verified"] == true)
    );
    assert!(
        tenant["skus"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["prepaid_enabled"].as_u64() > Some(0))
    );

    // a new verified domain takes UPNs
    let added = http
        .post(format!("{base}/_emulator/domains"))
        .header("Content-Type", "application/json")
        .body(r#"{"name":"northwind.example"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    let mut body = user_body("nw");
    body["userPrincipalName"] = json!("nw@northwind.example");
    assert_eq!(
        session.post("/users", body).await.status,
        StatusCode::CREATED
    );

    let units = http
        .patch(format!("{base}/_emulator/skus"))
        .body(r#"{"sku_part_number":"EMS","units":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(units.status(), StatusCode::OK);
    assert_eq!(
        session
            .emulator
            .tenant()
            .skus
            .iter()
            .find(|s| s.sku_part_number == "EMS")
            .unwrap()
            .prepaid_enabled,
        1
    );

    let plan = r#"{"method":"PATCH","path":"/v1.0/users/*","action":{"kind":"status","status":500},"count":3}"#;
    let installed = http
        .post(format!("{base}/_emulator/faults"))
        .body(plan)
        .send()
        .await
        .unwrap();
    assert_eq!(installed.status(), StatusCode::CREATED);
    let listed: Value = http
        .get(format!("{base}/_emulator/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["remaining"], 3);
    let bad_plan = http
        .post(format!("{base}/_emulator/faults"))
        .body(r#"{"path":"/x","action":{"kind":"explode"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_plan.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        http.delete(format!("{base}/_emulator/faults"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(session.emulator.faults().is_empty());

    let log: Value = http
        .get(format!("{base}/_emulator/requests?writes=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/v1.0/users")
        .unwrap();
    for field in [
        "method",
        "path",
        "status",
        "request_id",
        "time",
        "committed",
    ] {
        assert!(!entry[field].is_null(), "{field} missing in {entry}");
    }

    let state: Value = http
        .get(format!("{base}/_emulator/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userPrincipalName"] == "nw@northwind.example")
        .unwrap();
    assert_eq!(user["accountEnabled"], true);
    assert!(user["_emulator"]["has_password"].as_bool().unwrap());
    assert!(
        !state.to_string().contains("xWwvJ]6NMw+bWH-d"),
        "passwords never appear in the state"
    );

    assert_eq!(
        http.post(format!("{base}/_emulator/reset"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(session.emulator.state().users.is_empty());
    assert!(session.emulator.requests().is_empty());
    // tokens survive a reset
    assert_eq!(session.get("/users").await.status, StatusCode::OK);
}
