//! The client, and the attempt loop every call goes through: token, pacing, one
//! `client-request-id` per logical operation, classification, `Retry-After`, backoff.

use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::{Endpoints, OnlineConfig};
use crate::error::{
    ErrorClass, Idempotency, OnlineError, ServiceReply, classify_exchange, classify_graph,
    classify_token, exchange_reply, graph_reply, token_reply,
};
use crate::licences::SubscribedSku;
use crate::retry::{Attempts, GiveUp, RetryPolicy};
use crate::throttle::{Pacer, RequestKind, Service, ThrottleSignal, Unpaced};
use crate::token::{Bearer, Grant, TokenCache};

/// The mailbox Exchange's module routes app-only admin calls to (§9.2).
const APP_ANCHOR_MAILBOX: &str = "APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@";

/// Characters left alone in an OData query value: unreserved, plus `,` so `$select` lists read
/// as the SDK sends them.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b',');

/// The client for one tenant's Graph and Exchange Online. Cheap to clone: clones share the
/// connection pool, the token caches and the SKU cache.
#[derive(Debug, Clone)]
pub struct OnlineClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    endpoints: Endpoints,
    tenant_id: String,
    client_id: String,
    client_secret: SecretString,
    graph_scope: String,
    exchange_scope: String,
    graph_token: TokenCache,
    exchange_token: TokenCache,
    retry: RetryPolicy,
    sku_cache_for: Duration,
    /// A plain mutex, never held across an `.await` (every event with licences reads it).
    skus: std::sync::Mutex<Option<SkuCache>>,
    /// Held while the SKU list is read for [`OnlineClient::sku_catalogue`], so that callers
    /// arriving together share one read.
    sku_refresh: Mutex<()>,
    pacer: Arc<dyn Pacer>,
}

/// The tenant's SKU list as last read.
#[derive(Debug)]
struct SkuCache {
    fetched: Instant,
    skus: Vec<SubscribedSku>,
    /// False once a licence assignment moved the seat counts since the read.
    seats_current: bool,
}

/// One logical operation: its `client-request-id` (the same on every retry, §8) and its retry
/// budget. Compound operations (create, then read back) share one.
#[derive(Debug)]
pub(crate) struct Operation {
    pub(crate) name: &'static str,
    pub(crate) client_request_id: Uuid,
    pub(crate) attempts: Attempts,
    attempt_count: u32,
}

impl Operation {
    /// Gives the operation a fresh retry budget (each page of a long listing gets one).
    pub(crate) fn restart_budget(&mut self, policy: &RetryPolicy) {
        self.attempts = policy.start();
    }
}

/// One HTTP request, replayable on retry.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) service: Service,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) idempotency: Idempotency,
    pub(crate) kind: RequestKind,
}

impl Call {
    pub(crate) fn graph(method: Method, url: Url) -> Self {
        let kind = if method == Method::GET {
            RequestKind::Read
        } else {
            RequestKind::Write
        };
        let idempotency = if method == Method::POST {
            Idempotency::NotIdempotent
        } else {
            Idempotency::Idempotent
        };
        Self {
            service: Service::Graph,
            method,
            url,
            body: None,
            idempotency,
            kind,
        }
    }

    /// Attaches a JSON body. The bytes live only as long as the call, and the call is never
    /// logged or copied into an error.
    pub(crate) fn json(mut self, body: &impl serde::Serialize) -> Self {
        self.body = Some(serde_json::to_vec(body).unwrap_or_default());
        self
    }

    pub(crate) fn idempotent(mut self) -> Self {
        self.idempotency = Idempotency::Idempotent;
        self
    }
}

/// A 2xx reply.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
    pub(crate) request_id: Option<String>,
    pub(crate) throttle: ThrottleSignal,
}

impl Reply {
    /// Decodes the body; a body that does not fit is a permanent failure of this call.
    pub(crate) fn json<T: DeserializeOwned>(&self, op: &Operation) -> Result<T, OnlineError> {
        serde_json::from_slice(&self.body).map_err(|error| {
            let reply = ServiceReply {
                status: self.status.as_u16(),
                code: "UnreadableResponse".to_owned(),
                message: format!("the reply body does not have the expected shape ({error})"),
                exception_type: None,
                target: None,
                request_id: self.request_id.clone(),
            };
            let class = ErrorClass::Permanent {
                status: reply.status,
                code: reply.code.clone(),
                message: reply.message.clone(),
                request_id: reply.request_id.clone(),
            };
            OnlineError::from_reply(
                op.name,
                class,
                reply,
                self.throttle.clone(),
                op.client_request_id,
            )
        })
    }
}

