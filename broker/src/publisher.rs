use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt as _;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation, PublisherConfirm};
use tokio::time::Instant;

use crate::error::{AmqpError, BrokerError};
use crate::message::{OutgoingMessage, Persistence};

/// How long a publish may wait for its confirm before it counts as failed (lapin #409: a
/// publish can hang when the broker goes away, so every publish has a limit).
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a message is not known to be safely queued. In every case the caller keeps the message
/// (in the outbox) and publishes it again later; consumers deduplicate by message id.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No queue is bound for the routing key: the broker returned the message (mandatory flag).
    /// The topology is missing or the partition count differs between producer and broker.
    #[error(
        "the broker returned the message as unroutable ({reply_code} {reply_text}); is the topology declared with the same partition count?"
    )]
    Returned {
        /// The AMQP reply code (312 NO_ROUTE).
        reply_code: u16,
        /// The broker's explanation.
        reply_text: String,
    },
    /// The broker refused the message (e.g. the queue is full: reject-publish).
    #[error("the broker refused the message (nack); the queue may be full")]
    Nacked,
    /// No confirm arrived in time; the message may or may not be queued.
    #[error("no confirm from the broker within {seconds} s")]
    TimedOut {
        /// The limit that ran out.
        seconds: u64,
    },
    /// The publishing channel or the connection failed; the next publish opens a new channel.
    #[error("the publishing channel failed")]
    Channel(#[source] AmqpError),
    /// The message cannot be put on the wire as it is.
    #[error("invalid message {field}: {reason}")]
    InvalidMessage {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Publishes with publisher confirms and the mandatory flag, on a channel of its own.
///
/// A publish succeeds only when the broker confirmed it *and* did not return it: RabbitMQ
/// confirms an unroutable mandatory message with an ack after returning it, so an ack alone
/// does not mean the message was queued. If the channel dies (closed by the broker, a timeout),
/// the next publish opens a new one: lapin only recovers channels as part of a connection.
/// Safe to share between tasks (`&self`).
pub struct Publisher {
    connection: Arc<lapin::Connection>,
    channel: tokio::sync::Mutex<lapin::Channel>,
    confirm_timeout: Duration,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("confirm_timeout", &self.confirm_timeout)
            .finish_non_exhaustive()
    }
}

/// A message checked and converted for the wire.
/// A publish of a batch after its first poll: over already, or waiting for its frames to be
/// written.
enum Started<F> {
    Done(Result<PublisherConfirm, PublishError>),
    Writing(std::pin::Pin<Box<F>>),
}

struct WireMessage {
    exchange: ShortString,
    routing_key: ShortString,
    body: Vec<u8>,
    properties: BasicProperties,
}

impl Publisher {
    pub(crate) async fn open(
        connection: Arc<lapin::Connection>,
        confirm_timeout: Duration,
    ) -> Result<Publisher, BrokerError> {
        let channel = open_confirm_channel(&connection)
            .await
            .map_err(|source| BrokerError::channel("open a publishing channel", source))?;
        Ok(Publisher {
            connection,
            channel: tokio::sync::Mutex::new(channel),
            confirm_timeout,
        })
    }

    /// The limit on each publish (and on a whole batch).
    #[must_use]
    pub fn confirm_timeout(&self) -> Duration {
        self.confirm_timeout
    }

    /// Publishes one message and waits for its confirm. About 1 000–2 000 messages per
    /// second at most; use [`Publisher::publish_batch`] for throughput.
    pub async fn publish(&self, message: OutgoingMessage) -> Result<(), PublishError> {
        let wire = to_wire(message)?;
        let channel = self
            .current_channel()
            .await
            .map_err(PublishError::Channel)?;
        let deadline = Instant::now() + self.confirm_timeout;
        let confirm = match tokio::time::timeout_at(deadline, send(&channel, wire)).await {
            Ok(Ok(confirm)) => confirm,
            Ok(Err(error)) => return Err(PublishError::Channel(AmqpError(error))),
            Err(_) => return Err(self.timed_out(&channel).await),
        };
        self.settle(&channel, deadline, confirm).await
    }

    /// Publishes every message first, then waits for all the confirms (pipelined; tens of
    /// thousands of messages per second instead of one round trip each). The results are in
    /// the order of `messages`; the confirm timeout applies to the batch as a whole.
    /// Keep batches to a few thousand messages.
    pub async fn publish_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Vec<Result<(), PublishError>> {
        self.send_batch(messages).await.confirmed(self).await
    }

    /// Puts every message on the wire and returns without waiting for the confirms, so a
    /// caller can send the next batch while the broker confirms this one (a window of two
    /// batches instead of stop-and-wait). Messages of later batches follow on the same channel,
    /// so their order is kept. Wait with [`SentBatch::confirmed`].
    pub async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> SentBatch {
        let deadline = Instant::now() + self.confirm_timeout;
        let channel = match self.current_channel().await {
            Ok(channel) => channel,
            Err(error) => {
                let sent = messages
                    .iter()
                    .map(|_| Err(PublishError::Channel(error.clone())))
                    .collect();
                return SentBatch {
                    channel: None,
                    deadline,
                    sent,
                };
            }
        };
        let total = messages.len();
        let mut sent: Vec<Result<PublisherConfirm, PublishError>> = Vec::with_capacity(total);
        // One timer for the whole batch rather than one per message (registering and cancelling
        // a timer per publish is measurable at tens of thousands of messages per second).
        // Pipelined: every publish is started, in order, before any is awaited. A lapin publish
        // queues its frames for the connection's I/O loop when it is first polled, then waits
        // until they are written; awaiting each before starting the next made every message
        // a round trip between this task and the I/O loop (about half the relay's time). Now
        // the I/O loop writes whatever has queued at each wake-up. The order on the wire is
        // the order of the first polls, which is the batch's order (tests/rabbitmq.rs checks
        // it over thousands of messages).
        let publish_all = async {
            let mut started = Vec::with_capacity(total);
            for message in messages {
                let mut publish = Box::pin(async {
                    match to_wire(message) {
                        Err(error) => Err(error),
                        Ok(wire) => send(&channel, wire)
                            .await
                            .map_err(|error| PublishError::Channel(AmqpError(error))),
                    }
                });
                let first = std::future::poll_fn(|cx| Poll::Ready(publish.as_mut().poll(cx))).await;
                started.push(match first {
                    Poll::Ready(outcome) => Started::Done(outcome),
                    Poll::Pending => Started::Writing(publish),
                });
            }
            for publish in started {
                sent.push(match publish {
                    Started::Done(outcome) => outcome,
                    Started::Writing(publish) => publish.await,
                });
            }
        };
        if tokio::time::timeout_at(deadline, publish_all)
            .await
            .is_err()
        {
            while sent.len() < total {
                sent.push(Err(self.timeout_error()));
            }
        }
        SentBatch {
            channel: Some(channel),
            deadline,
            sent,
        }
    }

    /// Closes the publishing channel. Unconfirmed publishes fail.
    pub async fn close(&self) -> Result<(), BrokerError> {
        let channel = self.channel.lock().await.clone();
        if channel.status().connected() {
            channel
                .close(200, "publisher closed".into())
                .await
                .map_err(|source| BrokerError::channel("close the publishing channel", source))?;
        }
        Ok(())
    }

    async fn settle(
        &self,
        channel: &lapin::Channel,
        deadline: Instant,
        confirm: PublisherConfirm,
    ) -> Result<(), PublishError> {
        match tokio::time::timeout_at(deadline, confirm).await {
            Ok(confirmation) => confirmation_result(confirmation),
            Err(_) => Err(self.timed_out(channel).await),
        }
    }

    /// The channel to publish on, opening a new one if the last one died.
    async fn current_channel(&self) -> Result<lapin::Channel, AmqpError> {
        let mut guard = self.channel.lock().await;
        if channel_is_dead(&guard) {
            tracing::info!("the publishing channel is closed; opening a new one");
            *guard = open_confirm_channel(&self.connection)
                .await
                .map_err(AmqpError)?;
        }
        Ok(guard.clone())
    }

    /// After a timeout the channel's state is unknown (lapin #409); start over on a new one.
    async fn timed_out(&self, channel: &lapin::Channel) -> PublishError {
        self.replace_channel(channel).await;
        self.timeout_error()
    }

    async fn replace_channel(&self, stale: &lapin::Channel) {
        let mut guard = self.channel.lock().await;
        if guard.id() != stale.id() {
            return;
        }
        match open_confirm_channel(&self.connection).await {
            Ok(fresh) => {
                let old = std::mem::replace(&mut *guard, fresh);
                drop(guard);
                if old.status().connected() {
                    // Best effort: the old channel is abandoned either way.
                    let _closed = old.close(200, "confirm timed out".into()).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not open a new publishing channel after a timeout");
            }
        }
    }

    fn timeout_error(&self) -> PublishError {
        PublishError::TimedOut {
            seconds: self.confirm_timeout.as_secs(),
        }
    }
}

/// Messages on the wire whose confirms are still to come; from [`Publisher::send_batch`].
pub struct SentBatch {
    channel: Option<lapin::Channel>,
    deadline: Instant,
    sent: Vec<Result<PublisherConfirm, PublishError>>,
}

impl fmt::Debug for SentBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentBatch")
            .field("messages", &self.sent.len())
            .finish_non_exhaustive()
    }
}

