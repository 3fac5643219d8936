//! `moss.user.deactivated.v1`: block sign-in and revoke sessions; keep the account and data.

use moss_online::AccountState;
use moss_schemas::{Subject, UserDeactivated};
use moss_store::MappedState;

use crate::handlers::changed;
use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant};

pub(crate) async fn apply(
    subject: &Subject,
    _data: &UserDeactivated,
    tenant: &Tenant,
) -> Step<Outcome> {
    let Some(located) = tenant.locate_user(subject).await? else {
        return Ok(Outcome::AlreadyApplied);
    };
    let user = tenant.read_user(&located.key()).await?;
    let blocked = tenant
        .ensure_account_state(&user, AccountState::Disabled)
        .await?;
    // Revoking is idempotent and cheap; repeat it so a retry after a lost reply still revokes.
    tenant
        .online
        .revoke_sign_in_sessions(&located.key())
        .await?;
    let state = match located.state {
        MappedState::Unassigned => MappedState::Unassigned,
        _ => MappedState::Inactive,
    };
    tenant.remember_user(subject, &located.id, &located.upn, state)?;
    Ok(changed(blocked))
}
