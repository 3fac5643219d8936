//! The mass-delete guard (ARCHITECTURE.md guarantee 7): more removals (or, counted apart,
//! deactivations) than a threshold within a sliding window are not applied. The one that would
//! pass the threshold and every later one are dead-lettered as `held`, in order, and wait there
//! for an operator: `moss deletes approve` replays them with `moss-delete-approved: true`, which
//! applies them even over the threshold, `moss deletes reject` drops them. A held letter
//! quarantines its subject like any dead letter, so nothing of that user overtakes it.
//!
//! The window lives in sled ([`DeleteWindow`]), so a restarting worker keeps counting. A slot
//! is taken before the call and given back when the event did not change the tenant (a user
//! without an account, an account already gone), so only real deletes count.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use moss_schemas::{Envelope, EventData};
use moss_store::{DeleteKind, DeleteWindow, MappedKind, MappedState, Mapping, StoreError};

use crate::outcome::{Failure, FailureClass};

/// The thresholds. Entra Connect's export deletion threshold is 500 objects; moss counts
/// removals and deactivations apart, over a sliding window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteGuardSettings {
    /// User removals (`moss.user.removed.v1`) applied per window before the rest are held.
    pub removals: u32,
    /// Deactivations (`moss.user.deactivated.v1` and `moss.online_account.unassigned.v1`)
    /// applied per window before the rest are held.
    pub deactivations: u32,
    /// The sliding window.
    pub window: Duration,
    /// Also hold once this percentage of the mapped users (not yet removed, counted at most
    /// once a minute) would be passed, whichever limit is lower; at least one delete is always
    /// allowed.
    pub percent_of_mapped: Option<u8>,
}

impl Default for DeleteGuardSettings {
    /// 500 removals and 500 deactivations per 30 minutes, no percentage.
    fn default() -> DeleteGuardSettings {
        DeleteGuardSettings {
            removals: 500,
            deactivations: 500,
            window: Duration::from_secs(30 * 60),
            percent_of_mapped: None,
        }
    }
}

/// Whether the operator approved this delivery's delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Approval {
    /// `moss-delete-approved: true`: applied whatever the count.
    Approved,
    /// Subject to the thresholds.
    NotApproved,
}

/// A delete counted in the window, to give back if it changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    kind: DeleteKind,
    at_unix_ms: u64,
    event_id: String,
}

/// What the guard says about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not a delete: nothing to count.
    Unguarded,
    /// Go ahead; the slot is taken.
    Granted(Slot),
    /// Over the threshold: dead-letter it as `held`.
    Held(Failure),
}

/// The guard, shared by every lane of the worker.
#[derive(Debug)]
pub(crate) struct DeleteGuard {
    settings: DeleteGuardSettings,
    window: DeleteWindow,
    mapping: Mapping,
    /// Counting and taking a slot is one step, or two lanes could both take the last slot.
    /// It also guards the cached count of mapped users.
    taking: Mutex<Option<MappedCount>>,
}

/// How many users were mapped, and when that was counted: counting reads the whole mapping, too
/// much to do for each of hundreds of deletes in a row.
#[derive(Debug, Clone, Copy)]
struct MappedCount {
    users: u64,
    at: Instant,
}

/// How long a count of the mapped users is used before it is counted again.
const MAPPED_COUNT_TTL: Duration = Duration::from_secs(60);

impl DeleteGuard {
    pub(crate) fn new(
        settings: DeleteGuardSettings,
        window: DeleteWindow,
        mapping: Mapping,
    ) -> DeleteGuard {
        DeleteGuard {
            settings,
            window,
            mapping,
            taking: Mutex::new(None),
        }
    }

    /// The kind of delete `event` is, if it is one.
    pub(crate) fn kind_of(event: &Envelope) -> Option<DeleteKind> {
        match event.data {
            EventData::UserRemoved(_) => Some(DeleteKind::Removal),
            EventData::UserDeactivated(_) | EventData::OnlineAccountUnassigned(_) => {
                Some(DeleteKind::Deactivation)
            }
            _ => None,
        }
    }

