//! A user's whole life through the client.

use moss_emulator::{Seed, UserSeed};
use moss_online::{
    AccountState, Anchor, Change, NewPassword, PasswordChange, UsageLocation, UserCreation,
    UserFilter, UserKey, UserProperty, UserUpdate,
};
use secrecy::SecretString;

use crate::tenant::TestTenant;

#[tokio::test]
async fn a_user_lives_from_creation_to_deletion() {
    let tenant = TestTenant::start().await;
    let client = &tenant.client;
    let new = tenant.new_user("adele.vance", "entry-uuid-adele");

    let created = client.create_user(&new).await.expect("create");
    let UserCreation::Created(created) = created else {
        panic!("expected a new user, got {created:?}")
    };
    assert!(
        new.user_principal_name
            .same_account_as(created.user_principal_name.as_deref().unwrap())
    );

    let by_upn = UserKey::Upn(new.user_principal_name.clone());
    let read = client
        .get_user(&by_upn, UserProperty::ALL)
        .await
        .expect("get")
        .expect("the user exists");
    assert_eq!(read.id, created.id);
    assert_eq!(read.account_enabled, Some(true));
    assert_eq!(read.usage_location.as_deref(), Some("NL"));
    assert!(read.has_anchor(&new.anchor));

    let found = client
        .find_user_by_anchor(&new.anchor, &[UserProperty::UserPrincipalName])
        .await
        .expect("find")
        .expect("found by anchor");
    assert_eq!(found.id, created.id);

    let sku = tenant.sku("ENTERPRISEPACK");
    let by_id = UserKey::Id(created.id);
    assert_eq!(
        client
            .assign_licenses(&by_id, &[sku], &[])
            .await
            .expect("licence"),
        Change::Applied
    );
    let licensed = client
        .get_user(&by_id, &[UserProperty::AssignedLicenses])
        .await
        .expect("get")
        .expect("exists");
    assert!(licensed.holds(sku));
    let skus = client.refresh_subscribed_skus().await.expect("skus");
    let enterprise = skus
        .iter()
        .find(|candidate| candidate.sku_id == sku)
        .expect("sku listed");
    assert_eq!(enterprise.consumed_units, 1);

    client
        .set_account_state(&by_id, AccountState::Disabled)
        .await
        .expect("block");
    client
        .revoke_sign_in_sessions(&by_id)
        .await
        .expect("revoke");
    let blocked = client
        .get_user(&by_id, &[UserProperty::AccountEnabled])
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(blocked.account_enabled, Some(false));

    let new_password = "N3w-Passw0rd!x-longer";
    client
        .set_password(
            &by_id,
            &NewPassword {
                password: SecretString::from(new_password),
                change: PasswordChange::NotRequired,
            },
        )
        .await
        .expect("password");
    assert_eq!(
        tenant
            .emulator
            .password_matches(&created.id.to_string(), new_password),
        Some(true)
    );

    assert_eq!(
        client
            .assign_licenses(&by_id, &[], &[sku])
            .await
            .expect("remove"),
        Change::Applied
    );
    assert_eq!(
        client
            .assign_licenses(&by_id, &[], &[sku])
            .await
            .expect("remove again"),
        Change::AlreadyDone
    );

    assert_eq!(
        client.delete_user(&by_id).await.expect("delete"),
        Change::Applied
    );
    assert_eq!(
        client.delete_user(&by_id).await.expect("delete again"),
        Change::AlreadyDone
    );
    assert_eq!(
        client
            .get_user(&by_upn, &[UserProperty::Id])
            .await
            .expect("get"),
        None
    );
}

#[tokio::test]
async fn creating_the_same_user_twice_adopts_the_first() {
    let tenant = TestTenant::start().await;
    let new = tenant.new_user("twice", "entry-uuid-twice");
    let first = tenant.client.create_user(&new).await.expect("first create");
    let second = tenant
        .client
        .create_user(&new)
        .await
        .expect("second create");
    assert!(matches!(second, UserCreation::Adopted(_)), "got {second:?}");
    assert_eq!(first.user().id, second.user().id);
    let active = tenant
        .emulator
        .state()
        .users
        .iter()
        .filter(|user| {
            user["userPrincipalName"]
                .as_str()
                .is_some_and(|upn| new.user_principal_name.same_account_as(upn))
        })
        .count();
    assert_eq!(active, 1);
}

