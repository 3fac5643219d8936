use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{ConnectionProperties, ExchangeKind};

use crate::consumer::Consumer;
use crate::error::{AmqpError, BrokerError, redact_url};
use crate::publisher::{DEFAULT_CONFIRM_TIMEOUT, Publisher};
use crate::topology::{Topology, short};

/// How long [`Broker::connect`] tries before giving up (lapin retries the TCP connect with
/// backoff inside this window).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The heartbeat asked for when the URL names none: a dead peer is noticed within a minute.
const DEFAULT_HEARTBEAT_SECONDS: u16 = 30;

/// What [`Broker::queue_depth`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages ready for delivery (not counting unacknowledged ones).
    pub ready: u32,
    /// Consumers attached (with single active consumer, one of them is active).
    pub consumers: u32,
}

/// One connection to RabbitMQ, with automatic connection recovery.
///
/// lapin recovers the connection and its channels after a network failure; it does not
/// finish a publish that was in flight (the outbox resends) nor reopen a channel the broker
/// closed ([`Publisher`] reopens its own, a [`Consumer`] reports it).
pub struct Broker {
    connection: Arc<lapin::Connection>,
    url: String,
    interruptions: Arc<tokio::sync::watch::Sender<u64>>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Connects to `url` (an AMQP URI; `heartbeat=30` is added when it names none) and names
    /// the connection `connection_name` in the management UI. Must run inside a tokio runtime.
    pub async fn connect(url: &str, connection_name: &str) -> Result<Broker, BrokerError> {
        Broker::connect_with_timeout(url, connection_name, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// Like [`Broker::connect`], giving up after `timeout`.
    pub async fn connect_with_timeout(
        url: &str,
        connection_name: &str,
        timeout: Duration,
    ) -> Result<Broker, BrokerError> {
        let redacted = redact_url(url);
        let url_with_heartbeat = with_default_heartbeat(url);
        let properties = ConnectionProperties::default()
            .with_connection_name(connection_name.into())
            .enable_auto_recover();
        let connection = tokio::time::timeout(
            timeout,
            crate::tls::connect(&url_with_heartbeat, properties),
        )
        .await
        .map_err(|_| BrokerError::ConnectTimedOut {
            url: redacted.clone(),
            seconds: timeout.as_secs(),
        })?
        .map_err(|source| BrokerError::Connect {
            url: redacted.clone(),
            source: AmqpError(source),
        })?;
        let interruptions = Arc::new(tokio::sync::watch::Sender::new(0));
        log_connection_events(&connection, connection_name, Arc::clone(&interruptions));
        let connection = Arc::new(connection);
        watch_connection(Arc::downgrade(&connection), Arc::clone(&interruptions));
        Ok(Broker {
            connection,
            url: redacted,
            interruptions,
        })
    }

    /// A counter that goes up each time the connection fails or is recovered, and every
    /// [`CONNECTION_POLL`] while it is down (RabbitMQ closing the connection, as when its app
    /// stops, raises no error event: lapin starts recovering at once). Consumers live through a
    /// recovery without a break in their stream, but RabbitMQ has requeued their unacknowledged
    /// deliveries and, on a single-active-consumer queue, may have made another consumer the
    /// active one meanwhile: a consumer that must know uses this, and asks
    /// [`Delivery::channel_closed`](crate::Delivery::channel_closed) which deliveries are lost.
    #[must_use]
    pub fn interruptions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.interruptions.subscribe()
    }

    /// True while the connection is open (false while it is being recovered).
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Declares the topology: exchanges, the dead queue, the partition queues and their
    /// bindings. Idempotent: declaring the same topology again changes nothing. If an object
    /// exists with other arguments, fails with [`BrokerError::TopologyMismatch`] naming it.
    pub async fn declare(&self, topology: &Topology) -> Result<(), BrokerError> {
        let channel = self
            .open_channel("open a channel to declare the topology")
            .await?;
        let result = declare_on(&channel, topology).await;
        close_quietly(&channel).await;
        result
    }

    /// Deletes every exchange and queue of the topology, with their messages (tests, the
    /// bench, a drained re-partitioning). Deleting what does not exist is not an error.
    pub async fn delete_topology(&self, topology: &Topology) -> Result<(), BrokerError> {
        let channel = self
            .open_channel("open a channel to delete the topology")
            .await?;
        let result = delete_on(&channel, topology).await;
        close_quietly(&channel).await;
        result
    }

    /// Ready messages and consumers of `queue` (a passive declare; nothing is created).
    pub async fn queue_depth(&self, queue: &str) -> Result<QueueDepth, BrokerError> {
        let channel = self
            .open_channel("open a channel to inspect a queue")
            .await?;
        let result = channel
            .queue_declare(
                short(queue)?,
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await;
        close_quietly(&channel).await;
        match result {
            Ok(declared) => Ok(QueueDepth {
                ready: declared.message_count(),
                consumers: declared.consumer_count(),
            }),
            Err(error) => Err(classify_queue_error("inspect the queue", queue, error)),
        }
    }

    /// A publisher on its own confirm-mode channel, with [`DEFAULT_CONFIRM_TIMEOUT`].
    pub async fn publisher(&self) -> Result<Publisher, BrokerError> {
        self.publisher_with_confirm_timeout(DEFAULT_CONFIRM_TIMEOUT)
            .await
    }

    /// A publisher whose publishes fail with `TimedOut` after `confirm_timeout`.
    pub async fn publisher_with_confirm_timeout(
        &self,
        confirm_timeout: Duration,
    ) -> Result<Publisher, BrokerError> {
        Publisher::open(Arc::clone(&self.connection), confirm_timeout).await
    }

    /// Consumes `queue` on a new channel with `prefetch` unacknowledged deliveries at most
    /// (per consumer: a global prefetch on a quorum queue would close the connection).
    /// `consumer_tag` names the consumer in the management UI; empty lets the broker pick.
    pub async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
        consumer_tag: &str,
    ) -> Result<Consumer, BrokerError> {
        if prefetch == 0 {
            return Err(BrokerError::InvalidArgument {
                field: "prefetch",
                reason: "0 would mean unlimited; give 1 or more".to_owned(),
            });
        }
        let queue_name = short(queue)?;
        let tag = short(consumer_tag)?;
        let channel = self.open_channel("open a channel to consume").await?;
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|source| BrokerError::channel("set the consumer's prefetch", source))?;
        let inner = channel
            .basic_consume(
                queue_name,
                tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| classify_queue_error("consume", queue, error))?;
        Ok(Consumer::new(channel, inner, queue))
    }

