//! Which dead letters an operator means: ids, filters (type, subject or user, error class,
//! since) or all, and the order a replay must keep.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};

use crate::operate::dead_letters::DeadLetter;

/// The error classes a dead letter can carry: the worker's (`moss-error-class`), RabbitMQ's
/// own `delivery_limit`, and `unknown` for a letter with neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub(crate) enum ErrorClassFilter {
    /// The message does not decode or breaks the event schema.
    Invalid,
    /// The sealed password does not open with the workers' key.
    SealedSecret,
    /// 429 / 503 with Retry-After, retries exhausted.
    Throttled,
    /// 5xx, timeout, connection failure, retries exhausted.
    Transient,
    /// Bad credentials or permissions.
    Configuration,
    /// The name is held by an object moss does not own.
    Conflict,
    /// No free licence seats.
    NoSeats,
    /// A write may or may not have happened.
    OutcomeUnknown,
    /// The event cannot succeed as it is.
    Permanent,
    /// Waiting behind an earlier dead letter of the same subject.
    Quarantined,
    /// The worker's own disk failed.
    Local,
    /// A removal or deactivation over the mass-delete threshold (`moss deletes`).
    Held,
    /// RabbitMQ dead-lettered it after repeated consumer crashes.
    DeliveryLimit,
    /// A letter without a class.
    Unknown,
}

impl ErrorClassFilter {
    /// The value in `moss-error-class`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorClassFilter::Invalid => "invalid",
            ErrorClassFilter::SealedSecret => "sealed_secret",
            ErrorClassFilter::Throttled => "throttled",
            ErrorClassFilter::Transient => "transient",
            ErrorClassFilter::Configuration => "configuration",
            ErrorClassFilter::Conflict => "conflict",
            ErrorClassFilter::NoSeats => "no_seats",
            ErrorClassFilter::OutcomeUnknown => "outcome_unknown",
            ErrorClassFilter::Permanent => "permanent",
            ErrorClassFilter::Quarantined => "quarantined",
            ErrorClassFilter::Local => "local",
            ErrorClassFilter::Held => "held",
            ErrorClassFilter::DeliveryLimit => "delivery_limit",
            ErrorClassFilter::Unknown => "unknown",
        }
    }
}

/// The operator's filters; a letter is selected when it passes every filter given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filters {
    /// Event types, full (`moss.user.added.v1`) or short (`user.added`).
    pub(crate) types: Vec<String>,
    /// A subject, or a UPN the event names.
    pub(crate) subject_or_user: Option<String>,
    /// Error classes.
    pub(crate) classes: Vec<ErrorClassFilter>,
    /// Dead-lettered at or after this moment.
    pub(crate) since: Option<DateTime<Utc>>,
}

impl Filters {
    /// True when no filter was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.types.is_empty()
            && self.subject_or_user.is_none()
            && self.classes.is_empty()
            && self.since.is_none()
    }

    /// Whether `letter` passes every filter.
    pub(crate) fn matches(&self, letter: &DeadLetter) -> bool {
        let type_ok = self.types.is_empty()
            || self.types.iter().any(|wanted| {
                short_type(wanted).eq_ignore_ascii_case(short_type(&letter.event_type))
            });
        let who_ok = self.subject_or_user.as_ref().is_none_or(|who| {
            letter
                .subject
                .as_ref()
                .is_some_and(|subject| subject.eq_ignore_ascii_case(who))
                || letter
                    .upn
                    .as_ref()
                    .is_some_and(|upn| upn.eq_ignore_ascii_case(who))
        });
        let class_ok = self.classes.is_empty()
            || self
                .classes
                .iter()
                .any(|class| class.as_str() == letter.error.class);
        let since_ok = self
            .since
            .is_none_or(|since| letter.dead_at_time.is_some_and(|time| time >= since));
        type_ok && who_ok && class_ok && since_ok
    }

    /// The filters in words, for "nothing matches …".
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.types.is_empty() {
            parts.push(format!("type {}", self.types.join(" or ")));
        }
        if let Some(who) = &self.subject_or_user {
            parts.push(format!("subject or user {who}"));
        }
        if !self.classes.is_empty() {
            let classes: Vec<&str> = self.classes.iter().map(|class| class.as_str()).collect();
            parts.push(format!("error class {}", classes.join(" or ")));
        }
        if let Some(since) = self.since {
            parts.push(format!("dead-lettered since {}", since.to_rfc3339()));
        }
        parts.join(", ")
    }
}

