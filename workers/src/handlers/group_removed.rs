//! `moss.group.removed.v1`: remove the distribution group; one already gone is done.

use moss_online::{Change, RecipientId};
use moss_schemas::{GroupRemoved, Subject};
use moss_store::{MappedKind, MappedState};

use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant};

pub(crate) async fn apply(
    subject: &Subject,
    _data: &GroupRemoved,
    tenant: &Tenant,
) -> Step<Outcome> {
    let record = match tenant.mapping.get(&subject.to_string())? {
        Some(record)
            if record.kind == MappedKind::Group && record.state != MappedState::Removed =>
        {
            record
        }
        _ => return Ok(Outcome::AlreadyApplied),
    };
    let identity = RecipientId::parse(&record.name)
        .map_err(|error| Outcome::refuse("InvalidField", error.to_string()))?;
    let change = tenant.online.remove_distribution_group(&identity).await?;
    tenant.remember(
        subject,
        MappedKind::Group,
        None,
        &record.name,
        MappedState::Removed,
    )?;
    Ok(match change {
        Change::Applied => Outcome::Applied,
        Change::AlreadyDone => Outcome::AlreadyApplied,
    })
}
