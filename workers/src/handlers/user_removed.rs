//! `moss.user.removed.v1`: delete the online account (soft delete); a 404 means done.

use moss_online::Change;
use moss_schemas::{Subject, UserRemoved};
use moss_store::MappedState;

use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant};

pub(crate) async fn apply(
    subject: &Subject,
    _data: &UserRemoved,
    tenant: &Tenant,
) -> Step<Outcome> {
    let Some(located) = tenant.locate_user(subject).await? else {
        return Ok(Outcome::AlreadyApplied);
    };
    let licence_writes = tenant.awaiting.lock(&subject.to_string()).await;
    tenant.awaiting.release(&subject.to_string())?;
    let change = tenant.online.delete_user(&located.key()).await?;
    drop(licence_writes);
    if change == Change::Applied {
        // A deleted user's licences are free again.
        tenant.awaiting.wake();
    }
    tenant.remember_user(subject, &located.id, &located.upn, MappedState::Removed)?;
    Ok(match change {
        Change::Applied => Outcome::Applied,
        Change::AlreadyDone => Outcome::AlreadyApplied,
    })
}
