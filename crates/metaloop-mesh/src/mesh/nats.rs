//! The NATS JetStream bus: one durable stream over `<prefix>.>`, durable pull consumers with
//! explicit acknowledgement, `Nats-Msg-Id` for server-side dedupe, and reconnection with
//! exponential backoff (`backon`).

use super::{
    AckHandle, BoxFuture, Delivery, Mesh, MeshError, Message, Published, SubscribeOptions,
    Subscription,
};
use crate::subject::{Subject, SubjectPattern, SubjectPrefix};
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use async_nats::{HeaderMap, header};
use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where the stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    #[default]
    File,
    Memory,
}

/// NATS JetStream settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The stream's name.
    pub stream: String,
    /// First token of every subject; the stream captures `<prefix>.>`.
    pub subject_prefix: SubjectPrefix,
    /// How long the server remembers `Nats-Msg-Id`s, seconds.
    pub duplicate_window_secs: u64,
    /// A delivery not acknowledged within this is delivered again, milliseconds.
    pub ack_wait_ms: u64,
    /// Most unacknowledged deliveries per consumer (the server stops delivering beyond).
    pub max_ack_pending: i64,
    /// Most messages fetched per pull request.
    pub pull_batch: usize,
    /// Stream limits; when reached, publishes fail with [`MeshError::Full`] (discard new).
    pub max_messages: i64,
    pub max_bytes: i64,
    /// Messages older than this are dropped, seconds (0: kept until the limits).
    pub max_age_secs: u64,
    pub storage: StorageKind,
    /// Wait for the server to confirm each acknowledgement (one round trip per message).
    pub confirm_acks: bool,
    /// One connection attempt, milliseconds.
    pub connect_timeout_ms: u64,
    /// Attempts at the first connection before giving up.
    pub connect_attempts: usize,
    /// Reconnection backoff, exponential: first and longest delay, milliseconds (random
    /// jitter adds up to as much again, so clients do not reconnect in lockstep).
    pub reconnect_min_delay_ms: u64,
    pub reconnect_max_delay_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            stream: "METALOOP".into(),
            subject_prefix: SubjectPrefix::default(),
            duplicate_window_secs: 120,
            ack_wait_ms: 30_000,
            max_ack_pending: 1000,
            pull_batch: 128,
            max_messages: 10_000_000,
            max_bytes: 4 * 1024 * 1024 * 1024,
            max_age_secs: 7 * 24 * 3600,
            storage: StorageKind::File,
            confirm_acks: false,
            connect_timeout_ms: 2_000,
            connect_attempts: 5,
            reconnect_min_delay_ms: 100,
            reconnect_max_delay_ms: 10_000,
        }
    }
}

impl NatsConfig {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.reconnect_min_delay_ms))
            .with_max_delay(Duration::from_millis(self.reconnect_max_delay_ms))
            .with_jitter()
    }
}

/// The delay before reconnection attempt `attempt` (1-based): the backoff's sequence.
fn reconnect_delay(builder: ExponentialBuilder, attempt: usize) -> Duration {
    builder
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1))
        .unwrap_or(Duration::ZERO)
}

/// The NATS JetStream bus.
#[derive(Debug, Clone)]
pub struct NatsMesh {
    config: NatsConfig,
    client: async_nats::Client,
    js: jetstream::Context,
}

