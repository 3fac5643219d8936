//! Users awaiting a licence. When `assignLicense` answers that a SKU has no free seat, the
//! user is parked (its account exists, without the licence) instead of its event failing; the
//! event is acknowledged. A resumer task assigns the licences, oldest first, once seats are
//! free: it looks every `licence_recheck`, and at once after an unassignment or a removal gave
//! a seat back.
//!
//! The resumer works outside the subjects' lanes, so every licence write for a subject (the
//! handlers' and the resumer's) happens under that subject's stripe lock: an unassignment can
//! never be overtaken by a resumed assignment of the licence it removed.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moss_online::{ErrorClass, OnlineError, SkuId, User, UserId, UserKey};
use moss_schemas::Subject;
use moss_store::{AwaitingLicence, AwaitingRecord, StoreError};
use tokio::sync::{Mutex, MutexGuard, Notify};
use tokio_util::sync::CancellationToken;

use crate::circuit::Circuit;
use crate::outcome::Outcome;
use crate::tenant::{Step, Tenant, USER_SELECT, unix_ms};

/// Stripe locks: enough that unrelated subjects rarely share one. A lane holds its stripe for
/// the whole `assignLicense` round trip, so with the worker's hundreds of deliveries in flight
/// 64 stripes queued unrelated users behind each other (a median 0.2 s wait per event in
/// `moss bench`, docs/PERFORMANCE.md); 4096 empty mutexes cost about 200 KB.
const STRIPES: usize = 4096;

/// How often a worker looks for free seats while users await them, unless configured.
pub const DEFAULT_LICENCE_RECHECK: Duration = Duration::from_secs(60);

/// The parked users, their locks, and the resumer's alarm clock.
#[derive(Debug)]
pub(crate) struct Awaiting {
    parked: AwaitingLicence,
    stripes: Vec<Mutex<()>>,
    wake: Notify,
    recheck: Duration,
    resumed: AtomicU64,
}

impl Awaiting {
    pub(crate) fn new(parked: AwaitingLicence, recheck: Duration) -> Awaiting {
        Awaiting {
            parked,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            wake: Notify::new(),
            recheck,
            resumed: AtomicU64::new(0),
        }
    }

    /// Holds the licence writes of `subject` (and of the subjects sharing its stripe).
    pub(crate) async fn lock(&self, subject: &str) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        subject.hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % STRIPES as u64).unwrap_or(0);
        self.stripes[stripe].lock().await
    }

    /// Takes `subject` off the list (it no longer waits: unassigned, removed, or licensed).
    pub(crate) fn release(&self, subject: &str) -> Result<bool, StoreError> {
        if self.parked.get(subject)?.is_none() {
            return Ok(false);
        }
        self.parked.release(subject)
    }

    /// A seat may have been freed: look now rather than at the next tick.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// How many users are parked now.
    pub(crate) fn count(&self) -> usize {
        self.parked.len()
    }

    /// How many parked users the resumer has licensed since the worker started.
    pub(crate) fn resumed(&self) -> u64 {
        self.resumed.load(Ordering::Relaxed)
    }
}

impl Tenant {
    /// Makes `user` hold exactly `desired`; when a SKU has no free seat, parks the subject to
    /// await one instead of failing. True when the licences changed now.
    pub(crate) async fn license_or_park(
        &self,
        subject: &Subject,
        user: &User,
        upn: &str,
        desired: &[SkuId],
    ) -> Step<bool> {
        let key = subject.to_string();
        let _licence_writes = self.awaiting.lock(&key).await;
        match assign_exactly(self, user, desired).await {
            Ok(changed) => {
                if self.awaiting.release(&key)? {
                    tracing::info!(subject = %subject, upn, "a user awaiting a licence has one now");
                }
                Ok(changed)
            }
            Err(error) if error.class() == &ErrorClass::NoSeats => {
                let record = AwaitingRecord {
                    online_id: user.id.to_string(),
                    upn: upn.to_owned(),
                    skus: desired.iter().map(ToString::to_string).collect(),
                    since_unix_ms: unix_ms(),
                };
                self.awaiting.parked.park(&key, &record)?;
                tracing::info!(subject = %subject, upn, "no licence seat is free; the user awaits one");
                Ok(false)
            }
            Err(error) => Err(Outcome::from_online(&error)),
        }
    }
}