    /// Follows a fan-out exchange (such as `{prefix}.outcomes`) from a queue of its own: a
    /// server-named, exclusive, auto-delete classic queue bound to `exchange`, holding at most
    /// `max_length` messages (the oldest are dropped first), consumed with `prefetch`. The queue
    /// goes away with the connection, so a listener leaves nothing behind.
    pub async fn follow_fanout(
        &self,
        exchange: &str,
        max_length: u32,
        prefetch: u16,
        consumer_tag: &str,
    ) -> Result<Consumer, BrokerError> {
        if prefetch == 0 {
            return Err(BrokerError::InvalidArgument {
                field: "prefetch",
                reason: "0 would mean unlimited; give 1 or more".to_owned(),
            });
        }
        let tag = short(consumer_tag)?;
        let channel = self
            .open_channel("open a channel to follow an exchange")
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-max-length".into(),
            lapin::types::AMQPValue::LongLongInt(i64::from(max_length.max(1))),
        );
        let declared = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .map_err(|error| classify_declare_error("declare the queue", exchange, error))?;
        let queue = declared.name().to_string();
        bind(&channel, &queue, exchange, "").await?;
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|source| BrokerError::channel("set the consumer's prefetch", source))?;
        let inner = channel
            .basic_consume(
                short(&queue)?,
                tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| classify_queue_error("consume", &queue, error))?;
        Ok(Consumer::new(channel, inner, &queue))
    }

    /// Declares a durable quorum queue `queue` of one reader's own, bound to the fan-out
    /// `exchange` (a worker's copy of `{prefix}.outcomes`), that outlives the reader's restarts:
    /// it holds at most `max_length` messages (the oldest are dropped first) and RabbitMQ deletes
    /// it once no one has used it for `expires`. Returns true when the queue did not exist
    /// before (so its reader has missed whatever was published until now). Consume it with
    /// [`Broker::consume`].
    pub async fn declare_own_queue(
        &self,
        queue: &str,
        exchange: &str,
        max_length: u32,
        expires: Duration,
    ) -> Result<bool, BrokerError> {
        let existed = match self.queue_depth(queue).await {
            Ok(_) => true,
            Err(BrokerError::QueueNotFound { .. }) => false,
            Err(error) => return Err(error),
        };
        let channel = self
            .open_channel("open a channel to declare a queue")
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("quorum".into()),
        );
        arguments.insert(
            "x-max-length".into(),
            lapin::types::AMQPValue::LongLongInt(i64::from(max_length.max(1))),
        );
        arguments.insert(
            "x-overflow".into(),
            lapin::types::AMQPValue::LongString("drop-head".into()),
        );
        arguments.insert(
            "x-expires".into(),
            lapin::types::AMQPValue::LongLongInt(
                i64::try_from(expires.as_millis())
                    .unwrap_or(i64::MAX)
                    .max(1),
            ),
        );
        let result = async {
            declare_queue(&channel, queue, arguments).await?;
            bind(&channel, queue, exchange, "").await
        }
        .await;
        close_quietly(&channel).await;
        result.map(|()| !existed)
    }

    /// Closes the connection. Shut consumers down first ([`Consumer::shutdown`]): acks still
    /// in flight on a quorum queue are lost when the connection closes under them.
    pub async fn close(&self) -> Result<(), BrokerError> {
        if !self.connection.status().connected() {
            return Ok(());
        }
        self.connection
            .close(200, "moss closing".into())
            .await
            .map_err(|source| BrokerError::channel("close the connection", source))
    }

    async fn open_channel(&self, action: &'static str) -> Result<lapin::Channel, BrokerError> {
        self.connection
            .create_channel()
            .await
            .map_err(|source| BrokerError::channel(action, source))
    }
}

