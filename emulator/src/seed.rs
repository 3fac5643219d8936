//! The seed: what a fresh emulator holds (tenant, domains, apps, SKUs) and how it behaves
//! (throttling figures, delays). Loadable from TOML; every field has a default, so a seed file
//! names only what it changes.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A problem with a seed file.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The TOML did not parse or a field had the wrong type or name.
    #[error("seed is not valid: {0}")]
    Syntax(String),
    /// The seed parsed but its content is inconsistent.
    #[error("seed field `{field}` is invalid: {reason}")]
    Invalid {
        /// The field path, e.g. `domains[0].name`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Everything a fresh (or reset) emulator starts from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Seed {
    /// The tenant GUID; the token endpoint also accepts any verified domain in its place.
    pub tenant_id: Uuid,
    /// The organisation name (`accountName` on subscribed SKUs).
    pub tenant_display_name: String,
    /// Domains; exactly one should be `default`, and only verified ones take UPNs.
    pub domains: Vec<DomainSeed>,
    /// App registrations that may obtain tokens.
    pub apps: Vec<AppSeed>,
    /// Subscribed SKUs with their prepaid units.
    pub skus: Vec<SkuSeed>,
    /// Users present at start (for import scenarios).
    pub users: Vec<UserSeed>,
    /// The identity throttling model (§7.2 of the wire reference).
    pub throttling: ThrottlingSettings,
    /// How long after an Exchange-bearing licence the mailbox appears.
    pub mailbox_provisioning_delay_ms: u64,
    /// Eventual consistency: new users stay invisible to reads, and a fresh `usageLocation`
    /// does not yet count for licensing, for this long.
    pub replication_delay_ms: u64,
    /// Soft-deleted users are purged automatically after this many days.
    pub deleted_item_retention_days: u32,
    /// `expires_in` of issued tokens.
    pub token_lifetime_secs: u64,
    /// When true, Graph calls check the token's `roles` and answer 403 when one is missing.
    pub enforce_roles: bool,
    /// Answer `$batch` items in a shuffled order (Graph does not guarantee order).
    pub shuffle_batch_responses: bool,
}

/// One domain of the tenant.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSeed {
    /// The DNS name, e.g. `contoso.com`.
    pub name: String,
    /// Only verified domains can carry UPNs and SMTP addresses.
    #[serde(default = "yes")]
    pub verified: bool,
    /// The tenant's default domain (mailbox primary addresses use it when needed).
    #[serde(default)]
    pub default: bool,
}

fn yes() -> bool {
    true
}

/// An app registration's client secret. Never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> ClientSecret {
        ClientSecret(value.into())
    }

    /// A secret in the shape Entra issues: three characters, `8Q~`, then 34 more.
    pub fn generate() -> ClientSecret {
        const ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~";
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect()
        };
        let head = pick(3);
        let tail = pick(34);
        ClientSecret(format!("{head}8Q~{tail}"))
    }

    /// The secret value, for the token check and for `GET /_emulator/tenant`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(****)")
    }
}

/// One app registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSeed {
    /// The application (client) id.
    pub client_id: Uuid,
    /// The secret value.
    pub client_secret: ClientSecret,
    /// Application permissions granted; absent means every permission the emulator knows.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

/// One subscribed SKU.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuSeed {
    /// The SKU GUID.
    pub sku_id: Uuid,
    /// e.g. `ENTERPRISEPACK`.
    pub sku_part_number: String,
    /// Seats bought (`prepaidUnits.enabled`).
    pub prepaid_enabled: u32,
    /// The service plans the SKU carries.
    #[serde(default)]
    pub service_plans: Vec<ServicePlanSeed>,
    /// Whether a licence of this SKU brings an Exchange Online mailbox.
    #[serde(default)]
    pub exchange: bool,
}

