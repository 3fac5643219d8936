//! DNS names, user principal names, e-mail addresses and Exchange aliases, with Microsoft's
//! rules (microsoft-online-wire.md §3.1 and §9.2). All compare case-insensitively and keep the
//! case they were given.

use schemars::json_schema;

use crate::text::{check_length, ignore_ascii_case, text_newtype};
use crate::violation::ValueError;

/// One DNS label, as a JSON Schema fragment.
const LABEL: &str = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";

fn domain_pattern() -> String {
    format!("({LABEL}\\.)+{LABEL}")
}

fn check_domain(text: &str, rule_prefix: &'static str, max: usize) -> Result<(), ValueError> {
    let (length_rule, format_rule) = match rule_prefix {
        "upn" => ("upn.length", "upn.format"),
        "email" => ("email.length", "email.format"),
        _ => ("domain.length", "domain.format"),
    };
    check_length(text, length_rule, 1, max)?;
    let labels: Vec<&str> = text.split('.').collect();
    if labels.len() < 2 {
        return Err(ValueError::new(
            format_rule,
            "the domain must have at least two labels, as in contoso.com",
        ));
    }
    for label in labels {
        let valid = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(ValueError::new(
                format_rule,
                "each domain label must be 1 to 63 letters, digits or hyphens, not beginning or ending with a hyphen (use punycode for international names)",
            ));
        }
    }
    Ok(())
}

/// A DNS domain name such as `contoso.com`: at least two labels of letters, digits and
/// hyphens, at most 253 characters (international names in punycode).
#[derive(Debug, Clone)]
pub struct DomainName(String);

impl DomainName {
    /// Longest DNS name.
    pub const MAX_LENGTH: usize = 253;