async fn declare_on(channel: &lapin::Channel, topology: &Topology) -> Result<(), BrokerError> {
    declare_exchange(channel, &topology.dead_exchange(), ExchangeKind::Fanout).await?;
    declare_queue(
        channel,
        &topology.dead_queue(),
        topology.dead_queue_arguments(),
    )
    .await?;
    bind(
        channel,
        &topology.dead_queue(),
        &topology.dead_exchange(),
        "",
    )
    .await?;
    declare_exchange(channel, &topology.events_exchange(), ExchangeKind::Direct).await?;
    declare_exchange(channel, &topology.outcomes_exchange(), ExchangeKind::Fanout).await?;
    let arguments = topology.partition_queue_arguments();
    for partition in 0..topology.partitions() {
        let queue = topology.partition_queue(partition);
        declare_queue(channel, &queue, arguments.clone()).await?;
        bind(
            channel,
            &queue,
            &topology.events_exchange(),
            &topology.partition_routing_key(partition),
        )
        .await?;
    }
    Ok(())
}

async fn delete_on(channel: &lapin::Channel, topology: &Topology) -> Result<(), BrokerError> {
    let mut queues = topology.partition_queues();
    queues.push(topology.dead_queue());
    for queue in queues {
        channel
            .queue_delete(short(&queue)?, QueueDeleteOptions::default())
            .await
            .map_err(|source| BrokerError::Topology {
                action: "delete the queue",
                object: queue.clone(),
                source: AmqpError(source),
            })?;
    }
    for exchange in [
        topology.events_exchange(),
        topology.dead_exchange(),
        topology.outcomes_exchange(),
    ] {
        channel
            .exchange_delete(short(&exchange)?, ExchangeDeleteOptions::default())
            .await
            .map_err(|source| BrokerError::Topology {
                action: "delete the exchange",
                object: exchange.clone(),
                source: AmqpError(source),
            })?;
    }
    Ok(())
}

async fn declare_exchange(
    channel: &lapin::Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), BrokerError> {
    channel
        .exchange_declare(
            short(name)?,
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|error| classify_declare_error("declare the exchange", name, error))
}

async fn declare_queue(
    channel: &lapin::Channel,
    name: &str,
    arguments: FieldTable,
) -> Result<(), BrokerError> {
    channel
        .queue_declare(short(name)?, QueueDeclareOptions::durable(), arguments)
        .await
        .map(|_| ())
        .map_err(|error| classify_declare_error("declare the queue", name, error))
}