/// One service plan of a SKU.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePlanSeed {
    /// The plan GUID.
    pub service_plan_id: Uuid,
    /// e.g. `EXCHANGE_S_ENTERPRISE`.
    pub service_plan_name: String,
}

/// A user present at start.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSeed {
    /// The UPN; its domain must be a verified seed domain.
    pub user_principal_name: String,
    /// The display name.
    pub display_name: String,
    /// The alias; defaults to the UPN's local part.
    #[serde(default)]
    pub mail_nickname: Option<String>,
    /// ISO 3166 alpha-2.
    #[serde(default)]
    pub usage_location: Option<String>,
    /// Whether sign-in is allowed.
    #[serde(default = "yes")]
    pub account_enabled: bool,
    /// `onPremisesImmutableId` / `employeeId` style anchor, if any.
    #[serde(default)]
    pub employee_id: Option<String>,
    /// SKU part numbers assigned at start (the mailbox, if any, exists at once).
    #[serde(default)]
    pub licenses: Vec<String>,
}

/// The identity throttling model: token buckets refilled continuously.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottlingSettings {
    /// Whether the buckets are enforced (the headers are sent either way).
    pub enabled: bool,
    /// Writes per app and tenant per window (Microsoft: 3,000 per 150 s).
    pub write_limit: u32,
    /// The write window in seconds.
    pub write_window_secs: u32,
    /// Resource units per app and tenant per window (Microsoft, small tenant: 3,500 per 10 s).
    pub resource_unit_limit: u32,
    /// The resource-unit window in seconds.
    pub resource_unit_window_secs: u32,
    /// Writes per tenant across all apps per window (Microsoft: 18,000 per 300 s).
    pub tenant_write_limit: u32,
    /// The tenant write window in seconds.
    pub tenant_write_window_secs: u32,
}

impl Default for ThrottlingSettings {
    fn default() -> ThrottlingSettings {
        ThrottlingSettings {
            enabled: true,
            write_limit: 3_000,
            write_window_secs: 150,
            resource_unit_limit: 3_500,
            resource_unit_window_secs: 10,
            tenant_write_limit: 18_000,
            tenant_write_window_secs: 300,
        }
    }
}

impl ThrottlingSettings {
    /// The same figures, not enforced.
    pub fn disabled() -> ThrottlingSettings {
        ThrottlingSettings {
            enabled: false,
            ..ThrottlingSettings::default()
        }
    }
}

/// The fixed tenant id of the default seed, so logs from different runs line up.
pub const DEFAULT_TENANT_ID: Uuid = Uuid::from_u128(0x6e9c_2f4a_7d1b_4c3e_9a5f_0b8d_2e6c_1a47);
/// The fixed client id of the default seed's dev app.
pub const DEFAULT_CLIENT_ID: Uuid = Uuid::from_u128(0x0d3f_9b21_5c7e_4a88_b6d4_3e1f_72a9_c05b);

fn plan(id: &str, name: &str) -> ServicePlanSeed {
    ServicePlanSeed {
        service_plan_id: id.parse().unwrap_or_default(),
        service_plan_name: name.to_owned(),
    }
}

fn sku_id(id: &str) -> Uuid {
    id.parse().unwrap_or_default()
}

