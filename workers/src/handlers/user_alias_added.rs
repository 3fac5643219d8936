//! `moss.user.alias_added.v1`: the mailbox answers to this address too (Exchange Online).

use std::time::Duration;

use moss_online::{RecipientId, SmtpAddress, UserProperty};
use moss_schemas::{Subject, UserAliasAdded};

use crate::outcome::Outcome;
use crate::tenant::{LocatedUser, Step, Tenant};

/// How long to wait between looks for a mailbox being provisioned (the worker's retry
/// settings cap it, and bound how many looks are made).
const MAILBOX_WAIT: Duration = Duration::from_secs(30);

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
/// provisioned (licence just assigned) is waited for; a subject without an online account, or
/// with one that holds no licence, is a permanent failure of the event.
pub(crate) async fn mailbox_of(
    subject: &Subject,
    address: &str,
    tenant: &Tenant,
) -> Step<(RecipientId, moss_online::Mailbox, SmtpAddress)> {
    let (user, recipient, address) = recipient_of(subject, address, tenant).await?;
    match tenant.online.get_mailbox(&recipient).await? {
        Some(mailbox) => Ok((recipient, mailbox, address)),
        None => no_mailbox_yet(&user, tenant).await,
    }
}

/// The subject's online user, its Exchange identity and the address in moss-online's type; a
/// subject without an online account is a permanent failure of the event.
pub(crate) async fn recipient_of(
    subject: &Subject,
    address: &str,
    tenant: &Tenant,
) -> Step<(LocatedUser, RecipientId, SmtpAddress)> {
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
    Ok((user, recipient, address))
}

/// Waits for the mailbox of `user`, or refuses when none will come.
async fn no_mailbox_yet<T>(user: &LocatedUser, tenant: &Tenant) -> Step<T> {
    // No mailbox yet. Exchange provisions one only for a user holding a licence, minutes after
    // it is assigned: without any licence there is nothing to wait for.
    let licensed = tenant
        .online
        .get_user(&user.key(), &[UserProperty::AssignedLicenses])
        .await?
        .is_some_and(|online| !online.assigned_licenses.is_empty());
    if !licensed {
        return Err(Outcome::refuse(
            "NoMailbox",
            format!(
                "{} holds no licence, so Exchange gives them no mailbox to hold aliases; assign one with Exchange and replay",
                user.upn
            ),
        ));
    }
    // Provisioning takes minutes: wait in long steps (capped by the worker's retry settings),
    // and dead-letter with a reason that says what to do if it takes longer still.
    Err(Outcome::Retry {
        after: Some(MAILBOX_WAIT),
        failure: crate::outcome::Failure::local(
            crate::outcome::FailureClass::Permanent,
            "MailboxNotFound",
            format!(
                "{} is licensed but has no mailbox yet (Exchange is still provisioning it); replay the event once it exists",
                user.upn
            ),
        ),
    })
}
