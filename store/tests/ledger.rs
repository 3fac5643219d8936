//! The ledger and versions: recording an applied event, duplicates, stale sequences, CAS.

use moss_store::{AppliedEvent, AppliedRecord, AppliedResult, RecordOutcome, Store, VersionUpdate};

fn open_temp() -> (tempfile::TempDir, Store) {
    let directory = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&directory.path().join("db")).expect("open store");
    (directory, store)
}

fn version(store: &Store, subject: &str) -> Option<u64> {
    store
        .versions()
        .expect("versions")
        .get(subject)
        .expect("get")
}

fn event(event_id: &str, subject: &str, sequence: u64) -> AppliedEvent {
    AppliedEvent {
        event_id: event_id.to_owned(),
        record: AppliedRecord {
            subject: subject.to_owned(),
            sequence,
            result: AppliedResult::Applied,
            recorded_at_unix_ms: 1_700_000_000_000,
        },
    }
}

#[test]
fn recording_an_event_writes_the_ledger_and_the_version_together() {
    let (_directory, store) = open_temp();
    let outcome = store
        .record_applied(&event("e1", "user-a", 5))
        .expect("record");
    assert_eq!(outcome, RecordOutcome::Recorded);
    assert_eq!(
        store.ledger().expect("ledger").get("e1").expect("get"),
        Some(event("e1", "user-a", 5).record)
    );
    assert_eq!(version(&store, "user-a"), Some(5));
}

#[test]
fn a_repeated_event_id_is_already_recorded() {
    let (_directory, store) = open_temp();
    store
        .record_applied(&event("e1", "user-a", 5))
        .expect("record");
    let again = store
        .record_applied(&event("e1", "user-a", 6))
        .expect("record");
    assert_eq!(
        again,
        RecordOutcome::AlreadyRecorded(event("e1", "user-a", 5).record)
    );
    assert_eq!(version(&store, "user-a"), Some(5));
}

#[test]
fn an_older_or_equal_sequence_is_stale_and_writes_nothing() {
    let (_directory, store) = open_temp();
    store
        .record_applied(&event("e1", "user-a", 5))
        .expect("record");
    for (id, sequence) in [("e2", 4), ("e3", 5)] {
        let outcome = store
            .record_applied(&event(id, "user-a", sequence))
            .expect("record");
        assert_eq!(outcome, RecordOutcome::Stale { current: 5 });
        assert_eq!(store.ledger().expect("ledger").get(id).expect("get"), None);
    }
    let newer = store
        .record_applied(&event("e4", "user-a", 6))
        .expect("record");
    assert_eq!(newer, RecordOutcome::Recorded);
    // Another subject has its own version.
    let other = store
        .record_applied(&event("e5", "user-b", 1))
        .expect("record");
    assert_eq!(other, RecordOutcome::Recorded);
}

#[test]
fn an_outcome_is_queued_in_the_same_transaction_only_when_recorded() {
    let (_directory, store) = open_temp();
    let outbox = store.outbox("outcomes").expect("outbox");
    let (outcome, id) = store
        .record_applied_with_outcome(&event("e1", "user-a", 5), &outbox, b"applied e1")
        .expect("record");
    assert_eq!(outcome, RecordOutcome::Recorded);
    let pending = outbox.pending(None, 10).expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(Some(pending[0].id), id);
    assert_eq!(pending[0].payload, b"applied e1");

    let (outcome, id) = store
        .record_applied_with_outcome(&event("e2", "user-a", 3), &outbox, b"applied e2")
        .expect("record");
    assert_eq!(outcome, RecordOutcome::Stale { current: 5 });
    assert_eq!(id, None);
    assert_eq!(outbox.len(), 1);
    // Outcome ids keep append order with ordinary appends.
    let later = outbox.append(b"plain").expect("append");
    assert!(Some(later) > pending.first().map(|e| e.id));
}

