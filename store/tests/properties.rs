//! Property tests of the ledger (with the subjects' versions) and the outbox: random sequences
//! of operations are run against the sled store and against a plain in-memory model of what the
//! documentation promises; every answer and the final state must agree, also after the store
//! is closed and opened again (what a restart sees).

use std::collections::{BTreeMap, HashMap};

use moss_store::{AppliedEvent, AppliedRecord, AppliedResult, OutboxId, RecordOutcome, Store};
use proptest::prelude::*;

/// Opens the store again after the last handle was dropped. sled's flusher thread lets go of the
/// file lock a moment after the last handle: a restart in another process never sees that,
/// a reopen in the same process may, and waits for it here.
fn reopen(path: &std::path::Path) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(path) {
            Err(moss_store::StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            opened => return opened.unwrap(),
        }
    }
}

#[derive(Debug, Clone)]
enum LedgerOp {
    Record {
        event: u8,
        subject: u8,
        sequence: u64,
        result: AppliedResult,
    },
    Forget {
        event: u8,
    },
}

fn ledger_op() -> impl Strategy<Value = LedgerOp> {
    let result = prop_oneof![
        Just(AppliedResult::Applied),
        Just(AppliedResult::DoneBefore),
        Just(AppliedResult::DeadLettered),
    ];
    prop_oneof![
        4 => (0_u8..12, 0_u8..3, 0_u64..8, result).prop_map(|(event, subject, sequence, result)| {
            LedgerOp::Record { event, subject, sequence, result }
        }),
        1 => (0_u8..12).prop_map(|event| LedgerOp::Forget { event }),
    ]
}

/// What the ledger promises: a known id is reported and nothing written; a sequence at or
/// below the subject's version is stale and nothing written; otherwise the record is kept and,
/// unless it is a dead letter, the subject's version moves to its sequence.
#[derive(Debug, Default)]
struct LedgerModel {
    records: HashMap<String, AppliedRecord>,
    versions: HashMap<String, u64>,
}

impl LedgerModel {
    fn record(&mut self, event: &AppliedEvent) -> RecordOutcome {
        if let Some(existing) = self.records.get(&event.event_id) {
            return RecordOutcome::AlreadyRecorded(existing.clone());
        }
        if let Some(&current) = self.versions.get(&event.record.subject)
            && current >= event.record.sequence
        {
            return RecordOutcome::Stale { current };
        }
        self.records
            .insert(event.event_id.clone(), event.record.clone());
        if event.record.result.advances_version() {
            self.versions
                .insert(event.record.subject.clone(), event.record.sequence);
        }
        RecordOutcome::Recorded
    }
}

