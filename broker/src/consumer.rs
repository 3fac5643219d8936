use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicNackOptions, BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;

use crate::error::{AmqpError, BrokerError};

/// How long [`Consumer::close`] lets a quorum queue apply the acks it has read before the
/// channel closes: the baseline saw none requeued after 200 ms.
const ACK_LINGER: std::time::Duration = std::time::Duration::from_millis(250);
use crate::message::Headers;

/// Why a delivery could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The delivery was settled before, or its channel is gone; RabbitMQ redelivers it
    /// (so the handler must be idempotent, as all moss handlers are).
    #[error("the delivery was already settled or its channel is closed; it will be redelivered")]
    NotSettled,
    /// Sending the settlement failed.
    #[error("cannot settle the delivery")]
    Amqp(#[source] AmqpError),
}

/// Why a consumer stopped delivering.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The broker closed the consumer's channel (for example 406 PRECONDITION_FAILED after
    /// `consumer_timeout`, when a delivery stayed unacknowledged too long). Its unacknowledged
    /// deliveries are requeued. lapin does not reopen such a channel: call
    /// [`crate::Broker::consume`] again.
    #[error("the broker closed the channel consuming {queue}")]
    ChannelClosed {
        /// The queue that was consumed.
        queue: String,
        /// The broker's reason.
        #[source]
        source: AmqpError,
    },
}

/// One message received from a queue. Settle it exactly once: [`Delivery::ack`],
/// [`Delivery::nack_requeue`] or [`Delivery::reject_to_dead_letter`].
pub struct Delivery {
    /// The message bytes.
    pub body: Vec<u8>,
    /// The AMQP `message-id` (the event id, for messages moss published).
    pub message_id: Option<String>,
    /// The AMQP `content-type`.
    pub content_type: Option<String>,
    /// The application headers (integers and text; AMQP arrays and tables are left out).
    pub headers: Headers,
    /// True when RabbitMQ delivered this message before (to this or another consumer).
    pub redelivered: bool,
    /// RabbitMQ's `x-delivery-count`: how many earlier deliveries of this message were
    /// returned (requeued, or lost with a consumer); 0 on the first delivery. When it would
    /// pass the topology's delivery limit the broker dead-letters the message instead.
    pub delivery_count: u64,
    /// The routing key it was published with (`p{n}` for events).
    pub routing_key: String,
    /// The exchange it was published to.
    pub exchange: String,
    acker: lapin::Acker,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body is not shown: it is large, and logs are not the place for payloads.
        f.debug_struct("Delivery")
            .field("message_id", &self.message_id)
            .field("routing_key", &self.routing_key)
            .field("exchange", &self.exchange)
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Delivery {
    fn from_lapin(delivery: lapin::message::Delivery) -> Delivery {
        let lapin::message::Delivery {
            exchange,
            routing_key,
            redelivered,
            properties,
            data,
            acker,
            ..
        } = delivery;
        let headers = Headers::from_field_table(properties.headers().as_ref());
        let delivery_count = headers
            .get_i64("x-delivery-count")
            .and_then(|count| u64::try_from(count).ok())
            .unwrap_or(0);
        Delivery {
            body: data,
            message_id: properties.message_id().as_ref().map(ToString::to_string),
            content_type: properties.content_type().as_ref().map(ToString::to_string),
            headers,
            redelivered,
            delivery_count,
            routing_key: routing_key.to_string(),
            exchange: exchange.to_string(),
            acker,
        }
    }

    /// True once the channel this delivery came on is closed or lost (a connection recovery
    /// opens a new channel in its place). It can no longer be settled: RabbitMQ has returned it
    /// to its queue, with every other unsettled delivery of that channel, in the order they
    /// were delivered.
    #[must_use]
    pub fn channel_closed(&self) -> bool {
        self.acker.poisoned()
    }

    /// A handle that tells whether this delivery's channel is closed; it stays usable after
    /// the delivery is settled or dropped.
    #[must_use]
    pub fn channel_probe(&self) -> ChannelProbe {
        ChannelProbe(self.acker.clone())
    }

    /// Done: RabbitMQ forgets the message.
    pub async fn ack(&self) -> Result<(), SettleError> {
        settled(self.acker.ack(BasicAckOptions::default()).await)
    }

    /// Put it back at the head of its queue for another try. Mind the order: deliveries this
    /// consumer already holds stay with it and can be processed before the one put back;
    /// closing the channel instead returns every unsettled delivery in the order delivered. On RabbitMQ 3.10 this counts
    /// towards the delivery limit (4.3 and later count only failures).
    pub async fn nack_requeue(&self) -> Result<(), SettleError> {
        settled(
            self.acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await,
        )
    }

    /// Send it to the queue's dead-letter exchange (`{prefix}.dead` for partition queues).
    pub async fn reject_to_dead_letter(&self) -> Result<(), SettleError> {
        settled(
            self.acker
                .reject(BasicRejectOptions { requeue: false })
                .await,
        )
    }
}

fn settled(result: lapin::Result<bool>) -> Result<(), SettleError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(SettleError::NotSettled),
        Err(error) => Err(SettleError::Amqp(AmqpError(error))),
    }
}

