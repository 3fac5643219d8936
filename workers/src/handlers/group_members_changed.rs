//! `moss.group.members_changed.v1`: add and remove members; "already a member" and "not a
//! member" are done.

use moss_online::{Change, RecipientId};
use moss_schemas::{GroupMembersChanged, Subject};
use moss_store::{MappedKind, MappedState};

use crate::handlers::changed;
use crate::handlers::group_added::{known_recipient, recipient_of};
use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant};

pub(crate) async fn apply(
    subject: &Subject,
    data: &GroupMembersChanged,
    tenant: &Tenant,
) -> Step<Outcome> {
    let group = match tenant.mapping.get(&subject.to_string())? {
        Some(record)
            if record.kind == MappedKind::Group && record.state != MappedState::Removed =>
        {
            RecipientId::parse(&record.name)
                .map_err(|error| Outcome::refuse("InvalidField", error.to_string()))?
        }
        _ => {
            return Err(Outcome::refuse(
                "GroupUnknown",
                "moss has not created this group (no group.added applied for the subject)",
            ));
        }
    };
    let mut changed_anything = false;
    for member in &data.add {
        let recipient = recipient_of(member, tenant).await?;
        changed_anything |= tenant
            .online
            .add_distribution_group_member(&group, &recipient)
            .await?
            == Change::Applied;
    }
    for member in &data.remove {
        // A member moss never synchronised cannot be in the group.
        let Some(recipient) = known_recipient(member, tenant).await? else {
            continue;
        };
        changed_anything |= tenant
            .online
            .remove_distribution_group_member(&group, &recipient)
            .await?
            == Change::Applied;
    }
    Ok(changed(changed_anything))
}