#[test]
fn a_group_of_records_judges_each_event_on_its_own_in_one_transaction() {
    let (directory, store) = open_temp();
    let outbox = store.outbox("outcomes").expect("outbox");
    store
        .record_applied(&event("old", "user-a", 5))
        .expect("record");
    let fresh = event("fresh", "user-b", 1);
    let stale = event("stale", "user-a", 4);
    let repeated = event("old", "user-a", 5);
    let nameless = event("", "user-c", 1);
    let next = event("next", "user-b", 2);
    let verdicts: Vec<_> = store.record_applied_batch_unflushed(
        &outbox,
        &[
            (&fresh, b"f"),
            (&stale, b"s"),
            (&repeated, b"r"),
            (&nameless, b"n"),
            (&next, b"x"),
        ],
    );
    assert_eq!(verdicts.len(), 5, "one verdict per event, in order");
    let fresh_id = match &verdicts[0] {
        Ok((RecordOutcome::Recorded, Some(id))) => *id,
        other => panic!("the new event is recorded with an outcome entry, got {other:?}"),
    };
    assert!(matches!(
        verdicts[1],
        Ok((RecordOutcome::Stale { current: 5 }, None))
    ));
    assert!(matches!(
        verdicts[2],
        Ok((RecordOutcome::AlreadyRecorded(_), None))
    ));
    let refused = verdicts[3]
        .as_ref()
        .expect_err("an empty event id is refused");
    assert!(refused.to_string().contains("event id"), "{refused}");
    // A later event of a subject written earlier in the same group sees that write.
    let next_id = match &verdicts[4] {
        Ok((RecordOutcome::Recorded, Some(id))) => *id,
        other => panic!("the subject's next event is recorded too, got {other:?}"),
    };
    assert!(next_id > fresh_id, "outcome entries keep the group's order");
    let payloads: Vec<_> = outbox
        .pending(None, 10)
        .expect("pending")
        .into_iter()
        .map(|entry| entry.payload)
        .collect();
    assert_eq!(payloads, vec![b"f".to_vec(), b"x".to_vec()]);

    store.flush().expect("flush");
    drop((outbox, store));
    let store = Store::open(&directory.path().join("db")).expect("reopen");
    assert_eq!(version(&store, "user-b"), Some(2));
    assert_eq!(version(&store, "user-a"), Some(5));
    assert!(
        store
            .ledger()
            .expect("ledger")
            .get("stale")
            .expect("get")
            .is_none()
    );
}

#[test]
fn compare_and_set_detects_a_version_that_moved() {
    let (_directory, store) = open_temp();
    let versions = store.versions().expect("versions");
    assert_eq!(
        versions.compare_and_set("user-a", None, 3).expect("cas"),
        VersionUpdate::Updated
    );
    assert_eq!(
        versions.compare_and_set("user-a", None, 4).expect("cas"),
        VersionUpdate::Conflict { current: Some(3) }
    );
    assert_eq!(
        versions.compare_and_set("user-a", Some(3), 4).expect("cas"),
        VersionUpdate::Updated
    );
    assert_eq!(versions.get("user-a").expect("get"), Some(4));
}

#[test]
fn a_dead_lettered_event_keeps_the_version_and_its_replay_applies() {
    let (_directory, store) = open_temp();
    let mut dead = event("e1", "user-a", 5);
    dead.record.result = AppliedResult::DeadLettered;
    store.record_applied(&dead).expect("record");
    assert_eq!(version(&store, "user-a"), None);
    store
        .ledger()
        .expect("ledger")
        .forget("e1")
        .expect("forget");
    assert_eq!(
        store.ledger().expect("ledger").get("e1").expect("get"),
        None
    );
    let replay = store
        .record_applied(&event("e1", "user-a", 5))
        .expect("record replay");
    assert_eq!(replay, RecordOutcome::Recorded);
}

#[test]
fn an_empty_event_id_is_refused_naming_the_field() {
    let (_directory, store) = open_temp();
    let error = store
        .record_applied(&event("", "user-a", 1))
        .expect_err("empty id");
    assert!(error.to_string().contains("event id"), "{error}");
}

#[test]
fn folding_other_workers_records_adds_unknown_ids_and_never_lowers_a_version() {
    let (_directory, store) = open_temp();
    store
        .record_applied(&event("mine", "user-a", 7))
        .expect("record");
    let mut dead = event("theirs-dead", "user-b", 9);
    dead.record.result = AppliedResult::DeadLettered;
    let added = store
        .fold_recorded(&[
            // Older than this store's version of user-a: the ledger learns the id, the
            // version stays.
            event("theirs-old", "user-a", 3),
            // This store's own record wins over a folded one.
            event("mine", "user-a", 1),
            event("theirs-new", "user-c", 4),
            dead,
        ])
        .expect("fold");
    assert_eq!(added, 3);
    let ledger = store.ledger().expect("ledger");
    let versions = store.versions().expect("versions");
    assert_eq!(
        ledger.get("mine").expect("get").map(|r| r.sequence),
        Some(7)
    );
    assert_eq!(
        ledger.get("theirs-old").expect("get").map(|r| r.result),
        Some(AppliedResult::Applied)
    );
    assert_eq!(versions.get("user-a").expect("get"), Some(7));
    assert_eq!(versions.get("user-c").expect("get"), Some(4));
    assert_eq!(
        ledger.get("theirs-dead").expect("get").map(|r| r.result),
        Some(AppliedResult::DeadLettered)
    );
    assert_eq!(
        versions.get("user-b").expect("get"),
        None,
        "a dead letter does not advance the version"
    );
    // After the fold, a record older than the folded version is stale.
    assert_eq!(
        store
            .record_applied(&event("late", "user-c", 4))
            .expect("record"),
        RecordOutcome::Stale { current: 4 }
    );
}
