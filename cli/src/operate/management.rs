//! RabbitMQ's management HTTP API, when it is enabled: unacknowledged counts, message rates and
//! dead letters still on their way (`messages_dlx`), which plain AMQP cannot tell.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Url;
use serde::Deserialize;

/// The management API's default address (`MOSS_MANAGEMENT_URL`).
pub(crate) const DEFAULT_MANAGEMENT_URL: &str = "http://127.0.0.1:15672";

/// What the management API says about one queue.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct QueueStats {
    /// The queue name.
    pub(crate) name: String,
    /// Ready messages.
    #[serde(default)]
    pub(crate) messages_ready: Option<u64>,
    /// Delivered and not yet acknowledged.
    #[serde(default)]
    pub(crate) messages_unacknowledged: Option<u64>,
    /// Consumers attached.
    #[serde(default)]
    pub(crate) consumers: Option<u64>,
    /// Quorum queues: dead letters not yet confirmed by the dead queue (at-least-once).
    #[serde(default)]
    pub(crate) messages_dlx: Option<u64>,
    /// Rates, when statistics are collected.
    #[serde(default)]
    pub(crate) message_stats: Option<MessageStats>,
}

/// Message rates of a queue, per second, averaged by RabbitMQ.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct MessageStats {
    #[serde(default)]
    publish_details: Option<Rate>,
    #[serde(default)]
    ack_details: Option<Rate>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct Rate {
    rate: f64,
}

impl MessageStats {
    /// Messages published to the queue per second.
    pub(crate) fn publish_rate(&self) -> Option<f64> {
        self.publish_details.as_ref().map(|rate| rate.rate)
    }

    /// Messages acknowledged per second (the worker acks once an event is settled).
    pub(crate) fn ack_rate(&self) -> Option<f64> {
        self.ack_details.as_ref().map(|rate| rate.rate)
    }
}

/// Where the management API is and how to log in.
#[derive(Debug, Clone)]
pub(crate) struct Management {
    base: Url,
    user: String,
    password: secrecy::SecretString,
    vhost: String,
    client: reqwest::Client,
}

impl Management {
    /// The API at `management_url`; user and password come from that URL, else from the AMQP URL
    /// (the same user usually has both), else RabbitMQ's `guest`. The virtual host is the AMQP
    /// URL's.
    pub(crate) fn new(management_url: &str, amqp_url: &str) -> Result<Management> {
        let mut base = Url::parse(management_url)
            .with_context(|| format!("MOSS_MANAGEMENT_URL is not a URL: {management_url:?}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("MOSS_MANAGEMENT_URL must start with http:// or https://");
        }
        let amqp = Url::parse(amqp_url).ok();
        let decode = percent_decode;
        let (user, password) = if base.username().is_empty() {
            match &amqp {
                Some(amqp) if !amqp.username().is_empty() => (
                    decode(amqp.username()),
                    decode(amqp.password().unwrap_or_default()),
                ),
                _ => ("guest".to_owned(), "guest".to_owned()),
            }
        } else {
            (
                decode(base.username()),
                decode(base.password().unwrap_or_default()),
            )
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let vhost = amqp
            .as_ref()
            .map(|amqp| amqp.path().trim_start_matches('/').to_owned())
            .filter(|path| !path.is_empty())
            .map_or_else(|| "/".to_owned(), |path| percent_decode(&path));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("could not start an HTTP client")?;
        Ok(Management {
            base,
            user,
            password: secrecy::SecretString::from(password),
            vhost,
            client,
        })
    }

    /// Where the API is (without credentials), for messages.
    pub(crate) fn address(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    /// Every queue whose name starts with `prefix.`, by name.
    pub(crate) async fn queues(&self, prefix: &str) -> Result<BTreeMap<String, QueueStats>> {
        use secrecy::ExposeSecret;
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("MOSS_MANAGEMENT_URL cannot be a base URL"))?
            .pop_if_empty()
            .extend(["api", "queues", &self.vhost]);
        let pattern = format!("^{}\\.", regex_escape(prefix));
        url.query_pairs_mut()
            .append_pair("name", &pattern)
            .append_pair("use_regex", "true")
            .append_pair("page", "1")
            .append_pair("page_size", "500")
            .append_pair(
                "columns",
                "name,messages_ready,messages_unacknowledged,consumers,messages_dlx,message_stats",
            );
        let response = self
            .client
            .get(url)
            .basic_auth(&self.user, Some(self.password.expose_secret()))
            .send()
            .await
            .with_context(|| format!("the management API at {} did not answer", self.address()))?;
        let status = response.status();
        if status.as_u16() == 401 {
            bail!(
                "the management API at {} refused the credentials",
                self.address()
            );
        }
        if !status.is_success() {
            bail!("the management API at {} answered {status}", self.address());
        }
        let page: QueuePage = response.json().await.with_context(|| {
            format!(
                "the management API at {} sent an answer moss cannot read",
                self.address()
            )
        })?;
        Ok(page
            .items
            .into_iter()
            .map(|queue| (queue.name.clone(), queue))
            .collect())
    }
}

#[derive(Debug, Deserialize)]
struct QueuePage {
    items: Vec<QueueStats>,
}

fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && index + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[index + 1..index + 3])
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_vhost_come_from_the_amqp_url_unless_the_management_url_has_them() {
        let management =
            Management::new("http://127.0.0.1:15672", "amqp://ops:p%40ss@h:5672/%2f").unwrap();
        assert_eq!(management.user, "ops");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&management.password),
            "p@ss"
        );
        assert_eq!(management.vhost, "/");
        let management =
            Management::new("http://admin:x@10.0.0.1:15672/", "amqp://h/prod").unwrap();
        assert_eq!(management.user, "admin");
        assert_eq!(management.vhost, "prod");
        assert_eq!(management.address(), "http://10.0.0.1:15672");
        let management = Management::new("http://127.0.0.1:15672", "amqp://h").unwrap();
        assert_eq!(management.user, "guest");
        assert_eq!(management.vhost, "/");
        assert!(Management::new("ftp://x", "amqp://h").is_err());
    }

    #[test]
    fn a_queue_page_as_rabbitmq_3_10_sends_it_reads() {
        let page: QueuePage = serde_json::from_str(
            r#"{"filtered_count":2,"items":[
                {"name":"moss.events.p0","messages_ready":3,"messages_unacknowledged":2,"consumers":1,"messages_dlx":0,
                 "message_stats":{"publish":10,"publish_details":{"rate":1.5},"ack":7,"ack_details":{"rate":0.5},
                                  "deliver_get":9,"deliver_get_details":{"rate":0.6},"redeliver":0,"redeliver_details":{"rate":0.0}}},
                {"name":"moss.dead","messages_ready":1,"messages_unacknowledged":0,"consumers":0}
            ],"item_count":2,"page":1,"page_count":1,"page_size":500,"total_count":2}"#,
        )
        .unwrap();
        let p0 = &page.items[0];
        assert_eq!(p0.messages_unacknowledged, Some(2));
        let stats = p0.message_stats.as_ref().unwrap();
        assert_eq!(stats.publish_rate(), Some(1.5));
        assert_eq!(stats.ack_rate(), Some(0.5));
        assert_eq!(page.items[1].message_stats, None);
    }

    #[test]
    fn the_prefix_is_escaped_in_the_name_pattern() {
        assert_eq!(regex_escape("moss-test.a"), "moss\\-test\\.a");
    }
}