fn check_ledger_state(store: &Store, model: &LedgerModel) -> Result<(), TestCaseError> {
    let ledger = store.ledger().unwrap();
    let versions = store.versions().unwrap();
    prop_assert_eq!(ledger.len(), model.records.len());
    for event in 0..12 {
        let id = format!("event-{event}");
        prop_assert_eq!(ledger.get(&id).unwrap(), model.records.get(&id).cloned());
    }
    for subject in 0..3 {
        let subject = format!("subject-{subject}");
        prop_assert_eq!(
            versions.get(&subject).unwrap(),
            model.versions.get(&subject).copied()
        );
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum OutboxOp {
    Append(Vec<u8>),
    AppendAll(Vec<Vec<u8>>),
    /// Removes the n-th waiting entry (modulo their number).
    Remove(usize),
    /// Removes the first n waiting entries at once (as the relay does after a confirm).
    RemoveFirst(usize),
    /// Reads up to `limit` entries after the n-th waiting one (or from the start).
    Pending {
        after: Option<usize>,
        limit: usize,
    },
    /// Closes the store and opens it again.
    Reopen,
}

fn outbox_op() -> impl Strategy<Value = OutboxOp> {
    let payload = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        4 => payload.clone().prop_map(OutboxOp::Append),
        2 => proptest::collection::vec(payload, 0..5).prop_map(OutboxOp::AppendAll),
        2 => any::<usize>().prop_map(OutboxOp::Remove),
        1 => (0_usize..4).prop_map(OutboxOp::RemoveFirst),
        3 => (proptest::option::of(any::<usize>()), 0_usize..6)
            .prop_map(|(after, limit)| OutboxOp::Pending { after, limit }),
        1 => Just(OutboxOp::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_and_the_versions_behave_as_documented(
        ops in proptest::collection::vec(ledger_op(), 1..30)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut model = LedgerModel::default();
        {
            let store = Store::open(&path).unwrap();
            for op in &ops {
                match op {
                    LedgerOp::Record { event, subject, sequence, result } => {
                        let event = AppliedEvent {
                            event_id: format!("event-{event}"),
                            record: AppliedRecord {
                                subject: format!("subject-{subject}"),
                                sequence: *sequence,
                                result: *result,
                                recorded_at_unix_ms: 1_700_000_000_000 + sequence,
                            },
                        };
                        let expected = model.record(&event);
                        prop_assert_eq!(store.record_applied(&event).unwrap(), expected);
                    }
                    LedgerOp::Forget { event } => {
                        let id = format!("event-{event}");
                        store.ledger().unwrap().forget(&id).unwrap();
                        model.records.remove(&id);
                    }
                }
            }
            check_ledger_state(&store, &model)?;
            store.flush().unwrap();
        }
        // What a restarted worker sees.
        let reopened = reopen(&path);
        check_ledger_state(&reopened, &model)?;
    }

    #[test]
    fn the_outbox_keeps_every_entry_in_append_order_until_removed(
        ops in proptest::collection::vec(outbox_op(), 1..40)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut store = Store::open(&path).unwrap();
        let mut outbox = store.outbox("events").unwrap();
        let mut model: BTreeMap<OutboxId, Vec<u8>> = BTreeMap::new();
        let mut last_id: Option<OutboxId> = None;
        for op in ops {
            match op {
                OutboxOp::Append(payload) => {
                    let id = outbox.append(&payload).unwrap();
                    prop_assert!(last_id.is_none_or(|last| id > last), "ids only grow");
                    last_id = Some(id);
                    model.insert(id, payload);
                }
                OutboxOp::AppendAll(payloads) => {
                    let ids = outbox.append_all(&payloads).unwrap();
                    prop_assert_eq!(ids.len(), payloads.len());
                    for (id, payload) in ids.into_iter().zip(payloads) {
                        prop_assert!(last_id.is_none_or(|last| id > last), "ids only grow, in the order given");
                        last_id = Some(id);
                        model.insert(id, payload);
                    }
                }
                OutboxOp::Remove(nth) => {
                    if !model.is_empty() {
                        let id = *model.keys().nth(nth % model.len()).unwrap();
                        outbox.remove(id).unwrap();
                        model.remove(&id);
                        // Removing again is not an error.
                        outbox.remove(id).unwrap();
                    }
                }
                OutboxOp::RemoveFirst(count) => {
                    let ids: Vec<OutboxId> = model.keys().take(count).copied().collect();
                    outbox.remove_all(&ids).unwrap();
                    for id in ids {
                        model.remove(&id);
                    }
                }
                OutboxOp::Pending { after, limit } => {
                    let after = after.and_then(|nth| {
                        (!model.is_empty()).then(|| *model.keys().nth(nth % model.len()).unwrap())
                    });
                    let got: Vec<(OutboxId, Vec<u8>)> = outbox
                        .pending(after, limit)
                        .unwrap()
                        .into_iter()
                        .map(|entry| (entry.id, entry.payload))
                        .collect();
                    let expected: Vec<(OutboxId, Vec<u8>)> = model
                        .iter()
                        .filter(|(id, _)| after.is_none_or(|after| **id > after))
                        .take(limit)
                        .map(|(id, payload)| (*id, payload.clone()))
                        .collect();
                    prop_assert_eq!(got, expected);
                }
                OutboxOp::Reopen => {
                    drop(outbox);
                    drop(store);
                    store = reopen(&path);
                    outbox = store.outbox("events").unwrap();
                }
            }
            prop_assert_eq!(outbox.len(), model.len());
            prop_assert_eq!(outbox.is_empty(), model.is_empty());
        }
        let everything: Vec<(OutboxId, Vec<u8>)> = outbox
            .pending(None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|entry| (entry.id, entry.payload))
            .collect();
        prop_assert_eq!(everything, model.into_iter().collect::<Vec<_>>());
    }
}