impl Default for Seed {
    /// One tenant (`contoso.onmicrosoft.com` default, `contoso.com` verified, `fabrikam.com`
    /// unverified), a dev app with a secret random per start, and three SKUs with free seats
    /// (ENTERPRISEPACK with Exchange, EMS without, EXCHANGESTANDARD with Exchange).
    fn default() -> Seed {
        Seed {
            tenant_id: DEFAULT_TENANT_ID,
            tenant_display_name: "Contoso".to_owned(),
            domains: vec![
                DomainSeed {
                    name: "contoso.onmicrosoft.com".to_owned(),
                    verified: true,
                    default: true,
                },
                DomainSeed {
                    name: "contoso.com".to_owned(),
                    verified: true,
                    default: false,
                },
                DomainSeed {
                    name: "fabrikam.com".to_owned(),
                    verified: false,
                    default: false,
                },
            ],
            apps: vec![AppSeed {
                client_id: DEFAULT_CLIENT_ID,
                client_secret: ClientSecret::generate(),
                roles: None,
            }],
            skus: vec![
                SkuSeed {
                    sku_id: sku_id("6fd2c87f-b296-42f0-b197-1e91e994b900"),
                    sku_part_number: "ENTERPRISEPACK".to_owned(),
                    prepaid_enabled: 25,
                    service_plans: vec![
                        plan(
                            "efb87545-963c-4e0d-99df-69c6916d9eb0",
                            "EXCHANGE_S_ENTERPRISE",
                        ),
                        plan(
                            "5dbe027f-2339-4123-9542-606e4d348a72",
                            "SHAREPOINTENTERPRISE",
                        ),
                        plan("43de0ff5-c92c-492b-9116-175376d08c38", "OFFICESUBSCRIPTION"),
                    ],
                    exchange: true,
                },
                SkuSeed {
                    sku_id: sku_id("efccb6f7-5641-4e0e-bd10-b4976e1bf68e"),
                    sku_part_number: "EMS".to_owned(),
                    prepaid_enabled: 10,
                    service_plans: vec![
                        plan("41781fb2-bc02-4b7c-bd55-b576c07bb09d", "AAD_PREMIUM"),
                        plan("c1ec4a95-1f05-45b3-a911-aa3fa01094f5", "INTUNE_A"),
                    ],
                    exchange: false,
                },
                SkuSeed {
                    sku_id: sku_id("4b9405b0-7788-4568-add1-99614e613b69"),
                    sku_part_number: "EXCHANGESTANDARD".to_owned(),
                    prepaid_enabled: 5,
                    service_plans: vec![plan(
                        "9aaf7827-d63c-4b61-89c3-182f06f82e5c",
                        "EXCHANGE_S_STANDARD",
                    )],
                    exchange: true,
                },
            ],
            users: Vec::new(),
            throttling: ThrottlingSettings::default(),
            mailbox_provisioning_delay_ms: 0,
            replication_delay_ms: 0,
            deleted_item_retention_days: 30,
            token_lifetime_secs: 3599,
            enforce_roles: false,
            shuffle_batch_responses: false,
        }
    }
}

impl Seed {
    /// Parses and validates a TOML seed; missing fields take the defaults of `Seed::default()`.
    pub fn from_toml_str(text: &str) -> Result<Seed, SeedError> {
        let seed: Seed = toml::from_str(text).map_err(|e| SeedError::Syntax(e.to_string()))?;
        seed.validate()?;
        Ok(seed)
    }