    /// Counts `event` in the window, or holds it. Blocking (sled, with an fsync).
    pub(crate) fn check(
        &self,
        event: &Envelope,
        approval: Approval,
        now_unix_ms: u64,
    ) -> Result<Verdict, StoreError> {
        let Some(kind) = DeleteGuard::kind_of(event) else {
            return Ok(Verdict::Unguarded);
        };
        let window_ms = u64::try_from(self.settings.window.as_millis()).unwrap_or(u64::MAX);
        let since = now_unix_ms.saturating_sub(window_ms);
        let mut mapped = self
            .taking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.window.prune(since)?;
        let limit = self.limit(kind, &mut mapped)?;
        let count = self.window.count_since(kind, since)?;
        if approval == Approval::NotApproved && count as u64 >= limit {
            let (noun, code) = match kind {
                DeleteKind::Removal => ("removals", "DeleteThresholdReached"),
                DeleteKind::Deactivation => ("deactivations", "DeactivateThresholdReached"),
            };
            return Ok(Verdict::Held(Failure::local(
                FailureClass::Held,
                code,
                format!(
                    "{count} {noun} applied in the last {} s reach the threshold of {limit}; held until an operator runs `moss deletes approve` or `moss deletes reject`",
                    self.settings.window.as_secs()
                ),
            )));
        }
        let event_id = event.id.to_string();
        self.window.record(kind, now_unix_ms, &event_id)?;
        Ok(Verdict::Granted(Slot {
            kind,
            at_unix_ms: now_unix_ms,
            event_id,
        }))
    }

    /// Gives a slot back: the event changed nothing. Blocking.
    pub(crate) fn release(&self, slot: &Slot) -> Result<(), StoreError> {
        self.window
            .forget(slot.kind, slot.at_unix_ms, &slot.event_id)
    }

    fn limit(&self, kind: DeleteKind, cached: &mut Option<MappedCount>) -> Result<u64, StoreError> {
        let absolute = u64::from(match kind {
            DeleteKind::Removal => self.settings.removals,
            DeleteKind::Deactivation => self.settings.deactivations,
        });
        let Some(percent) = self.settings.percent_of_mapped else {
            return Ok(absolute);
        };
        let mapped = match *cached {
            Some(count) if count.at.elapsed() < MAPPED_COUNT_TTL => count.users,
            _ => {
                let users = self
                    .mapping
                    .all()?
                    .into_iter()
                    .filter(|(_, record)| {
                        record.kind == MappedKind::User && record.state != MappedState::Removed
                    })
                    .count() as u64;
                *cached = Some(MappedCount {
                    users,
                    at: Instant::now(),
                });
                users
            }
        };
        let share = (mapped * u64::from(percent)).div_ceil(100).max(1);
        Ok(absolute.min(share))
    }
}

#[cfg(test)]
mod tests {
    use moss_schemas::{Sequence, Source, Subject, UserReactivated, UserRemoved};
    use moss_store::{MappingRecord, Store};

    use super::*;

    fn removal() -> Envelope {
        Envelope::new(
            Source::parse("moss-test/unit").unwrap(),
            Subject::parse(&uuid::Uuid::new_v4().to_string()).unwrap(),
            Sequence(1),
            EventData::UserRemoved(UserRemoved {}),
        )
    }

    fn guard(store: &Store, settings: DeleteGuardSettings) -> DeleteGuard {
        DeleteGuard::new(
            settings,
            store.delete_window().unwrap(),
            store.mapping().unwrap(),
        )
    }

    fn small(removals: u32) -> DeleteGuardSettings {
        DeleteGuardSettings {
            removals,
            deactivations: 100,
            window: Duration::from_secs(60),
            percent_of_mapped: None,
        }
    }

    fn granted(verdict: &Verdict) -> bool {
        matches!(verdict, Verdict::Granted(_))
    }

