//! The request log: every call to Microsoft's paths, with its ids and outcome, so tests can see
//! exactly which writes were attempted and which were applied.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// The log keeps this many entries; older ones fall off.
const CAPACITY: usize = 100_000;

/// One logged request (a top-level call or a `$batch` item).
#[derive(Clone, Debug, Serialize)]
pub struct LoggedRequest {
    /// Order of arrival.
    pub seq: u64,
    /// When it was answered.
    pub time: DateTime<Utc>,
    /// HTTP method (of the batch item, for items).
    pub method: String,
    /// The path as sent (percent-encoded), without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The status answered; absent when the connection was dropped.
    pub status: Option<u16>,
    /// Our `request-id`.
    pub request_id: String,
    /// The caller's `client-request-id`, if it sent one.
    pub client_request_id: Option<String>,
    /// Whether this is a directory or Exchange write.
    pub write: bool,
    /// Whether the write was applied (true for commit-then-fail faults too).
    pub committed: bool,
    /// The fault that shaped the answer, if any (`status`, `drop`, `commit_then_fail`...).
    pub fault: Option<String>,
    /// The Exchange cmdlet, for `InvokeCommand`.
    pub cmdlet: Option<String>,
    /// The app that called, once authenticated.
    pub app_id: Option<Uuid>,
    /// For a `$batch` item: the batch's `request-id`.
    pub batch_request_id: Option<String>,
    /// For a `$batch` item: its `id` in the batch.
    pub batch_item_id: Option<String>,
}

/// The bounded log.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: VecDeque<LoggedRequest>,
    next_seq: u64,
}

impl RequestLog {
    pub(crate) fn push(&mut self, mut entry: LoggedRequest) {
        self.next_seq += 1;
        entry.seq = self.next_seq;
        if self.entries.len() == CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub(crate) fn all(&self) -> Vec<LoggedRequest> {
        self.entries.iter().cloned().collect()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}
