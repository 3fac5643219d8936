use std::fmt;

use serde::{Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

use crate::error::{SledResultExt, StoreError};
use crate::outbox::{Outbox, OutboxId};
use crate::store::Store;

/// How an event ended, as the ledger remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppliedResult {
    /// The worker changed the tenant.
    Applied,
    /// The tenant already was in the desired state (e.g. "already exists" with our anchor).
    DoneBefore,
    /// The event was dead-lettered for good; a replay gets a new attempt, not a skip.
    DeadLettered,
}

impl AppliedResult {
    /// A dead-lettered event leaves its subject's version where it was, so that its replay
    /// (same sequence) is applied rather than found stale.
    #[must_use]
    pub fn advances_version(self) -> bool {
        match self {
            AppliedResult::Applied | AppliedResult::DoneBefore => true,
            AppliedResult::DeadLettered => false,
        }
    }
}

/// What the ledger keeps per event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRecord {
    /// The directory object the event was about.
    pub subject: String,
    /// The event's `sequence`.
    pub sequence: u64,
    /// How it ended.
    pub result: AppliedResult,
    /// When it was recorded, milliseconds since the Unix epoch.
    pub recorded_at_unix_ms: u64,
}

/// An event the worker has finished with, to record in one transaction with its subject's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedEvent {
    /// The CloudEvents `id`.
    pub event_id: String,
    /// The record to keep for it.
    pub record: AppliedRecord,
}

/// What [`Store::record_applied`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The ledger entry and the subject's version were written (and flushed).
    Recorded,
    /// The ledger already had this event id; nothing was written.
    AlreadyRecorded(AppliedRecord),
    /// The subject's version is already at or past this event's sequence; nothing was written.
    Stale {
        /// The subject's last applied sequence.
        current: u64,
    },
}

/// Event id → [`AppliedRecord`]: which events were already applied, so a redelivery is skipped.
#[derive(Clone)]
pub struct Ledger {
    tree: sled::Tree,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

impl Ledger {
    pub(crate) fn new(tree: sled::Tree) -> Ledger {
        Ledger { tree }
    }

    /// The record for `event_id`, if the event was recorded.
    pub fn get(&self, event_id: &str) -> Result<Option<AppliedRecord>, StoreError> {
        self.tree
            .get(event_id.as_bytes())
            .during("read the ledger")?
            .map(|bytes| decode_record(&bytes))
            .transpose()
    }

    /// Forgets `event_id` (so that an operator's replay of a dead-lettered event is applied).
    pub fn forget(&self, event_id: &str) -> Result<(), StoreError> {
        self.tree
            .remove(event_id.as_bytes())
            .during("remove a ledger entry")?;
        Ok(())
    }

    /// The number of recorded events; O(entries).
    #[must_use]
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// True when nothing is recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

/// What [`Versions::compare_and_set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionUpdate {
    /// The version was `expected` and is now the new value (flushed).
    Updated,
    /// The version was not `expected`; nothing was written.
    Conflict {
        /// What the version actually is.
        current: Option<u64>,
    },
}

/// Subject → last applied `sequence`, so that a stale event is recognised.
#[derive(Clone)]
pub struct Versions {
    store: Store,
    tree: sled::Tree,
}

impl fmt::Debug for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Versions").finish_non_exhaustive()
    }
}

impl Versions {
    pub(crate) fn new(store: Store, tree: sled::Tree) -> Versions {
        Versions { store, tree }
    }

    /// The last applied sequence of `subject`.
    pub fn get(&self, subject: &str) -> Result<Option<u64>, StoreError> {
        self.tree
            .get(subject.as_bytes())
            .during("read a version")?
            .map(|bytes| decode_version(&bytes))
            .transpose()
    }

    /// Sets `subject`'s version to `new` only if it is `expected` now (`None`: no version yet).
    /// Flushed before it returns when it updates.
    pub fn compare_and_set(
        &self,
        subject: &str,
        expected: Option<u64>,
        new: u64,
    ) -> Result<VersionUpdate, StoreError> {
        let expected_bytes = expected.map(u64::to_be_bytes);
        let swapped = self
            .tree
            .compare_and_swap(
                subject.as_bytes(),
                expected_bytes.as_ref().map(<[u8; 8]>::as_slice),
                Some(&new.to_be_bytes()[..]),
            )
            .during("update a version")?;
        match swapped {
            Ok(()) => {
                self.store.flush()?;
                Ok(VersionUpdate::Updated)
            }
            Err(conflict) => Ok(VersionUpdate::Conflict {
                current: conflict
                    .current
                    .map(|bytes| decode_version(&bytes))
                    .transpose()?,
            }),
        }
    }
}

