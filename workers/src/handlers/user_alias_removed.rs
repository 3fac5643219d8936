//! `moss.user.alias_removed.v1`: the mailbox no longer answers to this address.

use moss_schemas::{Subject, UserAliasRemoved};

use crate::handlers::user_alias_added::mailbox_of;
use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant};

pub(crate) async fn apply(
    subject: &Subject,
    data: &UserAliasRemoved,
    tenant: &Tenant,
) -> Step<Outcome> {
    let (recipient, mailbox, address) = mailbox_of(subject, data.address.as_str(), tenant).await?;
    if !mailbox.has_address(&address) {
        return Ok(Outcome::AlreadyApplied);
    }
    tenant
        .online
        .set_mailbox_email_addresses(&recipient, &[], &[address])
        .await?;
    Ok(Outcome::Applied)
}
