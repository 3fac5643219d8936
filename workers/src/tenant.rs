//! What handlers work with: the online client, the key that opens sealed passwords, and the
//! subject → online object mapping; plus the lookups several handlers share.

use std::time::{SystemTime, UNIX_EPOCH};

use moss_online::{
    AccountState, Anchor, NewPassword, OnlineClient, OnlineError, PasswordChange, SkuId, User,
    UserId, UserKey, UserPrincipalName, UserProperty,
};
use moss_schemas::{OpeningKey, SealedSecret, SkuPartNumber, Subject};
use moss_store::{MappedKind, MappedState, Mapping, MappingRecord, StoreError};
use rand::Rng;
use rand::seq::SliceRandom;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::outcome::{Failure, FailureClass, Outcome};

/// A handler step: its value, or the outcome that ends the handler early.
pub(crate) type Step<T> = Result<T, Outcome>;

impl From<OnlineError> for Outcome {
    fn from(error: OnlineError) -> Outcome {
        Outcome::from_online(&error)
    }
}

impl From<StoreError> for Outcome {
    fn from(error: StoreError) -> Outcome {
        Outcome::Retry {
            after: None,
            failure: Failure::local(FailureClass::Local, "LocalStore", error.to_string()),
        }
    }
}

/// The tenant side of a worker.
#[derive(Debug)]
pub(crate) struct Tenant {
    pub(crate) online: OnlineClient,
    pub(crate) opening_key: OpeningKey,
    pub(crate) mapping: Mapping,
    /// Users whose account awaits a free licence seat (`awaiting.rs`).
    pub(crate) awaiting: crate::awaiting::Awaiting,
}

/// An online user found for a subject.
#[derive(Debug, Clone)]
pub(crate) struct LocatedUser {
    pub(crate) id: UserId,
    pub(crate) upn: String,
    pub(crate) state: MappedState,
}

impl LocatedUser {
    pub(crate) fn key(&self) -> UserKey {
        UserKey::Id(self.id)
    }
}

/// Every property the worker reads back.
pub(crate) const USER_SELECT: &[UserProperty] = &[
    UserProperty::Id,
    UserProperty::UserPrincipalName,
    UserProperty::AccountEnabled,
    UserProperty::UsageLocation,
    UserProperty::AssignedLicenses,
    UserProperty::OnPremisesImmutableId,
];

impl Tenant {
    /// The anchor moss writes on the subject's online user (`onPremisesImmutableId`).
    pub(crate) fn anchor(subject: &Subject) -> Step<Anchor> {
        Anchor::parse(&subject.to_string()).map_err(|error| {
            Outcome::refuse(
                "InvalidAnchor",
                format!("{} {}", error.field, error.problem),
            )
        })
    }

    /// The subject's online user: through the mapping, else by our anchor. `None` when the
    /// subject has no online account (never had one, or it was removed).
    pub(crate) async fn locate_user(&self, subject: &Subject) -> Step<Option<LocatedUser>> {
        if let Some(record) = self.mapping.get(&subject.to_string())? {
            if record.kind == MappedKind::User && record.state == MappedState::Removed {
                return Ok(None);
            }
            if let (MappedKind::User, Some(id)) = (record.kind, record.online_id.as_deref())
                && let Ok(id) = UserId::parse(id)
            {
                return Ok(Some(LocatedUser {
                    id,
                    upn: record.name,
                    state: record.state,
                }));
            }
        }
        let anchor = Self::anchor(subject)?;
        let Some(user) = self
            .online
            .find_user_by_anchor(&anchor, USER_SELECT)
            .await?
        else {
            return Ok(None);
        };
        let state = match user.account_enabled {
            Some(false) => MappedState::Inactive,
            _ => MappedState::Active,
        };
        let located = LocatedUser {
            id: user.id,
            upn: user.user_principal_name.clone().unwrap_or_default(),
            state,
        };
        self.remember_user(subject, &located.id, &located.upn, state)?;
        Ok(Some(located))
    }

    /// Records the subject's link to an online user.
    pub(crate) fn remember_user(
        &self,
        subject: &Subject,
        id: &UserId,
        upn: &str,
        state: MappedState,
    ) -> Step<()> {
        self.remember(subject, MappedKind::User, Some(id.to_string()), upn, state)
    }

    pub(crate) fn remember(
        &self,
        subject: &Subject,
        kind: MappedKind,
        online_id: Option<String>,
        name: &str,
        state: MappedState,
    ) -> Step<()> {
        let record = MappingRecord {
            kind,
            online_id,
            name: name.to_owned(),
            state,
            updated_at_unix_ms: unix_ms(),
        };
        // Not flushed here: the ledger record that settles the event is flushed before the
        // ack and covers this write too (sled writes its log in order). A crash before that
        // loses both, and the redelivered event finds the account again by its anchor.
        self.mapping.put_unflushed(&subject.to_string(), &record)?;
        Ok(())
    }

