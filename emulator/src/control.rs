//! The emulator's own test controls, under `/_emulator/` (never under Microsoft's paths), and the
//! same operations for the in-process Rust API.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::faults::{FaultPlan, InstalledFault};
use crate::reply::Ctx;
use crate::request_log::LoggedRequest;
use crate::seed::ThrottlingSettings;
use crate::server::{Shared, lock};

/// The seeded tenant as `GET /_emulator/tenant` publishes it.
#[derive(Clone, Serialize, Deserialize)]
pub struct TenantInfo {
    /// The tenant GUID.
    pub tenant_id: Uuid,
    /// The organisation name.
    pub tenant_display_name: String,
    /// The default domain (e.g. `contoso.onmicrosoft.com`).
    pub default_domain: String,
    /// All domains.
    pub domains: Vec<DomainInfo>,
    /// The dev app's client id (the first seeded app).
    pub client_id: Uuid,
    /// The dev app's client secret.
    pub client_secret: String,
    /// Subscribed SKUs and their seats.
    pub skus: Vec<SkuInfo>,
}

impl std::fmt::Debug for TenantInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantInfo")
            .field("tenant_id", &self.tenant_id)
            .field("default_domain", &self.default_domain)
            .field("domains", &self.domains)
            .field("client_id", &self.client_id)
            .field("client_secret", &"****")
            .field("skus", &self.skus)
            .finish()
    }
}

/// One domain in `TenantInfo`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DomainInfo {
    /// DNS name.
    pub name: String,
    /// Whether UPNs may use it.
    pub verified: bool,
    /// Whether it is the default.
    pub default: bool,
}

/// One SKU in `TenantInfo`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SkuInfo {
    /// SKU GUID.
    pub sku_id: Uuid,
    /// e.g. `ENTERPRISEPACK`.
    pub sku_part_number: String,
    /// Seats bought.
    pub prepaid_enabled: u32,
    /// Seats in use.
    pub consumed_units: u32,
    /// Whether a licence brings a mailbox.
    pub exchange: bool,
}

/// Everything the emulator holds, for assertions: users with all properties (plus an
/// `_emulator` object with what Graph does not show), groups with members.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateDump {
    /// The tenant.
    pub tenant: TenantInfo,
    /// Active and soft-deleted users.
    pub users: Vec<Value>,
    /// Groups (Graph-created and Exchange distribution groups).
    pub groups: Vec<Value>,
}

/// The body of `PATCH /_emulator/skus`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkuUnits {
    #[serde(default)]
    sku_id: Option<Uuid>,
    #[serde(default)]
    sku_part_number: Option<String>,
    units: u32,
}

/// The body of `POST /_emulator/domains`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    name: String,
}

impl Shared {
    pub(crate) fn tenant_info(&self) -> TenantInfo {
        let world = lock(&self.world);
        let directory = &world.directory;
        let app = world.seed.apps.first();
        TenantInfo {
            tenant_id: directory.tenant_id,
            tenant_display_name: directory.display_name.clone(),
            default_domain: directory.default_domain(),
            domains: directory
                .domains
                .iter()
                .map(|d| DomainInfo {
                    name: d.name.clone(),
                    verified: d.verified,
                    default: d.default,
                })
                .collect(),
            client_id: app.map(|a| a.client_id).unwrap_or_default(),
            client_secret: app
                .map(|a| a.client_secret.expose().to_owned())
                .unwrap_or_default(),
            skus: directory
                .skus
                .iter()
                .map(|s| SkuInfo {
                    sku_id: s.seed.sku_id,
                    sku_part_number: s.seed.sku_part_number.clone(),
                    prepaid_enabled: s.prepaid,
                    consumed_units: directory.consumed_units(s.seed.sku_id),
                    exchange: s.seed.exchange,
                })
                .collect(),
        }
    }

