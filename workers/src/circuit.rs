//! The circuit shared by every lane of a worker: when the tenant as a whole fails (5xx,
//! timeouts, throttling across lanes, a refused secret), lanes stop calling and the partitions
//! stop taking deliveries; the backlog waits in RabbitMQ. After a delay one lane probes; a
//! success closes the circuit, a failure reopens it with a longer delay.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::outcome::FailureClass;

/// When the circuit opens and how it probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitSettings {
    /// Consecutive tenant-wide failures (across all lanes, with no success between) that open
    /// the circuit. A configuration failure (401, `invalid_client`) opens it at once.
    pub failure_threshold: u32,
    /// The first wait before a probe.
    pub first_probe_after: Duration,
    /// The longest wait between probes (the wait doubles after each failed probe).
    pub max_probe_interval: Duration,
}

impl Default for CircuitSettings {
    /// 5 failures; probes after 2 s, backing off to once a minute.
    fn default() -> CircuitSettings {
        CircuitSettings {
            failure_threshold: 5,
            first_probe_after: Duration::from_secs(2),
            max_probe_interval: Duration::from_secs(60),
        }
    }
}

/// The circuit's state, as `moss status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// Calls wait; a probe is due at some point.
    Open {
        /// The class of the failure that opened it.
        cause: FailureClass,
    },
    /// One lane is probing.
    Probing {
        /// The class of the failure that opened it.
        cause: FailureClass,
    },
}

/// May this attempt go out, and as what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The circuit is closed.
    Normal,
    /// The circuit is open and this attempt is its probe.
    Probe,
}

/// What an attempt told the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// The tenant answered (success, or a failure that belongs to the event).
    Answered,
    /// A failure that may be tenant-wide.
    TenantFailure(FailureClass),
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    consecutive_failures: u32,
    probe_delay: Duration,
    probe_at: Instant,
}

/// The shared circuit. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Circuit {
    settings: CircuitSettings,
    inner: Mutex<Inner>,
    changes: watch::Sender<CircuitState>,
}

