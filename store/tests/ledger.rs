//! The ledger and versions: recording an applied event, duplicates, stale sequences, CAS.

use moss_store::{AppliedEvent, AppliedRecord, AppliedResult, RecordOutcome, Store, VersionUpdate};

fn open_temp() -> (tempfile::TempDir, Store) {
    let directory = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&directory.path().join("db")).expect("open store");
    (directory, store)
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
    assert_eq!(
        store
            .versions()
            .expect("versions")
            .get("user-a")
            .expect("get"),
        Some(5)
    );
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
    assert_eq!(
        store
            .versions()
            .expect("versions")
            .get("user-a")
            .expect("get"),
        Some(5)
    );
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
    assert_eq!(
        store
            .versions()
            .expect("versions")
            .get("user-a")
            .expect("get"),
        None
    );
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
