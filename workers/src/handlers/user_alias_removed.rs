//! `moss.user.alias_removed.v1`: the mailbox no longer answers to this address.

use moss_schemas::{Subject, UserAliasRemoved};

use crate::handlers::user_alias_added::recipient_of;
use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant};

pub(crate) async fn apply(
    subject: &Subject,
    data: &UserAliasRemoved,
    tenant: &Tenant,
) -> Step<Outcome> {
    let (_, recipient, address) = recipient_of(subject, data.address.as_str(), tenant).await?;
    // Without a mailbox the address is nobody's: nothing to remove, nothing to wait for.
    let Some(mailbox) = tenant.online.get_mailbox(&recipient).await? else {
        return Ok(Outcome::AlreadyApplied);
    };
    if !mailbox.has_address(&address) {
        return Ok(Outcome::AlreadyApplied);
    }
    tenant
        .online
        .set_mailbox_email_addresses(&recipient, &[], &[address])
        .await?;
    Ok(Outcome::Applied)
}