impl NatsMesh {
    /// Connects (retrying with backoff) and creates the stream if it does not exist.
    pub async fn connect(config: NatsConfig) -> Result<Self, MeshError> {
        let url = config.url.clone();
        let connect_error = |message: String| MeshError::Connect {
            url: url.clone(),
            message,
        };
        let backoff = config.backoff();
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempt| reconnect_delay(backoff, attempt))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("nats connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("nats disconnected; reconnecting")
                    }
                    other => tracing::debug!(event = %other, "nats event"),
                }
            });
        let client = (|| options.clone().connect(config.url.as_str()))
            .retry(
                config
                    .backoff()
                    .with_max_times(config.connect_attempts.saturating_sub(1)),
            )
            .notify(|e, delay| tracing::warn!(error = %e, ?delay, "nats connect failed; retrying"))
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let js = jetstream::new(client.clone());
        let stream_config = stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            duplicate_window: Duration::from_secs(config.duplicate_window_secs),
            max_messages: config.max_messages,
            max_bytes: config.max_bytes,
            max_age: Duration::from_secs(config.max_age_secs),
            discard: stream::DiscardPolicy::New,
            storage: match config.storage {
                StorageKind::File => stream::StorageType::File,
                StorageKind::Memory => stream::StorageType::Memory,
            },
            ..Default::default()
        };
        (|| js.get_or_create_stream(stream_config.clone()))
            .retry(
                config
                    .backoff()
                    .with_max_times(config.connect_attempts.saturating_sub(1)),
            )
            .when(|e| {
                !matches!(
                    e.kind(),
                    jetstream::context::CreateStreamErrorKind::InvalidStreamName
                        | jetstream::context::CreateStreamErrorKind::EmptyStreamName
                )
            })
            .await
            .map_err(|e| MeshError::Config(format!("stream {}: {e}", config.stream)))?;
        Ok(NatsMesh { config, client, js })
    }

    /// Its settings.
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// The underlying client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Deletes the stream and everything in it.
    pub async fn delete_stream(&self) -> Result<(), MeshError> {
        self.js
            .delete_stream(&self.config.stream)
            .await
            .map(|_| ())
            .map_err(|e| MeshError::Config(format!("deleting stream {}: {e}", self.config.stream)))
    }

    /// Deletes a durable consumer.
    pub async fn delete_durable(&self, name: &str) -> Result<(), MeshError> {
        let stream = self.stream().await?;
        stream
            .delete_consumer(name)
            .await
            .map(|_| ())
            .map_err(|e| MeshError::Config(format!("deleting consumer {name}: {e}")))
    }

    async fn stream(&self) -> Result<stream::Stream, MeshError> {
        self.js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| MeshError::Config(format!("stream {}: {e}", self.config.stream)))
    }

    async fn publish_inner(&self, message: Message) -> Result<Published, MeshError> {
        let wire = self.config.subject_prefix.wire_subject(&message.subject);
        let publish_error = |m: String| MeshError::Publish {
            subject: wire.clone(),
            message: m,
        };
        let mut headers = HeaderMap::new();
        if let Some(ct) = &message.content_type {
            headers.insert("Content-Type", ct.as_str());
        }
        if let Some(id) = &message.msg_id {
            headers.insert(header::NATS_MESSAGE_ID, id.as_str());
        }
        let attempt = || async {
            let ack = self
                .js
                .publish_with_headers(wire.clone(), headers.clone(), message.payload.clone())
                .await?;
            ack.await
        };
        // A retried publish keeps its Nats-Msg-Id, so the stream stores it once.
        let ack = attempt
            .retry(self.config.backoff().with_max_times(3))
            .when(|e| {
                matches!(
                    e.kind(),
                    jetstream::context::PublishErrorKind::TimedOut
                        | jetstream::context::PublishErrorKind::BrokenPipe
                )
            })
            .notify(|e, delay| tracing::warn!(error = %e, ?delay, "nats publish failed; retrying"))
            .await
            .map_err(|e| {
                if is_stream_full(&e) {
                    MeshError::Full(format!(
                        "stream {} is at its limits: {e}",
                        self.config.stream
                    ))
                } else {
                    publish_error(e.to_string())
                }
            })?;
        Ok(Published {
            duplicate: ack.duplicate,
        })
    }

    async fn subscribe_inner(
        &self,
        pattern: SubjectPattern,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, MeshError> {
        let filter = self.config.subject_prefix.wire_pattern(&pattern);
        let refuse = |message: String| MeshError::Subscribe {
            pattern: pattern.to_string(),
            message,
        };
        let stream = self.stream().await?;
        let consumer_config = pull::Config {
            durable_name: options.durable.clone(),
            name: options.durable.clone(),
            filter_subject: filter.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_millis(self.config.ack_wait_ms),
            max_ack_pending: self.config.max_ack_pending,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            inactive_threshold: if options.durable.is_some() {
                Duration::ZERO
            } else {
                Duration::from_secs(300)
            },
            ..Default::default()
        };
        let consumer: jetstream::consumer::PullConsumer = match &options.durable {
            Some(name) => {
                let mut consumer = stream
                    .get_or_create_consumer(name, consumer_config)
                    .await
                    .map_err(|e| refuse(e.to_string()))?;
                let existing = consumer.info().await.map_err(|e| refuse(e.to_string()))?;
                if existing.config.filter_subject != filter {
                    return Err(refuse(format!(
                        "durable consumer {name:?} exists with filter {}",
                        existing.config.filter_subject
                    )));
                }
                consumer
            }
            None => stream
                .create_consumer(consumer_config)
                .await
                .map_err(|e| refuse(e.to_string()))?,
        };
        let mut subscription = NatsSubscription {
            consumer,
            messages: None,
            prefix: self.config.subject_prefix.clone(),
            batch: self.config.pull_batch.max(1),
            confirm_acks: self.config.confirm_acks,
            backoff: self.config.backoff(),
        };
        subscription.open().await?;
        Ok(Box::new(subscription))
    }
}

/// JetStream refuses a message when a stream limit is reached with discard-new:
/// error 10077 ("maximum messages exceeded", "maximum bytes exceeded", …).
fn is_stream_full(e: &jetstream::context::PublishError) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(js) = s.downcast_ref::<jetstream::Error>() {
            return js.code() == 10077 || js.to_string().contains("maximum");
        }
        source = s.source();
    }
    e.to_string().contains("maximum messages") || e.to_string().contains("maximum bytes")
}

