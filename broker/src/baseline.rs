//! Raw RabbitMQ ceilings measured with plain lapin and no moss logic, for benchmarks to compare
//! moss against in the same run (docs/PERFORMANCE.md).
//!
//! Why it lives here: moss-broker is the only crate that names lapin, and a baseline must use the
//! client directly (no outbox, no mandatory flag, no topology) to be a ceiling. Each loop opens its
//! own connection, works on one durable quorum queue of the caller's naming (the queue type every
//! moss queue has), and reports how many messages it moved and how long that took.
//!
//! Not for production use: the loops stop at the first failure instead of recovering.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, ConnectionProperties};

use crate::error::{AmqpError, redact_url};
use crate::topology::short;

/// Why a baseline run failed. A baseline never retries: any failure ends the run.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The connection could not be opened. The URL is shown without its password.
    #[error("cannot connect to RabbitMQ at {url}")]
    Connect {
        /// The AMQP URL with any password replaced by `***`.
        url: String,
        /// The client's reason.
        #[source]
        source: AmqpError,
    },
    /// An AMQP operation failed.
    #[error("cannot {action}")]
    Amqp {
        /// What was being done.
        action: &'static str,
        /// The broker's or client's reason.
        #[source]
        source: AmqpError,
    },
    /// The broker refused a message (nack), so the run measured something else than a ceiling.
    #[error("the broker nacked message {index} of the baseline run")]
    Nacked {
        /// The message's position in the run, from 0.
        index: usize,
    },
    /// The consumer ended (queue deleted, consumer cancelled) before the run was complete.
    #[error("the consumer ended after {received} of {expected} messages")]
    ConsumerEnded {
        /// Messages received.
        received: usize,
        /// Messages the run waited for.
        expected: usize,
    },
    /// The caller's handler failed for a message.
    #[error("the handler failed for a message")]
    Handler(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An argument is not acceptable.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// Which argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// What a baseline loop measured: `messages` moved in `elapsed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaselineReport {
    /// Messages published and confirmed, or consumed, handled and acked.
    pub messages: usize,
    /// Wall time of the measured part (setup and teardown excluded).
    pub elapsed: Duration,
}

impl BaselineReport {
    /// Messages per second.
    #[must_use]
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds == 0.0 {
            return 0.0;
        }
        self.messages as f64 / seconds
    }
}

/// What [`confirmed_publish_loop`] does with its queue when the run is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAfterRun {
    /// Delete it with its messages (a pure publish measurement).
    Delete,
    /// Keep it and its messages (to feed [`consume_ack_loop`]); delete it with [`delete_queue`].
    Keep,
}

/// How much [`confirmed_publish_loop`] publishes and how far it pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishLoopSettings {
    /// Messages to publish.
    pub messages: usize,
    /// Publishes whose confirm may be outstanding at once (1 waits for every confirm).
    pub window: usize,
    /// What happens when the window is full.
    pub confirms: ConfirmWait,
}

/// How [`confirmed_publish_loop`] waits for confirms when its window is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmWait {
    /// Await the oldest confirm, then publish the next message: the window slides, the broker
    /// always has work (the ceiling).
    Sliding,
    /// Await every outstanding confirm, then publish the next window: stop-and-wait batches, as
    /// a relay that publishes a batch and then removes it from its outbox does.
    WholeBatch,
}

/// How [`consume_ack_loop`] consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumeLoopSettings {
    /// Messages to consume, handle and ack before the run ends.
    pub messages: usize,
    /// The per-consumer prefetch (unacknowledged deliveries the broker sends ahead).
    pub prefetch: u16,
    /// Deliveries handled at once; each acks on its own as soon as its handler returns.
    pub in_flight: usize,
}

