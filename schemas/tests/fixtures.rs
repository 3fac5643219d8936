//! Golden fixtures: every valid one decodes and re-encodes to the same JSON; every invalid one
//! yields exactly the expected (pointer, rule) pairs; and the generated JSON Schema agrees with
//! the decoder on each, except where a fixture records why a schema cannot tell.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use moss_schemas::{DecodeError, Envelope, EventBatch, EventType, OpenError, OpeningKey};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

fn fixtures_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture file (not the `.expected.json` beside invalid ones), by folder.
fn fixture_files() -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for folder in std::fs::read_dir(fixtures_directory()).unwrap() {
        let folder = folder.unwrap().path();
        let folder_name = folder.file_name().unwrap().to_string_lossy().into_owned();
        if !folder.is_dir() || folder_name == "keys" {
            continue;
        }
        for file in std::fs::read_dir(&folder).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".json") && !name.ends_with(".expected.json") {
                files.push((folder_name.clone(), path));
            }
        }
    }
    files.sort();
    assert!(files.len() > 40, "the fixtures folder looks empty");
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn decode(folder: &str, bytes: &[u8]) -> Result<Value, DecodeError> {
    if folder == "batch" {
        EventBatch::from_json_slice(bytes)
            .map(|batch| serde_json::from_slice(&batch.to_json_vec()).unwrap())
    } else {
        Envelope::from_json_slice(bytes).map(|envelope| envelope.to_json_value())
    }
}

fn validator(schema_file: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("json")
        .join(schema_file);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// The schema files that must agree with the decoder on a fixture of `folder`.
fn schemas_for(folder: &str) -> Vec<String> {
    match folder {
        "batch" => Vec::new(),
        "envelope" => vec!["envelope.json".to_owned()],
        event_type => vec![
            format!("moss.{event_type}.v1.json"),
            "envelope.json".to_owned(),
        ],
    }
}

#[test]
fn valid_fixtures_round_trip_to_the_same_json() {
    for (folder, path) in fixture_files()
        .into_iter()
        .filter(|(_, path)| file_name(path).starts_with("valid"))
    {
        let bytes = std::fs::read(&path).unwrap();
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        let reencoded =
            decode(&folder, &bytes).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(
            reencoded,
            original,
            "{} does not round-trip",
            path.display()
        );
        let again = decode(&folder, &serde_json::to_vec(&reencoded).unwrap()).unwrap();
        assert_eq!(
            again,
            reencoded,
            "{} does not decode its own encoding",
            path.display()
        );
        if let Ok(event_type) = EventType::parse(&format!("moss.{folder}")) {
            assert_eq!(
                Envelope::from_json_slice(&bytes).unwrap().event_type(),
                event_type,
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn invalid_fixtures_report_exactly_the_expected_violations() {
    for (folder, path) in fixture_files()
        .into_iter()
        .filter(|(_, path)| file_name(path).starts_with("invalid-"))
    {
        let expected_path = path.with_extension("expected.json");
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
                panic!("{} has no {}", path.display(), expected_path.display())
            }),
        )
        .unwrap();
        let expected: BTreeSet<(String, String)> = expected["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|violation| {
                (
                    violation["pointer"].as_str().unwrap().to_owned(),
                    violation["rule"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let error = decode(&folder, &std::fs::read(&path).unwrap())
            .expect_err(&format!("{} decoded but is invalid", path.display()));
        let found: BTreeSet<(String, String)> = error
            .violations
            .iter()
            .map(|violation| (violation.pointer.clone(), violation.rule.clone()))
            .collect();
        assert_eq!(found, expected, "{}: {error}", path.display());
        assert!(
            error
                .violations
                .iter()
                .all(|violation| !violation.message.is_empty())
        );
    }
}

#[test]
fn the_generated_schemas_agree_with_the_decoder_on_every_fixture() {
    for (folder, path) in fixture_files() {
        let name = file_name(&path);
        let Ok(instance) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()) else {
            continue;
        };
        let schema_should_accept = if name.starts_with("valid") {
            true
        } else {
            let expected: Value = serde_json::from_str(
                &std::fs::read_to_string(path.with_extension("expected.json")).unwrap(),
            )
            .unwrap();
            let verdict = expected["schema"].as_str().unwrap();
            assert!(
                verdict == "rejects" || verdict.starts_with("accepts: "),
                "{}: bad schema verdict",
                path.display()
            );
            verdict != "rejects"
        };
        for schema_file in schemas_for(&folder) {
            let accepted = validator(&schema_file).is_valid(&instance);
            assert_eq!(
                accepted,
                schema_should_accept,
                "{} against {schema_file}",
                path.display()
            );
        }
    }
}

#[test]
fn every_event_type_has_valid_and_invalid_fixtures() {
    let files = fixture_files();
    for event_type in EventType::ALL {
        let folder = event_type
            .as_str()
            .trim_start_matches("moss.")
            .trim_end_matches(".v1");
        let names: Vec<String> = files
            .iter()
            .filter(|(found, _)| found == folder)
            .map(|(_, path)| file_name(path))
            .collect();
        assert!(
            names.iter().any(|name| name.starts_with("valid")),
            "no valid fixture for {event_type}"
        );
        assert!(
            names.iter().any(|name| name.starts_with("invalid-")),
            "no invalid fixture for {event_type}"
        );
    }
}

fn test_opening_key() -> OpeningKey {
    let text = std::fs::read_to_string(fixtures_directory().join("keys/test.key")).unwrap();
    OpeningKey::parse(&SecretString::from(text)).unwrap()
}

fn fixture(relative: &str) -> Envelope {
    Envelope::from_json_slice(&std::fs::read(fixtures_directory().join(relative)).unwrap()).unwrap()
}

#[test]
fn fixture_passwords_open_with_the_test_key() {
    let key = test_opening_key();
    let moss_schemas::EventData::UserAdded(added) = fixture("user.added/valid.json").data else {
        panic!("user.added/valid.json is not a user.added event");
    };
    let initial = added.initial_password.unwrap().open(&key).unwrap();
    assert_eq!(initial.expose_secret(), "Initial-Passw0rd!");

    let moss_schemas::EventData::UserPasswordChanged(changed) =
        fixture("user.password_changed/valid.json").data
    else {
        panic!("user.password_changed/valid.json is not a password event");
    };
    assert_eq!(
        changed.password.open(&key).unwrap().expose_secret(),
        "N3w-Passw0rd!"
    );
}

#[test]
fn a_password_sealed_to_another_key_does_not_open() {
    let moss_schemas::EventData::UserPasswordChanged(changed) =
        fixture("user.password_changed/valid-sealed-to-another-key.json").data
    else {
        panic!("not a password event");
    };
    assert!(matches!(
        changed.password.open(&test_opening_key()),
        Err(OpenError::WrongKey)
    ));
}

#[test]
fn the_test_public_key_matches_the_test_private_key() {
    let public = std::fs::read_to_string(fixtures_directory().join("keys/test.pub")).unwrap();
    assert_eq!(
        test_opening_key().sealing_key(),
        moss_schemas::SealingKey::parse(&public).unwrap()
    );
}