#[tokio::test]
async fn an_update_changes_only_the_named_properties() {
    let tenant = TestTenant::start().await;
    let new = tenant.new_user("mover", "entry-uuid-mover");
    let user = tenant
        .client
        .create_user(&new)
        .await
        .expect("create")
        .user()
        .clone();
    let key = UserKey::Id(user.id);
    let update = UserUpdate {
        usage_location: Some(UsageLocation::parse("de").unwrap()),
        anchor: Some(Anchor::parse("entry-uuid-mover-2").unwrap()),
        ..UserUpdate::default()
    };
    tenant
        .client
        .update_user(&key, &update)
        .await
        .expect("update");
    let read = tenant
        .client
        .get_user(&key, UserProperty::ALL)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(read.usage_location.as_deref(), Some("DE"));
    assert_eq!(
        read.on_premises_immutable_id.as_deref(),
        Some("entry-uuid-mover-2")
    );
    assert_eq!(read.display_name.as_deref(), Some("mover"));
    assert_eq!(read.account_enabled, Some(true));
}

#[tokio::test]
async fn a_long_listing_follows_the_next_links_to_the_end() {
    let mut seed = Seed::for_tests();
    let domain = seed.default_domain().to_owned();
    seed.users = (0..1003)
        .map(|n| UserSeed {
            user_principal_name: format!("bulk{n:04}@{domain}"),
            display_name: format!("Bulk {n}"),
            mail_nickname: None,
            usage_location: Some("NL".into()),
            account_enabled: n % 2 == 0,
            employee_id: None,
            licenses: Vec::new(),
        })
        .collect();
    let tenant = TestTenant::start_with(seed).await;
    let everyone = tenant
        .client
        .list_users(
            None,
            &[
                UserProperty::UserPrincipalName,
                UserProperty::AccountEnabled,
            ],
        )
        .await
        .expect("list");
    assert_eq!(everyone.len(), 1003);
    let pages = tenant
        .emulator
        .requests()
        .iter()
        .filter(|request| request.method == "GET" && request.path == "/v1.0/users")
        .count();
    assert_eq!(pages, 2);
    assert!(everyone.iter().all(|user| user.account_enabled.is_some()));

    let prefix = UserFilter::UserPrincipalNameStartsWith("bulk000".into());
    let few = tenant
        .client
        .list_users(Some(&prefix), &[UserProperty::UserPrincipalName])
        .await
        .expect("filtered list");
    assert_eq!(few.len(), 10);
}

#[tokio::test]
async fn the_sku_catalogue_outlives_an_assignment_but_seat_counts_are_read_again() {
    let tenant = TestTenant::start().await;
    let client = &tenant.client;
    let sku = tenant.sku("ENTERPRISEPACK");
    let sku_reads = || {
        tenant
            .emulator
            .requests()
            .iter()
            .filter(|request| request.path == "/v1.0/subscribedSkus")
            .count()
    };
    // Many callers at once with nothing cached share one read.
    let mut lookups = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = client.clone();
        lookups.spawn(async move { client.sku_catalogue().await });
    }
    while let Some(skus) = lookups.join_next().await {
        let skus = skus.expect("task").expect("catalogue");
        assert!(skus.iter().any(|s| s.sku_id == sku));
    }
    assert_eq!(sku_reads(), 1);
    let before = client.free_seats(sku).await.expect("seats").expect("sku");
    assert_eq!(sku_reads(), 1, "the seat counts just read are current");

    let created = client
        .create_user(&tenant.new_user("lynne.robbins", "entry-uuid-lynne"))
        .await
        .expect("create");
    let UserCreation::Created(user) = created else {
        panic!("expected a new user, got {created:?}")
    };
    client
        .assign_licenses(&UserKey::Id(user.id), &[sku], &[])
        .await
        .expect("assign");
    // Ids and part numbers do not move with an assignment: no read for the catalogue...
    assert!(
        client
            .sku_catalogue()
            .await
            .expect("catalogue")
            .iter()
            .any(|s| s.sku_id == sku)
    );
    assert_eq!(sku_reads(), 1);
    // ...but the seat counts did, and are read again.
    let after = client.free_seats(sku).await.expect("seats").expect("sku");
    assert_eq!(sku_reads(), 2);
    assert_eq!(after, before - 1);
}
