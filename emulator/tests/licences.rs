//! subscribedSkus, assignLicense and licenseDetails.

mod client;

use client::Session;
use reqwest::StatusCode;
use serde_json::json;

async fn consumed(session: &Session, part: &str) -> u64 {
    let skus = session.get("/subscribedSkus").await;
    skus.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["skuPartNumber"] == part)
        .unwrap()["consumedUnits"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn subscribed_skus_have_the_full_shape() {
    let session = Session::start().await;
    let skus = session.get("/subscribedSkus").await;
    assert_eq!(skus.status, StatusCode::OK);
    assert_eq!(skus.header("x-ms-resource-unit"), Some("3"));
    let tenant = session.emulator.tenant();
    let pack = skus.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["skuPartNumber"] == "ENTERPRISEPACK")
        .unwrap();
    assert_eq!(
        pack["id"],
        format!("{}_{}", tenant.tenant_id, pack["skuId"].as_str().unwrap())
    );
    assert_eq!(
        pack["prepaidUnits"],
        json!({"enabled": 25, "lockedOut": 0, "suspended": 0, "warning": 0})
    );
    assert_eq!(pack["consumedUnits"], 0);
    assert_eq!(pack["capabilityStatus"], "Enabled");
    assert_eq!(pack["appliesTo"], "User");
    assert!(
        pack["servicePlans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["servicePlanName"] == "EXCHANGE_S_ENTERPRISE")
    );
    assert!(pack["subscriptionIds"].is_array());
}

#[tokio::test]
async fn assigning_and_removing_moves_consumed_units_and_license_details_agree() {
    let session = Session::start().await;
    let sku = session.sku("EMS");
    let id = session.create_user("licensed", Some("US")).await;
    let assigned = session
        .post(
            &format!("/users/{id}/assignLicense"),
            json!({"addLicenses": [{"skuId": sku, "disabledPlans": []}], "removeLicenses": []}),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::OK);
    assert_eq!(assigned.body["assignedLicenses"][0]["skuId"], sku.as_str());
    assert_eq!(assigned.body["id"], id.as_str());
    assert_eq!(consumed(&session, "EMS").await, 1);
    // re-adding is harmless
    let again = session
        .post(
            &format!("/users/{id}/assignLicense"),
            json!({"addLicenses": [{"skuId": sku, "disabledPlans": []}], "removeLicenses": []}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(consumed(&session, "EMS").await, 1);

    let details = session.get(&format!("/users/{id}/licenseDetails")).await;
    assert_eq!(details.body["value"][0]["skuId"], sku.as_str());
    assert_eq!(details.body["value"][0]["skuPartNumber"], "EMS");
    assert!(details.body["value"][0]["servicePlans"][0]["servicePlanId"].is_string());
    let selected = session
        .get(&format!("/users/{id}?$select=assignedLicenses"))
        .await;
    assert_eq!(selected.body["assignedLicenses"][0]["skuId"], sku.as_str());

    let removed = session
        .post(
            &format!("/users/{id}/assignLicense"),
            json!({"addLicenses": [], "removeLicenses": [sku]}),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(consumed(&session, "EMS").await, 0);
    let absent = session
        .post(
            &format!("/users/{id}/assignLicense"),
            json!({"addLicenses": [], "removeLicenses": [sku]}),
        )
        .await;
    assert_eq!(absent.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        absent.error_message(),
        "User does not have a corresponding license."
    );
}

#[tokio::test]
async fn assign_license_errors_use_the_reference_messages() {
    let session = Session::start().await;
    let sku = session.sku("EXCHANGESTANDARD");
    let nowhere = session.create_user("nowhere", None).await;
    let body = json!({"addLicenses": [{"skuId": sku, "disabledPlans": []}], "removeLicenses": []});
    let no_location = session
        .post(&format!("/users/{nowhere}/assignLicense"), body.clone())
        .await;
    assert_eq!(no_location.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_location.error_code(), "Request_BadRequest");
    assert_eq!(
        no_location.error_message(),
        "License assignment cannot be done for user with invalid usage location."
    );

    let id = session.create_user("seatless", Some("US")).await;
    let missing_array = session
        .post(
            &format!("/users/{id}/assignLicense"),
            json!({"addLicenses": [{"skuId": sku}]}),
        )
        .await;
    assert_eq!(missing_array.status, StatusCode::BAD_REQUEST);

    let unknown = "11111111-1111-1111-1111-111111111111";
    let bogus = session
        .post(
            &format!("/users/{id}/assignLicense"),
            json!({"addLicenses": [{"skuId": unknown, "disabledPlans": []}], "removeLicenses": []}),
        )
        .await;
    assert_eq!(
        bogus.error_message(),
        format!("License {unknown} does not correspond to a valid company License.")
    );

    session
        .emulator
        .set_sku_units("EXCHANGESTANDARD", 0)
        .unwrap();
    let full = session
        .post(&format!("/users/{id}/assignLicense"), body)
        .await;
    assert_eq!(full.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        full.error_message(),
        format!("Subscription with SKU {sku} does not have any available licenses.")
    );

    let ghost = session
        .post(
            "/users/00000000-0000-0000-0000-000000000000/assignLicense",
            json!({"addLicenses": [], "removeLicenses": []}),
        )
        .await;
    assert_eq!(ghost.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_fresh_usage_location_does_not_count_until_replicated() {
    let mut seed = moss_emulator::Seed::for_tests();
    seed.replication_delay_ms = 200;
    let session = Session::with(
        moss_emulator::Emulator::start_for_tests_with(seed)
            .await
            .unwrap(),
    )
    .await;
    let id = session.create_user("later", None).await;
    session
        .patch(&format!("/users/{id}"), json!({"usageLocation": "US"}))
        .await;
    let body = json!({"addLicenses": [{"skuId": session.sku("EMS"), "disabledPlans": []}], "removeLicenses": []});
    let early = session
        .post(&format!("/users/{id}/assignLicense"), body.clone())
        .await;
    assert_eq!(
        early.error_message(),
        "License assignment cannot be done for user with invalid usage location."
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if session
            .post(&format!("/users/{id}/assignLicense"), body.clone())
            .await
            .status
            == StatusCode::OK
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