    /// Checks what serde cannot: names, uniqueness, references.
    pub fn validate(&self) -> Result<(), SeedError> {
        let invalid = |field: String, reason: &str| SeedError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        if self.domains.is_empty() {
            return Err(invalid("domains".into(), "at least one domain is needed"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, domain) in self.domains.iter().enumerate() {
            let name = domain.name.to_ascii_lowercase();
            if name.is_empty()
                || !name.contains('.')
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                return Err(invalid(
                    format!("domains[{i}].name"),
                    "must be a DNS name such as contoso.com",
                ));
            }
            if !names.insert(name) {
                return Err(invalid(format!("domains[{i}].name"), "appears twice"));
            }
        }
        if self.domains.iter().filter(|d| d.default).count() > 1 {
            return Err(invalid(
                "domains".into(),
                "only one domain can be the default",
            ));
        }
        if !self.domains.iter().any(|d| d.verified) {
            return Err(invalid(
                "domains".into(),
                "at least one domain must be verified",
            ));
        }
        for (i, app) in self.apps.iter().enumerate() {
            if app.client_secret.expose().len() < 8 {
                return Err(invalid(
                    format!("apps[{i}].client_secret"),
                    "must be at least 8 characters",
                ));
            }
        }
        let mut skus = std::collections::HashSet::new();
        for (i, sku) in self.skus.iter().enumerate() {
            if sku.sku_part_number.trim().is_empty() {
                return Err(invalid(format!("skus[{i}].sku_part_number"), "is empty"));
            }
            if !skus.insert(sku.sku_id) {
                return Err(invalid(format!("skus[{i}].sku_id"), "appears twice"));
            }
        }
        for (i, user) in self.users.iter().enumerate() {
            let Some((_, domain)) = user.user_principal_name.rsplit_once('@') else {
                return Err(invalid(
                    format!("users[{i}].user_principal_name"),
                    "must be alias@domain",
                ));
            };
            if !self
                .domains
                .iter()
                .any(|d| d.verified && d.name.eq_ignore_ascii_case(domain))
            {
                return Err(invalid(
                    format!("users[{i}].user_principal_name"),
                    "its domain is not a verified seed domain",
                ));
            }
            for licence in &user.licenses {
                if !self.skus.iter().any(|s| &s.sku_part_number == licence) {
                    return Err(invalid(
                        format!("users[{i}].licenses"),
                        "names a SKU part number the seed does not have",
                    ));
                }
            }
        }
        let t = &self.throttling;
        if t.write_window_secs == 0
            || t.resource_unit_window_secs == 0
            || t.tenant_write_window_secs == 0
        {
            return Err(invalid(
                "throttling".into(),
                "windows must be at least one second",
            ));
        }
        Ok(())
    }

    /// The default seed with throttling off: what `Emulator::start_for_tests` uses.
    pub fn for_tests() -> Seed {
        Seed {
            throttling: ThrottlingSettings::disabled(),
            ..Seed::default()
        }
    }

    /// The tenant's default domain (the first verified one if none is marked).
    pub fn default_domain(&self) -> &str {
        self.domains
            .iter()
            .find(|d| d.default)
            .or_else(|| self.domains.iter().find(|d| d.verified))
            .map(|d| d.name.as_str())
            .unwrap_or("contoso.onmicrosoft.com")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_seed_is_valid_and_has_free_seats() {
        let seed = Seed::default();
        seed.validate().unwrap();
        assert!(
            seed.skus
                .iter()
                .any(|s| s.exchange && s.prepaid_enabled > 0)
        );
        assert!(seed.skus.iter().any(|s| !s.exchange));
    }

    #[test]
    fn generated_secrets_have_the_entra_shape_and_differ() {
        let a = ClientSecret::generate();
        let b = ClientSecret::generate();
        assert_eq!(a.expose().len(), 40);
        assert_eq!(&a.expose()[3..6], "8Q~");
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "ClientSecret(****)");
    }

    #[test]
    fn a_toml_seed_overrides_only_what_it_names() {
        let seed = Seed::from_toml_str(
            "tenant_display_name = \"Fabrikam\"\nreplication_delay_ms = 50\n[throttling]\nenabled = false\n",
        )
        .unwrap();
        assert_eq!(seed.tenant_display_name, "Fabrikam");
        assert_eq!(seed.replication_delay_ms, 50);
        assert!(!seed.throttling.enabled);
        assert_eq!(seed.throttling.write_limit, 3000);
    }

    #[test]
    fn an_unknown_field_is_named_in_the_error() {
        let error = Seed::from_toml_str("tennant_id = \"x\"").unwrap_err();
        assert!(error.to_string().contains("tennant_id"), "{error}");
    }

    #[test]
    fn a_user_on_an_unverified_domain_is_rejected_by_field() {
        let error = Seed::from_toml_str(
            "[[users]]\nuser_principal_name = \"a@fabrikam.com\"\ndisplay_name = \"A\"\n",
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("users[0].user_principal_name"),
            "{error}"
        );
    }
}
