//! Kill -9 a process that appends to the outbox, hundreds of times, and check that every
//! append that had returned is still there after each crash, in order, and that the database
//! opens cleanly every time.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use moss_store::{OutboxId, Store};
use rand::Rng;

const KILLS: usize = 200;

#[test]
fn every_returned_append_survives_hundreds_of_sigkills() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db_path = directory.path().join("db");
    let child_binary = env!("CARGO_BIN_EXE_moss-store-crash-child");
    let mut rng = rand::rng();
    // id → number, for every append the child said had returned.
    let mut confirmed: BTreeMap<u64, u64> = BTreeMap::new();
    let mut last_confirmed_id: Option<u64> = None;
    let mut next_number: u64 = 0;
    let mut kills_after_appends = 0;
    let started = Instant::now();

    for round in 0..KILLS {
        let mut child = Command::new(child_binary)
            .arg(&db_path)
            .arg(next_number.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the crash child");
        let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        // Lines read before the kill (rounds that wait for the first append).
        let mut early = String::new();
        // One round in four is killed at a random moment from spawn (often inside sled's open
        // and recovery); the others after the store is open, in the middle of appending: one in
        // four at a random moment after `ready` (often inside the first append and its fsync),
        // two in four a random moment after the first append returned, so that at least half
        // of all kills land among appends however long this disk's fsync takes.
        if !round.is_multiple_of(4) {
            let mut first_line = String::new();
            stdout.read_line(&mut first_line).expect("read ready line");
            if first_line != "ready\n" {
                let mut stderr = String::new();
                child
                    .stderr
                    .take()
                    .expect("child stderr")
                    .read_to_string(&mut stderr)
                    .expect("read child stderr");
                panic!("round {round}: the child did not start: {first_line:?} {stderr}");
            }
            if round % 4 >= 2 {
                stdout
                    .read_line(&mut early)
                    .expect("read the first appended line");
            }
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..30_000)));
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        let mut rest = early;
        stdout.read_to_string(&mut rest).expect("read child stdout");

        let mut appended_this_round = 0;
        // A line cut off by the kill has no newline; only whole lines were printed after a return.
        let whole_lines = rest
            .split_inclusive('\n')
            .filter(|line| line.ends_with('\n'));
        for line in whole_lines {
            let line = line.trim_end();
            if line == "ready" {
                continue;
            }
            let mut fields = line
                .strip_prefix("appended ")
                .expect("an appended line")
                .split(' ');
            let id: u64 = fields.next().and_then(|f| f.parse().ok()).expect("an id");
            let number: u64 = fields
                .next()
                .and_then(|f| f.parse().ok())
                .expect("a number");
            if let Some(previous) = last_confirmed_id {
                assert!(
                    id > previous,
                    "round {round}: id {id} is not after {previous}: ids must grow across crashes"
                );
            }
            last_confirmed_id = Some(id);
            confirmed.insert(id, number);
            next_number = next_number.max(number + 1);
            appended_this_round += 1;
        }
        if appended_this_round > 0 {
            kills_after_appends += 1;
        }

        let store = Store::open(&db_path)
            .unwrap_or_else(|error| panic!("round {round}: the database did not reopen: {error}"));
        let outbox = store.outbox("crash").expect("open the outbox");
        let stored: BTreeMap<u64, Vec<u8>> = outbox
            .pending(None, usize::MAX)
            .expect("read the outbox")
            .into_iter()
            .map(|entry| (entry.id.get(), entry.payload))
            .collect();
        for (id, number) in &confirmed {
            let payload = stored.get(id).unwrap_or_else(|| {
                panic!("round {round}: append {id} (entry-{number}) returned but is gone after the crash")
            });
            assert_eq!(
                payload,
                format!("entry-{number}").as_bytes(),
                "round {round}: append {id} has the wrong payload"
            );
        }
        // pending() must hand entries back in id order, which is append order.
        let pending_ids: Vec<OutboxId> = outbox
            .pending(None, usize::MAX)
            .expect("read the outbox")
            .into_iter()
            .map(|entry| entry.id)
            .collect();
        assert!(pending_ids.windows(2).all(|pair| pair[0] < pair[1]));
        drop(outbox);
        drop(store);
    }

    assert!(
        kills_after_appends >= KILLS / 2,
        "only {kills_after_appends} of {KILLS} kills came after an append; the test is not exercising crashes mid-write"
    );
    assert!(
        confirmed.len() >= KILLS,
        "only {} appends confirmed",
        confirmed.len()
    );
    eprintln!(
        "{KILLS} kills, {} confirmed appends, {kills_after_appends} kills after appends, {:?}",
        confirmed.len(),
        started.elapsed()
    );
}