impl Circuit {
    /// A closed circuit.
    pub fn new(settings: CircuitSettings) -> Circuit {
        let (changes, _) = watch::channel(CircuitState::Closed);
        Circuit {
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                consecutive_failures: 0,
                probe_delay: settings.first_probe_after,
                probe_at: Instant::now(),
            }),
            settings,
            changes,
        }
    }

    /// The state now.
    pub fn state(&self) -> CircuitState {
        self.lock().state
    }

    /// Whether partitions should take new deliveries.
    pub(crate) fn is_closed(&self) -> bool {
        self.state() == CircuitState::Closed
    }

    /// A receiver that sees every state change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<CircuitState> {
        self.changes.subscribe()
    }

    /// Waits until an attempt may go out; `None` when `shutdown` fires first.
    pub(crate) async fn admit(&self, shutdown: &CancellationToken) -> Option<Admission> {
        let mut changes = self.changes.subscribe();
        loop {
            let wait_until = {
                let mut inner = self.lock();
                match inner.state {
                    CircuitState::Closed => return Some(Admission::Normal),
                    CircuitState::Open { cause } if Instant::now() >= inner.probe_at => {
                        inner.state = CircuitState::Probing { cause };
                        let state = inner.state;
                        drop(inner);
                        self.changes.send_replace(state);
                        tracing::info!(cause = %cause, "circuit: probing the tenant");
                        return Some(Admission::Probe);
                    }
                    CircuitState::Open { .. } => inner.probe_at,
                    // Re-check now and then in case the probing lane was cancelled.
                    CircuitState::Probing { .. } => {
                        Instant::now() + self.settings.max_probe_interval
                    }
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep_until(wait_until) => {}
                _ = changes.changed() => {}
            }
        }
    }

    /// Records how an attempt admitted as `admission` ended.
    pub(crate) fn record(&self, admission: Admission, signal: Signal) {
        let mut inner = self.lock();
        let before = inner.state;
        match signal {
            Signal::Answered => {
                inner.consecutive_failures = 0;
                inner.probe_delay = self.settings.first_probe_after;
                inner.state = CircuitState::Closed;
            }
            Signal::TenantFailure(cause) => match (admission, inner.state) {
                (Admission::Probe, _) => {
                    inner.probe_delay =
                        (inner.probe_delay * 2).min(self.settings.max_probe_interval);
                    inner.probe_at = Instant::now() + inner.probe_delay;
                    inner.state = CircuitState::Open { cause };
                }
                (Admission::Normal, CircuitState::Closed) => {
                    inner.consecutive_failures += 1;
                    if cause == FailureClass::Configuration
                        || inner.consecutive_failures >= self.settings.failure_threshold
                    {
                        inner.probe_delay = self.settings.first_probe_after;
                        inner.probe_at = Instant::now() + inner.probe_delay;
                        inner.state = CircuitState::Open { cause };
                    }
                }
                (Admission::Normal, _) => {}
            },
        }
        let after = inner.state;
        drop(inner);
        if before != after {
            match after {
                CircuitState::Open {
                    cause: FailureClass::Configuration,
                } => tracing::error!(
                    "circuit open: the tenant refuses the worker's credentials or permissions; every partition is paused until a probe succeeds. Check the client id, secret and the app's API permissions"
                ),
                CircuitState::Open { cause } => tracing::warn!(
                    cause = %cause,
                    "circuit open: the tenant is failing as a whole; partitions stop taking deliveries and the backlog waits in RabbitMQ"
                ),
                CircuitState::Closed => tracing::info!("circuit closed: the tenant answers again"),
                CircuitState::Probing { .. } => {}
            }
            self.changes.send_replace(after);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update leaves Inner consistent, so a poisoned lock still holds a usable state.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit() -> Circuit {
        Circuit::new(CircuitSettings {
            failure_threshold: 3,
            first_probe_after: Duration::from_secs(1),
            max_probe_interval: Duration::from_secs(8),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_tenant_failures_open_the_circuit_and_a_success_resets_the_count() {
        let circuit = circuit();
        let transient = Signal::TenantFailure(FailureClass::Transient);
        circuit.record(Admission::Normal, transient);
        circuit.record(Admission::Normal, transient);
        circuit.record(Admission::Normal, Signal::Answered);
        circuit.record(Admission::Normal, transient);
        circuit.record(Admission::Normal, transient);
        assert!(circuit.is_closed());
        circuit.record(Admission::Normal, transient);
        assert_eq!(
            circuit.state(),
            CircuitState::Open {
                cause: FailureClass::Transient
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_configuration_failure_opens_the_circuit_at_once() {
        let circuit = circuit();
        circuit.record(
            Admission::Normal,
            Signal::TenantFailure(FailureClass::Configuration),
        );
        assert!(!circuit.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_admits_one_probe_after_the_delay_and_a_good_probe_closes_it() {
        let circuit = circuit();
        let shutdown = CancellationToken::new();
        for _ in 0..3 {
            circuit.record(
                Admission::Normal,
                Signal::TenantFailure(FailureClass::Transient),
            );
        }
        let started = Instant::now();
        assert_eq!(circuit.admit(&shutdown).await, Some(Admission::Probe));
        assert!(started.elapsed() >= Duration::from_secs(1));
        // A second lane waits while the probe runs.
        let waiting = tokio::time::timeout(Duration::from_millis(500), circuit.admit(&shutdown));
        assert!(waiting.await.is_err());
        circuit.record(Admission::Probe, Signal::Answered);
        assert_eq!(circuit.admit(&shutdown).await, Some(Admission::Normal));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_doubles_the_wait() {
        let circuit = circuit();
        let shutdown = CancellationToken::new();
        circuit.record(
            Admission::Normal,
            Signal::TenantFailure(FailureClass::Configuration),
        );
        assert_eq!(circuit.admit(&shutdown).await, Some(Admission::Probe));
        circuit.record(
            Admission::Probe,
            Signal::TenantFailure(FailureClass::Transient),
        );
        let started = Instant::now();
        assert_eq!(circuit.admit(&shutdown).await, Some(Admission::Probe));
        assert!(started.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_wait_on_an_open_circuit() {
        let circuit = circuit();
        let shutdown = CancellationToken::new();
        circuit.record(
            Admission::Normal,
            Signal::TenantFailure(FailureClass::Configuration),
        );
        shutdown.cancel();
        assert_eq!(circuit.admit(&shutdown).await, None);
    }
}
