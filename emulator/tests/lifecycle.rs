//! A realistic lifecycle against a seeded emulator: create, licence, block, password reset,
//! delete, restore, as the reference says Microsoft answers.

mod client;

use client::Session;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_joiner_becomes_a_leaver_and_comes_back() {
    let session = Session::start().await;
    let sku = session.sku("ENTERPRISEPACK");

    // joiner
    let created = session
        .post("/users", json!({"accountEnabled": true, "displayName": "Adele Vance", "mailNickname": "AdeleV",
                               "userPrincipalName": "AdeleV@contoso.com", "usageLocation": "US", "employeeId": "E-1001",
                               "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "xWwvJ]6NMw+bWH-d"}}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let licence = session
        .post(
            "/users/adelev%40contoso.com/assignLicense",
            json!({"addLicenses": [{"skuId": sku, "disabledPlans": []}], "removeLicenses": []}),
        )
        .await;
    assert_eq!(licence.status, StatusCode::OK);
    let mailbox = session
        .exchange("Get-Mailbox", json!({"Identity": "AdeleV@contoso.com"}))
        .await;
    assert_eq!(mailbox.status, StatusCode::OK);
    let alias = session
        .exchange("Set-Mailbox", json!({"Identity": "AdeleV@contoso.com", "EmailAddresses": {"@odata.type": "#Exchange.GenericHashTable", "Add": ["smtp:adele.vance@contoso.com"]}}))
        .await;
    assert_eq!(alias.status, StatusCode::OK);

    // password change
    let reset = session
        .patch(&format!("/users/{id}"), json!({"passwordProfile": {"password": "N3w-Passw0rd!x", "forceChangePasswordNextSignIn": false}}))
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT, "{:?}", reset.body);
    assert_eq!(
        session
            .emulator
            .password_matches("adelev@contoso.com", "N3w-Passw0rd!x"),
        Some(true)
    );

    // deactivation: block first, then revoke, then free the licence
    assert_eq!(
        session
            .patch(&format!("/users/{id}"), json!({"accountEnabled": false}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        session
            .post(&format!("/users/{id}/revokeSignInSessions"), json!({}))
            .await
            .body["value"],
        true
    );
    let freed = session
        .post(
            &format!("/users/{id}/assignLicense"),
            json!({"addLicenses": [], "removeLicenses": [sku]}),
        )
        .await;
    assert_eq!(freed.status, StatusCode::OK);
    let user = session.get(&format!("/users/{id}?$select=accountEnabled,assignedLicenses,proxyAddresses,signInSessionsValidFromDateTime,employeeId")).await;
    assert_eq!(user.body["accountEnabled"], false);
    assert_eq!(user.body["assignedLicenses"], json!([]));
    assert_eq!(user.body["employeeId"], "E-1001");
    assert!(user.body["signInSessionsValidFromDateTime"].is_string());
    assert!(
        user.body["proxyAddresses"]
            .as_array()
            .unwrap()
            .contains(&json!("smtp:adele.vance@contoso.com"))
    );

    // removal and return
    assert_eq!(
        session.delete("/users/AdeleV%40contoso.com").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        session.get(&format!("/users/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let restored = session
        .post(&format!("/directory/deletedItems/{id}/restore"), json!({}))
        .await;
    assert_eq!(restored.status, StatusCode::OK);
    assert_eq!(restored.body["userPrincipalName"], "AdeleV@contoso.com");
    let back = session
        .get("/users/adelev%40contoso.com?$select=id,accountEnabled")
        .await;
    assert_eq!(back.body["id"], id.as_str());
    assert_eq!(back.body["accountEnabled"], false);

    // the write log tells the story, each with a request-id
    let writes = session.emulator.writes();
    assert!(writes.len() >= 9, "{}", writes.len());
    assert!(
        writes
            .iter()
            .all(|w| !w.request_id.is_empty() && w.status.is_some())
    );
}
