//! The shared shape of every validated text newtype: parse, serde through `TryFrom<String>`,
//! a JSON Schema that states the same rules, and equality that follows Microsoft's
//! (case-insensitive where the online service compares case-insensitively).

/// Declares the common impls of a text newtype `$name(String)` whose inherent
/// `fn check(&str) -> Result<(), ValueError>` holds its rules.
macro_rules! text_newtype {
    ($name:ident, $schema_name:literal, $schema:expr) => {
        impl $name {
            /// Validates `text` against this type's rules.
            pub fn parse(text: &str) -> Result<$name, crate::violation::ValueError> {
                Self::check(text)?;
                Ok($name(Self::normalise(text)))
            }

            /// The value as text, as it travels on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::violation::ValueError;
            fn from_str(text: &str) -> Result<$name, Self::Err> {
                $name::parse(text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = crate::violation::ValueError;
            fn try_from(text: String) -> Result<$name, Self::Error> {
                $name::parse(&text)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = crate::violation::ValueError;
            fn try_from(text: &str) -> Result<$name, Self::Error> {
                $name::parse(text)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<$name, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                $name::parse(&text).map_err(|error| {
                    serde::de::Error::custom(format_args!("{} ({})", error.message, error.rule))
                })
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $schema_name.into()
            }

            fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                $schema
            }
        }

        crate::reader::text_field!($name);
    };
}
pub(crate) use text_newtype;

/// Equality, ordering and hashing that ignore ASCII case, as Microsoft compares UPNs, addresses,
/// aliases, domains and SKU part numbers; the original case is kept for display.
macro_rules! ignore_ascii_case {
    ($name:ident) => {
        impl PartialEq for $name {
            fn eq(&self, other: &$name) -> bool {
                self.0.eq_ignore_ascii_case(&other.0)
            }
        }

        impl Eq for $name {}

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                for byte in self.0.bytes() {
                    state.write_u8(byte.to_ascii_lowercase());
                }
                state.write_u8(0xff);
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &$name) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &$name) -> std::cmp::Ordering {
                let left = self.0.bytes().map(|byte| byte.to_ascii_lowercase());
                let right = other.0.bytes().map(|byte| byte.to_ascii_lowercase());
                left.cmp(right)
            }
        }
    };
}
pub(crate) use ignore_ascii_case;

use crate::violation::ValueError;

/// Length in Unicode scalar values, which is what JSON Schema's `minLength`/`maxLength` count.
pub(crate) fn check_length(
    text: &str,
    rule: &'static str,
    min: usize,
    max: usize,
) -> Result<(), ValueError> {
    let length = text.chars().count();
    if length < min || length > max {
        let message = if min == max {
            format!("must be exactly {min} characters long")
        } else if length < min {
            format!("must be at least {min} character(s) long")
        } else {
            format!("must be at most {max} characters long")
        };
        return Err(ValueError::new(rule, message));
    }
    Ok(())
}

/// C0 controls and DEL, which no name or text field accepts.
pub(crate) fn is_control(character: char) -> bool {
    matches!(character, '\u{0}'..='\u{1f}' | '\u{7f}')
}