impl Store {
    /// Records that a worker finished with an event: the ledger entry and the subject's version
    /// move together, in one transaction, flushed before this returns (so the worker may ack).
    /// A [`AppliedResult::DeadLettered`] record leaves the version alone.
    ///
    /// A repeated event id or a sequence at or below the subject's version writes nothing and
    /// says so. Blocking (one fsync).
    pub fn record_applied(&self, event: &AppliedEvent) -> Result<RecordOutcome, StoreError> {
        self.record_applied_inner(event)
    }

    /// Like [`Store::record_applied`], and in the same transaction appends `outcome_payload`
    /// to `outbox` (the outcome event), so that an applied event always has its outcome queued.
    /// The outbox entry is written only when the outcome is [`RecordOutcome::Recorded`].
    pub fn record_applied_with_outcome(
        &self,
        event: &AppliedEvent,
        outbox: &Outbox,
        outcome_payload: &[u8],
    ) -> Result<(RecordOutcome, Option<OutboxId>), StoreError> {
        let recorded =
            self.record_applied_with_outcome_unflushed(event, outbox, outcome_payload)?;
        if recorded.0 == RecordOutcome::Recorded {
            self.flush()?;
        }
        Ok(recorded)
    }

    /// Like [`Store::record_applied_with_outcome`] but **not yet durable** when it returns: the
    /// caller must await [`Store::flush_grouped`] (or call [`Store::flush`]) before it acts on a
    /// [`RecordOutcome::Recorded`] (before a worker acks). Lets many workers' records share
    /// one fsync. Blocking (sled reads and writes, no fsync).
    pub fn record_applied_with_outcome_unflushed(
        &self,
        event: &AppliedEvent,
        outbox: &Outbox,
        outcome_payload: &[u8],
    ) -> Result<(RecordOutcome, Option<OutboxId>), StoreError> {
        self.record_applied_batch_unflushed(outbox, &[(event, outcome_payload)])
            .pop()
            .unwrap_or_else(|| {
                Err(StoreError::Engine {
                    operation: "record an applied event",
                    detail: "no verdict for the event".to_owned(),
                })
            })
    }

    /// [`Store::record_applied_with_outcome_unflushed`] for several events in **one** sled
    /// transaction: one verdict per event, in order. Each event is judged on its own (a
    /// duplicate or stale one, or one whose subject's stored version is malformed, writes
    /// nothing and says so; the others are written), and the
    /// transaction writes all of them or none. sled seals a log buffer for every transaction
    /// (its I/O pool then writes it and wakes every idle I/O thread), so a worker settling
    /// hundreds of events a second writes them in groups. Not yet durable when it returns.
    /// Blocking (sled reads and writes, no fsync).
    pub fn record_applied_batch_unflushed(
        &self,
        outbox: &Outbox,
        events: &[(&AppliedEvent, &[u8])],
    ) -> Vec<RecordVerdict> {
        let mut verdicts: Vec<Option<RecordVerdict>> = Vec::with_capacity(events.len());
        let mut valid = Vec::with_capacity(events.len());
        for (index, (event, payload)) in events.iter().enumerate() {
            match encode_applied(event) {
                Ok(bytes) => {
                    verdicts.push(None);
                    valid.push((index, *event, bytes, *payload));
                }
                Err(error) => verdicts.push(Some(Err(error))),
            }
        }
        let trees = self
            .ledger_tree()
            .and_then(|ledger| Ok((ledger, self.versions_tree()?)));
        let (ledger, versions) = match trees {
            Ok(trees) => trees,
            Err(error) => return copies_of(&error, events.len()),
        };
        let written = {
            // An outbox append must become visible in id order (see Store::append_order).
            let _order = outbox.store().lock_append_order();
            (&ledger, &versions, outbox.tree()).transaction(|(ledger, versions, outbox)| {
                let mut written = Vec::with_capacity(valid.len());
                for (_, event, record_bytes, payload) in &valid {
                    match write_applied(ledger, versions, event, record_bytes) {
                        // A malformed version is this event's problem: the group's other
                        // events are still written (write_applied wrote nothing for it).
                        Ok(Err(verdict)) | Err(ConflictableTransactionError::Abort(verdict)) => {
                            written.push(Err(verdict));
                        }
                        Err(other) => return Err(other),
                        Ok(Ok(())) => {
                            let id = OutboxId::from_u64(outbox.generate_id()?);
                            outbox.insert(&id.key()[..], *payload)?;
                            written.push(Ok(id));
                        }
                    }
                }
                Ok(written)
            })
        };
        let written = match written {
            Ok(written) => written,
            Err(TransactionError::Abort(verdict)) => {
                let error = verdict_outcome(verdict)
                    .err()
                    .unwrap_or(StoreError::Engine {
                        operation: "record an applied event",
                        detail: "the transaction was aborted".to_owned(),
                    });
                return copies_of(&error, events.len());
            }
            Err(TransactionError::Storage(error)) => {
                let error = StoreError::from_sled("record an applied event", error);
                return copies_of(&error, events.len());
            }
        };
        if written.iter().any(Result::is_ok) {
            outbox.signal_appended();
        }
        for ((index, ..), written) in valid.iter().zip(written) {
            verdicts[*index] = Some(match written {
                Ok(id) => Ok((RecordOutcome::Recorded, Some(id))),
                Err(verdict) => verdict_outcome(verdict).map(|outcome| (outcome, None)),
            });
        }
        verdicts
            .into_iter()
            .map(|verdict| {
                verdict.unwrap_or_else(|| {
                    Err(StoreError::Engine {
                        operation: "record an applied event",
                        detail: "no verdict for the event".to_owned(),
                    })
                })
            })
            .collect()
    }