/// A JSON body of exactly `size` bytes that differs by `index`, standing in for an event of the
/// same size (a `size` smaller than the JSON frame around the index gives just the frame).
#[must_use]
pub fn filler_body(index: usize, size: usize) -> Vec<u8> {
    let head = format!("{{\"n\":{index},\"pad\":\"");
    let tail = "\"}";
    let padding = size.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(size.max(head.len() + tail.len()));
    body.extend_from_slice(head.as_bytes());
    body.resize(body.len() + padding, b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

/// The ceiling for confirmed publishing: declares the durable quorum queue `queue`, publishes
/// `settings.messages` persistent messages to it through the default exchange on one channel
/// with publisher confirms, keeping up to `settings.window` confirms outstanding (when the window
/// is full it awaits the oldest, or all of them, as `settings.confirms` says), and measures from the first publish to the last confirm.
/// `body(index)` gives each message's bytes. No mandatory flag, no headers, no outbox.
pub async fn confirmed_publish_loop<B>(
    url: &str,
    queue: &str,
    settings: PublishLoopSettings,
    after: QueueAfterRun,
    mut body: B,
) -> Result<BaselineReport, BaselineError>
where
    B: FnMut(usize) -> Vec<u8>,
{
    if settings.window == 0 {
        return Err(BaselineError::InvalidArgument {
            field: "window",
            reason: "0 would publish nothing; give 1 or more".to_owned(),
        });
    }
    let queue_name = name(queue)?;
    let connection = connect(url, "moss-baseline-publish").await?;
    let channel = create_channel(&connection).await?;
    declare_on(&channel, queue).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|source| amqp("put the channel in confirm mode", source))?;
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into());

    let started = Instant::now();
    let mut outstanding = VecDeque::with_capacity(settings.window);
    for index in 0..settings.messages {
        if outstanding.len() >= settings.window {
            let settle = match settings.confirms {
                ConfirmWait::Sliding => 1,
                ConfirmWait::WholeBatch => outstanding.len(),
            };
            for (earlier, confirm) in outstanding.drain(..settle) {
                confirmed(earlier, confirm).await?;
            }
        }
        let confirm = channel
            .basic_publish(
                "".into(),
                queue_name.clone(),
                BasicPublishOptions::default(),
                &body(index),
                properties.clone(),
            )
            .await
            .map_err(|source| amqp("publish", source))?;
        outstanding.push_back((index, confirm));
    }
    while let Some((index, confirm)) = outstanding.pop_front() {
        confirmed(index, confirm).await?;
    }
    let elapsed = started.elapsed();

    if after == QueueAfterRun::Delete {
        channel
            .queue_delete(queue_name, QueueDeleteOptions::default())
            .await
            .map_err(|source| amqp("delete the baseline queue", source))?;
    }
    close(&connection, &channel).await;
    Ok(BaselineReport {
        messages: settings.messages,
        elapsed,
    })
}

/// The ceiling for a consumer: consumes `queue` with `settings.prefetch`, runs `handler` on each
/// body with up to `settings.in_flight` handlers at once, acks each delivery (one ack per
/// message, not `multiple`) as soon as its handler succeeds, and measures from the first delivery
/// to the last ack of `settings.messages` messages. The handler is the work a real consumer does
/// (an HTTP POST, for the worker comparison); a no-op handler gives the consume+ack ceiling.
/// Fill the queue first, e.g. with [`confirmed_publish_loop`] and [`QueueAfterRun::Keep`].
pub async fn consume_ack_loop<H, F, E>(
    url: &str,
    queue: &str,
    settings: ConsumeLoopSettings,
    handler: H,
) -> Result<BaselineReport, BaselineError>
where
    H: Fn(Vec<u8>) -> F,
    F: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    if settings.prefetch == 0 || settings.in_flight == 0 {
        return Err(BaselineError::InvalidArgument {
            field: "prefetch and in flight",
            reason: "both must be 1 or more".to_owned(),
        });
    }
    let queue_name = name(queue)?;
    let connection = connect(url, "moss-baseline-consume").await?;
    let channel = create_channel(&connection).await?;
    channel
        .basic_qos(settings.prefetch, BasicQosOptions { global: false })
        .await
        .map_err(|source| amqp("set the prefetch", source))?;
    let mut consumer = channel
        .basic_consume(
            queue_name,
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|source| amqp("consume the baseline queue", source))?;

    let mut started = None;
    let mut received = 0;
    let mut acked = 0;
    let mut running = FuturesUnordered::new();
    while acked < settings.messages {
        let may_take = received < settings.messages && running.len() < settings.in_flight;
        tokio::select! {
            delivery = consumer.next(), if may_take => {
                let delivery = match delivery {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(source)) => return Err(amqp("receive a delivery", source)),
                    None => return Err(BaselineError::ConsumerEnded { received, expected: settings.messages }),
                };
                started.get_or_insert_with(Instant::now);
                received += 1;
                let lapin::message::Delivery { data, acker, .. } = delivery;
                let handled = handler(data);
                running.push(async move {
                    handled.await.map_err(|error| BaselineError::Handler(Box::new(error)))?;
                    acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(|source| amqp("ack", source))?;
                    Ok::<(), BaselineError>(())
                });
            }
            Some(done) = running.next(), if !running.is_empty() => {
                done?;
                acked += 1;
            }
        }
    }
    let elapsed = started.map(|at| at.elapsed()).unwrap_or_default();
    // Cancel, then channel, then connection: on a quorum queue, acks in flight are lost when
    // the connection closes under them (the reference measurements saw it).
    if let Err(error) = channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
    {
        tracing::debug!(%error, "cancelling the baseline consumer failed");
    }
    close(&connection, &channel).await;
    Ok(BaselineReport {
        messages: acked,
        elapsed,
    })
}