impl SentBatch {
    /// How many messages the batch holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// True for a batch of no messages.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Waits for every confirm (the publisher's timeout counts from the send). The results
    /// are in the order the messages were given. `publisher` must be the one that sent them:
    /// after a timeout it moves to a fresh channel.
    pub async fn confirmed(self, publisher: &Publisher) -> Vec<Result<(), PublishError>> {
        let total = self.sent.len();
        let mut results = Vec::with_capacity(total);
        let mut outcomes = self.sent.into_iter();
        // One timer for the batch, as in `send_batch`.
        let await_all = async {
            for outcome in outcomes.by_ref() {
                let result = match outcome {
                    Err(error) => Err(error),
                    Ok(confirm) => confirmation_result(confirm.await),
                };
                results.push(result);
            }
        };
        let timed_out = tokio::time::timeout_at(self.deadline, await_all)
            .await
            .is_err();
        if timed_out {
            // The one being awaited when time ran out has no confirm; later ones may have.
            results.push(Err(publisher.timeout_error()));
            for outcome in outcomes {
                let result = match outcome {
                    Err(error) => Err(error),
                    Ok(confirm) => match confirm.now_or_never() {
                        Some(confirmation) => confirmation_result(confirmation),
                        None => Err(publisher.timeout_error()),
                    },
                };
                results.push(result);
            }
        }
        if timed_out && let Some(channel) = &self.channel {
            publisher.replace_channel(channel).await;
        }
        results
    }
}