    #[test]
    fn removals_over_the_threshold_in_the_window_are_held_until_it_slides_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let guard = guard(&store, small(3));
        let start = 1_000_000;
        for step in 0..3 {
            let verdict = guard
                .check(&removal(), Approval::NotApproved, start + step * 1_000)
                .unwrap();
            assert!(granted(&verdict));
        }
        match guard
            .check(&removal(), Approval::NotApproved, start + 10_000)
            .unwrap()
        {
            Verdict::Held(failure) => {
                assert_eq!(failure.class, FailureClass::Held);
                assert!(failure.message.contains("threshold of 3"), "{failure}");
            }
            other => panic!("expected a hold, got {other:?}"),
        }
        // The first removal leaves the window 60 s after it was applied: one slot again.
        assert!(granted(
            &guard
                .check(&removal(), Approval::NotApproved, start + 60_001)
                .unwrap()
        ));
        assert!(!granted(
            &guard
                .check(&removal(), Approval::NotApproved, start + 60_002)
                .unwrap()
        ));
    }

    #[test]
    fn with_the_defaults_600_removals_in_one_window_are_held_at_500() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let guard = guard(&store, DeleteGuardSettings::default());
        let start = 1_700_000_000_000;
        let verdicts: Vec<Verdict> = (0..600)
            .map(|step| {
                guard
                    .check(&removal(), Approval::NotApproved, start + step * 1_000)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            verdicts.iter().filter(|verdict| granted(verdict)).count(),
            500
        );
        assert!(verdicts[..500].iter().all(granted));
        assert!(
            verdicts[500..]
                .iter()
                .all(|verdict| matches!(verdict, Verdict::Held(_)))
        );
        assert!(granted(
            &guard
                .check(&removal(), Approval::Approved, start + 600_000)
                .unwrap()
        ));
    }

    #[test]
    fn an_approved_removal_applies_over_the_threshold_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let guard = guard(&store, small(1));
        assert!(granted(
            &guard
                .check(&removal(), Approval::NotApproved, 5_000)
                .unwrap()
        ));
        assert!(granted(
            &guard.check(&removal(), Approval::Approved, 5_001).unwrap()
        ));
        assert_eq!(
            store
                .delete_window()
                .unwrap()
                .count_since(DeleteKind::Removal, 0)
                .unwrap(),
            2
        );
    }

    #[test]
    fn a_released_slot_is_free_again_and_other_events_are_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let guard = guard(&store, small(1));
        let Verdict::Granted(slot) = guard
            .check(&removal(), Approval::NotApproved, 5_000)
            .unwrap()
        else {
            panic!("the first removal is granted");
        };
        guard.release(&slot).unwrap();
        assert!(granted(
            &guard
                .check(&removal(), Approval::NotApproved, 5_001)
                .unwrap()
        ));
        let other = Envelope::new(
            Source::parse("moss-test/unit").unwrap(),
            Subject::parse(&uuid::Uuid::new_v4().to_string()).unwrap(),
            Sequence(1),
            EventData::UserReactivated(UserReactivated {}),
        );
        assert_eq!(
            guard.check(&other, Approval::NotApproved, 5_002).unwrap(),
            Verdict::Unguarded
        );
    }

    #[test]
    fn a_percentage_of_the_mapped_users_lowers_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mapping = store.mapping().unwrap();
        for n in 0..20 {
            mapping
                .put(
                    &format!("user-{n}"),
                    &MappingRecord {
                        kind: MappedKind::User,
                        online_id: None,
                        name: format!("u{n}@example.test"),
                        state: MappedState::Active,
                        updated_at_unix_ms: 0,
                    },
                )
                .unwrap();
        }
        let mut settings = small(500);
        settings.percent_of_mapped = Some(10);
        let guard = guard(&store, settings);
        assert!(granted(
            &guard.check(&removal(), Approval::NotApproved, 1).unwrap()
        ));
        assert!(granted(
            &guard.check(&removal(), Approval::NotApproved, 2).unwrap()
        ));
        assert!(matches!(
            guard.check(&removal(), Approval::NotApproved, 3).unwrap(),
            Verdict::Held(_)
        ));
    }
}
