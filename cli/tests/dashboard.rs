//! The operator dashboard, driven in a real headless browser (Debian's chromium through
//! chromedriver, over WebDriver with fantoccini) against `moss dashboard` (the real binary), a
//! worker, a producer and the emulator, on a topology of the test's own.
//!
//! Set MOSS_SCREENSHOT_DIR (e.g. to docs/img) to keep screenshots of the main pages.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process ended when the test ends, even when it fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `moss dashboard` for `system`, on `addr`, with extra environment.
fn dashboard(system: &System, addr: &str, env: &[(&str, &str)]) -> Command {
    let tenant = system.emulator.tenant();
    let base = system.emulator.base_url();
    let producer = system.producer.as_ref().unwrap().ingest_addr().to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_moss"));
    command
        .arg("dashboard")
        .env("MOSS_AMQP_URL", AMQP_URL)
        .env("MOSS_TOPOLOGY_PREFIX", system.topology.prefix().as_str())
        .env("MOSS_PARTITIONS", PARTITIONS.to_string())
        .env("MOSS_DASHBOARD_ADDR", addr)
        .env(
            "MOSS_WORKER_METRICS_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("MOSS_PRODUCER_METRICS_ADDR", producer)
        .env("MOSS_TENANT_ID", tenant.tenant_id.to_string())
        .env("MOSS_CLIENT_ID", tenant.client_id.to_string())
        .env("MOSS_CLIENT_SECRET", tenant.client_secret.clone())
        .env("MOSS_GRAPH_URL", &base)
        .env("MOSS_LOGIN_URL", &base)
        .env("MOSS_EXCHANGE_URL", &base)
        .env_remove("MOSS_DASHBOARD_TOKEN")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Waits until `url` answers at all (any status).
async fn answers(url: &str) {
    let http = reqwest::Client::new();
    eventually_async(Duration::from_secs(30), url, || async {
        http.get(url).send().await.is_ok()
    })
    .await;
}

async fn eventually_async<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// chromedriver on a free port, and a headless chromium session through it.
async fn browser() -> (Running, Client) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
    let driver = Running(driver);
    answers(&format!("http://127.0.0.1:{port}/status")).await;
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1366,900"]}),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a headless chromium session starts");
    (driver, client)
}

