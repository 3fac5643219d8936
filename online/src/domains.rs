//! The tenant's domains (`GET /domains`): which names may carry user principal names and
//! mail addresses, and which one is the default.

use reqwest::Method;
use serde::Deserialize;

use crate::client::{Call, OnlineClient};
use crate::error::OnlineError;
use crate::users::Page;

/// One domain of the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    /// The DNS name, e.g. `contoso.com`.
    pub id: String,
    /// The tenant's default domain for new users.
    #[serde(default)]
    pub is_default: bool,
    /// The `*.onmicrosoft.com` domain the tenant was created with.
    #[serde(default)]
    pub is_initial: bool,
    /// Only verified domains can carry UPNs and SMTP addresses.
    #[serde(default)]
    pub is_verified: bool,
}

impl OnlineClient {
    /// Every domain of the tenant.
    pub async fn list_domains(&self) -> Result<Vec<Domain>, OnlineError> {
        let mut op = self.operation("list domains");
        let call = Call::graph(
            Method::GET,
            self.graph_url(
                "domains",
                &[("$select", "id,isDefault,isInitial,isVerified")],
            ),
        );
        let page: Page<Domain> = self.send(&mut op, &call).await?.json(&op)?;
        Ok(page.value)
    }
}