/// One `assignLicense` adding what `user` lacks of `desired` and removing what it holds
/// beyond it. True when something changed.
async fn assign_exactly(
    tenant: &Tenant,
    user: &User,
    desired: &[SkuId],
) -> Result<bool, OnlineError> {
    let add: Vec<SkuId> = desired
        .iter()
        .copied()
        .filter(|sku| !user.holds(*sku))
        .collect();
    let remove: Vec<SkuId> = user
        .assigned_licenses
        .iter()
        .map(|licence| licence.sku_id)
        .filter(|sku| !desired.contains(sku))
        .collect();
    if add.is_empty() && remove.is_empty() {
        return Ok(false);
    }
    let change = tenant
        .online
        .assign_licenses(&UserKey::Id(user.id), &add, &remove)
        .await?;
    Ok(change == moss_online::Change::Applied)
}

/// Why a resume pass stopped early (the next one tries again).
#[derive(Debug, thiserror::Error)]
enum ResumeError {
    #[error("the list of users awaiting a licence cannot be read or written")]
    Store(#[from] StoreError),
    #[error("the tenant did not answer")]
    Online(#[from] OnlineError),
}

/// The resumer: a pass at start, then one per `recheck` and whenever woken, until shutdown.
pub(crate) async fn run(
    tenant: Arc<crate::pipeline::WorkerContext>,
    circuit: Arc<Circuit>,
    shutdown: CancellationToken,
) {
    let awaiting = &tenant.tenant.awaiting;
    loop {
        if circuit.is_closed() && !awaiting.parked.is_empty() {
            match resume_pass(&tenant.tenant, &shutdown).await {
                Ok(0) => {}
                Ok(resumed) => {
                    tracing::info!(
                        resumed,
                        waiting = awaiting.count(),
                        "licences assigned to users that awaited them"
                    );
                }
                Err(error) => {
                    tracing::warn!(error = %error, cause = ?std::error::Error::source(&error).map(ToString::to_string), "looking for free licence seats failed; trying again later");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(awaiting.recheck) => {}
            () = awaiting.wake.notified() => {}
        }
    }
}

/// Assigns licences to parked users, oldest first, while seats are free. Returns how many
/// users it licensed.
async fn resume_pass(tenant: &Tenant, shutdown: &CancellationToken) -> Result<usize, ResumeError> {
    let awaiting = &tenant.awaiting;
    let parked = awaiting.parked.all()?;
    if parked.is_empty() {
        return Ok(0);
    }
    let skus = tenant.online.refresh_subscribed_skus().await?;
    let mut free: HashMap<SkuId, i64> = skus
        .iter()
        .map(|sku| (sku.sku_id, sku.available_units()))
        .collect();
    let mut resumed = 0;
    for (subject, record) in parked {
        if shutdown.is_cancelled() || free.values().all(|seats| *seats < 1) {
            break;
        }
        let wanted: Result<Vec<SkuId>, _> =
            record.skus.iter().map(|sku| SkuId::parse(sku)).collect();
        let (Ok(wanted), Ok(id)) = (wanted, UserId::parse(&record.online_id)) else {
            tracing::warn!(subject, "an unreadable entry awaiting a licence is dropped");
            awaiting.parked.release(&subject)?;
            continue;
        };
        if wanted
            .iter()
            .any(|sku| free.get(sku).copied().unwrap_or(0) < 1)
        {
            continue;
        }
        let _licence_writes = awaiting.lock(&subject).await;
        // A handler may have released or re-parked the subject meanwhile.
        if awaiting.parked.get(&subject)?.as_ref() != Some(&record) {
            continue;
        }
        let Some(user) = tenant
            .online
            .get_user(&UserKey::Id(id), USER_SELECT)
            .await?
        else {
            tracing::warn!(
                subject,
                upn = record.upn,
                "a user awaiting a licence no longer exists online; dropped from the list"
            );
            awaiting.parked.release(&subject)?;
            continue;
        };
        let missing: Vec<SkuId> = wanted
            .iter()
            .copied()
            .filter(|sku| !user.holds(*sku))
            .collect();
        match assign_exactly(tenant, &user, &wanted).await {
            Ok(_) => {
                for sku in &missing {
                    *free.entry(*sku).or_default() -= 1;
                }
                awaiting.parked.release(&subject)?;
                awaiting.resumed.fetch_add(1, Ordering::Relaxed);
                resumed += 1;
                tracing::info!(
                    subject,
                    upn = record.upn,
                    "a licence seat freed; assigned to a user that awaited it"
                );
            }
            Err(error) if error.class() == &ErrorClass::NoSeats => {
                // The counts were already stale: some other assignment took the seats.
                for sku in &missing {
                    free.insert(*sku, 0);
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(resumed)
}