/// The text of the first element `css` matches, once one exists and `check` holds for it.
async fn text_when(client: &Client, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
            && check(&text)
        {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what} ({css}); the page says:\n{}",
            client.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn screenshot(client: &Client, name: &str) {
    if let Ok(dir) = std::env::var("MOSS_SCREENSHOT_DIR") {
        let png = client.screenshot().await.expect("a screenshot");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/{name}.png"), png).unwrap();
    }
}

fn user_added(subject: &str, upn: &str, sku: &str, name: &str) -> Value {
    event(
        subject,
        "moss.user.added.v1",
        10,
        json!({
            "account_name": name,
            "display_name": format!("User {name}"),
            "online_account": {"upn": upn, "usage_location": "DE", "licenses": [sku]},
            "initial_password": {"clear": "First-Passw0rd!"},
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_state_replays_a_dead_letter_once_and_approves_a_held_delete() {
    let system = System::spawn_with_delete_threshold(1).await;
    let tenant = system.emulator.tenant();
    let sku = tenant.skus[0].sku_part_number.clone();

    // Two users; removing both holds the second removal (threshold 1).
    let mut users = Vec::new();
    for name in ["ana", "bo"] {
        let subject = uuid::Uuid::new_v4().to_string();
        let upn = format!("{name}-{}@{}", &subject[..6], tenant.default_domain);
        system.post(&user_added(&subject, &upn, &sku, name)).await;
        users.push((subject, upn));
    }
    eventually(Duration::from_secs(20), "both users exist", || {
        system.worker().counters().applied >= 2
    })
    .await;
    for (subject, _) in &users {
        system
            .post(&event(subject, "moss.user.removed.v1", 11, json!({})))
            .await;
    }
    dead_count_becomes(&system.broker, &system.topology, 1, Duration::from_secs(20)).await;

    // A user on a domain the tenant does not know yet: dead-lettered for good.
    let later_domain = format!(
        "later-{}.example",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let cy_subject = uuid::Uuid::new_v4().to_string();
    let cy_upn = format!("cy-{}@{later_domain}", &cy_subject[..6]);
    let cy = user_added(&cy_subject, &cy_upn, &sku, "cy");
    let cy_id = cy["id"].as_str().unwrap().to_owned();
    system.post(&cy).await;
    dead_count_becomes(&system.broker, &system.topology, 2, Duration::from_secs(20)).await;
    let held_user = users
        .iter()
        .find(|(_, upn)| {
            system
                .emulator
                .user(upn)
                .is_some_and(|user| user["_emulator"]["deleted"].as_bool() != Some(true))
        })
        .cloned()
        .expect("one removal is held");

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let base = format!("http://{addr}");
    let _dashboard = Running(dashboard(&system, &addr, &[]).spawn().expect("moss runs"));
    answers(&format!("{base}/")).await;
    let (_driver, client) = browser().await;

    // The overview: the known state, live.
    client.goto(&format!("{base}/")).await.unwrap();
    text_when(&client, "#card-held .value", "one held delete", |text| {
        text.trim() == "1"
    })
    .await;
    text_when(&client, "#card-dead .value", "two dead letters", |text| {
        text.trim() == "2"
    })
    .await;
    let health = text_when(&client, "ul.health", "the health list", |text| {
        text.contains("held by the mass-delete guard")
    })
    .await;
    assert!(health.contains("circuit is unknown"), "{health}");
    let partitions = client
        .find_all(Locator::Css("#partitions tbody tr"))
        .await
        .unwrap();
    assert_eq!(partitions.len(), usize::from(PARTITIONS));
    for row in partitions {
        let text = row.text().await.unwrap();
        assert!(
            text.ends_with(" 1"),
            "every partition has the worker as consumer: {text}"
        );
    }
    let sources = text_when(&client, "#sources", "the sources", |_| true).await;
    assert!(sources.contains("worker /metrics"), "{sources}");
    screenshot(&client, "overview").await;

    // The failed event is in the dead-letter table, with its reason.
    client.goto(&format!("{base}/dead-letters")).await.unwrap();
    let row = text_when(
        &client,
        &format!("tr[data-id=\"{cy_id}\"]"),
        "the failed event's row",
        |_| true,
    )
    .await;
    assert!(row.contains("permanent") && row.contains(&cy_upn), "{row}");
    screenshot(&client, "dead-letters").await;

    // Shown, with the password redacted.
    client
        .goto(&format!("{base}/dead-letters/{cy_id}"))
        .await
        .unwrap();
    let shown = text_when(&client, "#event", "the event", |_| true).await;
    assert!(shown.contains("[redacted]"), "{shown}");
    let source = client.source().await.unwrap();
    assert!(
        !source.contains("First-Passw0rd!"),
        "no password on the page"
    );

    // After the fix, replayed from the page: a dry run first, then once.
    system.emulator.add_domain(&later_domain).unwrap();
    let applied_before = system.worker().counters().applied;
    client.goto(&format!("{base}/dead-letters")).await.unwrap();
    client
        .find(Locator::Css(&format!("input.pick[value=\"{cy_id}\"]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css(
            "button[data-action=replay][data-scope=selected]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let preview = text_when(&client, "#preview", "the dry run", |_| true).await;
    assert!(
        preview.contains("would replay 1") && preview.contains(&cy_id),
        "{preview}"
    );
    assert!(
        system.emulator.user(&cy_upn).is_none(),
        "a dry run changes nothing"
    );
    screenshot(&client, "replay-preview").await;
    let confirm = client.find(Locator::Css("#confirm")).await.unwrap();
    let key = confirm.attr("data-key").await.unwrap().expect("a key");
    confirm.click().await.unwrap();
    let result = text_when(&client, "#action-result", "the replay's result", |_| true).await;
    assert!(result.contains("replayed 1"), "{result}");
    eventually(Duration::from_secs(20), "the replayed user exists", || {
        system.emulator.user(&cy_upn).is_some()
    })
    .await;
    // The same confirmation again (a double click, a retried request): nothing more happens.
    let again: Value = reqwest::Client::new()
        .post(format!("{base}/api/confirm"))
        .header("x-moss-action", "1")
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["repeated"], true, "{again}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        system.worker().counters().applied,
        applied_before + 1,
        "the replay applied once"
    );

    // The held delete, approved from the page.
    client.goto(&format!("{base}/held-deletes")).await.unwrap();
    text_when(&client, "#held", "the held delete", |text| {
        text.contains(&held_user.1) || text.contains(&held_user.0)
    })
    .await;
    screenshot(&client, "held-deletes").await;
    client
        .find(Locator::Css("#held input.pick"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css("button[data-action=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&client, "#preview", "the approval's dry run", |text| {
        text.contains("would apply 1")
    })
    .await;
    client
        .find(Locator::Css("#confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let result = text_when(&client, "#action-result", "the approval's result", |_| true).await;
    assert!(result.contains("approved 1"), "{result}");
    eventually(Duration::from_secs(20), "the held user is removed", || {
        system
            .emulator
            .user(&held_user.1)
            .is_some_and(|user| user["_emulator"]["deleted"].as_bool() == Some(true))
    })
    .await;

    // The replayed user: mapping from the tenant, timeline from the outcomes.
    client
        .goto(&format!("{base}/users?q={cy_upn}"))
        .await
        .unwrap();
    let mapping = text_when(&client, "#mapping", "the mapping", |_| true).await;
    assert!(
        mapping.contains("active") && mapping.contains(&cy_subject),
        "{mapping}"
    );
    let timeline = text_when(&client, "#timeline", "the timeline", |text| {
        text.contains("applied") && text.contains("operator: replay")
    })
    .await;
    assert!(timeline.contains(&cy_id), "{timeline}");
    screenshot(&client, "users").await;

    client.close().await.unwrap();
    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_missing_or_forged_credentials_are_refused() {
    let system = System::spawn().await;
    let port = free_port();
    let addr = format!("0.0.0.0:{port}");

    // No token: it does not start.
    let output = dashboard(&system, &addr, &[]).output().expect("moss runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("MOSS_DASHBOARD_TOKEN") && stderr.contains("not loopback"),
        "{stderr}"
    );

    let token = "tok-3f0c2a7e1d2b";
    let _dashboard = Running(
        dashboard(&system, &addr, &[("MOSS_DASHBOARD_TOKEN", token)])
            .spawn()
            .expect("moss runs"),
    );
    let base = format!("http://127.0.0.1:{port}");
    answers(&format!("{base}/")).await;
    let http = reqwest::Client::new();
    let missing = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    assert!(missing.headers().contains_key("www-authenticate"));
    for forged in [
        http.get(format!("{base}/dead-letters"))
            .bearer_auth("tok-guess"),
        http.get(format!("{base}/api/overview"))
            .basic_auth("ana", Some("tok-3f0c2a7e1d2")),
        http.get(format!("{base}/")).basic_auth(token, None::<&str>),
    ] {
        assert_eq!(forged.send().await.unwrap().status().as_u16(), 401);
    }
    let page = http
        .get(format!("{base}/"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        !page.text().await.unwrap().contains(token),
        "the token is not on the page"
    );
    let basic = http
        .get(format!("{base}/dead-letters"))
        .basic_auth("ana", Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 200);

    // An action needs the page's header, and a key from a preview.
    let no_header = http
        .post(format!("{base}/api/confirm"))
        .bearer_auth(token)
        .json(&json!({"key": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_header.status().as_u16(), 403);
    let unknown = http
        .post(format!("{base}/api/confirm"))
        .bearer_auth(token)
        .header("x-moss-action", "1")
        .json(&json!({"key": uuid::Uuid::new_v4().to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("preview again"),
        "{body}"
    );
    let empty = http
        .post(format!("{base}/api/preview"))
        .bearer_auth(token)
        .header("x-moss-action", "1")
        .json(&json!({"action": "replay", "ids": ["no-such-id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status().as_u16(), 404);
    let body: Value = empty.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{body}"
    );

    system.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_show_in_the_users_timeline_and_a_filter_is_purged_after_confirmation() {
    let system = System::spawn().await;
    let sku = system.emulator.tenant().skus[0].sku_part_number.clone();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let base = format!("http://{addr}");
    let _dashboard = Running(dashboard(&system, &addr, &[]).spawn().expect("moss runs"));
    answers(&format!("{base}/")).await;
    // Let the dashboard bind its queue to the outcomes before anything fails.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let nowhere = format!(
        "nowhere-{}.example",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut failed = Vec::new();
    for name in ["dan", "eve"] {
        let subject = uuid::Uuid::new_v4().to_string();
        let upn = format!("{name}-{}@{nowhere}", &subject[..6]);
        let added = user_added(&subject, &upn, &sku, name);
        system.post(&added).await;
        failed.push((upn, added["id"].as_str().unwrap().to_owned()));
    }
    dead_count_becomes(&system.broker, &system.topology, 2, Duration::from_secs(20)).await;
    // A page shows the dead queue as read at most 2 s before; the one read just before the
    // letters arrived may still be that fresh when the browser asks (a race once chromium
    // started quickly). Wait until the dashboard has read both letters.
    let (dan_upn, dan_id) = &failed[0];
    let eve_upn = &failed[1].0;
    let http = reqwest::Client::new();
    eventually_async(
        Duration::from_secs(30),
        "the dashboard reads the letters",
        || async {
            match http.get(format!("{base}/dead-letters")).send().await {
                Ok(page) => page.text().await.is_ok_and(|text| {
                    text.contains(dan_upn.as_str()) && text.contains(eve_upn.as_str())
                }),
                Err(_) => false,
            }
        },
    )
    .await;
    let (_driver, client) = browser().await;

    // The user's timeline: dead-lettered, with the reason, and the letter waiting now.
    client
        .goto(&format!("{base}/users?q={dan_upn}"))
        .await
        .unwrap();
    let timeline = text_when(&client, "#timeline", "the timeline", |text| {
        text.contains("dead_lettered")
    })
    .await;
    assert!(
        timeline.contains(dan_id) && timeline.contains("permanent"),
        "{timeline}"
    );
    let mapping = text_when(&client, "#mapping", "the mapping", |_| true).await;
    assert!(mapping.contains("no such user"), "{mapping}");
    text_when(&client, "#user-letters", "the user's dead letter", |text| {
        text.contains(dan_id.as_str())
    })
    .await;

    // Purge everything of class permanent: a dry run, the button, then the browser's question.
    client
        .goto(&format!("{base}/dead-letters?class=permanent"))
        .await
        .unwrap();
    text_when(&client, "#dead-letters", "the filtered table", |text| {
        failed.iter().all(|(_, id)| text.contains(id.as_str()))
    })
    .await;
    client
        .find(Locator::Css("button[data-action=purge][data-scope=filter]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&client, "#preview", "the purge's dry run", |text| {
        text.contains("would delete 2 dead letters")
    })
    .await;
    client
        .find(Locator::Css("#confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let question = client.get_alert_text().await.expect("the browser asks");
    assert!(question.contains("Purge 2"), "{question}");
    client.accept_alert().await.unwrap();
    let result = text_when(&client, "#action-result", "the purge's result", |_| true).await;
    assert!(result.contains("purged 2 dead letters"), "{result}");
    text_when(&client, "#letters", "an empty table", |text| {
        text.contains("no dead letters")
    })
    .await;
    eventually_async(Duration::from_secs(15), "an empty dead queue", || async {
        dead_count(&system.broker, &system.topology).await == 0
    })
    .await;

    client.close().await.unwrap();
    system.finish().await;
}
