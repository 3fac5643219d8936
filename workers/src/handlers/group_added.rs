//! `moss.group.added.v1`: a distribution group with this name, alias, sender policy and
//! members. A group of that name that moss did not create is a conflict.

use moss_online::{
    DisplayName, DistributionGroupUpdate, MailNickname, NewDistributionGroup, RecipientId,
    SenderAuthentication, SmtpAddress,
};
use moss_schemas::{GroupAdded, Subject};
use moss_store::{MappedKind, MappedState};

use crate::handlers::changed;
use crate::outcome::{Failure, FailureClass, Outcome};
use crate::tenant::{Step, Tenant};

pub(crate) async fn apply(subject: &Subject, data: &GroupAdded, tenant: &Tenant) -> Step<Outcome> {
    let invalid =
        |error: moss_online::FieldError| Outcome::refuse("InvalidField", error.to_string());
    let name = DisplayName::parse(data.name.as_str()).map_err(invalid)?;
    let identity = RecipientId::parse(data.name.as_str()).map_err(invalid)?;
    let alias = MailNickname::parse(data.alias.as_str()).map_err(invalid)?;
    let primary = data
        .primary_smtp_address
        .as_ref()
        .map(|address| SmtpAddress::parse(address.as_str()))
        .transpose()
        .map_err(invalid)?;
    let mut members = Vec::with_capacity(data.members.len());
    for member in &data.members {
        members.push(recipient_of(member, tenant).await?);
    }
    let sender_authentication = if data.allow_external_senders {
        SenderAuthentication::AcceptExternal
    } else {
        SenderAuthentication::InternalOnly
    };
    let ours = tenant
        .mapping
        .get(&subject.to_string())?
        .is_some_and(|record| {
            record.kind == MappedKind::Group && record.state != MappedState::Removed
        });
    let existing = tenant.online.get_distribution_group(&identity).await?;
    let changed_anything = match existing {
        None => {
            // Recorded before the create, which is not idempotent: a retry after a lost reply
            // finds the group and knows it is ours.
            tenant.remember(
                subject,
                MappedKind::Group,
                None,
                data.name.as_str(),
                MappedState::Pending,
            )?;
            let new = NewDistributionGroup {
                name,
                alias: Some(alias),
                display_name: None,
                primary_smtp_address: primary,
                members,
                sender_authentication,
                description: data
                    .description
                    .as_ref()
                    .map(|description| description.as_str().to_owned()),
            };
            match tenant.online.new_distribution_group(&new).await {
                Ok(_) => true,
                Err(error) if error.class() == &moss_online::ErrorClass::Conflict => {
                    tenant.remember(
                        subject,
                        MappedKind::Group,
                        None,
                        data.name.as_str(),
                        MappedState::Removed,
                    )?;
                    return Err(Outcome::from_online(&error));
                }
                Err(error) => return Err(Outcome::from_online(&error)),
            }
        }
        Some(_) if ours => {
            let update = DistributionGroupUpdate {
                sender_authentication: Some(sender_authentication),
                ..DistributionGroupUpdate::default()
            };
            tenant
                .online
                .set_distribution_group(&identity, &update)
                .await?;
            let mut added = false;
            for member in &members {
                added |= tenant
                    .online
                    .add_distribution_group_member(&identity, member)
                    .await?
                    == moss_online::Change::Applied;
            }
            added
        }
        Some(_) => {
            return Err(Outcome::DeadLetter {
                reason: Failure::local(
                    FailureClass::Conflict,
                    "GroupNameTaken",
                    format!(
                        "a group named {} exists that moss did not create",
                        data.name.as_str()
                    ),
                ),
            });
        }
    };
    tenant.remember(
        subject,
        MappedKind::Group,
        None,
        data.name.as_str(),
        MappedState::Active,
    )?;
    Ok(changed(changed_anything))
}

/// The Exchange identity of a member subject (a user's UPN, a group's name). A member moss
/// cannot find is retried: its own event may still be on the way.
pub(crate) async fn recipient_of(member: &Subject, tenant: &Tenant) -> Step<RecipientId> {
    match known_recipient(member, tenant).await? {
        Some(recipient) => Ok(recipient),
        None => Err(Outcome::Retry {
            after: Some(std::time::Duration::from_secs(2)),
            failure: Failure::local(
                FailureClass::Permanent,
                "MemberUnknown",
                format!("member {member} has no online recipient moss knows of"),
            ),
        }),
    }
}

/// The Exchange identity of a member subject, `None` when moss knows of none. A user this
/// worker's mapping does not hold is looked up by moss's anchor in the tenant (a user created
/// by another worker, or before this data folder existed).
pub(crate) async fn known_recipient(
    member: &Subject,
    tenant: &Tenant,
) -> Step<Option<RecipientId>> {
    let invalid =
        |error: moss_online::FieldError| Outcome::refuse("InvalidField", error.to_string());
    match tenant.mapping.get(&member.to_string())? {
        Some(record) if record.state != MappedState::Removed => {
            RecipientId::parse(&record.name).map(Some).map_err(invalid)
        }
        Some(_) => Ok(None),
        None => match tenant.locate_user(member).await? {
            Some(user) => RecipientId::parse(&user.upn).map(Some).map_err(invalid),
            None => Ok(None),
        },
    }
}