/// Tells whether the channel one delivery came on is closed ([`Delivery::channel_probe`]).
#[derive(Clone)]
pub struct ChannelProbe(lapin::Acker);

impl ChannelProbe {
    /// True once that channel is closed or lost.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.0.poisoned()
    }
}

impl fmt::Debug for ChannelProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelProbe")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Deliveries from one queue, on a channel of its own with a per-consumer prefetch.
///
/// `None` from [`Consumer::next`] means the consumer was cancelled (by [`Consumer::cancel`],
/// or by the broker when the queue was deleted). An `Err` means the channel was closed by the
/// broker; consume again. Connection loss is recovered by lapin without ending the stream.
///
/// Shutting down without losing acks (RabbitMQ drops acks in flight on quorum queues when the
/// connection closes abruptly): [`Consumer::cancel`], finish or settle every delivery already
/// handed out (drain [`Consumer::next`] until `None`), then [`Consumer::close`], and only then
/// close the connection. [`Consumer::shutdown`] does cancel + close for a caller with nothing
/// in flight.
pub struct Consumer {
    channel: lapin::Channel,
    inner: lapin::Consumer,
    queue: String,
    tag: String,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub(crate) fn new(channel: lapin::Channel, inner: lapin::Consumer, queue: &str) -> Consumer {
        let tag = inner.tag().to_string();
        Consumer {
            channel,
            inner,
            queue: queue.to_owned(),
            tag,
        }
    }

    /// The queue consumed.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The consumer tag (ours, or the broker's if none was given).
    #[must_use]
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The next delivery; `None` once cancelled.
    pub async fn next(&mut self) -> Option<Result<Delivery, ConsumeError>> {
        StreamExt::next(self).await
    }

    /// Asks the broker to stop delivering. Deliveries already received still come out of
    /// [`Consumer::next`] (settle them), then it yields `None`. Deliveries handed out earlier
    /// can still be settled until [`Consumer::close`].
    pub async fn cancel(&self) -> Result<(), BrokerError> {
        if !self.channel.status().connected() {
            return Ok(());
        }
        self.channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await
            .map_err(|source| BrokerError::channel("cancel the consumer", source))
    }

    /// Closes the consumer's channel. Deliveries not yet settled go back to the queue.
    ///
    /// Acks travel on the same channel and reach the channel first, but a quorum queue settles
    /// them asynchronously (through Raft), and on RabbitMQ 3.10 a channel closed right after a
    /// burst of acks can see some of them requeued (rabbitmq-baseline.md, observation 7). So
    /// before closing, one synchronous round trip on the channel makes sure every ack was read,
    /// and a short linger lets the queue apply them. Consumers are idempotent anyway: this makes
    /// duplicates after a shutdown rare, not impossible.
    pub async fn close(self) -> Result<(), BrokerError> {
        if !self.channel.status().connected() {
            return Ok(());
        }
        let round_trip = self
            .channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        if round_trip.is_ok() {
            tokio::time::sleep(ACK_LINGER).await;
        }
        if !self.channel.status().connected() {
            return Ok(());
        }
        self.channel
            .close(200, "consumer closed".into())
            .await
            .map_err(|source| BrokerError::channel("close the consumer's channel", source))
    }

    /// Cancels, then closes the channel: the channel-first shutdown for a caller that has
    /// settled everything it was handed. Close the connection only after this returns.
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        self.cancel().await?;
        self.close().await
    }
}

impl Stream for Consumer {
    type Item = Result<Delivery, ConsumeError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Ok(delivery))) => {
                Poll::Ready(Some(Ok(Delivery::from_lapin(delivery))))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(ConsumeError::ChannelClosed {
                queue: this.queue.clone(),
                source: AmqpError(error),
            }))),
        }
    }
}
