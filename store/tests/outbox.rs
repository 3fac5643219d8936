//! The outbox's contract: durable appends, append order, cursor reads, removal, the watch.

use std::time::Duration;

use moss_store::{OutboxId, Store, StoreError, WatchWake};

fn open_temp() -> (tempfile::TempDir, Store) {
    let directory = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&directory.path().join("db")).expect("open store");
    (directory, store)
}

#[test]
fn entries_come_back_in_append_order() {
    let (_directory, store) = open_temp();
    let outbox = store.outbox("events").expect("outbox");
    let first = outbox.append(b"one").expect("append");
    let batch = outbox
        .append_all(&[b"two".to_vec(), b"three".to_vec()])
        .expect("append_all");
    let last = outbox.append(b"four").expect("append");
    let pending = outbox.pending(None, 10).expect("pending");
    let payloads: Vec<&[u8]> = pending.iter().map(|e| e.payload.as_slice()).collect();
    assert_eq!(payloads, [&b"one"[..], b"two", b"three", b"four"]);
    let ids: Vec<OutboxId> = pending.iter().map(|e| e.id).collect();
    assert_eq!(ids, [first, batch[0], batch[1], last]);
    assert_eq!(outbox.len(), 4);
}

#[test]
fn a_cursor_and_a_limit_page_through_the_outbox() {
    let (_directory, store) = open_temp();
    let outbox = store.outbox("events").expect("outbox");
    let ids = outbox
        .append_all(&(0..5).map(|n| vec![n]).collect::<Vec<_>>())
        .expect("append_all");
    let page = outbox.pending(Some(ids[1]), 2).expect("pending");
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[2], ids[3]]
    );
    assert!(
        outbox
            .pending(Some(ids[4]), 10)
            .expect("pending")
            .is_empty()
    );
}

#[test]
fn removed_entries_are_no_longer_pending() {
    let (_directory, store) = open_temp();
    let outbox = store.outbox("events").expect("outbox");
    let ids = outbox
        .append_all(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
        .expect("append_all");
    outbox.remove(ids[0]).expect("remove");
    outbox.remove_all(&[ids[2]]).expect("remove_all");
    outbox.remove(ids[0]).expect("removing twice is fine");
    let pending = outbox.pending(None, 10).expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].payload, b"b");
}

#[test]
fn outboxes_with_different_names_are_separate() {
    let (_directory, store) = open_temp();
    let events = store.outbox("events").expect("outbox");
    let outcomes = store.outbox("outcomes").expect("outbox");
    events.append(b"event").expect("append");
    assert!(outcomes.is_empty());
    assert_eq!(events.len(), 1);
}

#[test]
fn appends_survive_closing_and_reopening_with_growing_ids() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("db");
    let first = {
        let store = Store::open(&path).expect("open");
        store
            .outbox("events")
            .expect("outbox")
            .append(b"kept")
            .expect("append")
    };
    let store = Store::open(&path).expect("reopen");
    let outbox = store.outbox("events").expect("outbox");
    let second = outbox.append(b"later").expect("append");
    assert!(second > first);
    let pending = outbox.pending(None, 10).expect("pending");
    assert_eq!(pending[0].id, first);
    assert_eq!(pending[0].payload, b"kept");
}

#[test]
fn async_appends_are_stored_too() {
    let (_directory, store) = open_temp();
    let outbox = store.outbox("events").expect("outbox");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (one, many) = runtime.block_on(async {
        let one = outbox.append_async(b"one").await.expect("append_async");
        let many = outbox
            .append_all_async(&[b"two".to_vec(), b"three".to_vec()])
            .await
            .expect("append_all_async");
        (one, many)
    });
    assert!(one < many[0] && many[0] < many[1]);
    assert_eq!(outbox.len(), 3);
}

#[test]
fn the_watch_wakes_on_an_append_and_times_out_without_one() {
    let (_directory, store) = open_temp();
    let outbox = store.outbox("events").expect("outbox");
    let mut watch = outbox.watch();
    assert_eq!(
        watch.wait_blocking(Duration::from_millis(20)),
        WatchWake::TimedOut
    );
    let writer = outbox.clone();
    let handle = std::thread::spawn(move || writer.append(b"wake up").expect("append"));
    assert_eq!(
        watch.wait_blocking(Duration::from_secs(10)),
        WatchWake::Appended
    );
    handle.join().expect("writer thread");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut watch = outbox.watch();
    outbox.append(b"again").expect("append");
    let woke = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), watch.appended()).await });
    assert_eq!(
        woke.expect("woken before the deadline"),
        WatchWake::Appended
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_as_locked() {
    let (directory, _store) = open_temp();
    match Store::open(&directory.path().join("db")) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn a_bad_outbox_name_is_refused_naming_the_field() {
    let (_directory, store) = open_temp();
    for name in ["", "Events", "a/b", &"x".repeat(65)] {
        let error = store.outbox(name).expect_err("bad name");
        assert!(
            error.to_string().starts_with("invalid outbox name"),
            "{error}"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_missing_data_directory_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("nested").join("db");
    let _store = Store::open(&path).expect("open");
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// A relay that registers a watch and then falls behind (publishing a long batch before it
/// waits again) must never hold up writers: sled's own watch channel is bounded and once
/// blocked every append, inside the append-order lock, and so the whole worker.
#[test]
fn a_watch_nobody_waits_on_never_blocks_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let outbox = store.outbox("outcomes").unwrap();
    let mut watch = outbox.watch();
    let writer = outbox.clone();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for n in 0..5_000_u32 {
            writer.append(&n.to_be_bytes()).unwrap();
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(120))
        .expect("5000 appends with an idle watch finish instead of blocking");
    assert_eq!(outbox.len(), 5_000);
    assert_eq!(
        watch.wait_blocking(Duration::from_millis(10)),
        WatchWake::Appended
    );
    assert_eq!(
        watch.wait_blocking(Duration::from_millis(10)),
        WatchWake::TimedOut
    );
}

#[test]
fn weigh_sums_over_every_entry_without_removing_any() {
    let (_directory, store) = open_temp();
    let outbox = store.outbox("events").expect("outbox");
    assert_eq!(outbox.weigh(|_| 1).expect("weigh"), 0);
    outbox
        .append_all(&[vec![3, 0], vec![5], vec![2, 9, 9]])
        .expect("append_all");
    // A producer's entries hold groups of events; its backlog is the sum of the group sizes.
    assert_eq!(
        outbox
            .weigh(|payload| u64::from(payload[0]))
            .expect("weigh"),
        10
    );
    assert_eq!(outbox.len(), 3, "weighing reads, it does not take");
}
