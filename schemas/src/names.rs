//! Names and free texts people give to users and groups.

use schemars::json_schema;

use crate::text::{check_length, is_control, text_newtype};
use crate::violation::ValueError;

/// Pattern shared by single-line names: no control characters, at least one non-blank.
const SINGLE_LINE_NAME: &str =
    r"^[^\u0000-\u001F\u007F]*[^\s\u0000-\u001F\u007F][^\u0000-\u001F\u007F]*$";

fn check_single_line_name(
    text: &str,
    prefix: &'static str,
    rules: [&'static str; 3],
    max: usize,
) -> Result<(), ValueError> {
    let [length_rule, format_rule, blank_rule] = rules;
    check_length(text, length_rule, 1, max)?;
    if text.chars().any(is_control) {
        return Err(ValueError::new(
            format_rule,
            format!("{prefix} must not contain control characters"),
        ));
    }
    if text.chars().all(char::is_whitespace) {
        return Err(ValueError::new(
            blank_rule,
            format!("{prefix} must not be blank"),
        ));
    }
    Ok(())
}

/// A display name (Entra `displayName`): 1..=256 characters, one line, not blank.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    /// Longest display name Entra ID accepts.
    pub const MAX_LENGTH: usize = 256;

    fn check(text: &str) -> Result<(), ValueError> {
        check_single_line_name(
            text,
            "a display name",
            [
                "display_name.length",
                "display_name.format",
                "display_name.blank",
            ],
            Self::MAX_LENGTH,
        )
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

text_newtype!(
    DisplayName,
    "DisplayName",
    json_schema!({
        "description": "A display name: 1 to 256 characters, one line, not blank.",
        "type": "string",
        "minLength": 1,
        "maxLength": 256,
        "pattern": SINGLE_LINE_NAME,
    })
);

/// A given name or surname (Entra `givenName` / `surname`): 1..=64 characters, one line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersonName(String);

impl PersonName {
    /// Longest given name or surname Entra ID accepts.
    pub const MAX_LENGTH: usize = 64;

    fn check(text: &str) -> Result<(), ValueError> {
        check_single_line_name(
            text,
            "a name",
            [
                "person_name.length",
                "person_name.format",
                "person_name.blank",
            ],
            Self::MAX_LENGTH,
        )
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

text_newtype!(
    PersonName,
    "PersonName",
    json_schema!({
        "description": "A given name or surname: 1 to 64 characters, one line, not blank.",
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": SINGLE_LINE_NAME,
    })
);

/// Characters a directory account name (sAMAccountName / uid) never contains.
const ACCOUNT_NAME_FORBIDDEN: &[char] = &[
    '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '@',
];

/// The directory's logon name (sAMAccountName or uid): 1..=64 characters, none of
/// `" / \ [ ] : ; | = , + * ? < > @`, no control characters, and no white space or dot at
/// either end (Active Directory's rules, with 64 as Exchange's `mailNickname` limit).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountName(String);

impl AccountName {
    /// Longest account name accepted.
    pub const MAX_LENGTH: usize = 64;

    fn check(text: &str) -> Result<(), ValueError> {
        check_length(text, "account_name.length", 1, Self::MAX_LENGTH)?;
        if text
            .chars()
            .any(|character| is_control(character) || ACCOUNT_NAME_FORBIDDEN.contains(&character))
        {
            return Err(ValueError::new(
                "account_name.format",
                "an account name must not contain control characters or any of \" / \\ [ ] : ; | = , + * ? < > @",
            ));
        }
        let edge_is_bad =
            |character: Option<char>| character.is_some_and(|c| c.is_whitespace() || c == '.');
        if edge_is_bad(text.chars().next()) || edge_is_bad(text.chars().last()) {
            return Err(ValueError::new(
                "account_name.format",
                "an account name must not begin or end with white space or a dot",
            ));
        }
        Ok(())
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

text_newtype!(
    AccountName,
    "AccountName",
    json_schema!({
        "description": "The directory's logon name (sAMAccountName or uid): 1 to 64 characters, none of \" / \\ [ ] : ; | = , + * ? < > @ or control characters, no white space or dot at either end.",
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": r#"^[^"/\\\[\]:;|=,+*?<>@\u0000-\u001F\u007F\s.]([^"/\\\[\]:;|=,+*?<>@\u0000-\u001F\u007F]*[^"/\\\[\]:;|=,+*?<>@\u0000-\u001F\u007F\s.])?$"#,
    })
);

/// A distribution group's name (Exchange `Name`): 1..=64 characters, one line, no white space
/// at either end. Exchange compares names case-insensitively; so does this type.
#[derive(Debug, Clone)]
pub struct GroupName(String);

impl GroupName {
    /// Longest group name Exchange Online accepts.
    pub const MAX_LENGTH: usize = 64;

    fn check(text: &str) -> Result<(), ValueError> {
        check_length(text, "group_name.length", 1, Self::MAX_LENGTH)?;
        if text.chars().any(is_control) {
            return Err(ValueError::new(
                "group_name.format",
                "a group name must not contain control characters",
            ));
        }
        let edge_is_blank = |character: Option<char>| character.is_some_and(char::is_whitespace);
        if edge_is_blank(text.chars().next()) || edge_is_blank(text.chars().last()) {
            return Err(ValueError::new(
                "group_name.format",
                "a group name must not begin or end with white space",
            ));
        }
        Ok(())
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

crate::text::ignore_ascii_case!(GroupName);

text_newtype!(
    GroupName,
    "GroupName",
    json_schema!({
        "description": "A distribution group's name: 1 to 64 characters, one line, no white space at either end.",
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": r"^[^\s\u0000-\u001F\u007F]([^\u0000-\u001F\u007F]*[^\s\u0000-\u001F\u007F])?$",
    })
);

/// Free text that may span lines (tabs and line breaks allowed, other controls not).
fn check_free_text(text: &str, rules: [&'static str; 2], max: usize) -> Result<(), ValueError> {
    let [length_rule, format_rule] = rules;
    check_length(text, length_rule, 1, max)?;
    if text
        .chars()
        .any(|character| is_control(character) && !matches!(character, '\t' | '\n' | '\r'))
    {
        return Err(ValueError::new(
            format_rule,
            "must not contain control characters other than tab and line breaks",
        ));
    }
    Ok(())
}

const FREE_TEXT: &str = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]*$";

/// A group's description: 1..=1024 characters; tabs and line breaks allowed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Description(String);

impl Description {
    /// Longest description accepted.
    pub const MAX_LENGTH: usize = 1024;

    fn check(text: &str) -> Result<(), ValueError> {
        check_free_text(
            text,
            ["description.length", "description.format"],
            Self::MAX_LENGTH,
        )
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

text_newtype!(
    Description,
    "Description",
    json_schema!({
        "description": "Free text of 1 to 1024 characters; tabs and line breaks allowed, other control characters not.",
        "type": "string",
        "minLength": 1,
        "maxLength": 1024,
        "pattern": FREE_TEXT,
    })
);

/// Why a user was deactivated, for the audit trail: 1..=512 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reason(String);

impl Reason {
    /// Longest reason accepted.
    pub const MAX_LENGTH: usize = 512;

    fn check(text: &str) -> Result<(), ValueError> {
        check_free_text(text, ["reason.length", "reason.format"], Self::MAX_LENGTH)
    }

    fn normalise(text: &str) -> String {
        text.to_owned()
    }
}

text_newtype!(
    Reason,
    "Reason",
    json_schema!({
        "description": "Why the user was deactivated: 1 to 512 characters; tabs and line breaks allowed.",
        "type": "string",
        "minLength": 1,
        "maxLength": 512,
        "pattern": FREE_TEXT,
    })
);
