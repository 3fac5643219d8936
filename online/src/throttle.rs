//! What the services say about load, and the hook through which the caller paces requests.
//!
//! The client obeys `Retry-After` itself; adaptive pacing across a whole worker belongs to the
//! caller, so every response's throttle headers are handed to a [`Pacer`] and carried on errors.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;

/// Longest wait a `Retry-After` value is taken to mean; larger values are clamped so that a
/// corrupt header cannot overflow a timer.
const RETRY_AFTER_CEILING: Duration = Duration::from_secs(24 * 60 * 60);

/// The load signals one response carried (§7.2, §9.2 headers). Absent headers are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThrottleSignal {
    /// `Retry-After`, as a duration from when the response arrived.
    pub retry_after: Option<Duration>,
    /// `x-ms-throttle-limit-percentage` (0.8–1.8; 1.0 means throttling starts).
    pub limit_percentage: Option<f64>,
    /// `x-ms-throttle-scope`, e.g. `Tenant_Application/Write/{app}/{tenant}`.
    pub scope: Option<String>,
    /// `x-ms-throttle-information`, e.g. `WriteLimitExceeded`.
    pub information: Option<String>,
    /// `x-ms-resource-unit`: what the request cost.
    pub resource_units: Option<u32>,
    /// Exchange's `Rate-Limit-Remaining`.
    pub rate_limit_remaining: Option<u64>,
}

impl ThrottleSignal {
    /// Reads the throttle headers of a response.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|value| !value.is_empty())
        };
        Self {
            retry_after: text("retry-after").and_then(|value| parse_retry_after(value, Utc::now())),
            limit_percentage: text("x-ms-throttle-limit-percentage")
                .and_then(|value| value.parse().ok()),
            scope: text("x-ms-throttle-scope").map(str::to_owned),
            information: text("x-ms-throttle-information").map(str::to_owned),
            resource_units: text("x-ms-resource-unit").and_then(|value| value.parse().ok()),
            rate_limit_remaining: text("rate-limit-remaining").and_then(|value| value.parse().ok()),
        }
    }

    /// Whether the service asked the caller to slow down: a `Retry-After`, or a limit
    /// percentage at or above 0.8 (§11.14).
    pub fn asks_to_slow_down(&self) -> bool {
        self.retry_after.is_some()
            || self
                .limit_percentage
                .is_some_and(|percentage| percentage >= 0.8)
    }
}

/// Parses `Retry-After`: integer or decimal seconds (Graph once documented `2.128`, Exchange
/// sends decimals), or an HTTP-date, which counts from `now` and never goes below zero.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        if !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        return Some(Duration::from_secs_f64(
            seconds.min(RETRY_AFTER_CEILING.as_secs_f64()),
        ));
    }
    let date = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    let wait = (date - now).to_std().unwrap_or(Duration::ZERO);
    Some(wait.min(RETRY_AFTER_CEILING))
}

/// Which service a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The Microsoft identity platform token endpoint.
    Login,
    /// Microsoft Graph v1.0.
    Graph,
    /// The Exchange Online admin API.
    Exchange,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Login => "login",
            Self::Graph => "graph",
            Self::Exchange => "exchange",
        })
    }
}

/// Whether a request reads or changes the tenant: Graph's write quota (≈20/s) counts only writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// GET, or an Exchange `Get-*` cmdlet.
    Read,
    /// Anything that changes state.
    Write,
}

/// A future the pacer returns to hold a request back.
pub type PaceFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The caller's rate control. The client awaits [`Pacer::admit`] before every attempt and
/// reports every response through [`Pacer::observe`], so a worker can keep its rate just under
/// the tenant's limit without storms of 429s.
pub trait Pacer: Send + Sync + fmt::Debug {
    /// Waits until this attempt may go out.
    fn admit(&self, service: Service, kind: RequestKind) -> PaceFuture<'_> {
        let _ = (service, kind);
        Box::pin(std::future::ready(()))
    }

    /// Learns from one response: its status and throttle headers.
    fn observe(&self, service: Service, kind: RequestKind, status: u16, signal: &ThrottleSignal) {
        let _ = (service, kind, status, signal);
    }
}

/// A pacer that never holds anything back: the client still obeys `Retry-After`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unpaced;

impl Pacer for Unpaced {}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn retry_after_in_whole_seconds_is_read_as_seconds() {
        assert_eq!(
            parse_retry_after("10", Utc::now()),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn retry_after_in_decimal_seconds_keeps_the_fraction() {
        assert_eq!(
            parse_retry_after(" 2.128 ", Utc::now()),
            Some(Duration::from_millis(2128))
        );
    }

    #[test]
    fn retry_after_as_an_http_date_counts_from_now() {
        let now = at("2015-10-21T07:27:30Z");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn retry_after_as_a_past_http_date_means_now() {
        let now = at("2015-10-21T08:00:00Z");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_that_is_negative_or_garbage_is_ignored() {
        assert_eq!(parse_retry_after("-1", Utc::now()), None);
        assert_eq!(parse_retry_after("soon", Utc::now()), None);
        assert_eq!(parse_retry_after("NaN", Utc::now()), None);
    }

    #[test]
    fn throttle_headers_are_read_from_a_response() {
        let mut headers = HeaderMap::new();
        headers.insert("Retry-After", HeaderValue::from_static("3"));
        headers.insert(
            "x-ms-throttle-limit-percentage",
            HeaderValue::from_static("0.9"),
        );
        headers.insert(
            "x-ms-throttle-information",
            HeaderValue::from_static("WriteLimitExceeded"),
        );
        headers.insert("x-ms-resource-unit", HeaderValue::from_static("1"));
        let signal = ThrottleSignal::from_headers(&headers);
        assert_eq!(signal.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(signal.limit_percentage, Some(0.9));
        assert_eq!(signal.information.as_deref(), Some("WriteLimitExceeded"));
        assert_eq!(signal.resource_units, Some(1));
        assert!(signal.asks_to_slow_down());
    }

    #[test]
    fn a_limit_percentage_below_eighty_percent_does_not_ask_to_slow_down() {
        let signal = ThrottleSignal {
            limit_percentage: Some(0.5),
            ..ThrottleSignal::default()
        };
        assert!(!signal.asks_to_slow_down());
    }
}
