//! $batch fan-out against the emulator.

use moss_emulator::{FaultAction, FaultPlan};
use moss_online::{AccountState, BatchRequest, Change, ErrorClass, UserId, UserKey, UserProperty};

use crate::tenant::TestTenant;

#[tokio::test]
async fn an_offboarding_fan_out_applies_every_item_and_retries_only_the_throttled_one() {
    let tenant = TestTenant::start().await;
    let mut keys = Vec::new();
    for n in 0..12 {
        let new = tenant.new_user(&format!("leaver{n}"), &format!("entry-uuid-leaver-{n}"));
        let user = tenant
            .client
            .create_user(&new)
            .await
            .expect("create")
            .user()
            .clone();
        keys.push(UserKey::Id(user.id));
    }
    // 12 users × (block, then revoke) = 24 requests: two batches, chains kept together.
    let mut requests = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        requests.push(BatchRequest::set_account_state(
            format!("block{n}"),
            key,
            AccountState::Disabled,
        ));
        requests.push(
            BatchRequest::revoke_sign_in_sessions(format!("revoke{n}"), key)
                .after(format!("block{n}")),
        );
    }
    let gone = UserKey::Id(UserId(uuid::Uuid::new_v4()));
    requests.push(BatchRequest::delete_user("gone", &gone));

    let throttled = match &keys[3] {
        UserKey::Id(id) => format!("/v1.0/users/{id}"),
        UserKey::Upn(_) => unreachable!(),
    };
    tenant.emulator.install_fault(FaultPlan {
        method: Some("PATCH".into()),
        path: throttled,
        cmdlet: None,
        action: FaultAction::Status {
            status: 429,
            retry_after: Some("1".into()),
            body: None,
        },
        count: Some(1),
        probability: None,
    });

    let outcomes = tenant.client.batch(requests).await.expect("batch");
    assert_eq!(outcomes.len(), 25);
    for outcome in &outcomes[..24] {
        let reply = outcome
            .result
            .as_ref()
            .unwrap_or_else(|error| panic!("{}: {error}", outcome.id));
        assert_eq!(reply.change, Change::Applied, "{}", outcome.id);
    }
    assert_eq!(outcomes[24].id, "gone");
    assert_eq!(
        outcomes[24].result.as_ref().expect("done").change,
        Change::AlreadyDone
    );

    for key in &keys {
        let user = tenant
            .client
            .get_user(key, &[UserProperty::AccountEnabled])
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(user.account_enabled, Some(false));
    }
    let batches = tenant
        .emulator
        .requests()
        .iter()
        .filter(|request| request.path == "/v1.0/$batch")
        .count();
    assert_eq!(batches, 3, "two batches, then one retry batch");
}

#[tokio::test]
async fn a_dependent_of_a_failed_item_reports_the_root_cause() {
    let tenant = TestTenant::start().await;
    let missing = UserKey::Id(UserId(uuid::Uuid::new_v4()));
    let requests = vec![
        BatchRequest::set_account_state("block", &missing, AccountState::Disabled),
        BatchRequest::revoke_sign_in_sessions("revoke", &missing).after("block"),
    ];
    let outcomes = tenant.client.batch(requests).await.expect("batch");
    let block = outcomes[0].result.as_ref().expect_err("missing user");
    assert!(
        matches!(block.class(), ErrorClass::Permanent { status: 404, .. }),
        "{block}"
    );
    assert_eq!(outcomes[1].status, 424);
    assert_eq!(outcomes[1].failed_dependency.as_deref(), Some("block"));
    let revoke = outcomes[1].result.as_ref().expect_err("failed dependency");
    assert!(matches!(
        revoke.class(),
        ErrorClass::Permanent { status: 424, .. } | ErrorClass::Permanent { status: 404, .. }
    ));
}
