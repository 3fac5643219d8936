//! What the accounts commands read from the tenant before they plan: its domains, its SKUs
//! with their seats, and its users.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use moss_online::{Domain, OnlineClient, SubscribedSku, User, UserProperty};
use moss_schemas::{DomainName, SkuPartNumber};

/// The tenant as it is now.
#[derive(Debug)]
pub(crate) struct TenantView {
    pub(crate) domains: Vec<Domain>,
    pub(crate) skus: Vec<SubscribedSku>,
    pub(crate) users: Vec<User>,
    by_upn: HashMap<String, usize>,
    by_anchor: HashMap<String, usize>,
}

impl TenantView {
    /// Reads domains, SKUs and every user (paged, `$top=999`).
    pub(crate) async fn read(client: &OnlineClient) -> Result<TenantView> {
        let domains = client
            .list_domains()
            .await
            .context("could not read the tenant's domains")?;
        let skus = client
            .refresh_subscribed_skus()
            .await
            .context("could not read the tenant's subscriptions (subscribedSkus)")?;
        let users = client
            .list_users(None, UserProperty::ALL)
            .await
            .context("could not list the tenant's users")?;
        let by_upn = users
            .iter()
            .enumerate()
            .filter_map(|(index, user)| {
                user.user_principal_name
                    .as_ref()
                    .map(|upn| (upn.to_ascii_lowercase(), index))
            })
            .collect();
        let by_anchor = users
            .iter()
            .enumerate()
            .filter_map(|(index, user)| {
                user.on_premises_immutable_id
                    .as_ref()
                    .map(|anchor| (anchor.to_ascii_lowercase(), index))
            })
            .collect();
        Ok(TenantView {
            domains,
            skus,
            users,
            by_upn,
            by_anchor,
        })
    }

    /// The user with this UPN, compared without case.
    pub(crate) fn user_by_upn(&self, upn: &str) -> Option<&User> {
        self.by_upn
            .get(&upn.to_ascii_lowercase())
            .map(|index| &self.users[*index])
    }

    /// The user carrying this anchor (a directory subject), compared without case.
    pub(crate) fn user_by_anchor(&self, anchor: &str) -> Option<&User> {
        self.by_anchor
            .get(&anchor.to_ascii_lowercase())
            .map(|index| &self.users[*index])
    }

    /// The domain new online ids go in: `wanted` if the tenant accepted (verified) it, else
    /// the tenant's custom default (its default domain unless that is the initial
    /// `*.onmicrosoft.com` one, then its first other verified domain).
    pub(crate) fn accepted_domain(&self, wanted: Option<&str>) -> Result<DomainName> {
        let verified: Vec<&Domain> = self.domains.iter().filter(|d| d.is_verified).collect();
        let names = || {
            verified
                .iter()
                .map(|d| d.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let chosen = match wanted {
            Some(wanted) => {
                let wanted = wanted.trim().to_ascii_lowercase();
                match verified.iter().find(|d| d.id.eq_ignore_ascii_case(&wanted)) {
                    Some(domain) => domain.id.clone(),
                    None => bail!(
                        "--domain {wanted}: the tenant has not accepted (verified) this domain; its domains are: {}",
                        names()
                    ),
                }
            }
            None => {
                let custom = verified
                    .iter()
                    .find(|d| d.is_default && !d.is_initial)
                    .or_else(|| verified.iter().find(|d| !d.is_initial))
                    .or_else(|| verified.first());
                match custom {
                    Some(domain) => domain.id.clone(),
                    None => bail!("the tenant has no verified domain to make online ids in"),
                }
            }
        };
        DomainName::parse(&chosen)
            .map_err(|error| anyhow::anyhow!("domain {chosen}: {}", error.message))
    }

    /// The tenant's SKU for each part number, or one sentence naming the unknown ones.
    pub(crate) fn skus_for(
        &self,
        wanted: &[String],
    ) -> Result<Vec<(SkuPartNumber, &SubscribedSku)>> {
        let mut found = Vec::new();
        let mut unknown = Vec::new();
        for part in wanted {
            let parsed = SkuPartNumber::parse(part.trim())
                .map_err(|error| anyhow::anyhow!("--license {part}: {}", error.message))?;
            match self.skus.iter().find(|sku| {
                sku.sku_part_number
                    .as_deref()
                    .is_some_and(|name| name.eq_ignore_ascii_case(parsed.as_str()))
            }) {
                Some(sku) => found.push((parsed, sku)),
                None => unknown.push(part.clone()),
            }
        }
        if !unknown.is_empty() {
            bail!(
                "--license {}: the tenant has no subscription for {}; its SKUs are: {}",
                unknown.join(", "),
                if unknown.len() == 1 {
                    "this SKU"
                } else {
                    "these SKUs"
                },
                self.sku_names().join(", ")
            );
        }
        Ok(found)
    }

    /// Part numbers of every SKU.
    pub(crate) fn sku_names(&self) -> Vec<String> {
        self.skus
            .iter()
            .map(|sku| {
                sku.sku_part_number
                    .clone()
                    .unwrap_or_else(|| sku.sku_id.to_string())
            })
            .collect()
    }

    /// The part number of a SKU id held by a user.
    pub(crate) fn part_number_of(&self, sku: moss_online::SkuId) -> Option<String> {
        self.skus
            .iter()
            .find(|candidate| candidate.sku_id == sku)
            .and_then(|candidate| candidate.sku_part_number.clone())
    }
}
