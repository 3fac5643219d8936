//! The test harness: one emulator and a client pointed at it.

use std::time::Duration;

use moss_emulator::{Emulator, Seed};
use moss_online::{
    AccountState, Anchor, DisplayName, MailNickname, NewPassword, NewUser, OnlineClient,
    OnlineConfig, PasswordChange, RetryPolicy, SkuId, UsageLocation, UserPrincipalName,
};
use secrecy::SecretString;

/// A password the default policy accepts.
pub(crate) const PASSWORD: &str = "xWwvJ]6NMw+bWH-d";

pub(crate) struct TestTenant {
    pub(crate) emulator: Emulator,
    pub(crate) client: OnlineClient,
}

impl TestTenant {
    pub(crate) async fn start() -> Self {
        Self::start_with(Seed::for_tests()).await
    }

    pub(crate) async fn start_with(seed: Seed) -> Self {
        let emulator = Emulator::start_for_tests_with(seed)
            .await
            .expect("emulator starts");
        let client = OnlineClient::new(config_for(&emulator, None)).expect("client builds");
        Self { emulator, client }
    }

    /// Settings pointing every service at the emulator, with short test retry limits.
    pub(crate) fn config(&self, secret: Option<&str>) -> OnlineConfig {
        config_for(&self.emulator, secret)
    }

    pub(crate) fn upn(&self, alias: &str) -> UserPrincipalName {
        let domain = self.emulator.tenant().default_domain;
        UserPrincipalName::parse(&format!("{alias}@{domain}")).expect("valid upn")
    }

    pub(crate) fn new_user(&self, alias: &str, anchor: &str) -> NewUser {
        NewUser {
            user_principal_name: self.upn(alias),
            display_name: DisplayName::parse(alias).expect("display name"),
            mail_nickname: MailNickname::parse(alias).expect("nickname"),
            given_name: Some(alias.to_owned()),
            surname: None,
            usage_location: UsageLocation::parse("NL").expect("usage location"),
            password: NewPassword {
                password: SecretString::from(PASSWORD),
                change: PasswordChange::RequiredAtNextSignIn,
            },
            account_state: AccountState::Enabled,
            anchor: Anchor::parse(anchor).expect("anchor"),
        }
    }

    pub(crate) fn sku(&self, part_number: &str) -> SkuId {
        let sku = self
            .emulator
            .tenant()
            .skus
            .into_iter()
            .find(|sku| sku.sku_part_number == part_number)
            .unwrap_or_else(|| panic!("the seed has SKU {part_number}"));
        SkuId(sku.sku_id)
    }
}

pub(crate) fn config_for(emulator: &Emulator, secret: Option<&str>) -> OnlineConfig {
    let tenant = emulator.tenant();
    let secret = secret.map_or(tenant.client_secret.clone(), str::to_owned);
    let mut config = OnlineConfig::new(
        tenant.tenant_id.to_string(),
        tenant.client_id.to_string(),
        SecretString::from(secret),
    )
    .with_single_base_url(&emulator.base_url());
    config.retry = RetryPolicy {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        max_retries: 4,
        total_budget: Duration::from_secs(20),
        max_retry_after: Duration::from_secs(5),
        replication_retries: 3,
        replication_delay: Duration::from_millis(100),
    };
    config
}
