//! How long one logical operation may keep retrying, and how long it waits between attempts.
//!
//! Delays come from backon's jittered exponential backoff. `Retry-After` replaces the step when
//! the server sends one, but only while the backoff still has steps left and the operation's
//! total budget allows: backon's documented `adjust` example keeps honouring `Retry-After` after
//! the steps run out, which retries a server that keeps answering 429 forever.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

/// Retry limits for one logical operation (one `client-request-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff step.
    pub min_delay: Duration,
    /// The largest backoff step (before jitter, which adds up to the step again).
    pub max_delay: Duration,
    /// How many retries after the first attempt.
    pub max_retries: usize,
    /// The whole operation, attempts and waits together, stops retrying past this.
    pub total_budget: Duration,
    /// A `Retry-After` longer than this is not slept in-process: the error goes back to the
    /// caller (class `Throttled`) to park the work instead of holding a delivery open.
    pub max_retry_after: Duration,
    /// How many times a read that must see a just-written object is repeated (replication lag,
    /// §3.3, §11.9), and how long apart.
    pub replication_retries: usize,
    /// The wait between those reads.
    pub replication_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retries: 6,
            total_budget: Duration::from_secs(120),
            max_retry_after: Duration::from_secs(60),
            replication_retries: 5,
            replication_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn start(&self) -> Attempts {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
            .build();
        Attempts {
            backoff,
            started: Instant::now(),
            total_budget: self.total_budget,
            max_retry_after: self.max_retry_after,
        }
    }
}

/// Why an operation stops retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// Every backoff step is used.
    OutOfRetries,
    /// The wait would overrun the operation's total budget.
    OutOfTime,
    /// The server asked for a longer wait than the client sleeps in-process.
    RetryAfterTooLong,
}

/// The retry state of one logical operation.
#[derive(Debug)]
pub(crate) struct Attempts {
    backoff: ExponentialBackoff,
    started: Instant,
    total_budget: Duration,
    max_retry_after: Duration,
}

impl Attempts {
    /// The wait before the next attempt, or why there is none.
    pub(crate) fn next_wait(&mut self, retry_after: Option<Duration>) -> Result<Duration, GiveUp> {
        if let Some(asked) = retry_after
            && asked > self.max_retry_after
        {
            return Err(GiveUp::RetryAfterTooLong);
        }
        let step = self.backoff.next().ok_or(GiveUp::OutOfRetries)?;
        let wait = retry_after.unwrap_or(step);
        if self.started.elapsed() + wait > self.total_budget {
            return Err(GiveUp::OutOfTime);
        }
        Ok(wait)
    }

    /// How long the operation has run.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retries: 3,
            total_budget: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(5),
            ..RetryPolicy::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_replaces_the_backoff_step() {
        let mut attempts = policy().start();
        assert_eq!(
            attempts.next_wait(Some(Duration::from_secs(2))),
            Ok(Duration::from_secs(2))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_steps_grow_with_jitter_and_stay_under_twice_the_cap() {
        let mut attempts = policy().start();
        let first = attempts.next_wait(None).unwrap();
        assert!(first >= Duration::from_millis(100) && first < Duration::from_millis(200));
        let second = attempts.next_wait(None).unwrap();
        assert!(second >= Duration::from_millis(200) && second < Duration::from_millis(400));
        let third = attempts.next_wait(None).unwrap();
        assert!(third < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_keeps_answering_429_is_not_retried_forever() {
        let mut attempts = policy().start();
        for _ in 0..3 {
            assert!(attempts.next_wait(Some(Duration::from_millis(10))).is_ok());
        }
        assert_eq!(
            attempts.next_wait(Some(Duration::from_millis(10))),
            Err(GiveUp::OutOfRetries)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_beyond_the_in_process_limit_goes_back_to_the_caller() {
        let mut attempts = policy().start();
        assert_eq!(
            attempts.next_wait(Some(Duration::from_secs(6))),
            Err(GiveUp::RetryAfterTooLong)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_budget_bounds_the_operation() {
        let mut attempts = policy().start();
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(
            attempts.next_wait(Some(Duration::from_secs(3))),
            Err(GiveUp::OutOfTime)
        );
        assert!(attempts.elapsed() >= Duration::from_secs(8));
    }
}
