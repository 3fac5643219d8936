//! Exchange Online admin API: mailboxes and distribution groups, and DLs in Graph.

mod client;

use client::Session;
use moss_emulator::{Emulator, Seed};
use reqwest::StatusCode;
use serde_json::json;

async fn licensed_user(session: &Session, alias: &str) -> String {
    let id = session.create_user(alias, Some("US")).await;
    let answer = session
        .post(&format!("/users/{id}/assignLicense"), json!({"addLicenses": [{"skuId": session.sku("ENTERPRISEPACK"), "disabledPlans": []}], "removeLicenses": []}))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    id
}

fn exchange_error_type(answer: &client::Answer) -> String {
    let detail = answer.body["error"]["details"][0]["message"]
        .as_str()
        .unwrap();
    detail.split('|').nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn a_mailbox_exists_only_after_an_exchange_licence_and_the_provisioning_delay() {
    let mut seed = Seed::for_tests();
    seed.mailbox_provisioning_delay_ms = 300;
    let session = Session::with(Emulator::start_for_tests_with(seed).await.unwrap()).await;
    let plain = session.create_user("nomail", Some("US")).await;
    let missing = session
        .exchange("Get-Mailbox", json!({"Identity": "nomail@contoso.com"}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "NotFound");
    assert_eq!(missing.error_message(), "Error executing cmdlet");
    assert_eq!(
        exchange_error_type(&missing),
        "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
    );
    assert!(
        missing.body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Ex")
    );
    assert!(
        missing.body["error"]["innererror"]["internalexception"]["message"]
            .as_str()
            .unwrap()
            .contains("couldn't be found")
    );
    assert_eq!(
        missing.header("x-exceptiontype"),
        Some("ManagementObjectNotFoundException")
    );
    let _ = plain;

    licensed_user(&session, "mailer").await;
    let early = session
        .exchange("Set-Mailbox", json!({"Identity": "mailer@contoso.com", "EmailAddresses": {"@odata.type": "#Exchange.GenericHashTable", "Add": ["smtp:m.alias@contoso.com"]}}))
        .await;
    assert_eq!(early.status, StatusCode::NOT_FOUND);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mailbox = loop {
        let answer = session
            .exchange("Get-Mailbox", json!({"Identity": "mailer@contoso.com"}))
            .await;
        if answer.status == StatusCode::OK {
            break answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mailbox never provisioned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert!(
        mailbox.body["@odata.context"]
            .as_str()
            .unwrap()
            .contains("$metadata#Collection(Exchange.GenericHashTable)")
    );
    assert_eq!(mailbox.body["@adminapi.warnings"], json!([]));
    assert_eq!(
        mailbox.body["value"][0]["PrimarySmtpAddress"],
        "mailer@contoso.com"
    );
    assert_eq!(
        mailbox.body["value"][0]["EmailAddresses@odata.type"],
        "#Collection(String)"
    );
    assert_eq!(mailbox.header("rate-limit-limit"), Some("30000"));
    assert!(mailbox.header("rate-limit-remaining").is_some());
    assert!(mailbox.header("rate-limit-reset").is_some());
}

#[tokio::test]
async fn set_mailbox_adds_and_removes_aliases_and_refuses_clashes() {
    let session = Session::start().await;
    let id = licensed_user(&session, "alias.owner").await;
    licensed_user(&session, "other").await;
    let add = session
        .exchange("Set-Mailbox", json!({"Identity": "alias.owner@contoso.com", "EmailAddresses": {"@odata.type": "#Exchange.GenericHashTable", "add": ["smtp:a.o@contoso.com"]}}))
        .await;
    assert_eq!(add.status, StatusCode::OK, "{:?}", add.body);
    assert_eq!(add.body["value"], json!([]));
    let graph = session
        .get(&format!("/users/{id}?$select=proxyAddresses,mail"))
        .await;
    assert_eq!(
        graph.body["proxyAddresses"],
        json!(["SMTP:alias.owner@contoso.com", "smtp:a.o@contoso.com"])
    );

    let again = session
        .exchange("Set-Mailbox", json!({"Identity": "alias.owner@contoso.com", "EmailAddresses": {"@odata.type": "#Exchange.GenericHashTable", "Add": ["smtp:a.o@contoso.com"]}}))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(
        again.body["@adminapi.warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("The command completed successfully but no settings of")
    );

    let clash = session
        .exchange("Set-Mailbox", json!({"Identity": "other@contoso.com", "EmailAddresses": {"@odata.type": "#Exchange.GenericHashTable", "Add": ["smtp:a.o@contoso.com"]}}))
        .await;
    assert_eq!(clash.status, StatusCode::BAD_REQUEST);
    assert_eq!(clash.error_code(), "BadRequest");
    let text = clash.body["error"]["innererror"]["internalexception"]["message"]
        .as_str()
        .unwrap();
    assert!(text.starts_with("The proxy address \"smtp:a.o@contoso.com\" is already being used by the proxy addresses or LegacyExchangeDN of"), "{text}");

    let remove = session
        .exchange("Set-Mailbox", json!({"Identity": "alias.owner@contoso.com", "EmailAddresses": {"@odata.type": "#Exchange.GenericHashTable", "Remove": ["smtp:a.o@contoso.com"]}}))
        .await;
    assert_eq!(remove.status, StatusCode::OK);
    let graph = session
        .get(&format!("/users/{id}?$select=proxyAddresses"))
        .await;
    assert_eq!(
        graph.body["proxyAddresses"],
        json!(["SMTP:alias.owner@contoso.com"])
    );
}

#[tokio::test]
async fn distribution_groups_are_managed_in_exchange_and_read_only_in_graph() {
    let session = Session::start().await;
    let member = licensed_user(&session, "member").await;
    let created = session
        .exchange("New-DistributionGroup", json!({"Name": "Sales", "Alias": "sales", "PrimarySmtpAddress": "sales@contoso.com", "Type": "Distribution", "RequireSenderAuthenticationEnabled": false}))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{:?}", created.body);
    let dl = &created.body["value"][0];
    assert_eq!(dl["PrimarySmtpAddress"], "sales@contoso.com");
    assert_eq!(dl["RequireSenderAuthenticationEnabled"], false);
    assert_eq!(dl["Guid@odata.type"], "#Guid");
    let graph_id = dl["ExternalDirectoryObjectId"].as_str().unwrap().to_owned();

    let duplicate = session
        .exchange("New-DistributionGroup", json!({"Name": "Sales"}))
        .await;
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        exchange_error_type(&duplicate),
        "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException"
    );
    let proxy_clash = session
        .exchange(
            "New-DistributionGroup",
            json!({"Name": "Sales2", "PrimarySmtpAddress": "member@contoso.com"}),
        )
        .await;
    assert_eq!(proxy_clash.status, StatusCode::BAD_REQUEST);
    assert!(exchange_error_type(&proxy_clash).ends_with("ProxyAddressExistsException"));

    let add = session
        .exchange("Add-DistributionGroupMember", json!({"Identity": "sales@contoso.com", "Member": "member@contoso.com", "BypassSecurityGroupManagerCheck": true}))
        .await;
    assert_eq!(add.status, StatusCode::OK, "{:?}", add.body);
    let twice = session
        .exchange("Add-DistributionGroupMember", json!({"Identity": "sales@contoso.com", "Member": "member@contoso.com", "BypassSecurityGroupManagerCheck": true}))
        .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        exchange_error_type(&twice),
        "Microsoft.Exchange.Management.Tasks.MemberAlreadyExistsException"
    );
    assert!(
        twice.body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .ends_with(
                "The recipient \"member@contoso.com\" is already a member of the group \"Sales\"."
            )
    );

    let members = session
        .exchange("Get-DistributionGroupMember", json!({"Identity": "Sales"}))
        .await;
    assert_eq!(
        members.body["value"][0]["ExternalDirectoryObjectId"],
        member.as_str()
    );

    // Graph sees the DL, read-only
    let group = session.get(&format!("/groups/{graph_id}")).await;
    assert_eq!(group.status, StatusCode::OK);
    assert_eq!(group.body["mailEnabled"], true);
    assert_eq!(group.body["securityEnabled"], false);
    assert_eq!(group.body["groupTypes"], json!([]));
    let graph_members = session.get(&format!("/groups/{graph_id}/members")).await;
    assert_eq!(graph_members.body["value"][0]["id"], member.as_str());
    let write = session
        .post(&format!("/groups/{graph_id}/members/$ref"), json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{member}")}))
        .await;
    assert_eq!(write.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        write.error_message(),
        "Cannot Update a mail-enabled security groups and or distribution list."
    );
    let create = session
        .post("/groups", json!({"displayName": "DL", "mailNickname": "dl", "mailEnabled": true, "securityEnabled": false, "groupTypes": []}))
        .await;
    assert_eq!(
        create.error_message(),
        "Cannot Create a mail-enabled security groups and or distribution list."
    );

    let no_bypass = session
        .exchange(
            "Remove-DistributionGroupMember",
            json!({"Identity": "Sales", "Member": "member@contoso.com"}),
        )
        .await;
    assert_eq!(no_bypass.status, StatusCode::BAD_REQUEST);
    let removed = session
        .exchange("Remove-DistributionGroupMember", json!({"Identity": "Sales", "Member": "member@contoso.com", "BypassSecurityGroupManagerCheck": true, "Confirm": false}))
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    let absent = session
        .exchange("Remove-DistributionGroupMember", json!({"Identity": "Sales", "Member": "member@contoso.com", "BypassSecurityGroupManagerCheck": true}))
        .await;
    assert_eq!(
        exchange_error_type(&absent),
        "Microsoft.Exchange.Management.Tasks.MemberNotFoundException"
    );

    let set = session
        .exchange("Set-DistributionGroup", json!({"Identity": "Sales", "RequireSenderAuthenticationEnabled": true, "BypassSecurityGroupManagerCheck": true}))
        .await;
    assert_eq!(set.status, StatusCode::OK);
    let read = session
        .exchange("Get-DistributionGroup", json!({"Identity": "sales"}))
        .await;
    assert_eq!(
        read.body["value"][0]["RequireSenderAuthenticationEnabled"],
        true
    );

    let gone = session
        .exchange(
            "Remove-DistributionGroup",
            json!({"Identity": "Sales", "BypassSecurityGroupManagerCheck": true, "Confirm": false}),
        )
        .await;
    assert_eq!(gone.status, StatusCode::OK);
    let again = session
        .exchange(
            "Remove-DistributionGroup",
            json!({"Identity": "Sales", "BypassSecurityGroupManagerCheck": true}),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(
        exchange_error_type(&again),
        "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
    );
    assert_eq!(
        session.get(&format!("/groups/{graph_id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn security_groups_take_member_refs_in_graph() {
    let session = Session::start().await;
    let user = session.create_user("grouped", None).await;
    let group = session
        .post("/groups", json!({"displayName": "Team", "mailNickname": "team", "mailEnabled": false, "securityEnabled": true, "groupTypes": []}))
        .await;
    assert_eq!(group.status, StatusCode::CREATED);
    let gid = group.body["id"].as_str().unwrap();
    let reference =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{user}")});
    assert_eq!(
        session
            .post(&format!("/groups/{gid}/members/$ref"), reference.clone())
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let twice = session
        .post(&format!("/groups/{gid}/members/$ref"), reference)
        .await;
    assert_eq!(
        twice.error_message(),
        "One or more added object references already exist for the following modified properties: 'members'."
    );
    let unknown = session
        .post(&format!("/groups/{gid}/members/$ref"), json!({"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/00000000-0000-0000-0000-000000000001"}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        session
            .delete(&format!("/groups/{gid}/members/{user}/$ref"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        session
            .delete(&format!("/groups/{gid}/members/{user}/$ref"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn exchange_needs_an_exchange_token() {
    let session = Session::start().await;
    let response = session
        .http
        .post(session.emulator.exchange_url())
        .bearer_auth(&session.token)
        .header("Content-Type", "application/json")
        .body(json!({"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": {}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn members_odata_bind_is_all_or_nothing() {
    let session = Session::start().await;
    let first = session.create_user("bind1", None).await;
    let second = session.create_user("bind2", None).await;
    let group = session
        .post("/groups", json!({"displayName": "Unified", "mailNickname": "unified", "mailEnabled": true, "securityEnabled": false,
                                "groupTypes": ["Unified"], "members@odata.bind": [format!("https://graph.microsoft.com/v1.0/directoryObjects/{first}")]}))
        .await;
    assert_eq!(group.status, StatusCode::CREATED);
    assert_eq!(group.body["mail"], "unified@contoso.onmicrosoft.com");
    let gid = group.body["id"].as_str().unwrap();
    let both = json!({"members@odata.bind": [
        format!("https://graph.microsoft.com/v1.0/directoryObjects/{second}"),
        format!("https://graph.microsoft.com/v1.0/directoryObjects/{first}")]});
    let refused = session.patch(&format!("/groups/{gid}"), both).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let members = session.get(&format!("/groups/{gid}/members")).await;
    assert_eq!(
        members.body["value"].as_array().unwrap().len(),
        1,
        "nothing was added"
    );
    let only_second = json!({"members@odata.bind": [format!("https://graph.microsoft.com/v1.0/directoryObjects/{second}")]});
    assert_eq!(
        session
            .patch(&format!("/groups/{gid}"), only_second)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        session.get(&format!("/groups/{gid}/members")).await.body["value"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