    pub(crate) fn state_dump(&self) -> StateDump {
        let tenant = self.tenant_info();
        let mut world = lock(&self.world);
        world.directory.settle(std::time::Instant::now());
        let directory = &world.directory;
        let now = std::time::Instant::now();
        let users = directory
            .user_order
            .values()
            .filter_map(|id| directory.users.get(id))
            .map(|user| {
                let mut all = user.all_properties();
                all.insert(
                    "_emulator".into(),
                    json!({
                        "deleted": user.deleted_at.is_some(),
                        "visible": user.visible_at <= now,
                        "has_password": user.password.is_some(),
                        "force_change_password_next_sign_in": user.force_change_password,
                        "mailbox": user.mailbox.as_ref().map(|m| json!({
                            "guid": m.guid,
                            "provisioned": m.provisioned,
                        })),
                    }),
                );
                Value::Object(all)
            })
            .collect();
        let groups = directory
            .group_order
            .values()
            .filter_map(|id| directory.groups.get(id))
            .map(|group| {
                let mut all = group.graph_properties();
                all.insert("members".into(), json!(group.members));
                if let Some(exchange) = &group.exchange {
                    all.insert(
                        "_exchange".into(),
                        json!({
                            "guid": exchange.guid,
                            "name": exchange.name,
                            "requireSenderAuthenticationEnabled": exchange.require_sender_authentication,
                            "managedBy": exchange.managed_by,
                            "memberJoinRestriction": exchange.member_join_restriction,
                            "memberDepartRestriction": exchange.member_depart_restriction,
                            "security": exchange.security,
                        }),
                    );
                }
                Value::Object(all)
            })
            .collect();
        StateDump {
            tenant,
            users,
            groups,
        }
    }

    pub(crate) fn add_domain(&self, name: &str) -> Result<(), String> {
        let valid = name.contains('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !valid {
            return Err(format!("domain name '{name}' is not a DNS name"));
        }
        lock(&self.world).directory.add_verified_domain(name);
        Ok(())
    }

    pub(crate) fn set_sku_units(&self, sku: &str, units: u32) -> Result<(), String> {
        let mut world = lock(&self.world);
        let found = world.directory.skus.iter_mut().find(|s| {
            s.seed.sku_part_number.eq_ignore_ascii_case(sku)
                || s.seed.sku_id.to_string() == sku.to_ascii_lowercase()
        });
        match found {
            Some(found) => {
                found.prepaid = units;
                Ok(())
            }
            None => Err(format!("the tenant has no SKU '{sku}'")),
        }
    }

    pub(crate) fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.log).all()
    }

    pub(crate) fn install_fault(&self, plan: FaultPlan) -> u64 {
        lock(&self.faults).install(plan)
    }

    pub(crate) fn faults(&self) -> Vec<InstalledFault> {
        lock(&self.faults).list()
    }

    pub(crate) fn remove_fault(&self, id: u64) -> bool {
        lock(&self.faults).remove(id)
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    pub(crate) fn reset(&self) {
        lock(&self.world).reset();
        lock(&self.faults).clear();
        lock(&self.log).clear();
    }

    pub(crate) fn set_throttling(&self, settings: ThrottlingSettings) {
        let mut world = lock(&self.world);
        world.seed.throttling = settings.clone();
        world.throttle = crate::throttling::Throttle::new(settings);
    }

    pub(crate) fn expire_tokens(&self) {
        let past = std::time::Instant::now();
        for token in lock(&self.world).tokens.values_mut() {
            token.expires_at = past;
        }
    }

    pub(crate) fn purge_expired_deleted_items(&self) {
        lock(&self.world).directory.purge_expired_now();
    }
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "null".into());
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Body::from(text))
        .unwrap_or_default()
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({"error": message.into()}))
}

fn empty(status: StatusCode) -> Response {
    Response::builder()
        .status(status)
        .body(Body::empty())
        .unwrap_or_default()
}

