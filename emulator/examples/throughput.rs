//! Measures how many requests per second the emulator serves, so we know it is never the
//! bottleneck of the worker pipeline (whose real budget is about 20 directory writes per second).
//!
//! `cargo run --release -p moss-emulator --example throughput -- [seconds] [concurrency]`
//!
//! Client and server share this process (and the machine's cores), so the figure is a floor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moss_emulator::{Emulator, Seed};
use serde_json::json;

#[derive(Clone, Copy, Debug)]
enum Workload {
    Read,
    Create,
    Update,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::Read => "GET /users/{id}",
            Workload::Create => "POST /users",
            Workload::Update => "PATCH /users/{id}",
        }
    }
}

async fn token(http: &reqwest::Client, emulator: &Emulator) -> String {
    let tenant = emulator.tenant();
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
        tenant.client_id,
        tenant.client_secret.replace('~', "%7E")
    );
    let answer: serde_json::Value = http
        .post(emulator.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    answer["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn measure(
    emulator: &Emulator,
    workload: Workload,
    seconds: u64,
    concurrency: usize,
    user_id: &str,
) -> (f64, u64) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let bearer = token(&http, emulator).await;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (http, bearer, done, failed) =
            (http.clone(), bearer.clone(), done.clone(), failed.clone());
        let graph = emulator.graph_url();
        let user_id = user_id.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let request = match workload {
                    Workload::Read => http.get(format!("{graph}/users/{user_id}")),
                    Workload::Create => http.post(format!("{graph}/users")).header("Content-Type", "application/json").body(
                        json!({"accountEnabled": true, "displayName": "Bench", "mailNickname": format!("b{worker}x{n}"),
                               "userPrincipalName": format!("b{worker}x{n}@contoso.com"),
                               "passwordProfile": {"password": "xWwvJ]6NMw+bWH-d"}})
                        .to_string(),
                    ),
                    Workload::Update => http
                        .patch(format!("{graph}/users/{user_id}"))
                        .header("Content-Type", "application/json")
                        .body(json!({"jobTitle": format!("t{n}")}).to_string()),
                };
                match request.bearer_auth(&bearer).send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(32);
    // Throttling off: we measure the emulator, not Microsoft's budget.
    let emulator = Emulator::start_for_tests_with(Seed::for_tests())
        .await
        .expect("emulator starts");
    let http = reqwest::Client::new();
    let bearer = token(&http, &emulator).await;
    let created: serde_json::Value = http
        .post(format!("{}/users", emulator.graph_url()))
        .bearer_auth(&bearer)
        .header("Content-Type", "application/json")
        .body(
            json!({"accountEnabled": true, "displayName": "Target", "mailNickname": "target",
                   "userPrincipalName": "target@contoso.com", "passwordProfile": {"password": "xWwvJ]6NMw+bWH-d"}})
            .to_string(),
        )
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let user_id = created["id"].as_str().expect("id").to_owned();
    println!("emulator throughput, {seconds} s per workload, concurrency {concurrency}");
    for workload in [Workload::Read, Workload::Update, Workload::Create] {
        let (rate, failed) = measure(&emulator, workload, seconds, concurrency, &user_id).await;
        println!(
            "{}: {rate:.0} requests/s ({failed} failed)",
            workload.label()
        );
    }
    emulator.shutdown().await;
}
