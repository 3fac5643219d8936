//! Retry-After, as the emulator's fault plans send it.

use std::time::{Duration, Instant};

use chrono::Utc;
use moss_emulator::{FaultAction, FaultPlan};
use moss_online::{ErrorClass, UserKey, UserProperty};

use crate::tenant::TestTenant;

fn throttle_reads(tenant: &TestTenant, retry_after: &str, count: Option<u32>) {
    tenant.emulator.install_fault(FaultPlan {
        method: Some("GET".into()),
        path: "/v1.0/users/*".into(),
        cmdlet: None,
        action: FaultAction::Status {
            status: 429,
            retry_after: Some(retry_after.to_owned()),
            body: None,
        },
        count,
        probability: None,
    });
}

#[tokio::test]
async fn a_429_is_waited_out_for_its_retry_after_and_retried_under_one_client_request_id() {
    let tenant = TestTenant::start().await;
    throttle_reads(&tenant, "1", Some(1));
    let key = UserKey::Upn(tenant.upn("patient"));
    let started = Instant::now();
    assert_eq!(
        tenant
            .client
            .get_user(&key, &[UserProperty::Id])
            .await
            .expect("read"),
        None
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );

    let attempts: Vec<_> = tenant
        .emulator
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/v1.0/users/"))
        .collect();
    assert_eq!(
        attempts
            .iter()
            .map(|request| request.status)
            .collect::<Vec<_>>(),
        vec![Some(429), Some(404)]
    );
    assert!(attempts[0].client_request_id.is_some());
    assert_eq!(attempts[0].client_request_id, attempts[1].client_request_id);
    assert_ne!(attempts[0].request_id, attempts[1].request_id);
}

#[tokio::test]
async fn a_retry_after_given_as_an_http_date_is_obeyed() {
    let tenant = TestTenant::start().await;
    let at = (Utc::now() + chrono::Duration::seconds(2))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    throttle_reads(&tenant, &at, Some(1));
    let key = UserKey::Upn(tenant.upn("dated"));
    let started = Instant::now();
    assert_eq!(
        tenant
            .client
            .get_user(&key, &[UserProperty::Id])
            .await
            .expect("read"),
        None
    );
    // The date has whole seconds, so at least one full second remains of the two.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_retry_after_longer_than_the_client_waits_goes_back_to_the_caller() {
    let tenant = TestTenant::start().await;
    throttle_reads(&tenant, "30", None);
    let key = UserKey::Upn(tenant.upn("parked"));
    let started = Instant::now();
    let error = tenant
        .client
        .get_user(&key, &[UserProperty::Id])
        .await
        .expect_err("throttled");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        error.class(),
        &ErrorClass::Throttled {
            retry_after: Some(Duration::from_secs(30))
        }
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    assert!(error.request_id().is_some());
}

#[tokio::test]
async fn a_server_that_keeps_throttling_is_not_retried_forever() {
    let tenant = TestTenant::start().await;
    throttle_reads(&tenant, "0.05", None);
    let key = UserKey::Upn(tenant.upn("stubborn"));
    let error = tenant
        .client
        .get_user(&key, &[UserProperty::Id])
        .await
        .expect_err("throttled");
    assert!(matches!(error.class(), ErrorClass::Throttled { .. }));
    assert!(
        error.to_string().contains("gave up after 5 attempts"),
        "{error}"
    );
    let attempts = tenant
        .emulator
        .requests()
        .iter()
        .filter(|request| request.path.starts_with("/v1.0/users/"))
        .count();
    assert_eq!(attempts, 5);
}