/// Answers `/_emulator/{rest}`.
pub(crate) async fn handle(
    shared: &Shared,
    method: &Method,
    rest: &str,
    query: Option<&str>,
    body: &Bytes,
    _ctx: &Ctx,
) -> Response {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["tenant"]) => json_response(StatusCode::OK, &shared.tenant_info()),
        (Method::GET, ["state"]) => json_response(StatusCode::OK, &shared.state_dump()),
        (Method::GET, ["requests"]) => {
            let writes_only = query.is_some_and(|q| {
                q.split('&')
                    .any(|p| p == "writes=true" || p == "write=true")
            });
            let entries: Vec<LoggedRequest> = shared
                .requests()
                .into_iter()
                .filter(|e| !writes_only || e.write)
                .collect();
            json_response(StatusCode::OK, &entries)
        }
        (Method::GET, ["faults"]) => json_response(StatusCode::OK, &shared.faults()),
        (Method::POST, ["faults"]) => match serde_json::from_slice::<FaultPlan>(body) {
            Ok(plan) => {
                let id = shared.install_fault(plan);
                json_response(StatusCode::CREATED, &json!({ "id": id }))
            }
            Err(error) => problem(
                StatusCode::BAD_REQUEST,
                format!("fault plan is not valid: {error}"),
            ),
        },
        (Method::DELETE, ["faults"]) => {
            shared.clear_faults();
            empty(StatusCode::NO_CONTENT)
        }
        (Method::DELETE, ["faults", id]) => match id.parse::<u64>() {
            Ok(id) if shared.remove_fault(id) => empty(StatusCode::NO_CONTENT),
            _ => problem(
                StatusCode::NOT_FOUND,
                format!("no fault plan with id '{id}'"),
            ),
        },
        (Method::POST, ["domains"]) => match serde_json::from_slice::<NewDomain>(body) {
            Ok(domain) => match shared.add_domain(&domain.name) {
                Ok(()) => json_response(
                    StatusCode::CREATED,
                    &json!({"name": domain.name.to_ascii_lowercase(), "verified": true}),
                ),
                Err(message) => problem(StatusCode::BAD_REQUEST, message),
            },
            Err(error) => problem(
                StatusCode::BAD_REQUEST,
                format!("body must be {{\"name\": \"example.com\"}}: {error}"),
            ),
        },
        (Method::PATCH, ["skus"]) => match serde_json::from_slice::<SkuUnits>(body) {
            Ok(change) => {
                let key = change
                    .sku_part_number
                    .clone()
                    .or_else(|| change.sku_id.map(|id| id.to_string()));
                let Some(key) = key else {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        "name the SKU with sku_part_number or sku_id",
                    );
                };
                match shared.set_sku_units(&key, change.units) {
                    Ok(()) => json_response(StatusCode::OK, &shared.tenant_info().skus),
                    Err(message) => problem(StatusCode::NOT_FOUND, message),
                }
            }
            Err(error) => problem(
                StatusCode::BAD_REQUEST,
                format!("body must be {{\"sku_part_number\": ..., \"units\": n}}: {error}"),
            ),
        },
        (Method::PUT, ["throttling"]) => match serde_json::from_slice::<ThrottlingSettings>(body) {
            Ok(settings) => {
                shared.set_throttling(settings.clone());
                json_response(StatusCode::OK, &settings)
            }
            Err(error) => problem(
                StatusCode::BAD_REQUEST,
                format!("throttling settings are not valid: {error}"),
            ),
        },
        (Method::POST, ["tokens", "expire"]) => {
            shared.expire_tokens();
            empty(StatusCode::NO_CONTENT)
        }
        (Method::POST, ["deleted-items", "purge-expired"]) => {
            shared.purge_expired_deleted_items();
            empty(StatusCode::NO_CONTENT)
        }
        (Method::POST, ["reset"]) => {
            shared.reset();
            empty(StatusCode::NO_CONTENT)
        }
        _ => problem(
            StatusCode::NOT_FOUND,
            format!("no emulator control at {method} /_emulator/{rest}"),
        ),
    }
}
