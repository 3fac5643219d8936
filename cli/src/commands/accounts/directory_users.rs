//! Directory users from an export: CSV with a header row, or a JSON array of objects. Column
//! names follow moss's events (`subject`, `account_name`, `display_name`, `given_name`,
//! `surname`, `upn`, `usage_location`) and also the directories' own (`objectGUID`,
//! `entryUUID`, `sAMAccountName`, `uid`, `displayName`, `cn`, `givenName`, `sn`,
//! `userPrincipalName`, `usageLocation`), so an export from either needs no editing.
//!
//! Every malformed row is reported with its line (CSV) or position (JSON), all of them at
//! once, before anything is planned.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use moss_schemas::{AccountName, DisplayName, Subject, Upn, UsageLocation};
use serde_json::Value;

/// One directory user of the export.
#[derive(Debug, Clone)]
pub(crate) struct DirectoryUser {
    /// Where it came from: "line 7" or "entry 3".
    pub(crate) place: String,
    pub(crate) subject: Subject,
    pub(crate) account_name: AccountName,
    pub(crate) display_name: Option<DisplayName>,
    /// An online id the export asks for instead of `account_name@domain`.
    pub(crate) upn: Option<Upn>,
    pub(crate) usage_location: Option<UsageLocation>,
}

/// The export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    Csv,
    Json,
}

impl ExportFormat {
    /// From the file's extension, else from its first non-blank character.
    pub(crate) fn detect(path: &Path, text: &str) -> ExportFormat {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => ExportFormat::Json,
            Some(ext) if ext.eq_ignore_ascii_case("csv") => ExportFormat::Csv,
            _ if text.trim_start().starts_with('[') => ExportFormat::Json,
            _ => ExportFormat::Csv,
        }
    }
}

/// The field each accepted column name fills.
fn field_of(column: &str) -> Option<&'static str> {
    let column = column.trim().trim_start_matches('\u{feff}');
    let lower = column.to_ascii_lowercase();
    Some(match lower.as_str() {
        "subject" | "objectguid" | "entryuuid" => "subject",
        "account_name" | "samaccountname" | "uid" => "account_name",
        "display_name" | "displayname" | "cn" => "display_name",
        "given_name" | "givenname" => "given_name",
        "surname" | "sn" => "surname",
        "upn" | "userprincipalname" | "online_id" => "upn",
        "usage_location" | "usagelocation" => "usage_location",
        _ => return None,
    })
}

/// Reads and checks the export; one error lists every malformed row.
pub(crate) fn read(path: &Path, format: Option<ExportFormat>) -> Result<Vec<DirectoryUser>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the export {}", path.display()))?;
    let format = format.unwrap_or_else(|| ExportFormat::detect(path, &text));
    let rows = match format {
        ExportFormat::Csv => csv_rows(&text)?,
        ExportFormat::Json => json_rows(&text)?,
    };
    let mut users = Vec::new();
    let mut problems = Vec::new();
    let mut subjects: HashMap<String, String> = HashMap::new();
    for (place, fields) in rows {
        match user_of(&place, &fields) {
            Ok(user) => {
                let key = user.subject.to_string().to_ascii_lowercase();
                if let Some(first) = subjects.get(&key) {
                    problems.push(format!(
                        "{place}: subject: the same user appears on {first}"
                    ));
                    continue;
                }
                subjects.insert(key, place.clone());
                users.push(user);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        const SHOWN: usize = 50;
        let mut message = format!(
            "{} of the export {} {} malformed; nothing was published:",
            problems.len(),
            path.display(),
            if problems.len() == 1 {
                "row is"
            } else {
                "rows are"
            }
        );
        for problem in problems.iter().take(SHOWN) {
            message.push_str("\n  ");
            message.push_str(problem);
        }
        if problems.len() > SHOWN {
            message.push_str(&format!("\n  … and {} more", problems.len() - SHOWN));
        }
        bail!(message);
    }
    if users.is_empty() {
        bail!("the export {} holds no users", path.display());
    }
    Ok(users)
}

type Row = (String, HashMap<&'static str, String>);

/// The pseudo-field of a row that could not be read at all, holding why.
const MALFORMED: &str = "_malformed";

fn csv_rows(text: &str) -> Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .context("the export's first line (the column names) cannot be read as CSV")?
        .clone();
    let columns: Vec<Option<&'static str>> = headers.iter().map(field_of).collect();
    for required in ["subject", "account_name"] {
        if !columns.contains(&Some(required)) {
            bail!(
                "line 1: the export has no {required} column (its columns: {}); name it {required} (or {})",
                headers.iter().collect::<Vec<_>>().join(", "),
                if required == "subject" {
                    "objectGUID / entryUUID"
                } else {
                    "sAMAccountName / uid"
                }
            );
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record.position().map_or(0, csv::Position::line);
                let fields = columns
                    .iter()
                    .zip(record.iter())
                    .filter_map(|(column, value)| column.map(|field| (field, value.to_owned())))
                    .filter(|(_, value)| !value.is_empty())
                    .collect();
                rows.push((format!("line {line}"), fields));
            }
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                let why = match error.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("the row has {len} fields where the header has {expected_len}"),
                    csv::ErrorKind::Utf8 { .. } => "the row is not UTF-8 text".to_owned(),
                    _ => "the row cannot be read as CSV".to_owned(),
                };
                rows.push((format!("line {line}"), HashMap::from([(MALFORMED, why)])));
            }
        }
    }
    Ok(rows)
}

