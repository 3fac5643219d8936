//! Connecting an operator command to RabbitMQ, with one plain sentence for each way it fails.

use std::time::Duration;

use anyhow::{Result, anyhow};
use moss_broker::{Broker, BrokerError, Topology};

/// An operator waits for an answer: a broker that does not answer within this is reported.
const OPERATOR_CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// Connects and checks that the installation's topology exists (its dead queue), so that a
/// mistyped prefix is reported as such rather than as an empty installation.
pub(crate) async fn connect(amqp_url: &str, topology: &Topology, name: &str) -> Result<Broker> {
    probe(amqp_url).await?;
    let broker = Broker::connect_with_timeout(amqp_url, name, OPERATOR_CONNECT_TIMEOUT)
        .await
        .map_err(explain_connect_error)?;
    match broker.queue_depth(&topology.dead_queue()).await {
        Ok(_) => Ok(broker),
        Err(BrokerError::QueueNotFound { .. }) => {
            let _ = broker.close().await;
            Err(anyhow!(
                "RabbitMQ has no queue {}: nothing is set up under the prefix {:?}; check MOSS_TOPOLOGY_PREFIX, or start `moss up` or `moss worker` once to declare it",
                topology.dead_queue(),
                topology.prefix().as_str()
            ))
        }
        Err(error) => {
            let _ = broker.close().await;
            Err(anyhow!(error).context("could not inspect the dead queue"))
        }
    }
}

/// A plain TCP connect first: when nothing listens, say so at once. (lapin would retry in the
/// background until the timeout, and its I/O thread outlives an abandoned attempt.)
async fn probe(amqp_url: &str) -> Result<()> {
    let Ok(url) = reqwest::Url::parse(amqp_url) else {
        return Ok(());
    };
    let Some(host) = url.host_str() else {
        return Ok(());
    };
    let port = url
        .port()
        .unwrap_or(if url.scheme() == "amqps" { 5671 } else { 5672 });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout(
        OPERATOR_CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(anyhow!(
            "cannot reach RabbitMQ at {}; is it running, and is MOSS_AMQP_URL right?",
            redacted(amqp_url)
        )),
    }
}

/// One sentence: unreachable, refused credentials, unknown virtual host, or slow.
fn explain_connect_error(error: BrokerError) -> anyhow::Error {
    match &error {
        BrokerError::Connect { url, source } => {
            let detail = format!("{source} {source:?}");
            if source.reply_code() == Some(403)
                || detail.contains("ACCESS_REFUSED")
                || detail.contains("access refused")
                || detail.contains("authentication")
            {
                anyhow!(
                    "RabbitMQ at {url} refused the user name or password; check the credentials in MOSS_AMQP_URL"
                )
            } else if source.reply_code() == Some(530) || detail.contains("NOT_ALLOWED") {
                anyhow!(
                    "RabbitMQ at {url} does not let this user into the virtual host; check the vhost in MOSS_AMQP_URL"
                )
            } else {
                anyhow!(
                    "cannot reach RabbitMQ at {url}; is it running, and is MOSS_AMQP_URL right?"
                )
            }
        }
        BrokerError::ConnectTimedOut { url, seconds } => anyhow!(
            "RabbitMQ at {url} did not answer within {seconds} s; is it running, and is MOSS_AMQP_URL right?"
        ),
        _ => anyhow!(error).context("could not connect to RabbitMQ"),
    }
}

/// The URL with its password replaced, for output.
pub(crate) fn redacted(url: &str) -> String {
    moss_broker::redact_url(url)
}
