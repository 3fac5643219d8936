//! `moss.user.added.v1`: create the online account if the event asks for one, with its usage
//! location, our anchor and exactly its licences.

use moss_online::{AccountState, DisplayName, MailNickname, NewUser, UsageLocation, UserCreation};
use moss_schemas::{Subject, UserAdded};
use moss_store::MappedState;

use crate::handlers::changed;
use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant, online_upn, random_password};

pub(crate) async fn apply(subject: &Subject, data: &UserAdded, tenant: &Tenant) -> Step<Outcome> {
    let Some(account) = &data.online_account else {
        // A directory user without an online account: nothing to do in the tenant.
        return Ok(Outcome::AlreadyApplied);
    };
    let upn = online_upn(&account.upn)?;
    let anchor = Tenant::anchor(subject)?;
    let skus = tenant.sku_ids(&account.licenses).await?;
    let display_name = DisplayName::parse(data.display_name.as_str())
        .map_err(|error| Outcome::refuse("InvalidField", error.to_string()))?;
    let mail_nickname = mail_nickname(account.upn.local_part(), data.account_name.as_str())?;
    let usage_location = UsageLocation::parse(account.usage_location.as_str())
        .map_err(|error| Outcome::refuse("InvalidField", error.to_string()))?;
    // The sealed secret is opened only now, just before the call, and dropped (wiped) with
    // `new` right after it.
    let password = match &data.initial_password {
        Some(sealed) => tenant.open(sealed)?,
        None => random_password(),
    };
    let new = NewUser {
        user_principal_name: upn.clone(),
        display_name,
        mail_nickname,
        given_name: data
            .given_name
            .as_ref()
            .map(|name| name.as_str().to_owned()),
        surname: data.surname.as_ref().map(|name| name.as_str().to_owned()),
        usage_location,
        password,
        account_state: AccountState::Enabled,
        anchor,
    };
    let creation = tenant.online.create_user(&new).await;
    drop(new);
    let (user, created) = match creation? {
        UserCreation::Created(user) => (user, true),
        // An earlier attempt created it (the anchor matched): read it as it is now.
        UserCreation::Adopted(user) => (tenant.read_user(&user.id.into()).await?, false),
    };
    tenant.remember_user(subject, &user.id, upn.as_str(), MappedState::Active)?;
    // No free seat parks the user to await one (the account exists meanwhile).
    let licensed = tenant
        .license_or_park(subject, &user, upn.as_str(), &skus)
        .await?;
    Ok(changed(created || licensed))
}

/// The UPN's local part, or the account name, as a `mailNickname`.
pub(crate) fn mail_nickname(local_part: &str, account_name: &str) -> Step<MailNickname> {
    MailNickname::parse(local_part)
        .or_else(|_| {
            let cleaned: String = account_name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .collect();
            MailNickname::parse(&cleaned)
        })
        .map_err(|error| Outcome::refuse("InvalidField", error.to_string()))
}
