//! Licences: the tenant's SKUs and seats, and assigning or removing them on a user.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Change;
use crate::client::{Call, OnlineClient};
use crate::error::{ErrorClass, OnlineError, graph_text};
use crate::identity::{SkuId, UserKey};
use crate::users::{Page, UserProperty, null_as_empty};

/// The `$select` for `subscribedSkus` (its only supported query option, §4.1).
const SKU_SELECT: &str =
    "id,skuId,skuPartNumber,capabilityStatus,consumedUnits,prepaidUnits,servicePlans";

/// A SKU the tenant subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribedSku {
    /// `{tenantId}_{skuId}`.
    pub id: String,
    /// The SKU id used in `assignLicense`.
    pub sku_id: SkuId,
    /// e.g. `ENTERPRISEPREMIUM`.
    pub sku_part_number: Option<String>,
    /// `Enabled`, `Warning`, `Suspended`, `Deleted` or `LockedOut`.
    pub capability_status: Option<String>,
    /// Seats in use.
    #[serde(default)]
    pub consumed_units: i64,
    /// Seats bought, by state.
    #[serde(default)]
    pub prepaid_units: PrepaidUnits,
    /// The service plans in the SKU.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub service_plans: Vec<ServicePlan>,
}

impl SubscribedSku {
    /// Free seats: `prepaidUnits.enabled − consumedUnits` (§4.1), never below zero.
    pub fn available_units(&self) -> i64 {
        (self.prepaid_units.enabled - self.consumed_units).max(0)
    }
}

/// `prepaidUnits`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepaidUnits {
    /// Seats that can be assigned.
    #[serde(default)]
    pub enabled: i64,
    /// Seats suspended.
    #[serde(default)]
    pub suspended: i64,
    /// Seats in warning state.
    #[serde(default)]
    pub warning: i64,
    /// Seats locked out.
    #[serde(default)]
    pub locked_out: i64,
}

/// One service plan of a SKU.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlan {
    /// The plan id (what `disabledPlans` holds).
    pub service_plan_id: Uuid,
    /// e.g. `EXCHANGE_S_ENTERPRISE`.
    pub service_plan_name: Option<String>,
    /// e.g. `Success`.
    pub provisioning_status: Option<String>,
    /// `User` or `Company`.
    pub applies_to: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AddedLicence {
    sku_id: SkuId,
    disabled_plans: [Uuid; 0],
}

/// The `assignLicense` body; both arrays are always sent, empty when unused (§4.2).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AssignLicenceBody {
    add_licenses: Vec<AddedLicence>,
    remove_licenses: Vec<SkuId>,
}

impl AssignLicenceBody {
    pub(crate) fn new(add: &[SkuId], remove: &[SkuId]) -> Self {
        Self {
            add_licenses: add
                .iter()
                .map(|&sku_id| AddedLicence {
                    sku_id,
                    disabled_plans: [],
                })
                .collect(),
            remove_licenses: remove.to_vec(),
        }
    }
}

impl OnlineClient {
    /// The tenant's SKUs, reused for a short while (the call costs 3 resource units).
    pub async fn subscribed_skus(&self) -> Result<Vec<SubscribedSku>, OnlineError> {
        if let Some(skus) = self.cached_skus().await {
            return Ok(skus);
        }
        self.refresh_subscribed_skus().await
    }

    /// The tenant's SKUs for finding a SKU's id by its part number (the catalogue). The list is
    /// reused for the cache period even after licence assignments moved its seat counts,
    /// since ids and part numbers do not change with them; for seat counts use
    /// [`OnlineClient::subscribed_skus`] or [`OnlineClient::free_seats`]. Callers that find no
    /// fresh list share one read.
    pub async fn sku_catalogue(&self) -> Result<Vec<SubscribedSku>, OnlineError> {
        if let Some(skus) = self.cached_catalogue().await {
            return Ok(skus);
        }
        let _single_flight = self.lock_sku_refresh().await;
        if let Some(skus) = self.cached_catalogue().await {
            return Ok(skus);
        }
        self.refresh_subscribed_skus().await
    }

    /// The tenant's SKUs, read now, refreshing the cache.
    pub async fn refresh_subscribed_skus(&self) -> Result<Vec<SubscribedSku>, OnlineError> {
        let mut op = self.operation("list subscribed skus");
        let call = Call::graph(
            Method::GET,
            self.graph_url("subscribedSkus", &[("$select", SKU_SELECT)]),
        );
        let page: Page<SubscribedSku> = self.send(&mut op, &call).await?.json(&op)?;
        self.store_skus(Some(page.value.clone())).await;
        Ok(page.value)
    }

