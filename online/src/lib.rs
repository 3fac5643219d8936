//! moss-online: the client for Microsoft Graph v1.0 and the Exchange Online admin API.
//!
//! The only crate that speaks to Microsoft. It owns the client-credentials token cache, one
//! `client-request-id` per logical operation, `Retry-After` and backoff, `$select` on every
//! read, paging, `$batch`, and the error classes the workers act on ([`ErrorClass`]). Every
//! base URL is configurable, so the emulator and the real clouds share one code path.
//!
//! It never knows RabbitMQ, sled or events: callers hand it validated values
//! ([`UserPrincipalName`], [`Anchor`], [`SkuId`], …) and get typed results or an
//! [`OnlineError`]. Secrets (the client secret, passwords, tokens) are exposed only while a
//! request body or header is built, never in `Debug`, logs or errors.

mod batch;
mod client;
mod config;
mod domains;
mod error;
mod exchange;
mod identity;
mod licences;
mod retry;
mod throttle;
mod token;
mod users;

pub use batch::{BatchItemOutcome, BatchItemReply, BatchMethod, BatchRequest, MAX_BATCH_ITEMS};
pub use client::OnlineClient;
pub use config::{
    DEFAULT_EXCHANGE_SCOPE, DEFAULT_EXCHANGE_URL, DEFAULT_GRAPH_SCOPE, DEFAULT_GRAPH_URL,
    DEFAULT_LOGIN_URL, OnlineConfig, Timeouts,
};
pub use domains::Domain;
pub use error::{ErrorClass, OnlineError, ServiceReply};
pub use exchange::{
    DistributionGroup, DistributionGroupMember, DistributionGroupUpdate, Mailbox,
    NewDistributionGroup, SenderAuthentication,
};
pub use identity::{
    Anchor, DisplayName, FieldError, MailNickname, RecipientId, SkuId, SmtpAddress, UsageLocation,
    UserId, UserKey, UserPrincipalName,
};
pub use licences::{PrepaidUnits, ServicePlan, SubscribedSku};
pub use retry::RetryPolicy;
pub use throttle::{
    PaceFuture, Pacer, RequestKind, Service, ThrottleSignal, Unpaced, parse_retry_after,
};
pub use users::{
    AccountState, AssignedLicense, NewPassword, NewUser, PasswordChange, User, UserCreation,
    UserFilter, UserProperty, UserUpdate,
};

/// Whether a write changed the tenant or found it already as wanted (delete → 404, member
/// already there, licence already gone). Both are success; the difference is for the ledger
/// and the outcome event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// The write was applied now.
    Applied,
    /// The tenant was already in the wanted state.
    AlreadyDone,
}
