//! moss-workers: consume, dedupe, order per user, apply to the tenant, retry, dead-letter.
//!
//! It never parses HTTP bodies of its own: Microsoft is behind moss-online.
