//! Users: create, read, list, update, delete, deleted items, with the reference's exact errors.

mod client;

use client::Session;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn adele(upn: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.user", "accountEnabled": true, "displayName": "Adele Vance",
           "mailNickname": "AdeleV", "userPrincipalName": upn, "usageLocation": "US",
           "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "xWwvJ]6NMw+bWH-d"}})
}

#[tokio::test]
async fn create_answers_201_with_the_default_property_set_and_graph_headers() {
    let session = Session::start().await;
    let response = session
        .graph_with(
            Method::POST,
            "/users",
            Some(adele("AdeleV@contoso.com")),
            &[("client-request-id", "e70c1c8e-0000-4000-8000-000000000001")],
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert!(
        response.body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/v1.0/$metadata#users/$entity")
    );
    assert!(
        response.body["id"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert_eq!(response.body["businessPhones"], json!([]));
    for property in [
        "displayName",
        "givenName",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
    ] {
        assert!(response.body.get(property).is_some(), "{property} missing");
    }
    assert!(response.body.get("accountEnabled").is_none());
    assert!(response.body.get("usageLocation").is_none());
    assert_eq!(
        response.header("client-request-id"),
        Some("e70c1c8e-0000-4000-8000-000000000001")
    );
    assert!(
        response
            .header("request-id")
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert_eq!(response.header("odata-version"), Some("4.0"));
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("application/json;odata.metadata=minimal")
    );
    assert!(
        response
            .header("location")
            .unwrap()
            .contains("/directoryObjects/")
    );
    assert_eq!(response.header("x-ms-resource-unit"), Some("1"));
    assert!(response.header("x-ms-ags-diagnostic").is_some());
}

#[tokio::test]
async fn client_request_id_defaults_to_the_request_id() {
    let session = Session::start().await;
    let response = session.get("/users").await;
    assert_eq!(
        response.header("client-request-id"),
        response.header("request-id")
    );
}

#[tokio::test]
async fn create_errors_use_the_reference_messages() {
    let session = Session::start().await;
    assert_eq!(
        session
            .post("/users", adele("AdeleV@contoso.com"))
            .await
            .status,
        StatusCode::CREATED
    );

    let conflict = session.post("/users", adele("adelev@CONTOSO.com")).await;
    assert_eq!(conflict.status, StatusCode::BAD_REQUEST);
    assert_eq!(conflict.error_code(), "Request_BadRequest");
    assert_eq!(
        conflict.error_message(),
        "Another object with the same value for property userPrincipalName already exists."
    );
    assert_eq!(
        conflict.body["error"]["details"][0]["code"],
        "ObjectConflict"
    );
    assert_eq!(
        conflict.body["error"]["details"][0]["target"],
        "userPrincipalName"
    );
    let inner = &conflict.body["error"]["innerError"];
    assert_eq!(inner["request-id"].as_str(), conflict.header("request-id"));
    assert_eq!(
        inner["client-request-id"].as_str(),
        conflict.header("client-request-id")
    );
    let date = inner["date"].as_str().unwrap();
    assert_eq!(date.len(), 19, "no timezone or fraction: {date}");
    assert!(chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%S").is_ok());

    let unverified = session.post("/users", adele("x@fabrikam.com")).await;
    assert_eq!(
        unverified.error_message(),
        "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization."
    );

    let bad_characters = session.post("/users", adele("adèle@contoso.com")).await;
    assert_eq!(
        bad_characters.error_message(),
        "Property userPrincipalName is invalid."
    );

    let mut bad_alias = adele("alias1@contoso.com");
    bad_alias["mailNickname"] = json!("has space");
    assert_eq!(
        session.post("/users", bad_alias).await.error_message(),
        "Invalid value specified for property 'mailNickname' of resource 'User'."
    );

    for weak in ["short1!", "alllowercaseletters", "Alias2Alias2!alias2"] {
        let mut body = adele("alias2@contoso.com");
        body["passwordProfile"]["password"] = json!(weak);
        let answer = session.post("/users", body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{weak}");
        assert_eq!(
            answer.error_message(),
            "The specified password does not comply with password complexity requirements. Please provide a different password."
        );
    }

    let mut missing = adele("alias3@contoso.com");
    missing.as_object_mut().unwrap().remove("displayName");
    let answer = session.post("/users", missing).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.error_message().contains("displayName"));

    let mut with_mail = adele("alias4@contoso.com");
    with_mail["mail"] = json!("shared@contoso.com");
    assert_eq!(
        session.post("/users", with_mail).await.status,
        StatusCode::CREATED
    );
    let mut clash = adele("alias5@contoso.com");
    clash["mail"] = json!("SHARED@contoso.com");
    let answer = session.post("/users", clash).await;
    assert_eq!(
        answer.error_message(),
        "Another object with the same value for property proxyAddresses already exists."
    );
    assert_eq!(
        answer.body["error"]["details"][0]["target"],
        "proxyAddresses"
    );

    let not_json = session
        .http
        .post(format!("{}/v1.0/users", session.emulator.base_url()))
        .bearer_auth(&session.token)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_user_is_found_by_id_or_by_an_encoded_upn_in_any_case() {
    let session = Session::start().await;
    let id = session.post("/users", adele("a.b@contoso.com")).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for key in [
        id.clone(),
        "a.b%40contoso.com".into(),
        "A.B%40CONTOSO.COM".into(),
        "a.b@contoso.com".into(),
    ] {
        let answer = session.get(&format!("/users/{key}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{key}");
        assert_eq!(answer.body["id"], id.as_str());
    }
    let missing = session.get("/users/nobody%40contoso.com").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "Request_ResourceNotFound");
    assert_eq!(
        missing.error_message(),
        "Resource 'nobody@contoso.com' does not exist or one of its queried reference-property objects are not present."
    );
    let dollar = session.post("/users", adele("$odd@contoso.com")).await;
    assert_eq!(dollar.status, StatusCode::CREATED);
    assert_eq!(
        session.get("/users('$odd@contoso.com')").await.status,
        StatusCode::OK
    );
    assert_eq!(
        session.get("/users/$odd@contoso.com").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn select_is_needed_for_account_enabled_usage_location_and_licences() {
    let session = Session::start().await;
    let id = session.create_user("sel", Some("NL")).await;
    let plain = session.get(&format!("/users/{id}")).await;
    for hidden in [
        "accountEnabled",
        "usageLocation",
        "assignedLicenses",
        "proxyAddresses",
        "createdDateTime",
    ] {
        assert!(
            plain.body.get(hidden).is_none(),
            "{hidden} shown without $select"
        );
    }
    let selected = session
        .get(&format!(
            "/users/{id}?$select=id,accountEnabled,usageLocation,assignedLicenses"
        ))
        .await;
    assert_eq!(selected.body["accountEnabled"], true);
    assert_eq!(selected.body["usageLocation"], "NL");
    assert_eq!(selected.body["assignedLicenses"], json!([]));
    assert!(selected.body.get("displayName").is_none());
    assert!(
        selected.body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#users(id,accountEnabled,usageLocation,assignedLicenses)/$entity")
    );
    let unknown = session.get(&format!("/users/{id}?$select=nonsense")).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn lists_filter_and_page_with_absolute_next_links() {
    let session = Session::start().await;
    for i in 0..7 {
        session.create_user(&format!("pager{i}"), Some("US")).await;
    }
    session.create_user("o'brien", Some("US")).await;
    let page = session
        .get("/users?$top=3&$select=id,userPrincipalName")
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["value"].as_array().unwrap().len(), 3);
    assert!(
        page.body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#users(id,userPrincipalName)")
    );
    let mut next = page.body["@odata.nextLink"].as_str().unwrap().to_owned();
    assert!(next.starts_with(&session.emulator.base_url()));
    assert!(next.contains("$top=3") && next.contains("$skiptoken="));
    let mut seen = 3;
    loop {
        let page = session.get(&next).await;
        assert_eq!(page.status, StatusCode::OK, "{next}");
        seen += page.body["value"].as_array().unwrap().len();
        match page.body["@odata.nextLink"].as_str() {
            Some(link) => next = link.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, 8);

    let filtered = session
        .get("/users?$filter=userPrincipalName%20eq%20'O''Brien%40contoso.com'")
        .await;
    assert_eq!(filtered.body["value"].as_array().unwrap().len(), 1);
    let starts = session.get("/users?$filter=startswith(userPrincipalName%2C'pager')%20and%20accountEnabled%20eq%20true").await;
    assert_eq!(starts.body["value"].as_array().unwrap().len(), 7);
    let ids: Vec<String> = starts.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|u| format!("'{}'", u["id"].as_str().unwrap()))
        .collect();
    let by_id = session
        .get(&format!("/users?$filter=id%20in%20({})", ids.join(",")))
        .await;
    assert_eq!(by_id.body["value"].as_array().unwrap().len(), 2);
    let either = session.get("/users?$filter=displayName%20eq%20'User%20pager1'%20or%20displayName%20eq%20'User%20pager2'").await;
    assert_eq!(either.body["value"].as_array().unwrap().len(), 2);

    let advanced = session
        .get("/users?$filter=endswith(userPrincipalName,'@contoso.com')")
        .await;
    assert_eq!(advanced.status, StatusCode::BAD_REQUEST);
    assert_eq!(advanced.error_code(), "Request_UnsupportedQuery");
    let with_header = session
        .graph_with(
            Method::GET,
            "/users?$filter=endswith(userPrincipalName,'@contoso.com')&$count=true",
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(with_header.status, StatusCode::OK);
    assert_eq!(with_header.body["@odata.count"], 8);
    let ne = session.get("/users?$filter=displayName%20ne%20'x'").await;
    assert_eq!(ne.error_code(), "Request_UnsupportedQuery");

    let too_big = session.get("/users?$top=1000").await;
    assert_eq!(too_big.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        too_big.error_message(),
        "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
    );
    assert_eq!(
        session.get("/users?$skip=2").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn default_page_is_100() {
    let session = Session::start().await;
    for i in 0..101 {
        session.create_user(&format!("bulk{i}"), None).await;
    }
    let page = session.get("/users").await;
    assert_eq!(page.body["value"].as_array().unwrap().len(), 100);
    assert!(page.body["@odata.nextLink"].is_string());
}

#[tokio::test]
async fn patch_merges_answers_204_and_guards_read_only_and_passwords() {
    let session = Session::start().await;
    let id = session.create_user("patchy", None).await;
    let answer = session
        .patch(&format!("/users/{id}"), json!({"@odata.type": "#microsoft.graph.user", "accountEnabled": false, "jobTitle": "Engineer", "usageLocation": "de"}))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(answer.body, Value::Null);
    let read = session
        .get(&format!(
            "/users/{id}?$select=accountEnabled,jobTitle,usageLocation,displayName"
        ))
        .await;
    assert_eq!(read.body["accountEnabled"], false);
    assert_eq!(read.body["jobTitle"], "Engineer");
    assert_eq!(read.body["usageLocation"], "DE");
    assert_eq!(read.body["displayName"], "User patchy");

    let read_only = session
        .patch(
            &format!("/users/{id}"),
            json!({"proxyAddresses": ["smtp:x@contoso.com"]}),
        )
        .await;
    assert_eq!(read_only.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        read_only.error_message(),
        "Property 'proxyAddresses' is read-only and cannot be set."
    );

    let weak = session
        .patch(
            &format!("/users/{id}"),
            json!({"passwordProfile": {"password": "weak"}}),
        )
        .await;
    assert_eq!(
        weak.error_message(),
        "The specified password does not comply with password complexity requirements. Please provide a different password."
    );
    let reset = session
        .patch(&format!("/users/{id}"), json!({"passwordProfile": {"password": "N3w-Passw0rd!x", "forceChangePasswordNextSignIn": true}}))
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT);
    assert_eq!(
        session.emulator.password_matches(&id, "N3w-Passw0rd!x"),
        Some(true)
    );
    assert_eq!(
        session.emulator.password_matches(&id, "xWwvJ]6NMw+bWH-d"),
        Some(false)
    );

    let clear_name = session
        .patch(&format!("/users/{id}"), json!({"displayName": null}))
        .await;
    assert_eq!(clear_name.status, StatusCode::BAD_REQUEST);

    let missing = session
        .patch(
            "/users/00000000-0000-0000-0000-000000000000",
            json!({"jobTitle": "x"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let mail = session
        .patch(
            &format!("/users/{id}"),
            json!({"mail": "patchy.mail@contoso.com"}),
        )
        .await;
    assert_eq!(mail.status, StatusCode::NO_CONTENT);
    let read = session
        .get(&format!("/users/{id}?$select=mail,proxyAddresses"))
        .await;
    assert_eq!(
        read.body["proxyAddresses"],
        json!(["SMTP:patchy.mail@contoso.com"])
    );
}

#[tokio::test]
async fn delete_moves_to_deleted_items_which_restore_and_purge() {
    let session = Session::start().await;
    let id = session.create_user("leaver", Some("US")).await;
    assert_eq!(
        session.delete(&format!("/users/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        session.delete(&format!("/users/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        session.get(&format!("/users/{id}")).await.status,
        StatusCode::NOT_FOUND
    );

    let deleted = session
        .get("/directory/deletedItems/microsoft.graph.user")
        .await;
    let entry = deleted.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(entry["deletedDateTime"].is_string());
    assert_eq!(
        session
            .get(&format!("/directory/deletedItems/{id}"))
            .await
            .body["@odata.type"],
        "#microsoft.graph.user"
    );
    assert_eq!(
        session.get("/directory/deletedItems").await.status,
        StatusCode::BAD_REQUEST
    );

    // the UPN is free while the user is soft-deleted
    let other = session.create_user("leaver", None).await;
    let conflict = session
        .post(&format!("/directory/deletedItems/{id}/restore"), json!({}))
        .await;
    assert_eq!(conflict.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        conflict.error_message(),
        "A conflicting object with one or more of the specified property values is present in the directory."
    );
    let restored = session
        .post(&format!("/directory/deletedItems/{id}/restore"), json!({"newUserPrincipalName": "leaver2@contoso.com", "autoReconcileProxyConflict": true}))
        .await;
    assert_eq!(restored.status, StatusCode::OK);
    assert_eq!(restored.body["@odata.type"], "#microsoft.graph.user");
    assert_eq!(restored.body["userPrincipalName"], "leaver2@contoso.com");
    assert_eq!(
        session.get("/users/leaver2%40contoso.com").await.status,
        StatusCode::OK
    );
    assert_eq!(
        session.get("/users/leaver%40contoso.com").await.body["id"],
        other.as_str()
    );

    assert_eq!(
        session.delete(&format!("/users/{other}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        session
            .delete(&format!("/directory/deletedItems/{other}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        session
            .post(
                &format!("/directory/deletedItems/{other}/restore"),
                json!({})
            )
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(session.emulator.user(&other).is_none());
}

#[tokio::test]
async fn deleted_items_are_purged_after_the_configured_retention() {
    let mut seed = moss_emulator::Seed::for_tests();
    seed.deleted_item_retention_days = 0;
    let session = Session::with(
        moss_emulator::Emulator::start_for_tests_with(seed)
            .await
            .unwrap(),
    )
    .await;
    let id = session.create_user("gone", None).await;
    session.delete(&format!("/users/{id}")).await;
    let purge = session
        .http
        .post(format!(
            "{}/_emulator/deleted-items/purge-expired",
            session.emulator.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        session
            .get(&format!("/directory/deletedItems/{id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn revoke_sign_in_sessions_answers_true_and_moves_the_valid_from_time() {
    let session = Session::start().await;
    let id = session.create_user("revoked", None).await;
    let answer = session
        .post(&format!("/users/{id}/revokeSignInSessions"), json!({}))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["value"], true);
    assert!(
        answer.body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#Edm.Boolean")
    );
    let read = session
        .get(&format!(
            "/users/{id}?$select=signInSessionsValidFromDateTime"
        ))
        .await;
    assert!(read.body["signInSessionsValidFromDateTime"].is_string());
}

#[tokio::test]
async fn replication_delay_hides_new_users_for_a_while() {
    let mut seed = moss_emulator::Seed::for_tests();
    seed.replication_delay_ms = 300;
    let session = Session::with(
        moss_emulator::Emulator::start_for_tests_with(seed)
            .await
            .unwrap(),
    )
    .await;
    let id = session.create_user("lagging", None).await;
    assert_eq!(
        session.get(&format!("/users/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if session.get(&format!("/users/{id}")).await.status == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "user never became visible"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
