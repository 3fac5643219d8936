//! `moss.online_account.assigned.v1`: link the subject to an online account (ours by anchor,
//! or an existing one without an anchor, or a new one), then set its usage location, sign-in
//! and exactly its licences.

use moss_online::{
    AccountState, DisplayName, NewUser, UsageLocation, UserCreation, UserKey, UserUpdate,
};
use moss_schemas::{OnlineAccount, Subject};
use moss_store::MappedState;

use crate::handlers::changed;
use crate::handlers::user_added::mail_nickname;
use crate::outcome::{Failure, FailureClass, Outcome};
use crate::tenant::{Step, Tenant, USER_SELECT, online_upn, random_password};

pub(crate) async fn apply(
    subject: &Subject,
    account: &OnlineAccount,
    tenant: &Tenant,
) -> Step<Outcome> {
    let upn = online_upn(&account.upn)?;
    let anchor = Tenant::anchor(subject)?;
    let skus = tenant.sku_ids(&account.licenses).await?;
    let usage_location = UsageLocation::parse(account.usage_location.as_str())
        .map_err(|error| Outcome::refuse("InvalidField", error.to_string()))?;
    let mut changed_anything = false;
    let located = tenant.locate_user(subject).await?;
    let previous_state = located.as_ref().map(|user| user.state);
    let user = match located {
        Some(located) => tenant.read_user(&located.key()).await?,
        None => match tenant
            .online
            .get_user(&UserKey::Upn(upn.clone()), USER_SELECT)
            .await?
        {
            Some(existing) if existing.has_anchor(&anchor) => existing,
            Some(existing) if existing.on_premises_immutable_id.is_none() => {
                // An existing account nobody synchronises: link it by writing our anchor.
                let update = UserUpdate {
                    anchor: Some(anchor.clone()),
                    ..UserUpdate::default()
                };
                tenant
                    .online
                    .update_user(&existing.id.into(), &update)
                    .await?;
                changed_anything = true;
                existing
            }
            Some(existing) => {
                return Err(Outcome::DeadLetter {
                    reason: Failure::local(
                        FailureClass::Conflict,
                        "UpnTakenByOtherAnchor",
                        format!(
                            "{} belongs to online user {}, which another directory object is linked to",
                            upn.as_str(),
                            existing.id
                        ),
                    ),
                });
            }
            None => {
                let display_name = DisplayName::parse(account.upn.local_part())
                    .map_err(|error| Outcome::refuse("InvalidField", error.to_string()))?;
                let new = NewUser {
                    user_principal_name: upn.clone(),
                    display_name,
                    mail_nickname: mail_nickname(
                        account.upn.local_part(),
                        account.upn.local_part(),
                    )?,
                    given_name: None,
                    surname: None,
                    usage_location: usage_location.clone(),
                    password: random_password(),
                    account_state: AccountState::Enabled,
                    anchor: anchor.clone(),
                };
                let created = tenant.online.create_user(&new).await;
                drop(new);
                match created? {
                    UserCreation::Created(user) => {
                        changed_anything = true;
                        user
                    }
                    UserCreation::Adopted(user) => user,
                }
            }
        },
    };
    let key: UserKey = user.id.into();
    let user = tenant.read_user(&key).await?;
    if user.usage_location.as_deref() != Some(usage_location.as_str()) {
        let update = UserUpdate {
            usage_location: Some(usage_location),
            ..UserUpdate::default()
        };
        tenant.online.update_user(&key, &update).await?;
        changed_anything = true;
    }
    // A deactivated directory user keeps sign-in blocked when an account is assigned.
    let state = match previous_state {
        Some(MappedState::Inactive) => MappedState::Inactive,
        _ => MappedState::Active,
    };
    let wanted = match state {
        MappedState::Inactive => AccountState::Disabled,
        _ => AccountState::Enabled,
    };
    changed_anything |= tenant.ensure_account_state(&user, wanted).await?;
    // No free seat parks the user to await one (the account is linked meanwhile).
    changed_anything |= tenant
        .license_or_park(subject, &user, upn.as_str(), &skus)
        .await?;
    tenant.remember_user(subject, &user.id, upn.as_str(), state)?;
    Ok(changed(changed_anything))
}