fn json_rows(text: &str) -> Result<Vec<Row>> {
    let value: Value = serde_json::from_str(text).map_err(|error| {
        anyhow::anyhow!(
            "line {}: the export is not valid JSON ({})",
            error.line(),
            error.classify_name()
        )
    })?;
    let Value::Array(entries) = value else {
        bail!("the JSON export must be an array of user objects");
    };
    let mut rows = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let place = format!("entry {}", index + 1);
        let Value::Object(object) = entry else {
            rows.push((
                place,
                HashMap::from([("_malformed", "is not an object".to_owned())]),
            ));
            continue;
        };
        let fields = object
            .iter()
            .filter_map(|(key, value)| {
                let field = field_of(key)?;
                let text = match value {
                    Value::String(text) => text.trim().to_owned(),
                    Value::Null => return None,
                    other => other.to_string(),
                };
                (!text.is_empty()).then_some((field, text))
            })
            .collect();
        rows.push((place, fields));
    }
    Ok(rows)
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "a syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "it ends too early",
        }
    }
}

fn user_of(place: &str, fields: &HashMap<&'static str, String>) -> Result<DirectoryUser, String> {
    if let Some(problem) = fields.get(MALFORMED) {
        return Err(format!("{place}: {problem}"));
    }
    let required = |field: &str| {
        fields
            .get(field)
            .ok_or_else(|| format!("{place}: {field}: is missing"))
    };
    let invalid = |field: &str, message: String| format!("{place}: {field}: {message}");
    let subject =
        Subject::parse(required("subject")?).map_err(|error| invalid("subject", error.message))?;
    let account_name = AccountName::parse(required("account_name")?)
        .map_err(|error| invalid("account_name", error.message))?;
    let display_name = fields
        .get("display_name")
        .map(|name| DisplayName::parse(name))
        .transpose()
        .map_err(|error| invalid("display_name", error.message))?;
    let upn = fields
        .get("upn")
        .map(|upn| Upn::parse(upn))
        .transpose()
        .map_err(|error| invalid("upn", error.message))?;
    let usage_location = fields
        .get("usage_location")
        .map(|code| UsageLocation::parse(code))
        .transpose()
        .map_err(|error| invalid("usage_location", error.message))?;
    Ok(DirectoryUser {
        place: place.to_owned(),
        subject,
        account_name,
        display_name,
        upn,
        usage_location,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_csv_export_with_directory_column_names_is_read() {
        let (_dir, path) = write(
            "users.csv",
            "objectGUID,sAMAccountName,displayName\n\
             0e4f5a39-4a55-4c2b-9a26-2f7b0e7d1c11,ana,Ana Silva\n",
        );
        let users = read(&path, None).unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].account_name.as_str(), "ana");
        assert_eq!(users[0].place, "line 2");
    }

    #[test]
    fn every_malformed_csv_row_is_named_by_its_line() {
        let (_dir, path) = write(
            "users.csv",
            "subject,account_name\n\
             0e4f5a39-4a55-4c2b-9a26-2f7b0e7d1c11,ana\n\
             not-a-guid,ben\n\
             1e4f5a39-4a55-4c2b-9a26-2f7b0e7d1c11,\n",
        );
        let error = read(&path, None).unwrap_err().to_string();
        assert!(error.contains("line 3: subject:"), "{error}");
        assert!(
            error.contains("line 4: account_name: is missing"),
            "{error}"
        );
        assert!(error.contains("nothing was published"), "{error}");
    }

    #[test]
    fn a_row_with_too_many_fields_is_named_by_its_line() {
        let (_dir, path) = write(
            "users.csv",
            "subject,account_name\n0e4f5a39-4a55-4c2b-9a26-2f7b0e7d1c11,ana,extra\n",
        );
        let error = read(&path, None).unwrap_err().to_string();
        assert!(
            error.contains("line 2: the row has 3 fields where the header has 2"),
            "{error}"
        );
    }

    #[test]
    fn a_json_export_names_the_bad_entry() {
        let (_dir, path) = write(
            "users.json",
            r#"[{"subject":"0e4f5a39-4a55-4c2b-9a26-2f7b0e7d1c11","account_name":"ana"},
                {"subject":"0e4f5a39-4a55-4c2b-9a26-2f7b0e7d1c12","account_name":"ben","usage_location":"nl"}]"#,
        );
        let error = read(&path, None).unwrap_err().to_string();
        assert!(error.contains("entry 2: usage_location:"), "{error}");
    }
}
