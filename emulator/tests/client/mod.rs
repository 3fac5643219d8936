//! A tiny raw HTTP client for the emulator tests: it speaks the wire, not our online crate.

#![allow(dead_code, unreachable_pub)]

use moss_emulator::Emulator;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An answer: status, headers, parsed body (Null when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

pub struct Session {
    pub emulator: Emulator,
    pub http: reqwest::Client,
    pub token: String,
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn percent(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn token_request(
    http: &reqwest::Client,
    emulator: &Emulator,
    tenant: &str,
    body: String,
) -> Answer {
    let response = http
        .post(format!(
            "{}/{tenant}/oauth2/v2.0/token",
            emulator.base_url()
        ))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token request");
    answer(response).await
}

pub async fn token_for(http: &reqwest::Client, emulator: &Emulator, scope: &str) -> String {
    let tenant = emulator.tenant();
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &tenant.client_id.to_string()),
        ("client_secret", &tenant.client_secret),
        ("scope", scope),
    ]);
    let answer = token_request(http, emulator, &tenant.tenant_id.to_string(), body).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

impl Session {
    pub async fn start() -> Session {
        Session::with(Emulator::start_for_tests().await.expect("emulator starts")).await
    }

    pub async fn with(emulator: Emulator) -> Session {
        let http = reqwest::Client::new();
        let token = token_for(&http, &emulator, "https://graph.microsoft.com/.default").await;
        Session {
            emulator,
            http,
            token,
        }
    }

    /// A Graph call; `path` is relative to /v1.0 and already encoded.
    pub async fn graph(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.graph_with(method, path, body, &[]).await
    }

    pub async fn graph_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/v1.0{path}", self.emulator.base_url())
        };
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        answer(request.send().await.expect("graph request")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.graph(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.graph(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.graph(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.graph(Method::DELETE, path, None).await
    }

    pub fn domain(&self) -> String {
        "contoso.com".to_owned()
    }

    pub fn sku(&self, part: &str) -> String {
        self.emulator
            .tenant()
            .skus
            .iter()
            .find(|s| s.sku_part_number == part)
            .map(|s| s.sku_id.to_string())
            .expect("sku")
    }

    /// Creates a user and returns its id.
    pub async fn create_user(&self, alias: &str, usage_location: Option<&str>) -> String {
        let mut body = json!({
            "accountEnabled": true, "displayName": format!("User {alias}"), "mailNickname": alias,
            "userPrincipalName": format!("{alias}@contoso.com"),
            "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "xWwvJ]6NMw+bWH-d"}
        });
        if let Some(location) = usage_location {
            body["usageLocation"] = json!(location);
        }
        let answer = self.post("/users", body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        answer.body["id"].as_str().expect("id").to_owned()
    }

    pub async fn exchange(&self, cmdlet: &str, parameters: Value) -> Answer {
        let token = token_for(
            &self.http,
            &self.emulator,
            "https://outlook.office365.com/.default",
        )
        .await;
        let response = self
            .http
            .post(self.emulator.exchange_url())
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .header("X-ResponseFormat", "json")
            .body(
                json!({"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}})
                    .to_string(),
            )
            .send()
            .await
            .expect("exchange request");
        answer(response).await
    }
}

impl Session {
    /// Gets a new Graph token and lists users with it.
    pub async fn with_token_refresh(session: &Session) -> Answer {
        let token = token_for(
            &session.http,
            &session.emulator,
            "https://graph.microsoft.com/.default",
        )
        .await;
        let response = session
            .http
            .get(format!("{}/v1.0/users", session.emulator.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        answer(response).await
    }
}
