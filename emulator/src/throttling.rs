//! Microsoft's identity-and-access throttling (§7.2 of the wire reference) as token buckets:
//! resource units and writes per app and tenant, and writes per tenant across apps. Buckets refill
//! continuously; a throttled request is still counted (as Microsoft says), so hammering makes
//! the wait longer rather than shorter.

use std::collections::HashMap;
use std::time::Instant;

use uuid::Uuid;

use crate::seed::ThrottlingSettings;

/// What one request costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cost {
    pub(crate) resource_units: u32,
    pub(crate) write: bool,
}

#[derive(Clone, Debug)]
struct Bucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(limit: u32, window_secs: u32, now: Instant) -> Bucket {
        let capacity = f64::from(limit.max(1));
        Bucket {
            capacity,
            per_second: capacity / f64::from(window_secs.max(1)),
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
    }

    fn has(&self, amount: f64) -> bool {
        self.tokens >= amount
    }

    fn debit(&mut self, amount: f64) {
        self.tokens = (self.tokens - amount).max(-self.capacity);
    }

    fn seconds_until(&self, amount: f64) -> u64 {
        let missing = (amount - self.tokens).max(0.0);
        // Retry-After is an integer: round up and never answer 0.
        ((missing / self.per_second).ceil() as u64).max(1)
    }

    fn used_fraction(&self) -> f64 {
        (self.capacity - self.tokens) / self.capacity
    }
}

/// The bucket that refused a request.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    AppWrites,
    TenantWrites,
    ResourceUnits,
}

/// The answer for one request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Go ahead; `limit_percentage` is set once a quota is more than 80% used.
    Allowed { limit_percentage: Option<f64> },
    /// 429.
    Throttled {
        retry_after_secs: u64,
        scope: String,
        information: &'static str,
    },
}

/// All buckets of the tenant.
#[derive(Debug)]
pub(crate) struct Throttle {
    settings: ThrottlingSettings,
    app_writes: HashMap<Uuid, Bucket>,
    app_resource_units: HashMap<Uuid, Bucket>,
    tenant_writes: Bucket,
}

impl Throttle {
    /// Full buckets with these figures.
    pub(crate) fn new(settings: ThrottlingSettings) -> Throttle {
        let now = Instant::now();
        Throttle {
            tenant_writes: Bucket::new(
                settings.tenant_write_limit,
                settings.tenant_write_window_secs,
                now,
            ),
            settings,
            app_writes: HashMap::new(),
            app_resource_units: HashMap::new(),
        }
    }

    /// Counts a request and says whether it may proceed.
    pub(crate) fn admit(
        &mut self,
        app_id: Uuid,
        tenant_id: Uuid,
        cost: Cost,
        now: Instant,
    ) -> Verdict {
        let settings = &self.settings;
        let resource_units = self.app_resource_units.entry(app_id).or_insert_with(|| {
            Bucket::new(
                settings.resource_unit_limit,
                settings.resource_unit_window_secs,
                now,
            )
        });
        resource_units.refill(now);
        let writes = self
            .app_writes
            .entry(app_id)
            .or_insert_with(|| Bucket::new(settings.write_limit, settings.write_window_secs, now));
        writes.refill(now);
        self.tenant_writes.refill(now);

        let units = f64::from(cost.resource_units);
        // Which bucket refuses, judged before this request is counted.
        let refused_by = if cost.write && !writes.has(1.0) {
            Some(Refusal::AppWrites)
        } else if cost.write && !self.tenant_writes.has(1.0) {
            Some(Refusal::TenantWrites)
        } else if !resource_units.has(units) {
            Some(Refusal::ResourceUnits)
        } else {
            None
        };
        // Usage is counted whether or not the request is refused, and Retry-After is computed
        // after counting, so waiting that long really does leave room.
        resource_units.debit(units);
        if cost.write {
            writes.debit(1.0);
            self.tenant_writes.debit(1.0);
        }
        let refusal = refused_by.map(|bucket| match bucket {
            Refusal::AppWrites => (
                writes.seconds_until(1.0),
                format!("Tenant_Application/Write/{app_id}/{tenant_id}"),
                "WriteLimitExceeded",
            ),
            Refusal::TenantWrites => (
                self.tenant_writes.seconds_until(1.0),
                format!("Tenant/Write/{app_id}/{tenant_id}"),
                "WriteLimitExceeded",
            ),
            Refusal::ResourceUnits => (
                resource_units.seconds_until(units),
                format!("Tenant_Application/ReadWrite/{app_id}/{tenant_id}"),
                "ResourceUnitLimitExceeded",
            ),
        });
        let mut used = resource_units.used_fraction();
        if cost.write {
            used = used
                .max(writes.used_fraction())
                .max(self.tenant_writes.used_fraction());
        }
        match refusal {
            Some((retry_after_secs, scope, information)) if self.settings.enabled => {
                Verdict::Throttled {
                    retry_after_secs,
                    scope,
                    information,
                }
            }
            _ => Verdict::Allowed {
                limit_percentage: (used > 0.8)
                    .then(|| (used * 10.0).floor().clamp(8.0, 18.0) / 10.0),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(write_limit: u32) -> ThrottlingSettings {
        ThrottlingSettings {
            write_limit,
            write_window_secs: 10,
            ..ThrottlingSettings::default()
        }
    }

    const WRITE: Cost = Cost {
        resource_units: 1,
        write: true,
    };

    #[test]
    fn writes_past_the_budget_are_refused_with_a_retry_after() {
        let mut throttle = Throttle::new(settings(5));
        let now = Instant::now();
        let (app, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..5 {
            assert!(matches!(
                throttle.admit(app, tenant, WRITE, now),
                Verdict::Allowed { .. }
            ));
        }
        match throttle.admit(app, tenant, WRITE, now) {
            Verdict::Throttled {
                retry_after_secs,
                information,
                scope,
            } => {
                assert!(retry_after_secs >= 1);
                assert_eq!(information, "WriteLimitExceeded");
                assert!(scope.starts_with("Tenant_Application/Write/"));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_bucket_refills_with_time() {
        let mut throttle = Throttle::new(settings(5));
        let now = Instant::now();
        let (app, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..5 {
            throttle.admit(app, tenant, WRITE, now);
        }
        let later = now + Duration::from_secs(3);
        assert!(matches!(
            throttle.admit(app, tenant, WRITE, later),
            Verdict::Allowed { .. }
        ));
    }

    #[test]
    fn a_disabled_throttle_still_reports_the_limit_percentage() {
        let mut throttle = Throttle::new(ThrottlingSettings {
            enabled: false,
            ..settings(5)
        });
        let now = Instant::now();
        let (app, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        let mut last = None;
        for _ in 0..8 {
            last = Some(throttle.admit(app, tenant, WRITE, now));
        }
        assert!(matches!(last, Some(Verdict::Allowed { limit_percentage: Some(p) }) if p >= 0.8));
    }
}
