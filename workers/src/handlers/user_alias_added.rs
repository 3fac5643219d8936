//! `moss.user.alias_added.v1`: the mailbox answers to this address too (Exchange Online).

use moss_online::{RecipientId, SmtpAddress};
use moss_schemas::{Subject, UserAliasAdded};

use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant};

pub(crate) async fn apply(
    subject: &Subject,
    data: &UserAliasAdded,
    tenant: &Tenant,
) -> Step<Outcome> {
    let (recipient, mailbox, address) = mailbox_of(subject, data.address.as_str(), tenant).await?;
    if mailbox.has_address(&address) {
        return Ok(Outcome::AlreadyApplied);
    }
    tenant
        .online
        .set_mailbox_email_addresses(&recipient, &[address], &[])
        .await?;
    Ok(Outcome::Applied)
}

/// The subject's mailbox and the address in moss-online's type. A mailbox still being
/// provisioned (licence just assigned) is retried; a subject without an online account is a
/// permanent failure of the event.
pub(crate) async fn mailbox_of(
    subject: &Subject,
    address: &str,
    tenant: &Tenant,
) -> Step<(RecipientId, moss_online::Mailbox, SmtpAddress)> {
    let address = SmtpAddress::parse(address)
        .map_err(|error| Outcome::refuse("InvalidField", error.to_string()))?;
    let Some(user) = tenant.locate_user(subject).await? else {
        return Err(Outcome::refuse(
            "NoOnlineAccount",
            "the user has no online account, so no mailbox to hold aliases",
        ));
    };
    let recipient = RecipientId::parse(&user.upn)
        .map_err(|error| Outcome::refuse("InvalidField", error.to_string()))?;
    let Some(mailbox) = tenant.online.get_mailbox(&recipient).await? else {
        return Err(Outcome::Retry {
            after: Some(std::time::Duration::from_secs(5)),
            failure: crate::outcome::Failure::local(
                crate::outcome::FailureClass::Permanent,
                "MailboxNotFound",
                format!(
                    "{} has no mailbox (not licensed for Exchange, or still being provisioned)",
                    user.upn
                ),
            ),
        });
    };
    Ok((recipient, mailbox, address))
}