impl Mesh for NatsMesh {
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<Published, MeshError>> {
        Box::pin(self.publish_inner(message))
    }

    fn subscribe(
        &self,
        pattern: SubjectPattern,
        options: SubscribeOptions,
    ) -> BoxFuture<'_, Result<Box<dyn Subscription>, MeshError>> {
        Box::pin(self.subscribe_inner(pattern, options))
    }
}

struct NatsSubscription {
    consumer: jetstream::consumer::PullConsumer,
    messages: Option<pull::Stream>,
    prefix: SubjectPrefix,
    batch: usize,
    confirm_acks: bool,
    backoff: ExponentialBuilder,
}

impl NatsSubscription {
    /// (Re)opens the pull stream, retrying with backoff.
    async fn open(&mut self) -> Result<(), MeshError> {
        let consumer = &self.consumer;
        let batch = self.batch;
        let stream = (|| async {
            consumer
                .stream()
                .max_messages_per_batch(batch)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
        })
        .retry(self.backoff.with_max_times(8))
        .notify(|e, delay| tracing::warn!(error = %e, ?delay, "nats pull failed; retrying"))
        .await
        .map_err(|e| MeshError::Receive(e.to_string()))?;
        self.messages = Some(stream);
        Ok(())
    }

    async fn next_inner(&mut self) -> Result<Option<Delivery>, MeshError> {
        loop {
            if self.messages.is_none() {
                self.open().await?;
            }
            let messages = self.messages.as_mut().expect("opened above");
            match messages.next().await {
                Some(Ok(m)) => return Ok(Some(self.delivery(m))),
                Some(Err(e)) => {
                    use pull::MessagesErrorKind as K;
                    match e.kind() {
                        K::ConsumerDeleted | K::PushBasedConsumer => {
                            return Err(MeshError::Receive(e.to_string()));
                        }
                        _ => {
                            tracing::warn!(error = %e, "nats pull stream failed; reopening");
                            self.messages = None;
                        }
                    }
                }
                None => self.messages = None,
            }
        }
    }

    fn delivery(&self, m: jetstream::Message) -> Delivery {
        let (attempt, stream_seq) = m
            .info()
            .map(|i| (i.delivered.max(1) as u64, i.stream_sequence))
            .unwrap_or((1, 0));
        let (m, acker) = m.split();
        let header = |name: &str| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let subject = self
            .prefix
            .strip(m.subject.as_str())
            .or_else(|| Subject::new(m.subject.as_str()).ok())
            .unwrap_or_else(|| Subject::new("invalid").expect("valid subject"));
        let message = Message {
            subject,
            payload: m.payload.clone(),
            content_type: header("Content-Type"),
            msg_id: header("Nats-Msg-Id"),
        };
        Delivery::new(
            message,
            attempt,
            Box::new(NatsAck {
                acker,
                confirm: self.confirm_acks,
            }),
        )
        .with_stream_seq(stream_seq)
    }
}

impl Subscription for NatsSubscription {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, MeshError>> {
        Box::pin(self.next_inner())
    }
}

struct NatsAck {
    acker: jetstream::message::Acker,
    confirm: bool,
}

impl AckHandle for NatsAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), MeshError>> {
        Box::pin(async move {
            let result = if self.confirm {
                self.acker.double_ack().await
            } else {
                self.acker.ack().await
            };
            result.map_err(|e| MeshError::Ack(e.to_string()))
        })
    }

    fn nak(self: Box<Self>) -> BoxFuture<'static, Result<(), MeshError>> {
        Box::pin(async move {
            self.acker
                .ack_with(AckKind::Nak(None))
                .await
                .map_err(|e| MeshError::Ack(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_grow_exponentially_up_to_the_cap() {
        let builder = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_millis(1000));
        let delays: Vec<u64> = (1..=8)
            .map(|a| reconnect_delay(builder, a).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        // With jitter: never below the plain delay, never above twice it.
        let jittered = NatsConfig {
            reconnect_min_delay_ms: 100,
            reconnect_max_delay_ms: 1000,
            ..NatsConfig::default()
        }
        .backoff();
        for (a, plain) in (1..=8).zip(delays) {
            let d = reconnect_delay(jittered, a).as_millis() as u64;
            assert!(
                (plain..=2 * plain).contains(&d),
                "attempt {a}: {d} ms vs {plain} ms"
            );
        }
        // Attempts past any limit still get a delay (the client retries forever).
        assert_eq!(
            reconnect_delay(builder.with_max_times(2), 50),
            Duration::from_millis(1000)
        );
    }
}