    fn record_applied_inner(&self, event: &AppliedEvent) -> Result<RecordOutcome, StoreError> {
        let record_bytes = encode_applied(event)?;
        let ledger = self.ledger_tree()?;
        let versions = self.versions_tree()?;
        let result = (&ledger, &versions).transaction(|(ledger, versions)| {
            write_applied(ledger, versions, event, &record_bytes)
        });
        let verdict = match result {
            Ok(verdict) => verdict,
            Err(TransactionError::Abort(other)) => Err(other),
            Err(TransactionError::Storage(error)) => {
                return Err(StoreError::from_sled("record an applied event", error));
            }
        };
        match verdict {
            Ok(()) => {
                self.flush()?;
                Ok(RecordOutcome::Recorded)
            }
            Err(verdict) => verdict_outcome(verdict),
        }
    }
}

impl Store {
    /// Folds what other workers recorded (their outcome events) into this store: each event id
    /// the ledger lacks is added, and an [`AppliedResult::advances_version`] record raises its
    /// subject's version to its sequence if that is higher (a version never goes down). An
    /// event id the ledger has keeps its own record, except that an applied record replaces a
    /// dead-lettered one (another worker applied its replay). Flushed once, before this
    /// returns. Returns how many ledger entries were added or replaced. Blocking (one fsync).
    pub fn fold_recorded(&self, events: &[AppliedEvent]) -> Result<usize, StoreError> {
        let ledger = self.ledger_tree()?;
        let versions = self.versions_tree()?;
        let mut added = 0;
        for event in events {
            if event.event_id.is_empty() || event.record.subject.is_empty() {
                continue;
            }
            let record_bytes =
                serde_json::to_vec(&event.record).map_err(|source| StoreError::Decode {
                    record: "ledger",
                    source,
                })?;
            let mut written = false;
            ledger
                .fetch_and_update(event.event_id.as_bytes(), |existing| {
                    let replace = match existing {
                        None => true,
                        Some(bytes) => {
                            event.record.result.advances_version()
                                && decode_record(bytes).is_ok_and(|record| {
                                    record.result == AppliedResult::DeadLettered
                                })
                        }
                    };
                    written = replace;
                    if replace {
                        Some(record_bytes.clone())
                    } else {
                        existing.map(<[u8]>::to_vec)
                    }
                })
                .during("fold a ledger entry")?;
            if written {
                added += 1;
            }
            if event.record.result.advances_version() {
                let sequence = event.record.sequence;
                versions
                    .fetch_and_update(event.record.subject.as_bytes(), |current| {
                        let current = current
                            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                            .map(u64::from_be_bytes);
                        let next = current.map_or(sequence, |current| current.max(sequence));
                        Some(next.to_be_bytes().to_vec())
                    })
                    .during("fold a version")?;
            }
        }
        self.flush()?;
        Ok(added)
    }
}

