//! Adaptive pacing of writes (AIMD): start near the tenant's documented write budget, halve
//! the rate on an unexpected 429, creep back up with each success.
//!
//! Near the limit — Graph's `x-ms-throttle-limit-percentage` reading 0.9 or more — the rate
//! creeps up ten times slower, and a 429 there lowers it by a tenth instead of half. A token
//! bucket loses nothing while it is not full, so the budget is used whole when the quota is
//! kept nearly empty; this holds it there with a 429 now and then, instead of the sawtooth
//! (and a quarter of the budget unused) that halving at every 429 gives. Plugged into moss-online as its
//! [`Pacer`], so every attempt of every lane goes through one limiter per worker.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moss_online::{PaceFuture, Pacer, RequestKind, Service, ThrottleSignal};
use tokio::time::Instant;

/// The limiter's figures, in writes per second.
#[derive(Debug, Clone, PartialEq)]
pub struct PacingSettings {
    /// The starting rate. Graph documents about 3,000 writes per 150 s per app and tenant
    /// (20/s); the default starts at it (the tenant's `x-ms-throttle-limit-percentage` and its
    /// 429s lower it when other writers share the budget).
    pub initial_rate: f64,
    /// Never slower than this.
    pub min_rate: f64,
    /// Never faster than this.
    pub max_rate: f64,
    /// Added to the rate, divided by the rate, per successful write: about this many writes
    /// per second more, per second of steady success.
    pub additive_increase: f64,
    /// The rate is multiplied by this on a 429 that came without warning.
    pub multiplicative_decrease: f64,
    /// A reply whose `x-ms-throttle-limit-percentage` reads at least this is near the limit.
    pub near_limit_at: f64,
    /// Near the limit, the additive increase is multiplied by this.
    pub near_limit_increase: f64,
    /// The rate is multiplied by this on a 429 within 5 s of a near-limit reply.
    pub near_limit_decrease: f64,
}

impl Default for PacingSettings {
    /// 20 writes/s to start, between 0.5 and 40, +1/s per second of success (+0.1 near the
    /// limit), halved on a 429 (lowered by a tenth on one near the limit).
    fn default() -> PacingSettings {
        PacingSettings {
            initial_rate: 20.0,
            min_rate: 0.5,
            max_rate: 40.0,
            additive_increase: 1.0,
            multiplicative_decrease: 0.5,
            near_limit_at: 0.9,
            near_limit_increase: 0.1,
            near_limit_decrease: 0.9,
        }
    }
}

#[derive(Debug)]
struct PaceState {
    rate: f64,
    next_slot: Instant,
    hold_until: Option<Instant>,
    last_decrease: Option<Instant>,
    last_near_limit: Option<Instant>,
}

/// An AIMD rate limiter for writes, shared by every lane. Reads are not paced (their budget is
/// far larger) but do wait out a `Retry-After` the tenant gave.
#[derive(Debug)]
pub struct AdaptivePacer {
    settings: PacingSettings,
    state: Mutex<PaceState>,
    throttled: AtomicU64,
}

impl AdaptivePacer {
    /// A limiter starting at `settings.initial_rate`.
    pub fn new(settings: PacingSettings) -> AdaptivePacer {
        AdaptivePacer {
            state: Mutex::new(PaceState {
                rate: settings.initial_rate,
                next_slot: Instant::now(),
                hold_until: None,
                last_decrease: None,
                last_near_limit: None,
            }),
            settings,
            throttled: AtomicU64::new(0),
        }
    }

    /// How many replies throttled so far (429, or 503 with `Retry-After`), reads included.
    pub fn throttled_replies(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// The current rate in writes per second.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PaceState> {
        // Every update leaves the state consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn slot(&self, kind: RequestKind) -> Instant {
        let mut state = self.lock();
        let now = Instant::now();
        let held = state.hold_until.filter(|until| *until > now).unwrap_or(now);
        match kind {
            RequestKind::Read => held,
            RequestKind::Write => {
                let slot = held.max(state.next_slot).max(now);
                state.next_slot = slot + Duration::from_secs_f64(1.0 / state.rate);
                slot
            }
        }
    }

    fn is_held(&self) -> bool {
        self.lock()
            .hold_until
            .is_some_and(|until| until > Instant::now())
    }

