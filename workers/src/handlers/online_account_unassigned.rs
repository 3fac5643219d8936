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
    // Under the subject's licence lock: a parked user stops waiting before its licences go,
    // so the resumer cannot assign one after this removes them.
    let licence_writes = tenant.awaiting.lock(&subject.to_string()).await;
    tenant.awaiting.release(&subject.to_string())?;
    let user = tenant.read_user(&located.key()).await?;
    let unlicensed = tenant.set_licences(&user, &[]).await?;
    drop(licence_writes);
    if unlicensed {
        // A seat is free again: a user awaiting one can have it now.
        tenant.awaiting.wake();
    }
    let blocked = tenant
        .ensure_account_state(&user, AccountState::Disabled)
        .await?;
    tenant.remember_user(subject, &located.id, &located.upn, MappedState::Unassigned)?;
    Ok(changed(unlicensed || blocked))
}