/// Declares `queue` as the baseline loops do: a durable quorum queue with no other arguments.
/// Declaring it under a name moss uses for a partition queue makes moss's own declaration of
/// that queue fail (other arguments), which holds a producer's relay back while its outbox fills.
pub async fn declare_quorum_queue(url: &str, queue: &str) -> Result<(), BaselineError> {
    let connection = connect(url, "moss-baseline-declare").await?;
    let channel = create_channel(&connection).await?;
    let declared = declare_on(&channel, queue).await;
    close(&connection, &channel).await;
    declared
}

/// Declares `queue` as a light tap on the exchange `exchange` (bound with an empty routing key,
/// which a fanout exchange ignores): a classic, non-durable queue, so that watching moss's
/// outcomes costs RabbitMQ as little as possible while it is being measured. Consume it with
/// [`crate::Broker::consume`]; delete it with [`delete_queue`]. The exchange must exist.
pub async fn declare_tap_queue(
    url: &str,
    queue: &str,
    exchange: &str,
) -> Result<(), BaselineError> {
    let queue_name = name(queue)?;
    let exchange_name = short(exchange).map_err(|_| BaselineError::InvalidArgument {
        field: "exchange",
        reason: format!("{exchange:?} is longer than 255 bytes"),
    })?;
    let connection = connect(url, "moss-baseline-tap").await?;
    let channel = create_channel(&connection).await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    let declared = async {
        channel
            .queue_declare(
                queue_name.clone(),
                QueueDeclareOptions::default(),
                arguments,
            )
            .await
            .map_err(|source| amqp("declare the tap queue", source))?;
        channel
            .queue_bind(
                queue_name,
                exchange_name,
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| amqp("bind the tap queue", source))
    }
    .await;
    close(&connection, &channel).await;
    declared
}

/// Deletes `queue` and its messages, returning how many it held. A missing queue is not an error.
pub async fn delete_queue(url: &str, queue: &str) -> Result<u32, BaselineError> {
    let queue_name = name(queue)?;
    let connection = connect(url, "moss-baseline-cleanup").await?;
    let channel = create_channel(&connection).await?;
    let deleted = channel
        .queue_delete(queue_name, QueueDeleteOptions::default())
        .await
        .map_err(|source| amqp("delete the baseline queue", source))?;
    close(&connection, &channel).await;
    Ok(deleted)
}

async fn connect(url: &str, connection_name: &str) -> Result<lapin::Connection, BaselineError> {
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    lapin::Connection::connect(url, properties)
        .await
        .map_err(|source| BaselineError::Connect {
            url: redact_url(url),
            source: AmqpError(source),
        })
}

async fn create_channel(connection: &lapin::Connection) -> Result<lapin::Channel, BaselineError> {
    connection
        .create_channel()
        .await
        .map_err(|source| amqp("open a channel", source))
}

async fn declare_on(channel: &lapin::Channel, queue: &str) -> Result<(), BaselineError> {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(name(queue)?, QueueDeclareOptions::durable(), arguments)
        .await
        .map(|_| ())
        .map_err(|source| amqp("declare the baseline queue", source))
}

