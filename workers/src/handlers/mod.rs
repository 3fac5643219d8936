//! One handler per event type, each applying its event as the desired end state. Dispatch is
//! an exhaustive `match`, so a new event type does not compile until it has a handler.

mod group_added;
mod group_members_changed;
mod group_removed;
mod online_account_assigned;
mod online_account_unassigned;
mod user_added;
mod user_alias_added;
mod user_alias_removed;
mod user_deactivated;
mod user_password_changed;
mod user_reactivated;
mod user_removed;

use moss_schemas::{Envelope, EventData};

use crate::outcome::Outcome;
use crate::tenant::Tenant;

/// Applies `event` to the tenant once; retries and settling are the caller's.
pub(crate) async fn apply(event: &Envelope, tenant: &Tenant) -> Outcome {
    let subject = &event.subject;
    let step = match &event.data {
        EventData::UserAdded(data) => user_added::apply(subject, data, tenant).await,
        EventData::UserPasswordChanged(data) => {
            user_password_changed::apply(subject, data, tenant).await
        }
        EventData::UserDeactivated(data) => user_deactivated::apply(subject, data, tenant).await,
        EventData::UserReactivated(data) => user_reactivated::apply(subject, data, tenant).await,
        EventData::UserRemoved(data) => user_removed::apply(subject, data, tenant).await,
        EventData::OnlineAccountAssigned(data) => {
            online_account_assigned::apply(subject, data, tenant).await
        }
        EventData::OnlineAccountUnassigned(data) => {
            online_account_unassigned::apply(subject, data, tenant).await
        }
        EventData::UserAliasAdded(data) => user_alias_added::apply(subject, data, tenant).await,
        EventData::UserAliasRemoved(data) => user_alias_removed::apply(subject, data, tenant).await,
        EventData::GroupAdded(data) => group_added::apply(subject, data, tenant).await,
        EventData::GroupMembersChanged(data) => {
            group_members_changed::apply(subject, data, tenant).await
        }
        EventData::GroupRemoved(data) => group_removed::apply(subject, data, tenant).await,
    };
    step.unwrap_or_else(|outcome| outcome)
}

/// `Applied` when something changed, else `AlreadyApplied`.
pub(crate) fn changed(changed: bool) -> Outcome {
    if changed {
        Outcome::Applied
    } else {
        Outcome::AlreadyApplied
    }
}
