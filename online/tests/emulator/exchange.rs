//! Mailbox aliases and distribution groups through InvokeCommand.

use moss_emulator::{AfterCommit, FaultAction, FaultPlan};
use moss_online::{
    Change, DisplayName, DistributionGroupUpdate, ErrorClass, MailNickname, NewDistributionGroup,
    RecipientId, SenderAuthentication, SmtpAddress, UserKey,
};

use crate::tenant::TestTenant;

fn group(name: &str, sender_authentication: SenderAuthentication) -> NewDistributionGroup {
    NewDistributionGroup {
        name: DisplayName::parse(name).unwrap(),
        alias: Some(MailNickname::parse(name).unwrap()),
        display_name: None,
        primary_smtp_address: None,
        members: Vec::new(),
        sender_authentication,
        description: None,
    }
}

#[tokio::test]
async fn a_licensed_user_gets_an_alias_added_and_removed() {
    let tenant = TestTenant::start().await;
    let new = tenant.new_user("mailer", "entry-uuid-mailer");
    let user = tenant
        .client
        .create_user(&new)
        .await
        .expect("create")
        .user()
        .clone();
    let identity = RecipientId::from(&new.user_principal_name);
    assert_eq!(
        tenant
            .client
            .get_mailbox(&identity)
            .await
            .expect("no mailbox yet"),
        None
    );

    tenant
        .client
        .assign_licenses(&UserKey::Id(user.id), &[tenant.sku("ENTERPRISEPACK")], &[])
        .await
        .expect("licence");
    let domain = tenant.emulator.tenant().default_domain;
    let alias = SmtpAddress::parse(&format!("m.alias@{domain}")).unwrap();
    tenant
        .client
        .set_mailbox_email_addresses(&identity, std::slice::from_ref(&alias), &[])
        .await
        .expect("add alias");
    let mailbox = tenant
        .client
        .get_mailbox(&identity)
        .await
        .expect("get")
        .expect("mailbox exists");
    assert!(mailbox.has_address(&alias), "{mailbox:?}");

    tenant
        .client
        .set_mailbox_email_addresses(&identity, &[], std::slice::from_ref(&alias))
        .await
        .expect("remove alias");
    let mailbox = tenant
        .client
        .get_mailbox(&identity)
        .await
        .expect("get")
        .expect("mailbox exists");
    assert!(!mailbox.has_address(&alias));
}

#[tokio::test]
async fn a_distribution_group_is_created_filled_emptied_and_removed_idempotently() {
    let tenant = TestTenant::start().await;
    let member = tenant.new_user("member.one", "entry-uuid-member-one");
    let user = tenant
        .client
        .create_user(&member)
        .await
        .expect("create")
        .user()
        .clone();
    tenant
        .client
        .assign_licenses(&UserKey::Id(user.id), &[tenant.sku("ENTERPRISEPACK")], &[])
        .await
        .expect("licence");

    let created = tenant
        .client
        .new_distribution_group(&group("sales", SenderAuthentication::AcceptExternal))
        .await
        .expect("create group");
    assert_eq!(created.require_sender_authentication_enabled, Some(false));
    let sales = RecipientId::parse("sales").unwrap();
    let member = RecipientId::from(&member.user_principal_name);

    assert_eq!(
        tenant
            .client
            .add_distribution_group_member(&sales, &member)
            .await
            .expect("add"),
        Change::Applied
    );
    assert_eq!(
        tenant
            .client
            .add_distribution_group_member(&sales, &member)
            .await
            .expect("add again"),
        Change::AlreadyDone
    );
    let members = tenant
        .client
        .get_distribution_group_members(&sales)
        .await
        .expect("members");
    assert_eq!(members.len(), 1, "{members:?}");

    tenant
        .client
        .set_distribution_group(
            &sales,
            &DistributionGroupUpdate {
                sender_authentication: Some(SenderAuthentication::InternalOnly),
                ..DistributionGroupUpdate::default()
            },
        )
        .await
        .expect("set");
    let read = tenant
        .client
        .get_distribution_group(&sales)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(read.require_sender_authentication_enabled, Some(true));

    assert_eq!(
        tenant
            .client
            .remove_distribution_group_member(&sales, &member)
            .await
            .expect("remove"),
        Change::Applied
    );
    assert_eq!(
        tenant
            .client
            .remove_distribution_group_member(&sales, &member)
            .await
            .expect("remove again"),
        Change::AlreadyDone
    );
    assert_eq!(
        tenant
            .client
            .remove_distribution_group(&sales)
            .await
            .expect("remove group"),
        Change::Applied
    );
    assert_eq!(
        tenant
            .client
            .remove_distribution_group(&sales)
            .await
            .expect("remove group again"),
        Change::AlreadyDone
    );
    assert_eq!(
        tenant
            .client
            .get_distribution_group(&sales)
            .await
            .expect("get"),
        None
    );
}

#[tokio::test]
async fn a_group_name_taken_is_a_conflict_and_a_lost_create_reply_is_outcome_unknown() {
    let tenant = TestTenant::start().await;
    tenant
        .client
        .new_distribution_group(&group("support", SenderAuthentication::InternalOnly))
        .await
        .expect("create");
    let error = tenant
        .client
        .new_distribution_group(&group("support", SenderAuthentication::InternalOnly))
        .await
        .expect_err("taken");
    assert_eq!(error.class(), &ErrorClass::Conflict);
    assert_eq!(
        error
            .reply()
            .and_then(|reply| reply.exception_type.as_deref()),
        Some("ADObjectAlreadyExistsException")
    );
    assert!(
        !error.to_string().contains("Error executing cmdlet"),
        "{error}"
    );

    tenant.emulator.install_fault(FaultPlan {
        method: None,
        path: "/adminapi/**".into(),
        cmdlet: Some("New-DistributionGroup".into()),
        action: FaultAction::CommitThenFail {
            then: AfterCommit::Status {
                status: 504,
                retry_after: None,
            },
        },
        count: Some(1),
        probability: None,
    });
    let error = tenant
        .client
        .new_distribution_group(&group("billing", SenderAuthentication::InternalOnly))
        .await
        .expect_err("lost reply");
    assert_eq!(error.class(), &ErrorClass::OutcomeUnknown);
    let billing = RecipientId::parse("billing").unwrap();
    assert!(
        tenant
            .client
            .get_distribution_group(&billing)
            .await
            .expect("get")
            .is_some()
    );
}
