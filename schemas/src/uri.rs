//! URI attributes of the envelope: `source` (a URI-reference) and `dataschema` (a URI).

use schemars::json_schema;

use crate::text::{check_length, text_newtype};
use crate::violation::ValueError;

/// RFC 3986 characters outside percent-encoding: unreserved, gen-delims and sub-delims.
fn is_uri_character(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&byte)
}

fn check_uri_characters(text: &str, rule: &'static str) -> Result<(), ValueError> {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let escape_is_valid = bytes.get(index + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(index + 2).is_some_and(u8::is_ascii_hexdigit);
            if !escape_is_valid {
                return Err(ValueError::new(
                    rule,
                    "a % must be followed by two hexadecimal digits",
                ));
            }
            index += 3;
        } else if is_uri_character(byte) {
            index += 1;
        } else {
            return Err(ValueError::new(
                rule,
                "must be a URI reference (RFC 3986): percent-encode spaces and other characters",
            ));
        }
    }
    Ok(())
}

const URI_CHARACTERS: &str = r"([A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})";

/// The CloudEvents `source`: a non-empty URI-reference naming who produced the event, such as
/// `moss-producer/ldap://dc1`. At most 2048 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source(String);

impl Source {
    /// Longest source accepted.
    pub const MAX_LENGTH: usize = 2048;

    fn check(text: &str) -> Result<(), ValueError> {
        check_length(text, "source.length", 1, Self::MAX_LENGTH)?;
        check_uri_characters(text, "source.format")
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

text_newtype!(
    Source,
    "Source",
    json_schema!({
        "description": "Who produced the event: a non-empty URI-reference (RFC 3986), e.g. moss-producer/ldap://dc1.",
        "type": "string",
        "minLength": 1,
        "maxLength": 2048,
        "pattern": format!("^{URI_CHARACTERS}+$"),
    })
);

/// The CloudEvents `dataschema`: an absolute URI (with a scheme) of the schema `data` follows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DataSchema(String);

impl DataSchema {
    /// Longest URI accepted.
    pub const MAX_LENGTH: usize = 2048;

    fn check(text: &str) -> Result<(), ValueError> {
        check_length(text, "dataschema.length", 1, Self::MAX_LENGTH)?;
        check_uri_characters(text, "dataschema.format")?;
        let scheme = text
            .split_once(':')
            .map(|(scheme, _)| scheme)
            .unwrap_or_default();
        let scheme_is_valid = scheme
            .bytes()
            .next()
            .is_some_and(|byte| byte.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"+-.".contains(&byte));
        if !scheme_is_valid {
            return Err(ValueError::new(
                "dataschema.format",
                "must be an absolute URI with a scheme, as in https://…",
            ));
        }
        Ok(())
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

text_newtype!(
    DataSchema,
    "DataSchema",
    json_schema!({
        "description": "An absolute URI (RFC 3986, with a scheme) of the schema that data follows.",
        "type": "string",
        "minLength": 1,
        "maxLength": 2048,
        "pattern": format!("^[A-Za-z][A-Za-z0-9+.-]*:{URI_CHARACTERS}*$"),
    })
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_source_with_an_ldap_url_is_a_uri_reference() {
        assert!(Source::parse("moss-producer/ldap://dc1").is_ok());
    }

    #[test]
    fn a_source_with_a_space_is_refused() {
        assert_eq!(
            Source::parse("moss producer").unwrap_err().rule,
            "source.format"
        );
    }

    #[test]
    fn a_relative_dataschema_is_refused() {
        assert_eq!(
            DataSchema::parse("schemas/x.json").unwrap_err().rule,
            "dataschema.format"
        );
    }
}
