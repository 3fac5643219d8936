//! The decoders' promises beyond the fixtures: ingest sealing, ignored extensions, no clear
//! password in any output, serde integration and the partition contract.

use moss_schemas::{
    DisplayName, Envelope, EventBatch, EventData, OpeningKey, SealingKey, Sequence, Source,
    Subject, UserReactivated, generate_key_pair,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

fn event(event_type: &str, data: Value) -> Value {
    let mut event = json!({
        "specversion": "1.0",
        "id": "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b",
        "source": "moss-producer/ldap://dc1",
        "type": event_type,
        "subject": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "time": "2025-01-31T12:00:00Z",
        "sequence": "4711",
    });
    event["data"] = data;
    event
}

fn keys() -> (SealingKey, OpeningKey) {
    let pair = generate_key_pair();
    (
        SealingKey::parse(&pair.public).unwrap(),
        OpeningKey::parse(&pair.private).unwrap(),
    )
}

fn pairs(error: &moss_schemas::DecodeError) -> Vec<(&str, &str)> {
    error
        .violations
        .iter()
        .map(|violation| (violation.pointer.as_str(), violation.rule.as_str()))
        .collect()
}

#[test]
fn the_ingest_seals_a_clear_password_that_only_the_opening_key_opens() {
    let (sealing, opening) = keys();
    let input = event(
        "moss.user.password_changed.v1",
        json!({ "password": { "clear": "Sommer-2025!" } }),
    );
    let envelope =
        Envelope::from_ingest_json_slice(&serde_json::to_vec(&input).unwrap(), &sealing).unwrap();
    let wire = String::from_utf8(envelope.to_json_vec()).unwrap();
    assert!(
        !wire.contains("Sommer-2025!"),
        "the clear password travelled: {wire}"
    );
    let EventData::UserPasswordChanged(changed) =
        Envelope::from_json_slice(wire.as_bytes()).unwrap().data
    else {
        panic!("not a password event");
    };
    assert_eq!(
        changed.password.open(&opening).unwrap().expose_secret(),
        "Sommer-2025!"
    );
}

#[test]
fn the_ingest_seals_the_initial_password_of_a_new_user() {
    let (sealing, opening) = keys();
    let input = event(
        "moss.user.added.v1",
        json!({
            "account_name": "avance",
            "display_name": "Adele Vance",
            "online_account": { "upn": "adele@contoso.com", "usage_location": "NL", "licenses": [] },
            "initial_password": { "clear": "Erst-Passw0rt" },
        }),
    );
    let envelope =
        Envelope::from_ingest_json_slice(&serde_json::to_vec(&input).unwrap(), &sealing).unwrap();
    let EventData::UserAdded(added) = envelope.data else {
        panic!("not user.added")
    };
    assert_eq!(
        added
            .initial_password
            .unwrap()
            .open(&opening)
            .unwrap()
            .expose_secret(),
        "Erst-Passw0rt"
    );
}

#[test]
fn the_ingest_reports_an_overlong_clear_password_once_at_its_pointer() {
    let (sealing, _) = keys();
    let input = event(
        "moss.user.password_changed.v1",
        json!({ "password": { "clear": "x".repeat(257) } }),
    );
    let error = Envelope::from_ingest_json_slice(&serde_json::to_vec(&input).unwrap(), &sealing)
        .unwrap_err();
    assert_eq!(pairs(&error), [("/data/password/clear", "password.length")]);
}

#[test]
fn the_ingest_reports_a_clear_password_that_is_not_a_string() {
    let (sealing, _) = keys();
    let input = event(
        "moss.user.password_changed.v1",
        json!({ "password": { "clear": 1234 } }),
    );
    let error = Envelope::from_ingest_json_slice(&serde_json::to_vec(&input).unwrap(), &sealing)
        .unwrap_err();
    assert_eq!(pairs(&error), [("/data/password/clear", "expected.string")]);
}

#[test]
fn the_ingest_still_refuses_a_bare_clear_string_and_says_how_to_send_it() {
    let (sealing, _) = keys();
    let input = event(
        "moss.user.password_changed.v1",
        json!({ "password": "Sommer-2025!" }),
    );
    let error = Envelope::from_ingest_json_slice(&serde_json::to_vec(&input).unwrap(), &sealing)
        .unwrap_err();
    assert_eq!(pairs(&error), [("/data/password", "password.not_sealed")]);
    assert!(error.violations[0].message.contains("{\"clear\""));
    assert!(
        !error.to_string().contains("Sommer-2025!"),
        "the error repeated the password"
    );
}

#[test]
fn the_ingest_seals_passwords_inside_a_batch_and_points_into_it() {
    let (sealing, opening) = keys();
    let good = event(
        "moss.user.password_changed.v1",
        json!({ "password": { "clear": "Gut-Passw0rt" } }),
    );
    let batch =
        EventBatch::from_ingest_json_slice(&serde_json::to_vec(&json!([good])).unwrap(), &sealing)
            .unwrap();
    let EventData::UserPasswordChanged(changed) = &batch.events[0].data else {
        panic!("not a password event")
    };
    assert_eq!(
        changed.password.open(&opening).unwrap().expose_secret(),
        "Gut-Passw0rt"
    );

    let bad = event(
        "moss.user.password_changed.v1",
        json!({ "password": { "clear": "" } }),
    );
    let error = EventBatch::from_ingest_json_slice(
        &serde_json::to_vec(&json!([good_event(), bad])).unwrap(),
        &sealing,
    )
    .unwrap_err();
    assert_eq!(
        pairs(&error),
        [("/1/data/password/clear", "password.length")]
    );
}

fn good_event() -> Value {
    event("moss.user.reactivated.v1", json!({}))
}

#[test]
fn a_clear_password_object_outside_password_fields_is_refused_even_at_the_ingest() {
    let (sealing, _) = keys();
    let input = event(
        "moss.user.deactivated.v1",
        json!({ "reason": "left", "note": { "clear": "psst" } }),
    );
    let error = Envelope::from_ingest_json_slice(&serde_json::to_vec(&input).unwrap(), &sealing)
        .unwrap_err();
    assert_eq!(pairs(&error), [("/data/note", "password.clear")]);
}

#[test]
fn unknown_attributes_and_data_members_are_ignored_on_read() {
    let mut input = event(
        "moss.user.deactivated.v1",
        json!({ "reason": "left", "ticket": "INC-1" }),
    );
    input["traceparent"] = json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let envelope = Envelope::from_json_slice(&serde_json::to_vec(&input).unwrap()).unwrap();
    let output = envelope.to_json_value();
    assert!(output.get("traceparent").is_none());
    assert_eq!(output["data"], json!({ "reason": "left" }));
}

#[test]
fn an_upper_case_subject_is_normalised_and_keeps_its_partition() {
    let mut input = event("moss.user.removed.v1", json!({}));
    input["subject"] = json!("6F9619FF-8B86-D011-B42D-00C04FC964FF");
    let envelope = Envelope::from_json_slice(&serde_json::to_vec(&input).unwrap()).unwrap();
    assert_eq!(
        envelope.subject.to_string(),
        "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    );
    assert_eq!(envelope.partition(8), 1);
}

#[test]
fn serde_decoding_applies_the_same_rules_and_lists_every_violation() {
    let mut input = event("moss.user.alias_added.v1", json!({ "address": "nope" }));
    input["sequence"] = json!("x");
    let error = serde_json::from_value::<Envelope>(input)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/data/address") && error.contains("email.format"),
        "{error}"
    );
    assert!(
        error.contains("/sequence") && error.contains("sequence.format"),
        "{error}"
    );

    let good: Envelope = serde_json::from_value(good_event()).unwrap();
    assert_eq!(good.to_json_value(), good_event());
}

#[test]
fn a_new_envelope_has_a_fresh_id_and_round_trips() {
    let envelope = Envelope::new(
        Source::parse("moss-producer/test").unwrap(),
        Subject::parse("3f2504e0-4f89-41d3-9a0c-0305e82c3301").unwrap(),
        Sequence(1),
        EventData::UserReactivated(UserReactivated {}),
    );
    let decoded = Envelope::from_json_slice(&envelope.to_json_vec()).unwrap();
    assert_eq!(decoded, envelope);
    assert_ne!(
        Envelope::new(
            envelope.source.clone(),
            envelope.subject,
            Sequence(1),
            envelope.data.clone()
        )
        .id,
        envelope.id
    );
}

#[test]
fn a_display_name_of_257_characters_is_too_long() {
    assert_eq!(
        DisplayName::parse(&"a".repeat(257)).unwrap_err().rule,
        "display_name.length"
    );
    assert!(DisplayName::parse(&"ä".repeat(256)).is_ok());
}

/// The vectors documented in schemas/EVENTS.md; every producer in any language must agree.
#[test]
fn the_partition_of_a_subject_is_fnv_1a_64_modulo_n() {
    let vectors = [
        ("6f9619ff-8b86-d011-b42d-00c04fc964ff", 1, 1),
        ("3f2504e0-4f89-41d3-9a0c-0305e82c3301", 1, 1),
        ("1b4e28ba-2fa1-11d2-883f-0016d3cca427", 1, 9),
        ("0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b", 0, 8),
        ("c7df2760-2c81-4ef7-b578-5b5392b571df", 5, 5),
        ("00000000-0000-0000-0000-000000000001", 6, 14),
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", 1, 1),
    ];
    for (subject, of_8, of_16) in vectors {
        let subject = Subject::parse(subject).unwrap();
        assert_eq!(subject.partition(8), of_8, "{subject} of 8");
        assert_eq!(subject.partition(16), of_16, "{subject} of 16");
        assert_eq!(subject.partition(1), 0);
    }
}