    /// Free seats of `sku` from the (cached) SKU list; `None` when the tenant has no such SKU.
    pub async fn free_seats(&self, sku: SkuId) -> Result<Option<i64>, OnlineError> {
        let skus = self.subscribed_skus().await?;
        Ok(skus
            .iter()
            .find(|candidate| candidate.sku_id == sku)
            .map(SubscribedSku::available_units))
    }

    /// Adds and removes licences in one `assignLicense`.
    ///
    /// "User does not have a corresponding license" means a removal was already done: with
    /// nothing to add that is `AlreadyDone`; with something to add, the removals are narrowed
    /// to what the user holds and the call repeated once, so the additions are not lost. The
    /// usage-location error right after a `usageLocation` change is replication lag (§4.2) and
    /// is retried a bounded number of times. No free seats is the `NoSeats` class.
    pub async fn assign_licenses(
        &self,
        key: &UserKey,
        add: &[SkuId],
        remove: &[SkuId],
    ) -> Result<Change, OnlineError> {
        let mut op = self.operation("assign licences");
        let url = self.user_url(key, "/assignLicense", &[]);
        let policy = self.retry_policy().clone();
        let mut remove = remove.to_vec();
        let mut narrowed = false;
        let mut usage_location_retries = 0;
        loop {
            let call = Call::graph(Method::POST, url.clone())
                .json(&AssignLicenceBody::new(add, &remove))
                .idempotent();
            let error = match self.send(&mut op, &call).await {
                Ok(_) => {
                    // consumedUnits moved: the cached seat counts are stale.
                    self.mark_seats_stale().await;
                    return Ok(Change::Applied);
                }
                Err(error) => error,
            };
            let message = error
                .reply()
                .map(|reply| reply.message.as_str())
                .unwrap_or_default();
            match error.class() {
                ErrorClass::AlreadyDone if message.contains(graph_text::LICENCE_ABSENT) => {
                    if add.is_empty() {
                        return Ok(Change::AlreadyDone);
                    }
                    if narrowed {
                        return Err(error);
                    }
                    narrowed = true;
                    let held = self
                        .get_user_in(&mut op, key, &[UserProperty::AssignedLicenses])
                        .await?
                        .ok_or_else(|| error.clone())?;
                    remove.retain(|&sku| held.holds(sku));
                }
                ErrorClass::Permanent { .. }
                    if message.contains(graph_text::USAGE_LOCATION)
                        && usage_location_retries < policy.replication_retries =>
                {
                    usage_location_retries += 1;
                    tokio::time::sleep(policy.replication_delay).await;
                }
                _ => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_licence_arrays_are_always_sent() {
        let sku = SkuId::parse("c7df2760-2c81-4ef7-b578-5b5392b571df").unwrap();
        let body = serde_json::to_string(&AssignLicenceBody::new(&[sku], &[])).unwrap();
        assert_eq!(
            body,
            r#"{"addLicenses":[{"skuId":"c7df2760-2c81-4ef7-b578-5b5392b571df","disabledPlans":[]}],"removeLicenses":[]}"#
        );
        let body = serde_json::to_string(&AssignLicenceBody::new(&[], &[sku])).unwrap();
        assert_eq!(
            body,
            r#"{"addLicenses":[],"removeLicenses":["c7df2760-2c81-4ef7-b578-5b5392b571df"]}"#
        );
    }

    #[test]
    fn free_seats_are_prepaid_minus_consumed() {
        let sku: SubscribedSku = serde_json::from_str(
            r#"{"accountName":"Contoso","appliesTo":"User","capabilityStatus":"Enabled","consumedUnits":14,
                "id":"48a80680_c7df2760-2c81-4ef7-b578-5b5392b571df",
                "prepaidUnits":{"enabled":25,"lockedOut":0,"suspended":0,"warning":0},
                "servicePlans":[{"servicePlanId":"8c098270-9dd4-4350-9b30-ba4703f3b36b","servicePlanName":"EXCHANGE_S_ENTERPRISE","provisioningStatus":"Success","appliesTo":"User"}],
                "skuId":"c7df2760-2c81-4ef7-b578-5b5392b571df","skuPartNumber":"ENTERPRISEPREMIUM","subscriptionIds":["43d2"]}"#,
        )
        .unwrap();
        assert_eq!(sku.available_units(), 11);
        assert_eq!(
            sku.service_plans[0].service_plan_name.as_deref(),
            Some("EXCHANGE_S_ENTERPRISE")
        );
    }
}
