//! JSON batching.

mod client;

use client::Session;
use moss_emulator::{FaultAction, FaultPlan};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn item<'a>(answer: &'a client::Answer, id: &str) -> &'a Value {
    answer.body["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap()
}

#[tokio::test]
async fn a_batch_answers_each_item_with_status_headers_and_body() {
    let session = Session::start().await;
    let id = session.create_user("batched", Some("US")).await;
    let answer = session
        .post("/$batch", json!({"requests": [
            {"id": "1", "method": "PATCH", "url": format!("/users/{id}"), "headers": {"Content-Type": "application/json"}, "body": {"accountEnabled": false}},
            {"id": "2", "dependsOn": ["1"], "method": "POST", "url": format!("/users/{id}/revokeSignInSessions"), "headers": {"Content-Type": "application/json"}, "body": {}},
            {"id": "3", "method": "GET", "url": "users?$select=id&$filter=userPrincipalName eq 'batched@contoso.com'"},
            {"id": "4", "method": "POST", "url": "/users", "headers": {"Content-Type": "application/json"},
             "body": {"accountEnabled": true, "displayName": "B2", "mailNickname": "b2", "userPrincipalName": "b2@contoso.com", "passwordProfile": {"password": "xWwvJ]6NMw+bWH-d"}}},
            {"id": "5", "method": "GET", "url": "/users/nobody@contoso.com"}
        ]}))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(item(&answer, "1")["status"], 204);
    assert!(item(&answer, "1").get("body").is_none());
    assert_eq!(item(&answer, "2")["status"], 200);
    assert_eq!(item(&answer, "2")["body"]["value"], true);
    assert_eq!(item(&answer, "3")["status"], 200);
    assert_eq!(item(&answer, "3")["body"]["value"][0]["id"], id.as_str());
    assert_eq!(item(&answer, "4")["status"], 201);
    assert!(item(&answer, "4")["headers"]["Location"].is_string());
    assert_eq!(item(&answer, "5")["status"], 404);
    assert_eq!(
        item(&answer, "5")["body"]["error"]["code"],
        "Request_ResourceNotFound"
    );
    let read = session
        .get(&format!("/users/{id}?$select=accountEnabled"))
        .await;
    assert_eq!(read.body["accountEnabled"], false);
    // every item is in the request log, tied to the batch
    let items: Vec<_> = session
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.batch_request_id.is_some())
        .collect();
    assert_eq!(items.len(), 5);
}

#[tokio::test]
async fn dependents_of_a_failed_item_get_424() {
    let session = Session::start().await;
    let answer = session
        .post("/$batch", json!({"requests": [
            {"id": "a", "method": "PATCH", "url": "/users/ghost@contoso.com", "headers": {"Content-Type": "application/json"}, "body": {"accountEnabled": false}},
            {"id": "b", "dependsOn": ["a"], "method": "POST", "url": "/users/ghost@contoso.com/revokeSignInSessions", "headers": {"Content-Type": "application/json"}, "body": {}}
        ]}))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(item(&answer, "a")["status"], 404);
    assert_eq!(item(&answer, "b")["status"], 424);
}

#[tokio::test]
async fn malformed_batches_are_refused_whole() {
    let session = Session::start().await;
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    let too_many = session.post("/$batch", json!({"requests": many})).await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        too_many.error_message(),
        "Number of requests inside batch exceeds the limit."
    );

    let duplicate = session
        .post("/$batch", json!({"requests": [{"id": "1", "method": "GET", "url": "/users"}, {"id": "1", "method": "GET", "url": "/users"}]}))
        .await;
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);

    let no_content_type = session
        .post("/$batch", json!({"requests": [{"id": "1", "method": "PATCH", "url": "/users/x@contoso.com", "body": {"jobTitle": "x"}}]}))
        .await;
    assert_eq!(no_content_type.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        no_content_type.error_message(),
        "Write request id : 1 does not contain Content-Type header or body."
    );
    let twenty: Vec<Value> = (0..20)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/subscribedSkus"}))
        .collect();
    assert_eq!(
        session
            .post("/$batch", json!({"requests": twenty}))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn throttling_is_judged_per_item() {
    let session = Session::start().await;
    let id = session.create_user("partly", None).await;
    session.emulator.install_fault(FaultPlan {
        method: Some("PATCH".into()),
        path: "/v1.0/users/*".into(),
        cmdlet: None,
        action: FaultAction::Status {
            status: 429,
            retry_after: Some("3".into()),
            body: None,
        },
        count: Some(1),
        probability: None,
    });
    let answer = session
        .post("/$batch", json!({"requests": [
            {"id": "1", "method": "PATCH", "url": format!("/users/{id}"), "headers": {"Content-Type": "application/json"}, "body": {"jobTitle": "a"}},
            {"id": "2", "method": "GET", "url": format!("/users/{id}")}
        ]}))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(item(&answer, "1")["status"], 429);
    assert_eq!(item(&answer, "1")["headers"]["Retry-After"], "3");
    assert_eq!(
        item(&answer, "1")["body"]["error"]["code"],
        "TooManyRequests"
    );
    assert_eq!(item(&answer, "2")["status"], 200);
}
