//! Where the tenant is and how to sign in to it.

use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;

use crate::retry::RetryPolicy;

/// Microsoft's public-cloud authority host.
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
/// Microsoft Graph's public-cloud host; the client appends `/v1.0`.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
/// Exchange Online's public-cloud host; the admin API lives under `/adminapi/beta/{tenant}`.
pub const DEFAULT_EXCHANGE_URL: &str = "https://outlook.office365.com";
/// The token scope for Graph. Client credentials accept only `<resource>/.default` (§1).
pub const DEFAULT_GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The token scope for the Exchange admin API (§9.2).
pub const DEFAULT_EXCHANGE_SCOPE: &str = "https://outlook.office365.com/.default";

/// Per-attempt time limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// One whole attempt, from sending to the last byte of the reply.
    pub request: Duration,
    /// How long before `expires_in` a token is renewed (§1: about 5 minutes).
    pub token_renewal_margin: Duration,
    /// How long a `subscribedSkus` answer is reused (it costs 3 resource units, §4.1).
    pub sku_cache: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
            token_renewal_margin: Duration::from_secs(300),
            sku_cache: Duration::from_secs(60),
        }
    }
}

/// Settings for one tenant. The three base URLs are configurable so the emulator and the real
/// clouds use one code path (§11.15); no host is written anywhere else in this crate.
#[derive(Debug, Clone)]
pub struct OnlineConfig {
    /// The tenant GUID or a verified domain (`contoso.onmicrosoft.com`).
    pub tenant_id: String,
    /// The app (client) id.
    pub client_id: String,
    /// The client secret value (not its id). Exposed only when the token request is built.
    pub client_secret: SecretString,
    /// Authority host, e.g. `https://login.microsoftonline.com`.
    pub login_url: String,
    /// Graph host, e.g. `https://graph.microsoft.com` (without `/v1.0`).
    pub graph_url: String,
    /// Exchange Online host, e.g. `https://outlook.office365.com`.
    pub exchange_url: String,
    /// Token scope for Graph.
    pub graph_scope: String,
    /// Token scope for the Exchange admin API.
    pub exchange_scope: String,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Retry limits per logical operation.
    pub retry: RetryPolicy,
}

impl OnlineConfig {
    /// Settings for a tenant in Microsoft's public cloud, with default time and retry limits.
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret,
            login_url: DEFAULT_LOGIN_URL.to_owned(),
            graph_url: DEFAULT_GRAPH_URL.to_owned(),
            exchange_url: DEFAULT_EXCHANGE_URL.to_owned(),
            graph_scope: DEFAULT_GRAPH_SCOPE.to_owned(),
            exchange_scope: DEFAULT_EXCHANGE_SCOPE.to_owned(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        }
    }

    /// Points login, Graph and Exchange at one base URL, as the emulator serves them all.
    pub fn with_single_base_url(mut self, base_url: &str) -> Self {
        let base = base_url.trim_end_matches('/').to_owned();
        self.login_url.clone_from(&base);
        self.graph_url.clone_from(&base);
        self.exchange_url = base;
        self
    }
}

/// Checked, parsed endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) token: Url,
    /// `{graph_url}/v1.0/`, with the trailing slash so relative joins stay under it.
    pub(crate) graph: Url,
    pub(crate) exchange_invoke: Url,
}

/// A setting that cannot work, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettingError {
    pub(crate) field: &'static str,
    pub(crate) problem: String,
}

fn base_url(field: &'static str, value: &str) -> Result<Url, SettingError> {
    let trimmed = value.trim().trim_end_matches('/');
    let url = Url::parse(&format!("{trimmed}/")).map_err(|error| SettingError {
        field,
        problem: format!("is not a URL ({error})"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(SettingError {
            field,
            problem: "must be an absolute http or https URL".to_owned(),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(SettingError {
            field,
            problem: "must not carry a query or fragment".to_owned(),
        });
    }
    Ok(url)
}

fn plain_segment(field: &'static str, value: &str) -> Result<(), SettingError> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(())
    } else {
        Err(SettingError {
            field,
            problem: "must be a GUID or domain name (letters, digits, - . _)".to_owned(),
        })
    }
}

impl OnlineConfig {
    pub(crate) fn endpoints(&self) -> Result<Endpoints, SettingError> {
        plain_segment("tenant_id", &self.tenant_id)?;
        plain_segment("client_id", &self.client_id)?;
        if secrecy::ExposeSecret::expose_secret(&self.client_secret).is_empty() {
            return Err(SettingError {
                field: "client_secret",
                problem: "is empty".to_owned(),
            });
        }
        for (field, scope) in [
            ("graph_scope", &self.graph_scope),
            ("exchange_scope", &self.exchange_scope),
        ] {
            if !scope.ends_with("/.default") {
                return Err(SettingError {
                    field,
                    problem: "must end in /.default (client credentials accept no other scope)"
                        .to_owned(),
                });
            }
        }
        let join = |base: &Url, field: &'static str, path: &str| {
            base.join(path).map_err(|error| SettingError {
                field,
                problem: format!("cannot be joined with {path} ({error})"),
            })
        };
        let login = base_url("login_url", &self.login_url)?;
        let graph = base_url("graph_url", &self.graph_url)?;
        let exchange = base_url("exchange_url", &self.exchange_url)?;
        Ok(Endpoints {
            token: join(
                &login,
                "login_url",
                &format!("{}/oauth2/v2.0/token", self.tenant_id),
            )?,
            graph: join(&graph, "graph_url", "v1.0/")?,
            exchange_invoke: join(
                &exchange,
                "exchange_url",
                &format!("adminapi/beta/{}/InvokeCommand", self.tenant_id),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OnlineConfig {
        OnlineConfig::new(
            "contoso.onmicrosoft.com",
            "app-1",
            SecretString::from("s3cret"),
        )
    }

    #[test]
    fn public_cloud_endpoints_follow_the_reference() {
        let endpoints = config().endpoints().unwrap();
        assert_eq!(
            endpoints.token.as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            endpoints.graph.as_str(),
            "https://graph.microsoft.com/v1.0/"
        );
        assert_eq!(
            endpoints.exchange_invoke.as_str(),
            "https://outlook.office365.com/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"
        );
    }

    #[test]
    fn one_base_url_serves_all_three_services() {
        let endpoints = config()
            .with_single_base_url("http://127.0.0.1:4000/")
            .endpoints()
            .unwrap();
        assert_eq!(
            endpoints.token.as_str(),
            "http://127.0.0.1:4000/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(endpoints.graph.as_str(), "http://127.0.0.1:4000/v1.0/");
    }

    #[test]
    fn a_base_url_with_a_path_keeps_it() {
        let mut settings = config();
        settings.graph_url = "http://proxy.local/graph".into();
        assert_eq!(
            settings.endpoints().unwrap().graph.as_str(),
            "http://proxy.local/graph/v1.0/"
        );
    }

    #[test]
    fn a_relative_graph_url_is_refused_naming_the_field() {
        let mut settings = config();
        settings.graph_url = "graph.microsoft.com".into();
        assert_eq!(settings.endpoints().unwrap_err().field, "graph_url");
    }

    #[test]
    fn a_tenant_with_a_slash_is_refused() {
        let mut settings = config();
        settings.tenant_id = "contoso/../x".into();
        assert_eq!(settings.endpoints().unwrap_err().field, "tenant_id");
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let text = format!("{:?}", config());
        assert!(!text.contains("s3cret"));
    }
}
