//! `moss.user.password_changed.v1`: set the online password (password sync).

use moss_schemas::{Subject, UserPasswordChanged};

use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant};

pub(crate) async fn apply(
    subject: &Subject,
    data: &UserPasswordChanged,
    tenant: &Tenant,
) -> Step<Outcome> {
    let Some(user) = tenant.locate_user(subject).await? else {
        // The directory hook reports every user's password changes; one without an online
        // account has nothing to set.
        return Ok(Outcome::AlreadyApplied);
    };
    // Opened just before the call; the clear text is wiped when `password` drops.
    let password = tenant.open(&data.password)?;
    let result = tenant.online.set_password(&user.key(), &password).await;
    drop(password);
    result?;
    Ok(Outcome::Applied)
}