/// `moss.user.added.v1` and `user.added` name the same type.
fn short_type(kind: &str) -> &str {
    let kind = kind.strip_prefix("moss.").unwrap_or(kind);
    match kind.rfind(".v") {
        Some(at) if kind[at + 2..].bytes().all(|b| b.is_ascii_digit()) && at + 2 < kind.len() => {
            &kind[..at]
        }
        _ => kind,
    }
}

/// Parses `--since`: an RFC 3339 time, or an age such as `90s`, `30m`, `6h`, `2d`.
pub(crate) fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let Ok(amount) = number.parse::<i64>() else {
        bail!(
            "--since must be a time like 2026-01-31T08:00:00Z or an age like 30m, 6h or 2d, not {text:?}"
        );
    };
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!(
            "--since must be a time like 2026-01-31T08:00:00Z or an age like 30m, 6h or 2d, not {text:?}"
        ),
    };
    Ok(now - chrono::Duration::seconds(amount.saturating_mul(seconds)))
}

/// Picks letters by id (every id must be found), or by filters (something must match), or all.
/// Returns indexes into `letters`.
pub(crate) fn select(
    letters: &[&DeadLetter],
    ids: &[String],
    filters: &Filters,
) -> Result<Vec<usize>> {
    if !ids.is_empty() {
        let known: HashSet<&str> = letters.iter().map(|letter| letter.id.as_str()).collect();
        let unknown: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| !known.contains(id))
            .collect();
        if !unknown.is_empty() {
            bail!(
                "no dead letter has the id {}; `moss dlq list` shows the ids (nothing was changed)",
                unknown.join(", ")
            );
        }
        let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
        return Ok((0..letters.len())
            .filter(|&index| {
                wanted.contains(letters[index].id.as_str()) && filters.matches(letters[index])
            })
            .collect());
    }
    let selected: Vec<usize> = (0..letters.len())
        .filter(|&index| filters.matches(letters[index]))
        .collect();
    if selected.is_empty() && !filters.is_empty() {
        bail!(
            "no dead letter matches {}; `moss dlq list` shows what is there (nothing was changed)",
            filters.describe()
        );
    }
    Ok(selected)
}

