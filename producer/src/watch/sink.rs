//! Where the watcher's events go: the producer's ingest, one batch per directory change.

use std::time::Duration;

use moss_schemas::{Envelope, EventBatch};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::ldap::WatchError;
use crate::ingest::BATCH_CONTENT_TYPE;

/// The producer's ingest as the watcher's way into the outbox.
#[derive(Debug, Clone)]
pub struct IngestSink {
    client: reqwest::Client,
    events_url: String,
    token: Option<SecretString>,
}

/// What became of one delivery.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Stored durably by the producer (`202`).
    Stored,
    /// Shutdown came before the producer took the batch.
    Interrupted,
}

impl IngestSink {
    /// A sink posting to the ingest at `ingest_url` (`http://127.0.0.1:8480`), with the bearer
    /// token the ingest requires off loopback.
    pub fn new(ingest_url: &str, token: Option<SecretString>) -> IngestSink {
        IngestSink {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            events_url: format!("{}/v1/events", ingest_url.trim_end_matches('/')),
            token,
        }
    }

    /// Posts the batch until the producer has stored it: a producer that is down or answers
    /// `503` is waited for (with backoff), because a directory change must not be skipped.
    /// A `4xx` means moss made an event the contract refuses, which waiting cannot cure.
    pub(crate) async fn deliver(
        &self,
        events: Vec<Envelope>,
        shutdown: &CancellationToken,
    ) -> Result<Delivered, WatchError> {
        if events.is_empty() {
            return Ok(Delivered::Stored);
        }
        let body = EventBatch { events }.to_json_vec();
        let mut delay = Duration::from_millis(100);
        loop {
            let mut request = self
                .client
                .post(&self.events_url)
                .header(reqwest::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
                .body(body.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token.expose_secret());
            }
            match request.send().await {
                Ok(response) if response.status().as_u16() == 202 => return Ok(Delivered::Stored),
                Ok(response) if response.status().is_client_error() => {
                    let status = response.status().as_u16();
                    let detail = response.text().await.unwrap_or_default();
                    return Err(WatchError::Refused { status, detail });
                }
                Ok(response) => {
                    tracing::warn!(
                        status = response.status().as_u16(),
                        "the producer did not store the watcher's events; retrying"
                    );
                }
                Err(error) => {
                    tracing::warn!(error = %error, url = %self.events_url, "the producer's ingest is unreachable; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(Delivered::Interrupted),
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}
