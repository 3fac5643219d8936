//! Publishing the planned events through the producer's HTTP ingest, as `moss publish` does,
//! in batches (`application/cloudevents-batch+json`): each batch is stored durably by the
//! producer before it answers `202`, or refused whole.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::commands::producer::DEFAULT_INGEST_ADDR;
use crate::config::{self, FileConfig, layered};

/// Events per request: far inside the ingest's body limit.
const BATCH: usize = 250;

/// Where the producer is.
#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// The producer's ingest address.
    #[arg(long, env = "MOSS_INGEST_ADDR", value_name = "ADDR")]
    ingest_addr: Option<String>,
    /// File holding the ingest's bearer token.
    #[arg(long, env = "MOSS_INGEST_TOKEN_FILE", value_name = "FILE")]
    ingest_token_file: Option<PathBuf>,
}

/// A resolved ingest.
#[derive(Debug)]
pub(crate) struct Ingest {
    addr: std::net::SocketAddr,
    token: Option<SecretString>,
    http: reqwest::Client,
}

impl Ingest {
    pub(crate) fn resolve(args: &IngestArgs, file: &FileConfig) -> Result<Ingest> {
        let addr = layered(args.ingest_addr.clone(), file.ingest_addr.clone(), || {
            DEFAULT_INGEST_ADDR.to_owned()
        });
        let addr = config::socket_addr(&addr, "MOSS_INGEST_ADDR")?;
        let token = match args
            .ingest_token_file
            .clone()
            .or_else(|| file.ingest_token_file.clone())
        {
            Some(path) => Some(config::read_secret_file(&path, "MOSS_INGEST_TOKEN_FILE")?),
            None => std::env::var("MOSS_INGEST_TOKEN")
                .ok()
                .filter(|token| !token.is_empty())
                .map(SecretString::from),
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("could not start an HTTP client")?;
        Ok(Ingest { addr, token, http })
    }

    /// Publishes every event; returns the ids the producer accepted. A refused batch stops
    /// it, saying how many were stored before.
    pub(crate) async fn publish(&self, events: &[Value]) -> Result<Vec<String>> {
        let mut accepted = Vec::with_capacity(events.len());
        for batch in events.chunks(BATCH) {
            let body = serde_json::to_vec(batch).context("could not encode the events")?;
            let mut request = self
                .http
                .post(format!("http://{}/v1/events", self.addr))
                .header("content-type", moss_producer::BATCH_CONTENT_TYPE)
                .body(body);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token.expose_secret());
            }
            let response = request.send().await.with_context(|| {
                format!(
                    "could not reach the producer at {} after {} of {} events were stored; is `moss producer` or `moss up` running there? (running the command again publishes the rest: the stored ones show as done)",
                    self.addr,
                    accepted.len(),
                    events.len()
                )
            })?;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            if status != 202 {
                let problem: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let detail = problem
                    .get("detail")
                    .and_then(Value::as_str)
                    .unwrap_or(text.as_str());
                bail!(
                    "the producer refused a batch ({status}: {detail}) after {} of {} events were stored",
                    accepted.len(),
                    events.len()
                );
            }
            let ids: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            accepted.extend(
                ids.get("accepted")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| id.as_str().map(str::to_owned)),
            );
        }
        Ok(accepted)
    }
}

/// A CloudEvent as `moss publish` builds it: id, time, source, and a clock sequence.
pub(crate) fn envelope(event_type: &str, subject: &str, data: Value) -> Value {
    let sequence = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
    let mut event = json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": "moss-accounts",
        "type": event_type,
        "subject": subject,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "sequence": sequence.to_string(),
        "datacontenttype": "application/json",
    });
    event["data"] = data;
    event
}
