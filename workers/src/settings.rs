//! What a worker needs, checked before any connection opens.

use std::path::PathBuf;
use std::time::Duration;

use moss_broker::Topology;
use moss_online::OnlineConfig;
use moss_schemas::OpeningKey;

use crate::circuit::CircuitSettings;
use crate::delete_guard::DeleteGuardSettings;
use crate::error::WorkerError;
use crate::pacer::PacingSettings;

/// Deliveries a partition consumer may hold unacknowledged (per consumer, never global).
pub const DEFAULT_PREFETCH: u16 = 64;

/// How one event retries a failure that is not (yet) tenant-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// The first backoff step (jittered).
    pub first_delay: Duration,
    /// The largest backoff step.
    pub max_delay: Duration,
    /// Failed attempts, made while the circuit was closed, after which the event is
    /// dead-lettered. Attempts made while the tenant as a whole fails do not count: an outage
    /// is backpressure, not dead letters.
    pub max_attempts: u32,
    /// The longest an event is retried in-process. Must stay well below RabbitMQ's
    /// `consumer_timeout` (30 minutes by default), which would requeue the whole channel.
    pub budget: Duration,
}

impl Default for RetrySettings {
    /// 1 s doubling to 60 s, 8 attempts, at most 10 minutes.
    fn default() -> RetrySettings {
        RetrySettings {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 8,
            budget: Duration::from_secs(600),
        }
    }
}

/// Everything a worker needs. Its `Debug` hides the AMQP URL's password.
pub struct WorkerSettings {
    /// RabbitMQ (`MOSS_AMQP_URL`).
    pub amqp_url: String,
    /// Queue and exchange names; the partition count must match the producers'.
    pub topology: Topology,
    /// The worker's own sled database (ledger, versions, mapping, quarantine, outcome outbox),
    /// e.g. `<data dir>/worker`.
    pub store_path: PathBuf,
    /// The tenant.
    pub online: OnlineConfig,
    /// Opens sealed passwords, just before the call that sets them.
    pub opening_key: OpeningKey,
    /// Names the worker's connection and consumers in RabbitMQ, and its outcome events.
    pub worker_name: String,
    /// Unacknowledged deliveries per partition consumer.
    pub prefetch: u16,
    /// Retries of one event.
    pub retry: RetrySettings,
    /// When the whole worker pauses.
    pub circuit: CircuitSettings,
    /// The adaptive write rate.
    pub pacing: PacingSettings,
    /// The mass-delete guard's thresholds.
    pub delete_guard: DeleteGuardSettings,
    /// How long shutdown waits for attempts already in flight before handing their
    /// deliveries back.
    pub shutdown_grace: Duration,
    /// How often the worker looks for free licence seats while users await them (it also
    /// looks at once after an unassignment or removal).
    pub licence_recheck: Duration,
}

impl std::fmt::Debug for WorkerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSettings")
            .field("amqp_url", &moss_broker::redact_url(&self.amqp_url))
            .field("topology", &self.topology)
            .field("store_path", &self.store_path)
            .field("online", &self.online)
            .field("opening_key", &self.opening_key)
            .field("worker_name", &self.worker_name)
            .field("prefetch", &self.prefetch)
            .field("retry", &self.retry)
            .field("circuit", &self.circuit)
            .field("pacing", &self.pacing)
            .field("delete_guard", &self.delete_guard)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("licence_recheck", &self.licence_recheck)
            .finish()
    }
}

impl WorkerSettings {
    /// Settings with the documented defaults: prefetch [`DEFAULT_PREFETCH`], worker name
    /// `moss-worker`, [`RetrySettings::default`], [`CircuitSettings::default`],
    /// [`PacingSettings::default`], [`DeleteGuardSettings::default`], 10 s shutdown grace.
    pub fn new(
        amqp_url: impl Into<String>,
        topology: Topology,
        store_path: impl Into<PathBuf>,
        online: OnlineConfig,
        opening_key: OpeningKey,
    ) -> WorkerSettings {
        WorkerSettings {
            amqp_url: amqp_url.into(),
            topology,
            store_path: store_path.into(),
            online,
            opening_key,
            worker_name: "moss-worker".to_owned(),
            prefetch: DEFAULT_PREFETCH,
            retry: RetrySettings::default(),
            circuit: CircuitSettings::default(),
            pacing: PacingSettings::default(),
            delete_guard: DeleteGuardSettings::default(),
            shutdown_grace: Duration::from_secs(10),
            licence_recheck: crate::awaiting::DEFAULT_LICENCE_RECHECK,
        }
    }

