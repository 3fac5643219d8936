//! Everything behind the one lock: the directory, the seed it came from (for its settings and
//! for reset), the issued tokens and the throttling buckets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::directory::Directory;
use crate::seed::Seed;
use crate::throttling::Throttle;

/// Which API a token was issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Audience {
    Graph,
    Exchange,
}

/// A token the emulator issued.
#[derive(Clone, Debug)]
pub(crate) struct IssuedToken {
    pub(crate) app_id: Uuid,
    pub(crate) audience: Audience,
    pub(crate) expires_at: Instant,
    pub(crate) roles: Vec<String>,
}

/// The authenticated app behind a request.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) app_id: Uuid,
    pub(crate) roles: Vec<String>,
}

/// Application permissions granted to an app seeded without `roles`.
pub(crate) const ALL_ROLES: &[&str] = &[
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
    "Group.ReadWrite.All",
    "GroupMember.ReadWrite.All",
    "LicenseAssignment.ReadWrite.All",
    "Organization.Read.All",
    "User-PasswordProfile.ReadWrite.All",
    "User.RevokeSessions.All",
    "User.EnableDisableAccount.All",
    "Exchange.ManageAsApp",
];

/// The emulator's mutable state.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) seed: Seed,
    pub(crate) directory: Directory,
    pub(crate) tokens: HashMap<String, IssuedToken>,
    pub(crate) throttle: Throttle,
    /// Exchange's published budget: calls counted per clock hour, for the `Rate-Limit-*` headers.
    pub(crate) exchange_calls: (i64, u32),
}

impl World {
    /// A fresh world from a seed.
    pub(crate) fn new(seed: Seed) -> World {
        World {
            directory: Directory::from_seed(&seed),
            throttle: Throttle::new(seed.throttling.clone()),
            tokens: HashMap::new(),
            exchange_calls: (0, 0),
            seed,
        }
    }

    /// Back to the seed. Issued tokens stay valid so connected clients carry on.
    pub(crate) fn reset(&mut self) {
        self.directory = Directory::from_seed(&self.seed);
        self.throttle = Throttle::new(self.seed.throttling.clone());
    }

    /// The configured replication delay.
    pub(crate) fn replication_delay(&self) -> Duration {
        Duration::from_millis(self.seed.replication_delay_ms)
    }

    /// The configured mailbox provisioning delay.
    pub(crate) fn mailbox_delay(&self) -> Duration {
        Duration::from_millis(self.seed.mailbox_provisioning_delay_ms)
    }

    /// With role enforcement on, whether the caller holds one of `any_of`.
    pub(crate) fn permits(&self, caller: &Caller, any_of: &[&str]) -> bool {
        !self.seed.enforce_roles || caller.roles.iter().any(|r| any_of.contains(&r.as_str()))
    }
}
