//! The bus: one [`Mesh`] trait, an in-process backend and a NATS JetStream backend, tested by
//! one shared suite (`tests/mesh.rs`).
//!
//! Messages are published on a [`Subject`] (the event's `type`) and consumed through a
//! [`SubjectPattern`] subscription that acknowledges each delivery explicitly. A durable
//! subscription (named) survives its subscriber: unacknowledged deliveries are delivered
//! again when a subscriber with the same name returns. Delivery is at least once; the
//! ingest pipeline's dedupe turns it into exactly-once counting.

pub mod memory;
pub mod nats;

pub use memory::{MemoryConfig, MemoryMesh, WhenFull};
pub use nats::{NatsConfig, NatsMesh, StorageKind};

use crate::envelope::{CloudEvent, MEDIA_TYPE_BATCH, MEDIA_TYPE_EVENT};
use crate::subject::{Subject, SubjectError, SubjectPattern};
use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future (the trait is object-safe so the runtime can pick a backend from
/// its configuration).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the bus carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Where it is published (the event's `type`).
    pub subject: Subject,
    /// The bytes, untouched.
    pub payload: Bytes,
    /// `application/cloudevents+json` or `application/cloudevents-batch+json`.
    pub content_type: Option<String>,
    /// Deduplication id (`<source>/<id>`); NATS drops a second publish with the same id
    /// within the stream's duplicate window (`Nats-Msg-Id`).
    pub msg_id: Option<String>,
}

impl Message {
    /// Raw bytes on a subject, no content type, no dedupe id.
    pub fn new(subject: Subject, payload: impl Into<Bytes>) -> Self {
        Message {
            subject,
            payload: payload.into(),
            content_type: None,
            msg_id: None,
        }
    }

    /// One event, published on its `type` with the id `<source>/<id>`.
    pub fn for_event(event: &CloudEvent) -> Result<Self, SubjectError> {
        Ok(Message {
            subject: Subject::new(event.event_type.clone())?,
            payload: event.to_json().into(),
            content_type: Some(MEDIA_TYPE_EVENT.into()),
            msg_id: Some(msg_id(&event.source, &event.id)),
        })
    }

    /// A batch document on one subject.
    pub fn for_batch(subject: Subject, batch: impl Into<Bytes>) -> Self {
        Message {
            subject,
            payload: batch.into(),
            content_type: Some(MEDIA_TYPE_BATCH.into()),
            msg_id: None,
        }
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Sets the dedupe id.
    pub fn with_msg_id(mut self, msg_id: impl Into<String>) -> Self {
        self.msg_id = Some(msg_id.into());
        self
    }
}

/// The dedupe id of an event: `<source>/<id>`.
pub fn msg_id(source: &str, id: &str) -> String {
    format!("{source}/{id}")
}

/// What the bus said about a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// The backend recognised the dedupe id and dropped this copy.
    pub duplicate: bool,
}

/// How to subscribe.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeOptions {
    /// A durable name: progress survives the subscriber and a new subscription with the same
    /// name resumes. `None` is an ephemeral subscription that ends with its subscriber.
    pub durable: Option<String>,
}

impl SubscribeOptions {
    /// A durable subscription.
    pub fn durable(name: impl Into<String>) -> Self {
        SubscribeOptions {
            durable: Some(name.into()),
        }
    }

    /// An ephemeral subscription.
    pub fn ephemeral() -> Self {
        SubscribeOptions { durable: None }
    }
}

/// Bus errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// A subscriber's queue (or the stream) is full and the backend is set to refuse rather
    /// than wait.
    #[error("mesh full: {0}")]
    Full(String),
    /// The mesh was closed.
    #[error("mesh closed")]
    Closed,
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("publish to {subject} failed: {message}")]
    Publish { subject: String, message: String },
    #[error("subscribe to {pattern} failed: {message}")]
    Subscribe { pattern: String, message: String },
    #[error("receive failed: {0}")]
    Receive(String),
    #[error("ack failed: {0}")]
    Ack(String),
    #[error("{0}")]
    Subject(#[from] SubjectError),
    #[error("{0}")]
    Config(String),
}

/// A bus.
pub trait Mesh: Send + Sync {
    /// Publishes a message; returns once the backend holds it (for NATS: once the stream has
    /// stored it). Waits, or fails with [`MeshError::Full`], when a subscriber is too slow.
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<Published, MeshError>>;

    /// Subscribes to the subjects matching `pattern`.
    fn subscribe(
        &self,
        pattern: SubjectPattern,
        options: SubscribeOptions,
    ) -> BoxFuture<'_, Result<Box<dyn Subscription>, MeshError>>;
}

/// A stream of deliveries, each to be acknowledged.
pub trait Subscription: Send {
    /// The next delivery; `None` once the mesh is closed.
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, MeshError>>;
}

/// How a delivery is settled.
pub trait AckHandle: Send {
    /// Done with it: never deliver it again.
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), MeshError>>;
    /// Not done: deliver it again.
    fn nak(self: Box<Self>) -> BoxFuture<'static, Result<(), MeshError>>;
}

/// One delivered message. Dropping it without [`Delivery::ack`] leaves it unacknowledged, so
/// it is delivered again later.
pub struct Delivery {
    pub message: Message,
    /// 1 on first delivery, more on redeliveries.
    pub attempt: u64,
    /// The message's sequence in its stream (the same on every redelivery); 0 when the
    /// backend has none.
    pub stream_seq: u64,
    ack: Box<dyn AckHandle>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("attempt", &self.attempt)
            .field("stream_seq", &self.stream_seq)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// A delivery settled through `ack`.
    pub fn new(message: Message, attempt: u64, ack: Box<dyn AckHandle>) -> Self {
        Delivery {
            message,
            attempt,
            stream_seq: 0,
            ack,
        }
    }

    /// The message's sequence in its stream.
    pub fn with_stream_seq(mut self, seq: u64) -> Self {
        self.stream_seq = seq;
        self
    }

    /// Acknowledges it.
    pub async fn ack(self) -> Result<(), MeshError> {
        self.ack.ack().await
    }

    /// Asks for it to be delivered again.
    pub async fn nak(self) -> Result<(), MeshError> {
        self.ack.nak().await
    }
}

/// Publishes one event on its `type` with dedupe id `<source>/<id>`.
pub async fn publish_event(mesh: &dyn Mesh, event: &CloudEvent) -> Result<Published, MeshError> {
    mesh.publish(Message::for_event(event)?).await
}