    /// Checks every value that could make the worker misbehave, naming the field.
    pub fn validate(&self) -> Result<(), WorkerError> {
        let invalid = |field: &'static str, reason: &str| {
            Err(WorkerError::InvalidSetting {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.prefetch == 0 {
            return invalid("prefetch", "must be at least 1 (0 would mean unlimited)");
        }
        let name_ok = !self.worker_name.is_empty()
            && self.worker_name.len() <= 64
            && self
                .worker_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return invalid(
                "worker_name",
                "must be 1 to 64 characters of letters, digits, - _ .",
            );
        }
        if self.retry.max_attempts == 0 {
            return invalid("retry.max_attempts", "must be at least 1");
        }
        if self.retry.budget >= Duration::from_secs(25 * 60) {
            return invalid(
                "retry.budget",
                "must stay well below RabbitMQ's 30-minute consumer timeout (at most 25 minutes)",
            );
        }
        if self.retry.first_delay.is_zero() || self.retry.max_delay < self.retry.first_delay {
            return invalid(
                "retry.first_delay",
                "must be above zero and not above retry.max_delay",
            );
        }
        if self.circuit.failure_threshold == 0 {
            return invalid("circuit.failure_threshold", "must be at least 1");
        }
        if self.licence_recheck.is_zero() {
            return invalid("licence_recheck", "must be above zero");
        }
        let guard = &self.delete_guard;
        if guard.removals == 0 || guard.deactivations == 0 {
            return invalid(
                "delete_guard",
                "removals and deactivations must be at least 1 (approve each delete instead of a zero threshold)",
            );
        }
        if guard.window.is_zero() {
            return invalid("delete_guard.window", "must be above zero");
        }
        if guard
            .percent_of_mapped
            .is_some_and(|percent| percent == 0 || percent > 100)
        {
            return invalid("delete_guard.percent_of_mapped", "must be 1 to 100");
        }
        let pacing = &self.pacing;
        let rates_ok = pacing.min_rate > 0.0
            && pacing.min_rate <= pacing.initial_rate
            && pacing.initial_rate <= pacing.max_rate
            && pacing.multiplicative_decrease > 0.0
            && pacing.multiplicative_decrease < 1.0
            && pacing.additive_increase >= 0.0;
        if !rates_ok {
            return invalid(
                "pacing",
                "needs 0 < min_rate <= initial_rate <= max_rate, 0 < multiplicative_decrease < 1 and additive_increase >= 0",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use moss_broker::{Topology, TopologyPrefix};
    use moss_online::OnlineConfig;
    use moss_schemas::{OpeningKey, generate_key_pair};
    use secrecy::{ExposeSecret, SecretString};

    use super::WorkerSettings;

    #[test]
    fn debug_output_hides_the_amqp_password_and_the_client_secret() {
        let pair = generate_key_pair();
        let settings = WorkerSettings::new(
            "amqp://moss:rabbit-s3cret@broker.example:5672/%2f",
            Topology::new(TopologyPrefix::parse("moss").unwrap(), 8).unwrap(),
            "/tmp/worker",
            OnlineConfig::new("tenant", "client", SecretString::from("client-s3cret")),
            OpeningKey::parse(&pair.private).unwrap(),
        );
        let shown = format!("{settings:?}");
        assert!(
            shown.contains("amqp://moss:***@broker.example:5672/%2f"),
            "{shown}"
        );
        assert!(!shown.contains("rabbit-s3cret"), "{shown}");
        assert!(!shown.contains("client-s3cret"), "{shown}");
        assert!(!shown.contains(pair.private.expose_secret()), "{shown}");
    }
}
