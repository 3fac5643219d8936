//! What a decoder reports: every rule an input broke, each at its JSON pointer.

use std::fmt;

use serde::Serialize;

/// One broken rule: where (RFC 6901 JSON pointer), which rule (a short machine name such as
/// `upn.format` or `required`) and a human sentence fragment.
///
/// Messages never quote the offending value, so that a password sent to the wrong field cannot
/// leak through an error body or a log line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Violation {
    /// RFC 6901 pointer to the offending value, `""` for the whole document.
    pub pointer: String,
    /// Short machine name of the rule, stable across releases (listed in EVENTS.md).
    pub rule: String,
    /// Human sentence fragment saying what is wrong and, where useful, what to do.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "(document)"
        } else {
            &self.pointer
        };
        write!(f, "{pointer}: {} ({})", self.message, self.rule)
    }
}

/// An input that does not satisfy the event contract, with every violation found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the event breaks the moss event contract: {}", join(.violations))]
pub struct DecodeError {
    /// Every violation, sorted by pointer then rule; never empty.
    pub violations: Vec<Violation>,
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why one value was refused by a newtype's `parse`: the rule it broke and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValueError {
    /// Short machine name of the rule, as in [`Violation::rule`].
    pub rule: &'static str,
    /// Human sentence fragment, never quoting the value.
    pub message: String,
}

impl ValueError {
    pub(crate) fn new(rule: &'static str, message: impl Into<String>) -> ValueError {
        ValueError {
            rule,
            message: message.into(),
        }
    }
}

/// Escapes one reference token for an RFC 6901 pointer (`~` → `~0`, `/` → `~1`).
pub(crate) fn child_pointer(parent: &str, token: &str) -> String {
    let escaped = token.replace('~', "~0").replace('/', "~1");
    format!("{parent}/{escaped}")
}
