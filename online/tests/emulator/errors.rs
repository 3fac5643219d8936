//! Error classes decided from the emulator's real replies.

use moss_emulator::{AfterCommit, FaultAction, FaultPlan};
use std::sync::{Arc, Mutex};

use moss_online::{
    ErrorClass, OnlineClient, Pacer, RequestKind, Service, SkuId, ThrottleSignal, UserCreation,
    UserKey, UserProperty,
};

use crate::tenant::TestTenant;

#[tokio::test]
async fn a_upn_held_by_another_anchor_is_a_conflict() {
    let tenant = TestTenant::start().await;
    let theirs = tenant.new_user("shared.name", "entry-uuid-theirs");
    tenant
        .client
        .create_user(&theirs)
        .await
        .expect("first create");
    let ours = tenant.new_user("shared.name", "entry-uuid-ours");
    let error = tenant
        .client
        .create_user(&ours)
        .await
        .expect_err("conflict");
    assert_eq!(error.class(), &ErrorClass::Conflict);
    assert!(
        error.to_string().contains("belongs to another account"),
        "{error}"
    );
    assert!(error.to_string().contains("entry-uuid-theirs"), "{error}");
    assert!(error.client_request_id().is_some());
}

#[tokio::test]
async fn an_unknown_sku_is_permanent_with_the_service_text() {
    let tenant = TestTenant::start().await;
    let user = tenant
        .client
        .create_user(&tenant.new_user("unknown.sku", "entry-uuid-unknown-sku"))
        .await
        .expect("create")
        .user()
        .clone();
    let missing = SkuId(uuid::Uuid::new_v4());
    let error = tenant
        .client
        .assign_licenses(&UserKey::Id(user.id), &[missing], &[])
        .await
        .expect_err("unknown sku");
    match error.class() {
        ErrorClass::Permanent {
            status,
            message,
            request_id,
            ..
        } => {
            assert_eq!(*status, 400);
            assert!(
                message.contains("does not correspond to a valid company License"),
                "{message}"
            );
            assert!(request_id.is_some());
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn a_sku_without_seats_is_no_seats() {
    let tenant = TestTenant::start().await;
    tenant
        .emulator
        .set_sku_units("EXCHANGESTANDARD", 0)
        .expect("set units");
    let user = tenant
        .client
        .create_user(&tenant.new_user("no.seat", "entry-uuid-no-seat"))
        .await
        .expect("create")
        .user()
        .clone();
    let sku = tenant.sku("EXCHANGESTANDARD");
    assert_eq!(tenant.client.free_seats(sku).await.expect("seats"), Some(0));
    let error = tenant
        .client
        .assign_licenses(&UserKey::Id(user.id), &[sku], &[])
        .await
        .expect_err("no seats");
    assert_eq!(error.class(), &ErrorClass::NoSeats);
}

#[tokio::test]
async fn a_wrong_client_secret_is_a_configuration_error_that_names_no_secret() {
    let tenant = TestTenant::start().await;
    let client = OnlineClient::new(tenant.config(Some("not-the-secret"))).expect("client");
    let error = client.check_credentials().await.expect_err("refused");
    assert_eq!(error.class(), &ErrorClass::Configuration);
    let reply = error.reply().expect("a token endpoint reply");
    assert_eq!(reply.code, "invalid_client");
    assert!(
        reply.message.starts_with("AADSTS7000215"),
        "{}",
        reply.message
    );
    let text = format!("{error} {error:?}");
    assert!(!text.contains("not-the-secret"));
    assert!(!text.contains(&tenant.emulator.tenant().client_secret));

    let upn = UserKey::Upn(tenant.upn("anyone"));
    let error = client
        .get_user(&upn, &[UserProperty::Id])
        .await
        .expect_err("refused");
    assert_eq!(error.class(), &ErrorClass::Configuration);
    assert!(
        tenant
            .emulator
            .requests()
            .iter()
            .all(|request| !request.path.starts_with("/v1.0")),
        "no Graph call goes out without a token"
    );
}

/// Records what the client reports to its pacer: one entry per attempt.
#[derive(Debug, Default)]
struct RecordingPacer {
    seen: Mutex<Vec<(Service, RequestKind, u16)>>,
}

impl Pacer for RecordingPacer {
    fn observe(&self, service: Service, kind: RequestKind, status: u16, _signal: &ThrottleSignal) {
        self.seen.lock().unwrap().push((service, kind, status));
    }
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_and_every_attempt_reaches_the_pacer() {
    let tenant = TestTenant::start().await;
    let pacer = Arc::new(RecordingPacer::default());
    let client = OnlineClient::with_pacer(tenant.config(None), pacer.clone()).expect("client");
    let key = UserKey::Upn(tenant.upn("nobody"));
    assert_eq!(
        client
            .get_user(&key, &[UserProperty::Id])
            .await
            .expect("first read"),
        None
    );
    tenant.emulator.expire_tokens();
    assert_eq!(
        client
            .get_user(&key, &[UserProperty::Id])
            .await
            .expect("read after expiry"),
        None
    );

    let statuses: Vec<u16> = pacer
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, status)| *status)
        .collect();
    assert_eq!(statuses, vec![404, 401, 404]);
    assert!(
        pacer
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|(service, kind, _)| *service == Service::Graph && *kind == RequestKind::Read)
    );
    // The emulator logs only authenticated attempts: one per operation, each with its own id.
    let graph: Vec<_> = tenant
        .emulator
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/v1.0/users"))
        .collect();
    assert_eq!(graph.len(), 2);
    assert_ne!(graph[0].client_request_id, graph[1].client_request_id);
}

#[tokio::test]
async fn a_create_whose_reply_is_lost_is_read_back_and_adopted() {
    for then in [
        AfterCommit::Status {
            status: 504,
            retry_after: None,
        },
        AfterCommit::Drop,
    ] {
        let tenant = TestTenant::start().await;
        tenant.emulator.install_fault(FaultPlan {
            method: Some("POST".into()),
            path: "/v1.0/users".into(),
            cmdlet: None,
            action: FaultAction::CommitThenFail { then: then.clone() },
            count: Some(1),
            probability: None,
        });
        let new = tenant.new_user("lost.reply", "entry-uuid-lost-reply");
        let outcome = tenant
            .client
            .create_user(&new)
            .await
            .expect("create resolves");
        assert!(
            matches!(outcome, UserCreation::Adopted(_)),
            "{then:?}: {outcome:?}"
        );
        assert!(outcome.user().has_anchor(&new.anchor));
        let creates = tenant
            .emulator
            .writes()
            .into_iter()
            .filter(|request| request.method == "POST" && request.path == "/v1.0/users")
            .count();
        assert_eq!(creates, 1, "{then:?}: the create was not sent again");
    }
}

#[tokio::test]
async fn a_create_refused_by_a_503_before_committing_is_sent_again() {
    let tenant = TestTenant::start().await;
    tenant.emulator.install_fault(FaultPlan {
        method: Some("POST".into()),
        path: "/v1.0/users".into(),
        cmdlet: None,
        action: FaultAction::Status {
            status: 503,
            retry_after: None,
            body: None,
        },
        count: Some(1),
        probability: None,
    });
    let new = tenant.new_user("retried", "entry-uuid-retried");
    let outcome = tenant.client.create_user(&new).await.expect("create");
    assert!(matches!(outcome, UserCreation::Created(_)), "{outcome:?}");
}