/// The order a replay publishes in: the order of dead-lettering, except that each subject's
/// events take that subject's slots in `sequence` order, so a subject's events always apply
/// oldest first, whatever clock skew or requeue did to `moss-dead-at`.
/// `letters` must already be sorted by dead-lettering time.
pub(crate) fn replay_order(letters: &[&DeadLetter]) -> Vec<usize> {
    let mut slots_by_subject: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (slot, letter) in letters.iter().enumerate() {
        if let Some(subject) = letter.subject.as_deref() {
            slots_by_subject.entry(subject).or_default().push(slot);
        }
    }
    let mut order: Vec<usize> = (0..letters.len()).collect();
    for slots in slots_by_subject.values() {
        let mut by_sequence = slots.clone();
        by_sequence.sort_by_key(|&slot| (letters[slot].sequence.unwrap_or(u64::MAX), slot));
        for (slot, letter) in slots.iter().zip(by_sequence) {
            order[*slot] = letter;
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operate::dead_letters::ErrorReport;

    fn letter(id: &str, subject: &str, sequence: u64, class: &str) -> DeadLetter {
        DeadLetter {
            id: id.into(),
            event_type: "moss.user.added.v1".into(),
            subject: Some(subject.into()),
            sequence: Some(sequence),
            upn: Some(format!("{id}@contoso.com")),
            partition: Some("p0".into()),
            attempt: 1,
            replay_of: None,
            dead_at: None,
            dead_by: None,
            attempts: None,
            error: ErrorReport {
                class: class.into(),
                status: None,
                code: None,
                message: None,
                request_id: None,
                client_request_id: None,
            },
            history: Vec::new(),
            dead_at_time: None,
            position: 0,
        }
    }

    #[test]
    fn short_and_full_type_names_match() {
        assert_eq!(short_type("moss.user.added.v1"), "user.added");
        assert_eq!(short_type("user.added"), "user.added");
        assert_eq!(
            short_type("moss.group.members_changed.v12"),
            "group.members_changed"
        );
        let filters = Filters {
            types: vec!["user.added".into()],
            ..Filters::default()
        };
        assert!(filters.matches(&letter("a", "s", 1, "permanent")));
    }

    #[test]
    fn a_user_filter_matches_the_subject_or_the_upn() {
        let filters = |who: &str| Filters {
            subject_or_user: Some(who.into()),
            ..Filters::default()
        };
        let subject_letter = letter(
            "ana",
            "3F0C2A7E-1D2B-4C5D-8E9F-0A1B2C3D4E5F",
            1,
            "permanent",
        );
        assert!(filters("3f0c2a7e-1d2b-4c5d-8e9f-0a1b2c3d4e5f").matches(&subject_letter));
        assert!(filters("ANA@contoso.com").matches(&subject_letter));
        assert!(!filters("bob@contoso.com").matches(&subject_letter));
    }

    #[test]
    fn an_unknown_id_or_a_filter_matching_nothing_is_an_error() {
        let a = letter("a", "s", 1, "permanent");
        let letters = vec![&a];
        let error = select(&letters, &["nope".into()], &Filters::default()).unwrap_err();
        assert!(
            error.to_string().contains("no dead letter has the id nope"),
            "{error}"
        );
        let filters = Filters {
            classes: vec![ErrorClassFilter::Conflict],
            ..Filters::default()
        };
        let error = select(&letters, &[], &filters).unwrap_err();
        assert!(
            error.to_string().contains("error class conflict"),
            "{error}"
        );
        assert_eq!(select(&letters, &[], &Filters::default()).unwrap(), vec![0]);
    }

    #[test]
    fn each_subject_replays_in_sequence_order_in_its_own_slots() {
        let later = letter("later", "s1", 9, "quarantined");
        let other = letter("other", "s2", 5, "permanent");
        let earlier = letter("earlier", "s1", 3, "permanent");
        let letters = vec![&later, &other, &earlier];
        let order = replay_order(&letters);
        let ids: Vec<&str> = order
            .iter()
            .map(|&index| letters[index].id.as_str())
            .collect();
        assert_eq!(ids, vec!["earlier", "other", "later"]);
    }

    #[test]
    fn since_takes_an_age_or_a_time() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("1d", now).unwrap().to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_since("30m", now).unwrap().to_rfc3339(),
            "2026-01-01T23:30:00+00:00"
        );
        assert_eq!(
            parse_since("2026-01-01T12:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2026-01-01T12:00:00+00:00"
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("5w", now).is_err());
    }

    #[test]
    fn every_worker_failure_class_can_be_filtered() {
        use clap::ValueEnum;
        let names: Vec<&str> = ErrorClassFilter::value_variants()
            .iter()
            .map(|class| class.as_str())
            .collect();
        for class in [
            moss_workers::FailureClass::Invalid,
            moss_workers::FailureClass::SealedSecret,
            moss_workers::FailureClass::Throttled,
            moss_workers::FailureClass::Transient,
            moss_workers::FailureClass::Configuration,
            moss_workers::FailureClass::Conflict,
            moss_workers::FailureClass::NoSeats,
            moss_workers::FailureClass::OutcomeUnknown,
            moss_workers::FailureClass::Permanent,
            moss_workers::FailureClass::Quarantined,
            moss_workers::FailureClass::Local,
            moss_workers::FailureClass::Held,
        ] {
            assert!(
                names.contains(&class.as_str()),
                "{class} cannot be filtered"
            );
        }
    }
}