async fn confirmed(index: usize, confirm: lapin::PublisherConfirm) -> Result<(), BaselineError> {
    match confirm.await {
        Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => Ok(()),
        Ok(Confirmation::Nack(_)) => Err(BaselineError::Nacked { index }),
        Err(source) => Err(amqp("wait for a confirm", source)),
    }
}

/// Closing is best effort: the measurement is already taken.
async fn close(connection: &lapin::Connection, channel: &lapin::Channel) {
    if let Err(error) = channel.close(200, "baseline done".into()).await {
        tracing::debug!(%error, "closing the baseline channel failed");
    }
    if let Err(error) = connection.close(200, "baseline done".into()).await {
        tracing::debug!(%error, "closing the baseline connection failed");
    }
}

fn name(queue: &str) -> Result<lapin::types::ShortString, BaselineError> {
    short(queue).map_err(|_| BaselineError::InvalidArgument {
        field: "queue",
        reason: format!("{queue:?} is longer than 255 bytes"),
    })
}

fn amqp(action: &'static str, source: lapin::Error) -> BaselineError {
    BaselineError::Amqp {
        action,
        source: AmqpError(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filler_body_has_exactly_the_asked_size_and_is_json() {
        for size in [40, 100, 300, 4096] {
            let body = filler_body(12_345, size);
            assert_eq!(body.len(), size);
            assert!(body.starts_with(b"{\"n\":12345,\"pad\":\""));
            assert!(body.ends_with(b"\"}"));
        }
        assert_eq!(filler_body(7, 1), b"{\"n\":7,\"pad\":\"\"}");
    }

    #[test]
    fn a_report_gives_messages_per_second() {
        let report = BaselineReport {
            messages: 5_000,
            elapsed: Duration::from_millis(250),
        };
        assert!((report.rate() - 20_000.0).abs() < 1e-6);
        let empty = BaselineReport {
            messages: 0,
            elapsed: Duration::ZERO,
        };
        assert!(empty.rate().abs() < f64::EPSILON);
    }

    fn amqp_url() -> String {
        std::env::var("MOSS_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the handler saw a body that was not published")]
    struct UnexpectedBody;

    #[tokio::test]
    async fn what_the_publish_loop_queues_the_consume_loop_acks_in_full() {
        let url = amqp_url();
        let queue = format!("moss-test-baseline-{}", uuid::Uuid::new_v4().simple());
        let published = confirmed_publish_loop(
            &url,
            &queue,
            PublishLoopSettings {
                messages: 300,
                window: 50,
                confirms: ConfirmWait::WholeBatch,
            },
            QueueAfterRun::Keep,
            |index| filler_body(index, 120),
        )
        .await;
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let consumed = match &published {
            Ok(_) => Some(
                consume_ack_loop(
                    &url,
                    &queue,
                    ConsumeLoopSettings {
                        messages: 300,
                        prefetch: 100,
                        in_flight: 8,
                    },
                    |body| {
                        let seen = std::sync::Arc::clone(&seen);
                        async move {
                            if body.len() != 120 {
                                return Err(UnexpectedBody);
                            }
                            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            Ok(())
                        }
                    },
                )
                .await,
            ),
            Err(_) => None,
        };
        let left = delete_queue(&url, &queue).await;

        let published = published.expect("the publish loop runs");
        assert_eq!(published.messages, 300);
        assert!(published.rate() > 0.0);
        let consumed = consumed.expect("consumed").expect("the consume loop runs");
        assert_eq!(consumed.messages, 300);
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 300);
        assert_eq!(
            left.expect("the queue is deleted"),
            0,
            "every message was acked"
        );
    }

    #[tokio::test]
    async fn a_zero_window_is_refused_naming_the_field() {
        let error = confirmed_publish_loop(
            &amqp_url(),
            "moss-test-never-declared",
            PublishLoopSettings {
                messages: 1,
                window: 0,
                confirms: ConfirmWait::Sliding,
            },
            QueueAfterRun::Delete,
            |index| filler_body(index, 16),
        )
        .await
        .expect_err("a zero window");
        assert!(error.to_string().starts_with("invalid window"), "{error}");
    }
}