/// A failed attempt, and whether it failed because the service refused the token.
#[derive(Debug)]
struct Failure {
    error: OnlineError,
    refused_token: Option<u64>,
}

impl From<OnlineError> for Failure {
    fn from(error: OnlineError) -> Self {
        Self {
            error,
            refused_token: None,
        }
    }
}

impl OnlineClient {
    /// Checks the settings and builds the client; no request is sent until the first call.
    pub fn new(config: OnlineConfig) -> Result<Self, OnlineError> {
        Self::with_pacer(config, Arc::new(Unpaced))
    }

    /// Like [`OnlineClient::new`], with the caller's rate control consulted before every
    /// attempt and told about every response.
    pub fn with_pacer(config: OnlineConfig, pacer: Arc<dyn Pacer>) -> Result<Self, OnlineError> {
        const OPERATION: &str = "configure the online client";
        let endpoints = config.endpoints().map_err(|error| {
            OnlineError::new(
                OPERATION,
                ErrorClass::Configuration,
                format!("{} {}", error.field, error.problem),
            )
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .timeout(config.timeouts.request)
            .user_agent(concat!("moss/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                OnlineError::new(
                    OPERATION,
                    ErrorClass::Configuration,
                    format!("the HTTP client cannot be built ({error})"),
                )
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                endpoints,
                graph_token: TokenCache::new(config.timeouts.token_renewal_margin),
                exchange_token: TokenCache::new(config.timeouts.token_renewal_margin),
                tenant_id: config.tenant_id,
                client_id: config.client_id,
                client_secret: config.client_secret,
                graph_scope: config.graph_scope,
                exchange_scope: config.exchange_scope,
                retry: config.retry,
                sku_cache_for: config.timeouts.sku_cache,
                skus: std::sync::Mutex::new(None),
                sku_refresh: Mutex::new(()),
                pacer,
            }),
        })
    }

    /// The tenant this client manages.
    pub fn tenant_id(&self) -> &str {
        &self.inner.tenant_id
    }

    /// Checks that the credentials obtain a Graph token (at start-up, so a bad secret is a
    /// clear configuration error before any event is consumed).
    pub async fn check_credentials(&self) -> Result<(), OnlineError> {
        let op = self.operation("check credentials");
        self.bearer(&op, Service::Graph).await.map(|_| ())
    }

    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    pub(crate) fn operation(&self, name: &'static str) -> Operation {
        Operation {
            name,
            client_request_id: Uuid::new_v4(),
            attempts: self.inner.retry.start(),
            attempt_count: 0,
        }
    }

    /// `{graph}/v1.0/{path}?{query}`, with query names literal (`$select`) and values encoded.
    pub(crate) fn graph_url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.inner.endpoints.graph.clone();
        let base_path = url.path().to_owned();
        url.set_path(&format!("{base_path}{}", path.trim_start_matches('/')));
        if !query.is_empty() {
            let encoded: Vec<String> = query
                .iter()
                .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY_VALUE)))
                .collect();
            url.set_query(Some(&encoded.join("&")));
        }
        url
    }

    /// The Graph base as clients write it in `@odata.id` references (`…/v1.0`).
    pub(crate) fn graph_base(&self) -> String {
        self.inner
            .endpoints
            .graph
            .as_str()
            .trim_end_matches('/')
            .to_owned()
    }

    /// Whether `url` (an `@odata.nextLink`) points at the configured Graph or Exchange host, so
    /// the bearer token is never sent elsewhere.
    pub(crate) fn is_own_link(&self, url: &Url, service: Service) -> bool {
        let base = match service {
            Service::Exchange => &self.inner.endpoints.exchange_invoke,
            Service::Graph | Service::Login => &self.inner.endpoints.graph,
        };
        url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default()
    }

    pub(crate) fn exchange_invoke_url(&self) -> Url {
        self.inner.endpoints.exchange_invoke.clone()
    }

    fn sku_cache(&self) -> std::sync::MutexGuard<'_, Option<SkuCache>> {
        // A list and a flag: a panic while holding the lock cannot leave them half-written.
        self.inner
            .skus
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached SKU list while it is fresh and its seat counts are current.
    pub(crate) async fn cached_skus(&self) -> Option<Vec<SubscribedSku>> {
        let cache = self.sku_cache();
        cache
            .as_ref()
            .filter(|cache| {
                cache.seats_current && cache.fetched.elapsed() < self.inner.sku_cache_for
            })
            .map(|cache| cache.skus.clone())
    }

    /// The cached SKU list while it is fresh, whatever its seat counts.
    pub(crate) async fn cached_catalogue(&self) -> Option<Vec<SubscribedSku>> {
        let cache = self.sku_cache();
        cache
            .as_ref()
            .filter(|cache| cache.fetched.elapsed() < self.inner.sku_cache_for)
            .map(|cache| cache.skus.clone())
    }

    pub(crate) async fn store_skus(&self, skus: Option<Vec<SubscribedSku>>) {
        *self.sku_cache() = skus.map(|skus| SkuCache {
            fetched: Instant::now(),
            skus,
            seats_current: true,
        });
    }

    /// Licences were assigned or removed: the cached seat counts no longer hold (the SKUs'
    /// ids and part numbers still do).
    pub(crate) async fn mark_seats_stale(&self) {
        if let Some(cache) = self.sku_cache().as_mut() {
            cache.seats_current = false;
        }
    }

    /// Held while the SKU list is read for the catalogue (single flight).
    pub(crate) async fn lock_sku_refresh(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.sku_refresh.lock().await
    }

    /// Sends `call` within `op`: renews the token once on a 401, retries throttled and transient
    /// failures after `Retry-After` or a jittered backoff, and returns the 2xx reply or the
    /// classified error.
    pub(crate) async fn send(&self, op: &mut Operation, call: &Call) -> Result<Reply, OnlineError> {
        let mut renewed = false;
        loop {
            let failure = match self.attempt(op, call).await {
                Ok(reply) => return Ok(reply),
                Err(failure) => failure,
            };
            if let Some(generation) = failure.refused_token
                && !renewed
            {
                // Renew once; a second refusal keeps its Configuration class and ends here.
                renewed = true;
                self.token_cache(call.service).invalidate(generation).await;
                continue;
            }
            self.wait_before_retry(op, failure.error).await?;
        }
    }

    /// Sleeps before the next attempt when `error` is worth retrying and the budget allows;
    /// otherwise hands the error back.
    pub(crate) async fn wait_before_retry(
        &self,
        op: &mut Operation,
        error: OnlineError,
    ) -> Result<(), OnlineError> {
        if !error.class().is_retryable() {
            return Err(error);
        }
        match op.attempts.next_wait(error.retry_after()) {
            Ok(wait) => {
                tracing::debug!(
                    operation = op.name,
                    client_request_id = %op.client_request_id,
                    wait_ms = wait.as_millis() as u64,
                    class = error.class().name(),
                    "waiting before retry"
                );
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Err(reason) => {
                let why = match reason {
                    GiveUp::OutOfRetries => "no retries left",
                    GiveUp::OutOfTime => "the operation's time budget is spent",
                    GiveUp::RetryAfterTooLong => {
                        "the requested wait is longer than the client waits in-process"
                    }
                };
                let detail = format!(
                    "{} (gave up after {} attempts in {:.1}s: {why})",
                    error_detail(&error),
                    op.attempt_count,
                    op.attempts.elapsed().as_secs_f64()
                );
                Err(error.with_detail(detail))
            }
        }
    }

    fn token_cache(&self, service: Service) -> &TokenCache {
        match service {
            Service::Exchange => &self.inner.exchange_token,
            Service::Graph | Service::Login => &self.inner.graph_token,
        }
    }

    async fn bearer(&self, op: &Operation, service: Service) -> Result<Bearer, OnlineError> {
        let scope = match service {
            Service::Exchange => &self.inner.exchange_scope,
            Service::Graph | Service::Login => &self.inner.graph_scope,
        };
        self.token_cache(service)
            .get(|| self.fetch_token(op, scope))
            .await
    }

    /// Client-credentials grant (§1). The secret is exposed only into the form body.
    async fn fetch_token(&self, op: &Operation, scope: &str) -> Result<Grant, OnlineError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.inner.client_id.as_str()),
            ("client_secret", self.inner.client_secret.expose_secret()),
            ("scope", scope),
        ];
        let sent = self
            .inner
            .http
            .post(self.inner.endpoints.token.clone())
            .header("client-request-id", op.client_request_id.to_string())
            .form(&form)
            .send()
            .await;
        let response = sent.map_err(|error| {
            OnlineError::new(
                op.name,
                ErrorClass::Transient,
                format!(
                    "the token endpoint cannot be reached ({})",
                    error.without_url()
                ),
            )
            .with_client_request_id(op.client_request_id)
        })?;
        let status = response.status();
        let throttle = ThrottleSignal::from_headers(response.headers());
        let body = response.bytes().await.map_err(|error| {
            OnlineError::new(
                op.name,
                ErrorClass::Transient,
                format!("the token reply was cut off ({})", error.without_url()),
            )
            .with_client_request_id(op.client_request_id)
        })?;
        tracing::debug!(
            operation = op.name,
            client_request_id = %op.client_request_id,
            status = status.as_u16(),
            scope,
            "token request"
        );
        if !status.is_success() {
            let reply = token_reply(status, &body);
            let class = classify_token(&reply, &throttle);
            let detail = format!("token endpoint refused: {reply}");
            return Err(OnlineError::from_reply(
                op.name,
                class,
                reply,
                throttle,
                op.client_request_id,
            )
            .with_detail(detail));
        }
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let access_token = parsed.get("access_token").and_then(Value::as_str);
        // expires_in is an integer on v2.0; the v1 endpoint wrote it as a string.
        let expires_in = parsed.get("expires_in").and_then(|value| {
            value
                .as_u64()
                .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
        });
        match (access_token, expires_in) {
            (Some(token), Some(seconds)) if !token.is_empty() => Ok(Grant {
                access_token: SecretString::from(token),
                expires_in: Duration::from_secs(seconds),
            }),
            _ => Err(OnlineError::new(
                op.name,
                ErrorClass::Transient,
                "the token reply lacks access_token or expires_in",
            )
            .with_client_request_id(op.client_request_id)),
        }
    }

    async fn attempt(&self, op: &mut Operation, call: &Call) -> Result<Reply, Failure> {
        self.inner.pacer.admit(call.service, call.kind).await;
        let bearer = self.bearer(op, call.service).await?;
        op.attempt_count += 1;

        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", bearer.token.expose_secret())).map_err(
                |_| {
                    OnlineError::new(
                        op.name,
                        ErrorClass::Configuration,
                        "the access token is not a valid header value",
                    )
                },
            )?;
        authorization.set_sensitive(true);
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .header(AUTHORIZATION, authorization)
            .header("client-request-id", op.client_request_id.to_string());
        if call.service == Service::Exchange {
            request = request.header("X-ResponseFormat", "json");
            if self.inner.tenant_id.contains('.') {
                request = request.header(
                    "X-AnchorMailbox",
                    format!("{APP_ANCHOR_MAILBOX}{}", self.inner.tenant_id),
                );
            }
        }
        request = match &call.body {
            Some(body) => request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone()),
            None if call.method == Method::POST => request.body(Vec::new()),
            None => request,
        };

        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Err(self.unanswered(op, call, &error, started).into()),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let request_id = headers
            .get("request-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let throttle = ThrottleSignal::from_headers(&headers);
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(error) => return Err(self.unanswered(op, call, &error, started).into()),
        };
        self.inner
            .pacer
            .observe(call.service, call.kind, status.as_u16(), &throttle);

        let log_attempt = |class: &str| {
            tracing::info!(
                operation = op.name,
                client_request_id = %op.client_request_id,
                request_id = request_id.as_deref().unwrap_or(""),
                attempt = op.attempt_count,
                service = %call.service,
                method = %call.method,
                status = status.as_u16(),
                class,
                elapsed_ms = started.elapsed().as_millis() as u64,
                retry_after_ms = throttle.retry_after.map(|wait| wait.as_millis() as u64),
                throttle_limit_percentage = throttle.limit_percentage,
                throttle_scope = throttle.scope.as_deref(),
                throttle_information = throttle.information.as_deref(),
                resource_units = throttle.resource_units,
                rate_limit_remaining = throttle.rate_limit_remaining,
                "online attempt"
            );
        };

        if status.is_success() {
            log_attempt("ok");
            return Ok(Reply {
                status,
                body,
                request_id,
                throttle,
            });
        }
        let (reply, class) = match call.service {
            Service::Exchange => {
                let exception = headers
                    .get("x-exceptiontype")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let reply = exchange_reply(status, &body, request_id.clone(), exception);
                let class = classify_exchange(&reply, &throttle, call.idempotency);
                (reply, class)
            }
            Service::Graph | Service::Login => {
                let reply = graph_reply(status, &body, request_id.clone());
                let class = classify_graph(&reply, &throttle, call.idempotency);
                (reply, class)
            }
        };
        log_attempt(class.name());
        let refused_token = (status == StatusCode::UNAUTHORIZED).then_some(bearer.generation);
        Err(Failure {
            error: OnlineError::from_reply(op.name, class, reply, throttle, op.client_request_id),
            refused_token,
        })
    }

    /// No reply arrived. A refused connection never reached the service; a timeout or reset
    /// after sending may have applied a write (§11.3).
    fn unanswered(
        &self,
        op: &Operation,
        call: &Call,
        error: &reqwest::Error,
        started: Instant,
    ) -> OnlineError {
        let class = if error.is_connect() || call.idempotency == Idempotency::Idempotent {
            ErrorClass::Transient
        } else {
            ErrorClass::OutcomeUnknown
        };
        tracing::warn!(
            operation = op.name,
            client_request_id = %op.client_request_id,
            attempt = op.attempt_count,
            service = %call.service,
            method = %call.method,
            class = class.name(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            error = %describe(error),
            "online attempt got no reply"
        );
        OnlineError::new(
            op.name,
            class,
            format!("{} gave no reply ({})", call.service, describe(error)),
        )
        .with_client_request_id(op.client_request_id)
    }
}

fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "connection broke"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn error_detail(error: &OnlineError) -> String {
    error
        .reply()
        .map_or_else(|| error.to_string(), ServiceReply::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> OnlineClient {
        let config = OnlineConfig::new(
            "contoso.onmicrosoft.com",
            "app",
            SecretString::from("secret"),
        )
        .with_single_base_url("http://127.0.0.1:9");
        OnlineClient::new(config).unwrap()
    }

    #[test]
    fn query_names_stay_literal_and_values_are_percent_encoded() {
        let url = client().graph_url(
            "users",
            &[
                ("$filter", "onPremisesImmutableId eq 'a''b'"),
                ("$select", "id,userPrincipalName"),
                ("$top", "999"),
            ],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/v1.0/users?$filter=onPremisesImmutableId%20eq%20%27a%27%27b%27&$select=id,userPrincipalName&$top=999"
        );
    }

    #[test]
    fn a_bad_setting_is_a_configuration_error_naming_the_field() {
        let mut config = OnlineConfig::new("t", "app", SecretString::from("secret"));
        config.exchange_url = "ftp://x".into();
        let error = OnlineClient::new(config).unwrap_err();
        assert_eq!(error.class(), &ErrorClass::Configuration);
        assert!(error.to_string().contains("exchange_url"));
    }

    #[test]
    fn next_links_to_another_host_are_not_followed() {
        let client = client();
        assert!(client.is_own_link(
            &Url::parse("http://127.0.0.1:9/v1.0/users?$skiptoken=x").unwrap(),
            Service::Graph
        ));
        assert!(!client.is_own_link(
            &Url::parse("http://evil.example/v1.0/users").unwrap(),
            Service::Graph
        ));
    }

    #[tokio::test]
    async fn an_unreachable_token_endpoint_is_transient_and_carries_the_client_request_id() {
        let client = client();
        let op = client.operation("check credentials");
        let error = client.bearer(&op, Service::Graph).await.unwrap_err();
        assert_eq!(error.class(), &ErrorClass::Transient);
        assert_eq!(error.client_request_id(), Some(op.client_request_id));
        assert!(!error.to_string().contains("secret"));
    }
}