/// Checks the ledger and the version and, when the event is new and not stale, writes both.
fn write_applied(
    ledger: &TransactionalTree,
    versions: &TransactionalTree,
    event: &AppliedEvent,
    record_bytes: &[u8],
) -> Result<Result<(), TxVerdict>, ConflictableTransactionError<TxVerdict>> {
    if let Some(existing) = ledger.get(event.event_id.as_bytes())? {
        return Ok(Err(TxVerdict::AlreadyRecorded(existing.to_vec())));
    }
    if let Some(current) = versions.get(event.record.subject.as_bytes())? {
        let Ok(bytes) = <[u8; 8]>::try_from(current.as_ref()) else {
            return Err(ConflictableTransactionError::Abort(TxVerdict::BadVersion(
                current.len(),
            )));
        };
        let current = u64::from_be_bytes(bytes);
        if current >= event.record.sequence {
            return Ok(Err(TxVerdict::Stale(current)));
        }
    }
    ledger.insert(event.event_id.as_bytes(), record_bytes)?;
    if event.record.result.advances_version() {
        versions.insert(
            event.record.subject.as_bytes(),
            &event.record.sequence.to_be_bytes()[..],
        )?;
    }
    Ok(Ok(()))
}

/// What recording one event with its outcome came to: the outcome's outbox entry when the
/// event was new to the ledger.
pub type RecordVerdict = Result<(RecordOutcome, Option<OutboxId>), StoreError>;

/// Checks an event's names and encodes its ledger record.
fn encode_applied(event: &AppliedEvent) -> Result<Vec<u8>, StoreError> {
    if event.event_id.is_empty() {
        return Err(StoreError::InvalidName {
            field: "event id",
            reason: "it is empty".to_owned(),
        });
    }
    if event.record.subject.is_empty() {
        return Err(StoreError::InvalidName {
            field: "subject",
            reason: "it is empty".to_owned(),
        });
    }
    serde_json::to_vec(&event.record).map_err(|source| StoreError::Decode {
        record: "ledger",
        source,
    })
}

/// One copy of `error` per event of a batch that failed as a whole.
fn copies_of<T>(error: &StoreError, count: usize) -> Vec<Result<T, StoreError>> {
    (0..count)
        .map(|_| {
            Err(StoreError::Engine {
                operation: "record an applied event",
                detail: error.to_string(),
            })
        })
        .collect()
}

/// What a transaction's verdict tells the caller: a duplicate or stale event, or a malformed
/// version.
fn verdict_outcome(verdict: TxVerdict) -> Result<RecordOutcome, StoreError> {
    match verdict {
        TxVerdict::AlreadyRecorded(bytes) => {
            Ok(RecordOutcome::AlreadyRecorded(decode_record(&bytes)?))
        }
        TxVerdict::Stale(current) => Ok(RecordOutcome::Stale { current }),
        TxVerdict::BadVersion(len) => Err(StoreError::Malformed {
            record: "version",
            detail: format!("value of {len} bytes, expected 8"),
        }),
    }
}

/// Why a record transaction wrote nothing.
enum TxVerdict {
    AlreadyRecorded(Vec<u8>),
    Stale(u64),
    BadVersion(usize),
}

fn decode_record(bytes: &[u8]) -> Result<AppliedRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        record: "ledger",
        source,
    })
}

fn decode_version(bytes: &[u8]) -> Result<u64, StoreError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Malformed {
        record: "version",
        detail: format!("value of {} bytes, expected 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(id: &str, subject: &str) -> AppliedEvent {
        AppliedEvent {
            event_id: id.to_owned(),
            record: AppliedRecord {
                subject: subject.to_owned(),
                sequence: 7,
                result: AppliedResult::Applied,
                recorded_at_unix_ms: 0,
            },
        }
    }

    #[test]
    fn a_malformed_version_fails_its_own_event_and_not_the_rest_of_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let outbox = store.outbox("outcomes").unwrap();
        store
            .versions_tree()
            .unwrap()
            .insert("broken-user", &b"abc"[..])
            .unwrap();
        let before = applied("before", "user-a");
        let broken = applied("broken", "broken-user");
        let after = applied("after", "user-b");
        let verdicts = store.record_applied_batch_unflushed(
            &outbox,
            &[(&before, b"1"), (&broken, b"2"), (&after, b"3")],
        );
        assert!(matches!(
            verdicts[0],
            Ok((RecordOutcome::Recorded, Some(_)))
        ));
        let error = verdicts[1]
            .as_ref()
            .expect_err("the malformed version is reported");
        assert!(
            error.to_string().contains("version"),
            "the error names the record: {error}"
        );
        assert!(matches!(
            verdicts[2],
            Ok((RecordOutcome::Recorded, Some(_)))
        ));
        let ledger = store.ledger().unwrap();
        assert!(ledger.get("before").unwrap().is_some());
        assert!(
            ledger.get("broken").unwrap().is_none(),
            "nothing written for it"
        );
        assert!(ledger.get("after").unwrap().is_some());
        assert_eq!(outbox.len(), 2);
    }
}
