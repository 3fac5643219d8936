//! The decoder's walk over a `serde_json::Value`, collecting every violation instead of
//! stopping at the first, as serde's derived decoders would.

use serde_json::{Map, Value};

use crate::violation::{ValueError, Violation, child_pointer};

/// Collects violations while typed values are read out of a JSON tree.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    violations: Vec<Violation>,
    /// Pointers already explained by an earlier, more specific violation (the ingest's
    /// sealing step); later reports at or under them would only repeat it.
    suppressed: Vec<String>,
}

/// A type that can be read from one JSON value, reporting its own violations.
pub(crate) trait Field: Sized {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<Self>;
}

impl Reader {
    pub(crate) fn report(&mut self, pointer: &str, rule: &str, message: impl Into<String>) {
        let is_suppressed = self.suppressed.iter().any(|suppressed| {
            pointer == suppressed
                || pointer
                    .strip_prefix(suppressed.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        if is_suppressed {
            return;
        }
        self.violations.push(Violation {
            pointer: pointer.to_owned(),
            rule: rule.to_owned(),
            message: message.into(),
        });
    }

    pub(crate) fn suppress(&mut self, pointer: &str) {
        self.suppressed.push(pointer.to_owned());
    }

    pub(crate) fn report_value_error(&mut self, pointer: &str, error: ValueError) {
        self.report(pointer, error.rule, error.message);
    }

    pub(crate) fn has_violations(&self) -> bool {
        !self.violations.is_empty()
    }

    pub(crate) fn into_violations(self) -> Vec<Violation> {
        let mut violations = self.violations;
        violations.sort();
        violations.dedup();
        violations
    }

    pub(crate) fn object<'v>(
        &mut self,
        value: &'v Value,
        pointer: &str,
    ) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            _ => {
                self.report(pointer, "expected.object", "must be a JSON object");
                None
            }
        }
    }

    pub(crate) fn string<'v>(&mut self, value: &'v Value, pointer: &str) -> Option<&'v str> {
        match value {
            Value::String(text) => Some(text),
            _ => {
                self.report(pointer, "expected.string", "must be a JSON string");
                None
            }
        }
    }

    /// A member that must be present (and not `null`).
    pub(crate) fn required<T: Field>(
        &mut self,
        object: &Map<String, Value>,
        parent: &str,
        key: &str,
    ) -> Option<T> {
        let pointer = child_pointer(parent, key);
        match object.get(key) {
            None | Some(Value::Null) => {
                self.report(&pointer, "required", format!("`{key}` is required"));
                None
            }
            Some(value) => T::read(self, value, &pointer),
        }
    }

    /// A member that may be absent or `null`. `None` means it was present but invalid;
    /// `Some(None)` means it was absent.
    pub(crate) fn optional<T: Field>(
        &mut self,
        object: &Map<String, Value>,
        parent: &str,
        key: &str,
    ) -> Option<Option<T>> {
        match object.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(value) => T::read(self, value, &child_pointer(parent, key)).map(Some),
        }
    }

    /// A required array whose items must be distinct under `identity` (the type's own notion
    /// of sameness, e.g. case-insensitive for SKU part numbers).
    pub(crate) fn unique_list<T: Field, K: PartialEq>(
        &mut self,
        object: &Map<String, Value>,
        parent: &str,
        key: &str,
        identity: impl Fn(&T) -> K,
    ) -> Option<Vec<T>> {
        let pointer = child_pointer(parent, key);
        let items = match object.get(key) {
            None | Some(Value::Null) => {
                self.report(
                    &pointer,
                    "required",
                    format!("`{key}` is required (use [] for none)"),
                );
                return None;
            }
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.report(&pointer, "expected.array", "must be a JSON array");
                return None;
            }
        };
        let mut read = Vec::with_capacity(items.len());
        let mut complete = true;
        for (index, item) in items.iter().enumerate() {
            let item_pointer = child_pointer(&pointer, &index.to_string());
            match T::read(self, item, &item_pointer) {
                Some(value) => {
                    let key_of_value = identity(&value);
                    if read.iter().any(|(_, earlier)| *earlier == key_of_value) {
                        self.report(
                            &item_pointer,
                            "items.unique",
                            "repeats an earlier item; list each once",
                        );
                        complete = false;
                    }
                    read.push((value, key_of_value));
                }
                None => complete = false,
            }
        }
        complete.then(|| read.into_iter().map(|(value, _)| value).collect())
    }
}

impl Field for bool {
    fn read(reader: &mut Reader, value: &Value, pointer: &str) -> Option<bool> {
        match value {
            Value::Bool(flag) => Some(*flag),
            _ => {
                reader.report(pointer, "expected.boolean", "must be true or false");
                None
            }
        }
    }
}

/// Implements [`Field`] for a newtype with `parse(&str) -> Result<Self, ValueError>`.
macro_rules! text_field {
    ($($type:ty),+ $(,)?) => {
        $(
            impl crate::reader::Field for $type {
                fn read(
                    reader: &mut crate::reader::Reader,
                    value: &serde_json::Value,
                    pointer: &str,
                ) -> Option<Self> {
                    let text = reader.string(value, pointer)?;
                    match <$type>::parse(text) {
                        Ok(parsed) => Some(parsed),
                        Err(error) => {
                            reader.report_value_error(pointer, error);
                            None
                        }
                    }
                }
            }
        )+
    };
}
pub(crate) use text_field;