    fn learn(&self, kind: RequestKind, status: u16, signal: &ThrottleSignal) {
        let mut state = self.lock();
        let now = Instant::now();
        let throttled = status == 429 || (status == 503 && signal.retry_after.is_some());
        if throttled {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            if let Some(wait) = signal.retry_after {
                let until = now + wait.min(Duration::from_secs(300));
                state.hold_until = Some(state.hold_until.map_or(until, |held| held.max(until)));
                state.next_slot = state.next_slot.max(until);
            }
            // Many lanes see the same burst of 429s; one burst halves the rate once, or the
            // rate would collapse to the floor from a single congestion event.
            let recently = state
                .last_decrease
                .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
            if !recently {
                let warned = state
                    .last_near_limit
                    .is_some_and(|at| now.duration_since(at) < Duration::from_secs(5));
                let factor = if warned {
                    self.settings.near_limit_decrease
                } else {
                    self.settings.multiplicative_decrease
                };
                state.rate = (state.rate * factor).max(self.settings.min_rate);
                state.last_decrease = Some(now);
                tracing::info!(rate = state.rate, "throttled: lowering the write rate");
            }
        } else if kind == RequestKind::Write && (200..300).contains(&status) {
            let near_limit = signal
                .limit_percentage
                .is_some_and(|percentage| percentage >= self.settings.near_limit_at);
            let increase = if near_limit {
                state.last_near_limit = Some(now);
                self.settings.additive_increase * self.settings.near_limit_increase
            } else {
                self.settings.additive_increase
            };
            state.rate = (state.rate + increase / state.rate).min(self.settings.max_rate);
        }
    }
}

impl Pacer for AdaptivePacer {
    fn admit(&self, _service: Service, kind: RequestKind) -> PaceFuture<'_> {
        Box::pin(async move {
            // A 429 that arrives while this request waits for its slot moves it behind the
            // Retry-After, instead of letting every already-scheduled request run into the
            // same wall.
            loop {
                let slot = self.slot(kind);
                if slot > Instant::now() {
                    tokio::time::sleep_until(slot).await;
                }
                if !self.is_held() {
                    return;
                }
            }
        })
    }

    fn observe(&self, _service: Service, kind: RequestKind, status: u16, signal: &ThrottleSignal) {
        self.learn(kind, status, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer() -> AdaptivePacer {
        AdaptivePacer::new(PacingSettings {
            initial_rate: 10.0,
            ..PacingSettings::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn writes_are_spaced_at_the_current_rate() {
        let pacer = pacer();
        let started = Instant::now();
        for _ in 0..11 {
            pacer.admit(Service::Graph, RequestKind::Write).await;
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(990), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1100), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_429s_halves_the_rate_once_and_success_creeps_back_up() {
        let pacer = pacer();
        let throttled = ThrottleSignal {
            retry_after: Some(Duration::from_secs(1)),
            ..ThrottleSignal::default()
        };
        for _ in 0..5 {
            pacer.observe(Service::Graph, RequestKind::Write, 429, &throttled);
        }
        assert!((pacer.rate() - 5.0).abs() < 1e-9);
        assert_eq!(pacer.throttled_replies(), 5, "each 429 is counted");
        for _ in 0..10 {
            pacer.observe(
                Service::Graph,
                RequestKind::Write,
                204,
                &ThrottleSignal::default(),
            );
        }
        assert!(pacer.rate() > 6.0 && pacer.rate() < 7.5, "{}", pacer.rate());
    }

    #[tokio::test(start_paused = true)]
    async fn near_the_limit_the_rate_creeps_slower_and_a_429_lowers_it_by_a_tenth() {
        let pacer = pacer();
        let near = ThrottleSignal {
            limit_percentage: Some(0.9),
            ..ThrottleSignal::default()
        };
        for _ in 0..10 {
            pacer.observe(Service::Graph, RequestKind::Write, 204, &near);
        }
        // Ten writes at about 10/s: +0.1/s near the limit instead of +1/s.
        assert!(
            pacer.rate() > 10.05 && pacer.rate() < 10.15,
            "{}",
            pacer.rate()
        );
        let before = pacer.rate();
        let throttled = ThrottleSignal {
            retry_after: Some(Duration::from_millis(50)),
            ..ThrottleSignal::default()
        };
        pacer.observe(Service::Graph, RequestKind::Write, 429, &throttled);
        assert!(
            (pacer.rate() - before * 0.9).abs() < 1e-9,
            "{}",
            pacer.rate()
        );
        // Long after the last warning, a 429 is a surprise again: halve.
        tokio::time::advance(Duration::from_secs(10)).await;
        let before = pacer.rate();
        pacer.observe(Service::Graph, RequestKind::Write, 429, &throttled);
        assert!(
            (pacer.rate() - before * 0.5).abs() < 1e-9,
            "{}",
            pacer.rate()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_back_reads_and_writes() {
        let pacer = pacer();
        let throttled = ThrottleSignal {
            retry_after: Some(Duration::from_secs(3)),
            ..ThrottleSignal::default()
        };
        pacer.observe(Service::Graph, RequestKind::Write, 429, &throttled);
        let started = Instant::now();
        pacer.admit(Service::Graph, RequestKind::Read).await;
        assert!(started.elapsed() >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_stays_within_its_bounds() {
        let pacer = pacer();
        let throttled = ThrottleSignal::default();
        for _ in 0..20 {
            pacer.observe(Service::Graph, RequestKind::Write, 429, &throttled);
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        assert!((pacer.rate() - 0.5).abs() < 1e-9);
    }
}