async fn bind(
    channel: &lapin::Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), BrokerError> {
    channel
        .queue_bind(
            short(queue)?,
            short(exchange)?,
            short(routing_key)?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|source| BrokerError::Topology {
            action: "bind",
            object: format!("{queue} to {exchange} with {routing_key:?}"),
            source: AmqpError(source),
        })
}

fn classify_declare_error(action: &'static str, object: &str, error: lapin::Error) -> BrokerError {
    let error = AmqpError(error);
    if error.is_precondition_failed() {
        return BrokerError::TopologyMismatch {
            object: object.to_owned(),
            detail: error.reply_text().unwrap_or_default(),
        };
    }
    BrokerError::Topology {
        action,
        object: object.to_owned(),
        source: error,
    }
}

fn classify_queue_error(action: &'static str, queue: &str, error: lapin::Error) -> BrokerError {
    let error = AmqpError(error);
    if error.is_not_found() {
        return BrokerError::QueueNotFound {
            queue: queue.to_owned(),
        };
    }
    BrokerError::Topology {
        action,
        object: queue.to_owned(),
        source: error,
    }
}

/// A channel the broker closed (after a 406 or 404) needs no closing.
async fn close_quietly(channel: &lapin::Channel) {
    if channel.status().connected()
        && let Err(error) = channel.close(200, "done".into()).await
    {
        tracing::debug!(%error, "closing a short-lived channel failed");
    }
}

fn with_default_heartbeat(url: &str) -> String {
    if url.contains("heartbeat=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}heartbeat={DEFAULT_HEARTBEAT_SECONDS}")
}

/// How often [`Broker::interruptions`] goes up while the connection is down.
pub const CONNECTION_POLL: Duration = Duration::from_millis(50);

/// Bumps `interruptions` every [`CONNECTION_POLL`] while the connection is not open (being
/// recovered), until the broker is dropped or the connection closed for good. lapin emits no
/// event when RabbitMQ closes the connection and recovery begins; this is how a consumer hears
/// within a poll that its deliveries' channel is gone.
fn watch_connection(
    connection: std::sync::Weak<lapin::Connection>,
    interruptions: Arc<tokio::sync::watch::Sender<u64>>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CONNECTION_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(connection) = connection.upgrade() else {
                return;
            };
            let status = connection.status();
            if status.closed() {
                return;
            }
            if !status.connected() {
                interruptions.send_modify(|count| *count = count.wrapping_add(1));
            }
        }
    });
}

/// Blocked connections (memory or disk alarm) stall publishes; say so in the logs.
fn log_connection_events(
    connection: &lapin::Connection,
    connection_name: &str,
    interruptions: Arc<tokio::sync::watch::Sender<u64>>,
) {
    let mut events = connection.events_listener();
    let name = connection_name.to_owned();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                lapin::Event::ConnectionBlocked(reason) => {
                    tracing::warn!(connection = %name, %reason, "RabbitMQ blocked the connection (resource alarm); publishes wait");
                }
                lapin::Event::ConnectionUnblocked => {
                    tracing::info!(connection = %name, "RabbitMQ unblocked the connection");
                }
                lapin::Event::Error(error) => {
                    interruptions.send_modify(|count| *count = count.wrapping_add(1));
                    tracing::warn!(connection = %name, %error, "RabbitMQ connection error; recovering");
                }
                // Only a recovery is seen here: the first connect happens before listening.
                lapin::Event::Connected => {
                    interruptions.send_modify(|count| *count = count.wrapping_add(1));
                    tracing::info!(connection = %name, "RabbitMQ connection recovered");
                }
                other => tracing::debug!(connection = %name, event = ?other, "connection event"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::with_default_heartbeat;

    #[test]
    fn a_heartbeat_is_added_only_when_the_url_has_none() {
        assert_eq!(
            with_default_heartbeat("amqp://h/%2f"),
            "amqp://h/%2f?heartbeat=30"
        );
        assert_eq!(
            with_default_heartbeat("amqp://h/%2f?frame_max=8192"),
            "amqp://h/%2f?frame_max=8192&heartbeat=30"
        );
        assert_eq!(
            with_default_heartbeat("amqp://h/%2f?heartbeat=5"),
            "amqp://h/%2f?heartbeat=5"
        );
    }
}
