//! LDIF (RFC 2849) content records, as `ldapadd` and `ldifde` read them: `version: 1`, one
//! record per entry, a value that is not a safe string in base64 (`attr:: …`), lines folded
//! at 76 characters, and RFC 4514 escaping in the DN.

use std::fmt::Write as _;

use base64::Engine as _;

/// One entry to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) dn: String,
    /// Attribute → values, in the order written.
    pub(crate) attributes: Vec<(String, String)>,
}

/// The LDIF file for `entries`.
pub(crate) fn write(entries: &[Entry]) -> String {
    let mut text = String::from("version: 1\n");
    for entry in entries {
        text.push('\n');
        line(&mut text, "dn", &entry.dn);
        for (name, value) in &entry.attributes {
            line(&mut text, name, value);
        }
    }
    text
}

/// `name: value`, or `name:: base64` when the value is not a SAFE-STRING, folded at 76.
fn line(text: &mut String, name: &str, value: &str) {
    let logical = if is_safe(value) {
        format!("{name}: {value}")
    } else {
        format!(
            "{name}:: {}",
            base64::engine::general_purpose::STANDARD.encode(value.as_bytes())
        )
    };
    let mut chars = logical.chars().peekable();
    let mut first = true;
    while chars.peek().is_some() {
        // A continuation line starts with one space, which does not count as content.
        let room = if first { 76 } else { 75 };
        let chunk: String = chars.by_ref().take(room).collect();
        if !first {
            text.push(' ');
        }
        let _ = writeln!(text, "{chunk}");
        first = false;
    }
}

/// RFC 2849 SAFE-STRING: ASCII without NUL, CR, LF; not starting with space, `:` or `<`; and
/// (our choice, for readers that trim) not ending with a space.
fn is_safe(value: &str) -> bool {
    value.is_ascii()
        && !value.bytes().any(|byte| matches!(byte, 0 | b'\r' | b'\n'))
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ')
}

/// Escapes an attribute value for use in a DN (RFC 4514 §2.4).
pub(crate) fn escape_dn_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (index == 0 && matches!(c, ' ' | '#'))
            || (index == last && c == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Reads LDIF content records back (for tests and for checking what was written).
#[cfg(test)]
pub(crate) fn parse(text: &str) -> Vec<Entry> {
    let mut logical: Vec<String> = Vec::new();
    for raw in text.lines() {
        if let Some(rest) = raw.strip_prefix(' ') {
            if let Some(last) = logical.last_mut() {
                last.push_str(rest);
            }
        } else {
            logical.push(raw.to_owned());
        }
    }
    let mut entries = Vec::new();
    let mut current: Option<Entry> = None;
    for line in logical {
        if line.is_empty() {
            entries.extend(current.take());
            continue;
        }
        if line.starts_with('#') || line.starts_with("version:") {
            continue;
        }
        let (name, value) = if let Some((name, encoded)) = line.split_once(":: ") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            (name.to_owned(), String::from_utf8(bytes).unwrap())
        } else {
            let (name, value) = line.split_once(": ").unwrap();
            (name.to_owned(), value.to_owned())
        };
        if name == "dn" {
            entries.extend(current.take());
            current = Some(Entry {
                dn: value,
                attributes: Vec::new(),
            });
        } else if let Some(entry) = current.as_mut() {
            entry.attributes.push((name, value));
        }
    }
    entries.extend(current);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_and_long_values_round_trip() {
        let entries = vec![Entry {
            dn: format!("uid={},ou=people,dc=example,dc=org", escape_dn_value("a,b")),
            attributes: vec![
                ("cn".into(), "Zoë Ångström".into()),
                ("description".into(), "x".repeat(200)),
                ("sn".into(), " leading space".into()),
            ],
        }];
        let text = write(&entries);
        assert!(text.lines().all(|line| line.chars().count() <= 76));
        assert!(text.contains("cn:: "));
        assert_eq!(parse(&text), entries);
        assert!(entries[0].dn.starts_with("uid=a\\,b,"));
    }
}
