//! A writer for the outbox crash test (`tests/outbox_crash.rs`), not a tool.
//!
//! Usage: `moss-store-crash-child <db-dir> <first-number>`. Opens the store, prints `ready`,
//! then appends numbered payloads (`entry-<n>`, alone or in batches of up to 5) until killed,
//! printing `appended <id> <n>` for each one only after the append returned. The parent
//! kills it with SIGKILL and checks that every printed append survived.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use moss_store::Store;

/// A child that is never killed (a broken parent) stops by itself.
const LIFETIME_LIMIT: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(first)) = (args.next(), args.next()) else {
        eprintln!("usage: moss-store-crash-child <db-dir> <first-number>");
        return ExitCode::from(2);
    };
    let Ok(mut next_number) = first.parse::<u64>() else {
        eprintln!("first-number must be a non-negative integer, got {first:?}");
        return ExitCode::from(2);
    };
    let store = match Store::open(&PathBuf::from(path)) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("cannot open the store: {error}");
            return ExitCode::from(1);
        }
    };
    let outbox = match store.outbox("crash") {
        Ok(outbox) => outbox,
        Err(error) => {
            eprintln!("cannot open the outbox: {error}");
            return ExitCode::from(1);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if writeln!(out, "ready").and_then(|()| out.flush()).is_err() {
        return ExitCode::from(1);
    }
    let started = Instant::now();
    let mut round: u64 = 0;
    while started.elapsed() < LIFETIME_LIMIT {
        round += 1;
        // Every third round is a batch, so kills also land inside an atomic multi-entry write.
        let batch_len = if round.is_multiple_of(3) {
            1 + (round % 5)
        } else {
            1
        };
        let numbers: Vec<u64> = (next_number..next_number + batch_len).collect();
        next_number += batch_len;
        let payloads: Vec<Vec<u8>> = numbers
            .iter()
            .map(|n| format!("entry-{n}").into_bytes())
            .collect();
        let appended = if batch_len == 1 {
            outbox.append(&payloads[0]).map(|id| vec![id])
        } else {
            outbox.append_all(&payloads)
        };
        let ids = match appended {
            Ok(ids) => ids,
            Err(error) => {
                eprintln!("append failed: {error}");
                return ExitCode::from(1);
            }
        };
        for (id, number) in ids.iter().zip(&numbers) {
            if writeln!(out, "appended {id} {number}").is_err() {
                return ExitCode::from(1);
            }
        }
        if out.flush().is_err() {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
