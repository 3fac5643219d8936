//! moss-emulator: a faithful local stand-in for Microsoft Entra ID (Graph v1.0), the identity
//! platform token endpoint and the Exchange Online admin API, built from the wire reference
//! (`microsoft-online-wire.md`), with scripted faults, throttling and a request log for tests.
//!
//! Shares no code with moss-online by design: two independent readings of the wire format check
//! each other. It never knows about RabbitMQ, sled, events or workers.
//!
//! One address serves Graph at `{base}/v1.0`, the token endpoint at
//! `{base}/{tenant}/oauth2/v2.0/token`, Exchange at `{base}/adminapi/beta/{tenant}/InvokeCommand`,
//! and the emulator's own controls at `{base}/_emulator/…` (see docs/EMULATOR.md).

mod control;
mod directory;
mod exchange;
mod faults;
mod graph;
mod reply;
mod request_log;
mod seed;
mod server;
mod throttling;
mod token;
mod world;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use control::{DomainInfo, SkuInfo, StateDump, TenantInfo};
pub use faults::{AfterCommit, FaultAction, FaultPlan, InstalledFault};
pub use request_log::LoggedRequest;
pub use seed::{
    AppSeed, ClientSecret, DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, DomainSeed, Seed, SeedError,
    ServicePlanSeed, SkuSeed, ThrottlingSettings, UserSeed,
};
use serde_json::Value;

use server::{Shared, lock};
use world::World;

/// Why the emulator could not start or a control failed.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The seed is inconsistent.
    #[error("emulator seed is not valid")]
    Seed(#[from] SeedError),
    /// The listen address could not be bound.
    #[error("emulator could not listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The bound listener has no local address.
    #[error("emulator listener has no local address")]
    LocalAddr(#[source] std::io::Error),
    /// A control named something the tenant does not have, or gave a bad value.
    #[error("emulator control refused: {0}")]
    Control(String),
}

fn shared_from(seed: Seed) -> Arc<Shared> {
    Arc::new(Shared {
        tenant_id: seed.tenant_id,
        world: Mutex::new(World::new(seed)),
        faults: Mutex::new(faults::FaultBook::default()),
        log: Mutex::new(request_log::RequestLog::default()),
    })
}

/// Serves the emulator on `listener` until `shutdown` completes: the CLI's `moss emulator`.
pub async fn run(
    seed: Seed,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EmulatorError> {
    seed.validate()?;
    let shared = shared_from(seed);
    server::serve(shared, listener, shutdown).await;
    Ok(())
}

/// A running emulator on the current tokio runtime. Dropping it without `shutdown` leaves the
/// server running until the runtime ends.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Validates the seed, binds `listen` and serves in a spawned task.
    pub async fn start(seed: Seed, listen: SocketAddr) -> Result<Emulator, EmulatorError> {
        seed.validate()?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(EmulatorError::LocalAddr)?;
        let shared = shared_from(seed);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(shared.clone(), listener, async move {
            let _ = stopped.await;
        }));
        Ok(Emulator {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The default seed with throttling off (tests that want it call `set_throttling`), on
    /// `127.0.0.1:0`.
    pub async fn start_for_tests() -> Result<Emulator, EmulatorError> {
        Emulator::start_for_tests_with(Seed::for_tests()).await
    }

    /// A given seed on `127.0.0.1:0`.
    pub async fn start_for_tests_with(seed: Seed) -> Result<Emulator, EmulatorError> {
        Emulator::start(seed, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the login (authority) base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{base}/v1.0`.
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base_url())
    }

    /// `{base}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.base_url(),
            self.tenant().tenant_id
        )
    }

    /// `{base}/adminapi/beta/{tenant}/InvokeCommand`.
    pub fn exchange_url(&self) -> String {
        format!(
            "{}/adminapi/beta/{}/InvokeCommand",
            self.base_url(),
            self.tenant().tenant_id
        )
    }

    /// The seeded tenant (same JSON as `GET /_emulator/tenant`).
    pub fn tenant(&self) -> TenantInfo {
        self.shared.tenant_info()
    }

    /// Everything held now (same JSON as `GET /_emulator/state`).
    pub fn state(&self) -> StateDump {
        self.shared.state_dump()
    }

    /// One user (active or deleted) by id or UPN, with all properties and `_emulator` facts.
    pub fn user(&self, key: &str) -> Option<Value> {
        let wanted = key.to_ascii_lowercase();
        self.state().users.into_iter().find(|u| {
            u.get("id").and_then(Value::as_str) == Some(wanted.as_str())
                || u.get("userPrincipalName")
                    .and_then(Value::as_str)
                    .is_some_and(|upn| upn.eq_ignore_ascii_case(key))
        })
    }

    /// Whether a user's current password is `password` (the emulator keeps only a digest).
    /// `None` when no such active user exists.
    pub fn password_matches(&self, key: &str, password: &str) -> Option<bool> {
        let world = lock(&self.shared.world);
        let id = world.directory.active_user_id(key)?;
        let user = world.directory.users.get(&id)?;
        Some(user.password.as_ref().is_some_and(|p| p.matches(password)))
    }

    /// Adds a verified domain (as `POST /_emulator/domains`).
    pub fn add_domain(&self, name: &str) -> Result<(), EmulatorError> {
        self.shared.add_domain(name).map_err(EmulatorError::Control)
    }

    /// Sets a SKU's prepaid units, by part number or SKU id (as `PATCH /_emulator/skus`).
    pub fn set_sku_units(&self, sku: &str, units: u32) -> Result<(), EmulatorError> {
        self.shared
            .set_sku_units(sku, units)
            .map_err(EmulatorError::Control)
    }

    /// Installs a fault plan; returns its id.
    pub fn install_fault(&self, plan: FaultPlan) -> u64 {
        self.shared.install_fault(plan)
    }

    /// Removes one fault plan; false if it had already retired.
    pub fn remove_fault(&self, id: u64) -> bool {
        self.shared.remove_fault(id)
    }

    /// Removes every fault plan.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// The installed fault plans.
    pub fn faults(&self) -> Vec<InstalledFault> {
        self.shared.faults()
    }

    /// Every logged request, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.requests()
    }

    /// Only the writes (directory and Exchange changes), oldest first.
    pub fn writes(&self) -> Vec<LoggedRequest> {
        self.shared
            .requests()
            .into_iter()
            .filter(|r| r.write)
            .collect()
    }

    /// Replaces the throttling figures and refills the buckets.
    pub fn set_throttling(&self, settings: ThrottlingSettings) {
        self.shared.set_throttling(settings);
    }

    /// Makes every issued token expired, to test renewal on 401.
    pub fn expire_tokens(&self) {
        self.shared.expire_tokens();
    }

    /// Back to the seed: directory, faults and log cleared; tokens stay valid.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops accepting, lets open requests finish, and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
