//! The identity write budget as a token bucket.

mod client;

use client::Session;
use moss_emulator::{Emulator, Seed, ThrottlingSettings};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn the_default_seed_throttles_with_microsofts_figures() {
    let seed = Seed::default();
    assert!(seed.throttling.enabled);
    assert_eq!(seed.throttling.write_limit, 3000);
    assert_eq!(seed.throttling.write_window_secs, 150);
    // tests opt in; start_for_tests leaves it off
    assert!(!Seed::for_tests().throttling.enabled);
}

#[tokio::test]
async fn writes_past_the_budget_get_429_with_retry_after_and_throttle_headers() {
    let session = Session::with(Emulator::start_for_tests().await.unwrap()).await;
    session.emulator.set_throttling(ThrottlingSettings {
        enabled: true,
        write_limit: 5,
        write_window_secs: 1,
        ..ThrottlingSettings::default()
    });
    let id = session.create_user("busy", None).await;
    let mut statuses = Vec::new();
    let mut last = None;
    for i in 0..8 {
        let answer = session
            .patch(
                &format!("/users/{id}"),
                json!({"jobTitle": format!("t{i}")}),
            )
            .await;
        statuses.push(answer.status);
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            last = Some(answer);
        } else if answer.status == StatusCode::NO_CONTENT && i == 3 {
            assert!(
                answer.header("x-ms-throttle-limit-percentage").is_some(),
                "near the limit, the percentage is sent"
            );
        }
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let throttled = last.unwrap();
    let retry_after: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(throttled.error_code(), "TooManyRequests");
    assert_eq!(throttled.body["error"]["innerError"]["status"], "429");
    let tenant = session.emulator.tenant();
    assert_eq!(
        throttled.header("x-ms-throttle-scope").unwrap(),
        format!(
            "Tenant_Application/Write/{}/{}",
            tenant.client_id, tenant.tenant_id
        )
    );
    assert_eq!(
        throttled.header("x-ms-throttle-information"),
        Some("WriteLimitExceeded")
    );
    // reads are not writes: they still pass
    assert_eq!(
        session.get(&format!("/users/{id}")).await.status,
        StatusCode::OK
    );
    // after Retry-After the budget has refilled
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(
        session
            .patch(&format!("/users/{id}"), json!({"jobTitle": "after"}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn resource_units_are_reported_per_call() {
    let session = Session::start().await;
    assert_eq!(
        session.get("/users").await.header("x-ms-resource-unit"),
        Some("2")
    );
    assert_eq!(
        session
            .get("/users?$select=id")
            .await
            .header("x-ms-resource-unit"),
        Some("1")
    );
    assert_eq!(
        session
            .get("/subscribedSkus")
            .await
            .header("x-ms-resource-unit"),
        Some("3")
    );
}
