//! `moss.user.reactivated.v1`: allow sign-in again (unless the online account is unassigned).

use moss_online::AccountState;
use moss_schemas::{Subject, UserReactivated};
use moss_store::MappedState;

use crate::handlers::changed;
use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant};

pub(crate) async fn apply(
    subject: &Subject,
    _data: &UserReactivated,
    tenant: &Tenant,
) -> Step<Outcome> {
    let Some(located) = tenant.locate_user(subject).await? else {
        return Ok(Outcome::AlreadyApplied);
    };
    if located.state == MappedState::Unassigned {
        // An unassigned account stays blocked until it is assigned again.
        return Ok(Outcome::AlreadyApplied);
    }
    let user = tenant.read_user(&located.key()).await?;
    let allowed = tenant
        .ensure_account_state(&user, AccountState::Enabled)
        .await?;
    tenant.remember_user(subject, &located.id, &located.upn, MappedState::Active)?;
    Ok(changed(allowed))
}