/// Closed, errored, or closing (a channel the broker closed passes through `Closing` and never
/// comes back). A channel waiting for connection recovery is not dead: lapin reopens it.
fn channel_is_dead(channel: &lapin::Channel) -> bool {
    let status = channel.status();
    !(status.connected() || status.initializing())
}

async fn open_confirm_channel(connection: &lapin::Connection) -> lapin::Result<lapin::Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

async fn send(channel: &lapin::Channel, wire: WireMessage) -> lapin::Result<PublisherConfirm> {
    channel
        .basic_publish(
            wire.exchange,
            wire.routing_key,
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            &wire.body,
            wire.properties,
        )
        .await
}

fn confirmation_result(confirmation: lapin::Result<Confirmation>) -> Result<(), PublishError> {
    match confirmation {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))) => {
            Err(PublishError::Returned {
                reply_code: returned.reply_code,
                reply_text: returned.reply_text.to_string(),
            })
        }
        Ok(Confirmation::Nack(None)) => Err(PublishError::Nacked),
        // The channel is put in confirm mode when it opens, so this means it was swapped
        // under us; the message's fate is unknown.
        Ok(Confirmation::NotRequested) => Err(PublishError::Channel(AmqpError(
            lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
                lapin::ChannelState::Initial,
                "publisher confirms were not enabled on this channel",
            )),
        ))),
        Err(error) => Err(PublishError::Channel(AmqpError(error))),
    }
}

fn to_wire(message: OutgoingMessage) -> Result<WireMessage, PublishError> {
    let short = |field: &'static str, value: String| {
        ShortString::try_new(value).map_err(|_| PublishError::InvalidMessage {
            field,
            reason: "longer than 255 bytes".to_owned(),
        })
    };
    if message.message_id.is_empty() {
        return Err(PublishError::InvalidMessage {
            field: "message id",
            reason: "it is empty; consumers deduplicate by it".to_owned(),
        });
    }
    let headers =
        message
            .headers
            .to_field_table()
            .map_err(|reason| PublishError::InvalidMessage {
                field: "headers",
                reason,
            })?;
    let delivery_mode = match message.persistence {
        Persistence::Persistent => 2,
        Persistence::Transient => 1,
    };
    let properties = BasicProperties::default()
        .with_message_id(short("message id", message.message_id)?)
        .with_content_type(short("content type", message.content_type)?)
        .with_delivery_mode(delivery_mode)
        .with_headers(headers);
    Ok(WireMessage {
        exchange: short("exchange", message.exchange)?,
        routing_key: short("routing key", message.routing_key)?,
        body: message.body,
        properties,
    })
}