    /// The tenant's SKU ids for part numbers (compared without case).
    pub(crate) async fn sku_ids(&self, wanted: &[SkuPartNumber]) -> Step<Vec<SkuId>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        // Ids by part number only: the catalogue, which licence assignments do not invalidate.
        // A part number it lacks may be a subscription bought since it was read: read again
        // before refusing the event.
        let skus = self.online.sku_catalogue().await?;
        if let Some(ids) = find_sku_ids(&skus, wanted) {
            return Ok(ids);
        }
        let skus = self.online.refresh_subscribed_skus().await?;
        match find_sku_ids(&skus, wanted) {
            Some(ids) => Ok(ids),
            None => {
                let missing = wanted
                    .iter()
                    .find(|part| find_sku_ids(&skus, std::slice::from_ref(*part)).is_none())
                    .map_or("", |part| part.as_str());
                Err(Outcome::refuse(
                    "UnknownSku",
                    format!("the tenant has no subscription for SKU {missing}"),
                ))
            }
        }
    }

    /// Makes `user` hold exactly `desired`. True when something changed.
    pub(crate) async fn set_licences(&self, user: &User, desired: &[SkuId]) -> Step<bool> {
        let held: Vec<SkuId> = user
            .assigned_licenses
            .iter()
            .map(|licence| licence.sku_id)
            .collect();
        let add: Vec<SkuId> = desired
            .iter()
            .copied()
            .filter(|sku| !held.contains(sku))
            .collect();
        let remove: Vec<SkuId> = held
            .iter()
            .copied()
            .filter(|sku| !desired.contains(sku))
            .collect();
        if add.is_empty() && remove.is_empty() {
            return Ok(false);
        }
        let change = self
            .online
            .assign_licenses(&UserKey::Id(user.id), &add, &remove)
            .await?;
        Ok(change == moss_online::Change::Applied)
    }

    /// Reads the user as it is now; a user that vanished is a permanent failure of the event.
    pub(crate) async fn read_user(&self, key: &UserKey) -> Step<User> {
        self.online
            .get_user(key, USER_SELECT)
            .await?
            .ok_or_else(|| {
                Outcome::refuse(
                    "UserNotFound",
                    format!("the online user {key} does not exist (deleted outside moss?)"),
                )
            })
    }

    /// Opens a sealed password just before the call that uses it.
    pub(crate) fn open(&self, sealed: &SealedSecret) -> Step<NewPassword> {
        let password = sealed
            .open(&self.opening_key)
            .map_err(|error| Outcome::DeadLetter {
                reason: Failure::local(
                    FailureClass::SealedSecret,
                    "SealedSecretUnopenable",
                    format!("the sealed password cannot be opened with the workers' key: {error}"),
                ),
            })?;
        Ok(NewPassword {
            password,
            change: PasswordChange::NotRequired,
        })
    }

    /// Sets sign-in as wanted, skipping the call when the user already is so.
    pub(crate) async fn ensure_account_state(
        &self,
        user: &User,
        state: AccountState,
    ) -> Step<bool> {
        let enabled = state == AccountState::Enabled;
        if user.account_enabled == Some(enabled) {
            return Ok(false);
        }
        self.online
            .set_account_state(&UserKey::Id(user.id), state)
            .await?;
        Ok(true)
    }
}

/// The ids of the `wanted` part numbers (compared without case), or `None` if one is missing.
fn find_sku_ids(
    skus: &[moss_online::SubscribedSku],
    wanted: &[SkuPartNumber],
) -> Option<Vec<SkuId>> {
    wanted
        .iter()
        .map(|part| {
            skus.iter()
                .find(|sku| {
                    sku.sku_part_number
                        .as_deref()
                        .is_some_and(|name| name.eq_ignore_ascii_case(part.as_str()))
                })
                .map(|sku| sku.sku_id)
        })
        .collect()
}

/// A UPN in moss-online's type.
pub(crate) fn online_upn(upn: &moss_schemas::Upn) -> Step<UserPrincipalName> {
    UserPrincipalName::parse(upn.as_str()).map_err(|error| {
        Outcome::refuse("InvalidField", format!("{} {}", error.field, error.problem))
    })
}

/// A strong random password nobody is told (ARCHITECTURE.md: the account becomes usable at
/// the user's next password change). Four character classes, 24 characters.
pub(crate) fn random_password() -> NewPassword {
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const DIGITS: &[u8] = b"23456789";
    const SYMBOLS: &[u8] = b"!#$%&*+-=?@^_";
    let mut rng = rand::rng();
    let mut bytes = Zeroizing::new(Vec::with_capacity(24));
    for class in [LOWER, UPPER, DIGITS, SYMBOLS] {
        for _ in 0..6 {
            bytes.push(class[rng.random_range(0..class.len())]);
        }
    }
    bytes.shuffle(&mut rng);
    let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
    NewPassword {
        password: SecretString::from(text.as_str()),
        change: PasswordChange::NotRequired,
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_random_password_has_every_character_class_and_differs_each_time() {
        let first = random_password();
        let second = random_password();
        let text = first.password.expose_secret();
        assert_eq!(text.len(), 24);
        assert!(text.chars().any(|c| c.is_ascii_lowercase()));
        assert!(text.chars().any(|c| c.is_ascii_uppercase()));
        assert!(text.chars().any(|c| c.is_ascii_digit()));
        assert!(text.chars().any(|c| !c.is_ascii_alphanumeric()));
        assert_ne!(text, second.password.expose_secret());
    }
}