    fn check(text: &str) -> Result<(), ValueError> {
        check_domain(text, "domain", Self::MAX_LENGTH)
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

ignore_ascii_case!(DomainName);

text_newtype!(
    DomainName,
    "DomainName",
    json_schema!({
        "description": "A DNS domain name of at least two labels (letters, digits, hyphens), at most 253 characters.",
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "pattern": format!("^{}$", domain_pattern()),
    })
);

/// Characters Entra ID allows in a UPN's local part besides letters, digits and dots.
const UPN_LOCAL_SYMBOLS: &[u8] = b"'-_!#^~";

/// A user principal name (the online id), `local@domain`: local part 1..=64 of
/// `A-Z a-z 0-9 ' . - _ ! # ^ ~` with no dot at either end and no two dots together; domain a
/// DNS name of at most 48 characters (Entra's 113 = 64 + 1 + 48).
#[derive(Debug, Clone)]
pub struct Upn(String);

impl Upn {
    /// Longest local part Entra ID accepts.
    pub const MAX_LOCAL_LENGTH: usize = 64;
    /// Longest domain part Entra ID accepts in a UPN.
    pub const MAX_DOMAIN_LENGTH: usize = 48;

    fn check(text: &str) -> Result<(), ValueError> {
        let Some((local, domain)) = text.split_once('@') else {
            return Err(ValueError::new(
                "upn.format",
                "a user principal name has the form name@domain",
            ));
        };
        check_length(local, "upn.length", 1, Self::MAX_LOCAL_LENGTH).map_err(|_| {
            ValueError::new("upn.length", "the part before @ must be 1 to 64 characters")
        })?;
        check_length(domain, "upn.length", 1, Self::MAX_DOMAIN_LENGTH).map_err(|_| {
            ValueError::new("upn.length", "the part after @ must be 1 to 48 characters")
        })?;
        let allowed = |byte: u8| {
            byte.is_ascii_alphanumeric() || byte == b'.' || UPN_LOCAL_SYMBOLS.contains(&byte)
        };
        if !local.bytes().all(allowed) {
            return Err(ValueError::new(
                "upn.format",
                "the part before @ may hold only A-Z a-z 0-9 and ' . - _ ! # ^ ~ (no accents, no second @)",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(ValueError::new(
                "upn.format",
                "the part before @ must not begin or end with a dot nor hold two dots together",
            ));
        }
        check_domain(domain, "upn", Self::MAX_DOMAIN_LENGTH)
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }

    /// The part before `@`.
    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map_or("", |(local, _)| local)
    }

    /// The domain after `@`, which must be one of the tenant's verified domains.
    pub fn domain(&self) -> DomainName {
        let domain = self.0.split_once('@').map_or("", |(_, domain)| domain);
        DomainName(domain.to_owned())
    }
}

ignore_ascii_case!(Upn);

text_newtype!(
    Upn,
    "Upn",
    json_schema!({
        "description": "A user principal name, name@domain: up to 64 characters of A-Z a-z 0-9 ' . - _ ! # ^ ~ before @ (no dot at either end, no two dots together) and a DNS name of up to 48 characters after it.",
        "type": "string",
        "minLength": 3,
        "maxLength": 113,
        "pattern": format!(
            "^(?=[^@]{{1,64}}@[^@]{{1,48}}$)[A-Za-z0-9'!#^~_-]+(\\.[A-Za-z0-9'!#^~_-]+)*@{}$",
            domain_pattern()
        ),
    })
);

/// Characters RFC 5322's dot-atom allows besides letters, digits and dots.
const ATOM_SYMBOLS: &[u8] = b"!#$%&'*+/=?^_`{|}~-";

/// An SMTP address such as `a.vance@contoso.com` (dot-atom local part of at most 64
/// characters, DNS domain; at most 254 characters). Quoted local parts are refused: Exchange
/// proxy addresses do not take them.
#[derive(Debug, Clone)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Longest address (RFC 5321 path limit less the brackets).
    pub const MAX_LENGTH: usize = 254;

    fn check(text: &str) -> Result<(), ValueError> {
        check_length(text, "email.length", 3, Self::MAX_LENGTH)?;
        let Some((local, domain)) = text.split_once('@') else {
            return Err(ValueError::new(
                "email.format",
                "an e-mail address has the form name@domain",
            ));
        };
        check_length(local, "email.length", 1, 64).map_err(|_| {
            ValueError::new(
                "email.length",
                "the part before @ must be 1 to 64 characters",
            )
        })?;
        let allowed =
            |byte: u8| byte.is_ascii_alphanumeric() || byte == b'.' || ATOM_SYMBOLS.contains(&byte);
        if !local.bytes().all(allowed)
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(ValueError::new(
                "email.format",
                "the part before @ must be letters, digits and ! # $ % & ' * + / = ? ^ _ ` { | } ~ - separated by single dots",
            ));
        }
        check_domain(domain, "email", Self::MAX_LENGTH)
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }

    /// The domain after `@`, which must be an accepted domain of the tenant.
    pub fn domain(&self) -> DomainName {
        let domain = self.0.split_once('@').map_or("", |(_, domain)| domain);
        DomainName(domain.to_owned())
    }
}

ignore_ascii_case!(EmailAddress);

const ATOM: &str = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";

text_newtype!(
    EmailAddress,
    "EmailAddress",
    json_schema!({
        "description": "An SMTP address: a dot-atom of up to 64 characters, @, and a DNS domain name; at most 254 characters.",
        "type": "string",
        "minLength": 3,
        "maxLength": 254,
        "pattern": format!("^(?=[^@]{{1,64}}@){ATOM}(\\.{ATOM})*@{}$", domain_pattern()),
    })
);

/// An Exchange alias (`Alias` / `mailNickname`): 1..=64 characters of letters, digits,
/// ``! # $ % & ' * + - / = ? ^ _ ` { | } ~``, U+00A1..=U+00FF, and dots that stand between
/// other characters (Exchange's documented rule).
#[derive(Debug, Clone)]
pub struct MailAlias(String);

impl MailAlias {
    /// Longest alias Exchange Online accepts.
    pub const MAX_LENGTH: usize = 64;

    fn check(text: &str) -> Result<(), ValueError> {
        check_length(text, "alias.length", 1, Self::MAX_LENGTH)?;
        let allowed = |character: char| {
            character.is_ascii_alphanumeric()
                || character == '.'
                || (character.is_ascii() && ATOM_SYMBOLS.contains(&(character as u8)))
                || ('\u{a1}'..='\u{ff}').contains(&character)
        };
        if !text.chars().all(allowed) {
            return Err(ValueError::new(
                "alias.format",
                "an alias may hold letters, digits, ! # $ % & ' * + - / = ? ^ _ ` { | } ~ and dots, no spaces",
            ));
        }
        if text.starts_with('.') || text.ends_with('.') || text.contains("..") {
            return Err(ValueError::new(
                "alias.format",
                "each dot in an alias must stand between other characters",
            ));
        }
        Ok(())
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

ignore_ascii_case!(MailAlias);

const ALIAS_ATOM: &str = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u00A1-\u00FF-]+";

text_newtype!(
    MailAlias,
    "MailAlias",
    json_schema!({
        "description": "An Exchange alias: 1 to 64 characters of letters, digits, ! # $ % & ' * + - / = ? ^ _ ` { | } ~ and U+00A1 to U+00FF, with dots only between other characters.",
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": format!("^{ALIAS_ATOM}(\\.{ALIAS_ATOM})*$"),
    })
);
