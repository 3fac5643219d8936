//! Fault plans: scripted misbehaviour per route (a status, latency, a dropped connection, or
//! "commit then fail": the write is applied and then the answer is lost or replaced).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One scripted fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// HTTP method to match (`POST`...); absent matches any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path pattern, e.g. `/v1.0/users/*/assignLicense`: `*` is one segment's worth of
    /// characters, `**` anything. Batch items are matched as `/v1.0/<item url path>`.
    pub path: String,
    /// For Exchange `InvokeCommand`: the cmdlet to match (`Set-Mailbox`); absent matches any.
    #[serde(default)]
    pub cmdlet: Option<String>,
    /// What to do.
    pub action: FaultAction,
    /// How many matches trigger it before it retires; absent means forever.
    #[serde(default)]
    pub count: Option<u32>,
    /// Chance (0..=1) that a match triggers; absent means always.
    #[serde(default)]
    pub probability: Option<f64>,
}

/// What a matching fault does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer this status without touching state. Without `body`, the service's own error body
    /// for that status is sent (Graph's TooManyRequests for 429, and so on).
    Status {
        /// The HTTP status.
        status: u16,
        /// A `Retry-After` value to send (seconds, decimal or HTTP-date, sent verbatim).
        #[serde(default)]
        retry_after: Option<String>,
        /// A JSON body to send instead of the default.
        #[serde(default)]
        body: Option<Value>,
    },
    /// Wait this long, then handle the request normally.
    Latency {
        /// Milliseconds.
        ms: u64,
    },
    /// Close the connection without answering; state is untouched.
    Drop,
    /// Apply the request, then fail the answer.
    CommitThenFail {
        /// How the answer fails.
        then: AfterCommit,
    },
}

/// How a committed request's answer is lost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AfterCommit {
    /// Replace the answer with this status (503/504 are the realistic ones).
    Status {
        /// The HTTP status.
        status: u16,
        /// A `Retry-After` value to send.
        #[serde(default)]
        retry_after: Option<String>,
    },
    /// Close the connection without answering.
    Drop,
}

/// An installed plan.
#[derive(Clone, Debug, Serialize)]
pub struct InstalledFault {
    /// Its id, for `DELETE /_emulator/faults/{id}`.
    pub id: u64,
    /// The plan.
    #[serde(flatten)]
    pub plan: FaultPlan,
    /// Triggers left, if counted.
    pub remaining: Option<u32>,
}

/// The faults that apply to one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Triggered {
    pub(crate) latency_ms: u64,
    pub(crate) action: Option<FaultAction>,
}

/// All installed plans.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    plans: Vec<InstalledFault>,
    next_id: u64,
}

impl FaultBook {
    pub(crate) fn install(&mut self, plan: FaultPlan) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.plans.push(InstalledFault {
            id,
            remaining: plan.count,
            plan,
        });
        id
    }

    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let before = self.plans.len();
        self.plans.retain(|p| p.id != id);
        before != self.plans.len()
    }

    pub(crate) fn clear(&mut self) {
        self.plans.clear();
    }

    pub(crate) fn list(&self) -> Vec<InstalledFault> {
        self.plans.clone()
    }

    /// Finds the plans matching a request and uses up their counts: latencies add up, the first
    /// other action wins.
    pub(crate) fn trigger(&mut self, method: &str, path: &str, cmdlet: Option<&str>) -> Triggered {
        let mut triggered = Triggered::default();
        if self.plans.is_empty() {
            return triggered;
        }
        for installed in &mut self.plans {
            let plan = &installed.plan;
            let method_ok = plan
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method));
            let cmdlet_ok = plan
                .cmdlet
                .as_deref()
                .is_none_or(|c| cmdlet.is_some_and(|actual| actual.eq_ignore_ascii_case(c)));
            if !method_ok || !cmdlet_ok || !glob(&plan.path, path) || installed.remaining == Some(0)
            {
                continue;
            }
            let is_latency = matches!(plan.action, FaultAction::Latency { .. });
            if !is_latency && triggered.action.is_some() {
                continue;
            }
            if let Some(p) = plan.probability
                && rand::random::<f64>() >= p
            {
                continue;
            }
            if let Some(remaining) = installed.remaining.as_mut() {
                *remaining -= 1;
            }
            match &plan.action {
                FaultAction::Latency { ms } => triggered.latency_ms += ms,
                other => triggered.action = Some(other.clone()),
            }
        }
        self.plans.retain(|p| p.remaining != Some(0));
        triggered
    }
}

/// `*` matches within a segment, `**` across segments; comparison ignores ASCII case.
fn glob(pattern: &str, text: &str) -> bool {
    fn inner(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) if rest.first() == Some(&b'*') => {
                let rest = &rest[1..];
                (0..=t.len()).any(|i| inner(rest, &t[i..]))
            }
            Some((b'*', rest)) => {
                let limit = t.iter().position(|c| *c == b'/').unwrap_or(t.len());
                (0..=limit).any(|i| inner(rest, &t[i..]))
            }
            Some((c, rest)) => t
                .split_first()
                .is_some_and(|(d, t_rest)| c.eq_ignore_ascii_case(d) && inner(rest, t_rest)),
        }
    }
    inner(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_one_segment_and_double_stars_many() {
        assert!(glob("/v1.0/users/*", "/v1.0/users/adele@contoso.com"));
        assert!(!glob("/v1.0/users/*", "/v1.0/users/x/assignLicense"));
        assert!(glob("/v1.0/users/**", "/v1.0/users/x/assignLicense"));
        assert!(glob("/v1.0/USERS", "/v1.0/users"));
    }

    #[test]
    fn a_counted_fault_retires_after_its_count() {
        let mut book = FaultBook::default();
        book.install(FaultPlan {
            method: Some("POST".into()),
            path: "/v1.0/users".into(),
            cmdlet: None,
            action: FaultAction::Drop,
            count: Some(1),
            probability: None,
        });
        assert_eq!(
            book.trigger("POST", "/v1.0/users", None).action,
            Some(FaultAction::Drop)
        );
        assert_eq!(book.trigger("POST", "/v1.0/users", None).action, None);
        assert!(book.list().is_empty());
    }

    #[test]
    fn fault_plans_read_from_json() {
        let plan: FaultPlan = serde_json::from_str(
            r#"{"method":"POST","path":"/v1.0/users","action":{"kind":"commit_then_fail","then":{"kind":"status","status":504}}}"#,
        )
        .unwrap();
        assert!(matches!(
            plan.action,
            FaultAction::CommitThenFail {
                then: AfterCommit::Status { status: 504, .. }
            }
        ));
    }
}
