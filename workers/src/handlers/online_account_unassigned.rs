//! `moss.online_account.unassigned.v1`: remove every licence and block sign-in; keep the
//! account and the mapping, so a later assignment links the same account again.

use moss_online::AccountState;
use moss_schemas::{OnlineAccountUnassigned, Subject};
use moss_store::MappedState;

use crate::handlers::changed;
use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant};

pub(crate) async fn apply(
    subject: &Subject,
    _data: &OnlineAccountUnassigned,
    tenant: &Tenant,
) -> Step<Outcome> {
    let Some(located) = tenant.locate_user(subject).await? else {
        return Ok(Outcome::AlreadyApplied);
    };
    let user = tenant.read_user(&located.key()).await?;
    let unlicensed = tenant.set_licences(&user, &[]).await?;
    let blocked = tenant
        .ensure_account_state(&user, AccountState::Disabled)
        .await?;
    tenant.remember_user(subject, &located.id, &located.upn, MappedState::Unassigned)?;
    Ok(changed(unlicensed || blocked))
}
