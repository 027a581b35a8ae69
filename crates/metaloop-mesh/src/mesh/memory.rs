//! The in-process bus: bounded per-subscription queues, routed by subject pattern.
//!
//! Each subscription holds at most `capacity` messages, queued or delivered and not yet
//! acknowledged. A publish reaches every matching subscription or none: when one of them is
//! full the publisher waits for an acknowledgement ([`WhenFull::Wait`]) or gets
//! [`MeshError::Full`] ([`WhenFull::Reject`]). Nothing is ever queued without bound.
//!
//! A durable subscription outlives its subscriber: its queue keeps filling (up to the
//! capacity) and the messages delivered but not acknowledged go back to the front of the
//! queue, to be delivered again to the next subscriber with the same name. Messages
//! published while no subscription matches are dropped (unlike a JetStream stream, nothing
//! is retained for subscriptions created later).

use super::{
    AckHandle, BoxFuture, Delivery, Mesh, MeshError, Message, Published, SubscribeOptions,
    Subscription,
};
use crate::subject::SubjectPattern;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// What a publisher does when a matching subscription is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait until the subscriber acknowledges something.
    #[default]
    Wait,
    /// Fail at once with [`MeshError::Full`].
    Reject,
}

/// In-process bus settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Most messages one subscription holds (queued plus unacknowledged).
    pub capacity: usize,
    pub when_full: WhenFull,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            capacity: 1024,
            when_full: WhenFull::Wait,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Durable(String),
    Ephemeral(u64),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Durable(n) => write!(f, "durable subscription {n:?}"),
            Key::Ephemeral(n) => write!(f, "ephemeral subscription #{n}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    seq: u64,
    message: Message,
    attempts: u64,
}

#[derive(Debug)]
struct Consumer {
    pattern: SubjectPattern,
    attached: bool,
    queue: VecDeque<Stored>,
    unacked: BTreeMap<u64, Stored>,
    wake: Arc<Notify>,
}

impl Consumer {
    fn occupancy(&self) -> usize {
        self.queue.len() + self.unacked.len()
    }

    /// Puts every unacknowledged message back in the queue, in publish order.
    fn requeue_unacked(&mut self) {
        if self.unacked.is_empty() {
            return;
        }
        let mut all: Vec<Stored> = std::mem::take(&mut self.unacked).into_values().collect();
        all.extend(self.queue.drain(..));
        all.sort_by_key(|s| s.seq);
        self.queue = all.into();
    }
}

#[derive(Debug, Default)]
struct State {
    consumers: HashMap<Key, Consumer>,
    next_ephemeral: u64,
    next_seq: u64,
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    config: MemoryConfig,
    state: Mutex<State>,
    /// Woken when room appears in some subscription.
    space: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the bus, so keep going with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The in-process bus. Cloning gives another handle to the same bus.
#[derive(Debug, Clone)]
pub struct MemoryMesh {
    shared: Arc<Shared>,
}

impl MemoryMesh {
    /// A new, empty bus.
    pub fn new(config: MemoryConfig) -> Self {
        MemoryMesh {
            shared: Arc::new(Shared {
                config: MemoryConfig {
                    capacity: config.capacity.max(1),
                    ..config
                },
                state: Mutex::new(State::default()),
                space: Notify::new(),
            }),
        }
    }

    /// Its settings.
    pub fn config(&self) -> MemoryConfig {
        self.shared.config
    }

    /// Closes the bus: subscriptions end, publishes fail with [`MeshError::Closed`].
    pub fn close(&self) {
        let mut st = self.shared.lock();
        st.closed = true;
        for c in st.consumers.values() {
            c.wake.notify_one();
        }
        drop(st);
        self.shared.space.notify_waiters();
    }

    /// Removes a durable subscription and its messages; true when it existed.
    pub fn delete_durable(&self, name: &str) -> bool {
        let removed = self
            .shared
            .lock()
            .consumers
            .remove(&Key::Durable(name.to_owned()));
        if let Some(c) = &removed {
            c.wake.notify_one();
        }
        self.shared.space.notify_waiters();
        removed.is_some()
    }

    /// Messages a durable subscription holds (queued plus unacknowledged).
    pub fn durable_backlog(&self, name: &str) -> Option<usize> {
        self.shared
            .lock()
            .consumers
            .get(&Key::Durable(name.to_owned()))
            .map(Consumer::occupancy)
    }

    async fn publish_inner(&self, message: Message) -> Result<Published, MeshError> {
        let shared = &self.shared;
        loop {
            let notified = shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = shared.lock();
                if st.closed {
                    return Err(MeshError::Closed);
                }
                let capacity = shared.config.capacity;
                let full = st
                    .consumers
                    .iter()
                    .find(|(_, c)| c.pattern.matches(&message.subject) && c.occupancy() >= capacity)
                    .map(|(k, _)| k.to_string());
                match full {
                    Some(who) if shared.config.when_full == WhenFull::Reject => {
                        return Err(MeshError::Full(format!(
                            "{who} holds {capacity} unacknowledged messages (its capacity)"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        let seq = st.next_seq;
                        st.next_seq += 1;
                        for c in st.consumers.values_mut() {
                            if c.pattern.matches(&message.subject) {
                                c.queue.push_back(Stored {
                                    seq,
                                    message: message.clone(),
                                    attempts: 0,
                                });
                                c.wake.notify_one();
                            }
                        }
                        return Ok(Published::default());
                    }
                }
            }
            notified.await;
        }
    }

    fn subscribe_inner(
        &self,
        pattern: SubjectPattern,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, MeshError> {
        let mut st = self.shared.lock();
        if st.closed {
            return Err(MeshError::Closed);
        }
        let refuse = |message: String| MeshError::Subscribe {
            pattern: pattern.to_string(),
            message,
        };
        let key = match options.durable {
            Some(name) => {
                let key = Key::Durable(name.clone());
                match st.consumers.get_mut(&key) {
                    Some(c) if c.pattern != pattern => {
                        return Err(refuse(format!(
                            "durable subscription {name:?} exists with pattern {}",
                            c.pattern
                        )));
                    }
                    Some(c) if c.attached => {
                        return Err(refuse(format!(
                            "durable subscription {name:?} already has a subscriber"
                        )));
                    }
                    Some(c) => c.attached = true,
                    None => {
                        st.consumers
                            .insert(key.clone(), new_consumer(pattern.clone()));
                    }
                }
                key
            }
            None => {
                let key = Key::Ephemeral(st.next_ephemeral);
                st.next_ephemeral += 1;
                st.consumers
                    .insert(key.clone(), new_consumer(pattern.clone()));
                key
            }
        };
        Ok(Box::new(MemorySubscription {
            shared: Arc::clone(&self.shared),
            key,
        }))
    }
}

fn new_consumer(pattern: SubjectPattern) -> Consumer {
    Consumer {
        pattern,
        attached: true,
        queue: VecDeque::new(),
        unacked: BTreeMap::new(),
        wake: Arc::new(Notify::new()),
    }
}

impl Default for MemoryMesh {
    fn default() -> Self {
        MemoryMesh::new(MemoryConfig::default())
    }
}

impl Mesh for MemoryMesh {
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<Published, MeshError>> {
        Box::pin(self.publish_inner(message))
    }

    fn subscribe(
        &self,
        pattern: SubjectPattern,
        options: SubscribeOptions,
    ) -> BoxFuture<'_, Result<Box<dyn Subscription>, MeshError>> {
        let result = self.subscribe_inner(pattern, options);
        Box::pin(async move { result })
    }
}

struct MemorySubscription {
    shared: Arc<Shared>,
    key: Key,
}

impl MemorySubscription {
    async fn next_inner(&mut self) -> Result<Option<Delivery>, MeshError> {
        loop {
            let wake = {
                let mut st = self.shared.lock();
                if st.closed {
                    return Ok(None);
                }
                let Some(c) = st.consumers.get_mut(&self.key) else {
                    return Ok(None);
                };
                if let Some(mut stored) = c.queue.pop_front() {
                    stored.attempts += 1;
                    c.unacked.insert(stored.seq, stored.clone());
                    let ack = MemoryAck {
                        shared: Arc::clone(&self.shared),
                        key: self.key.clone(),
                        seq: stored.seq,
                    };
                    return Ok(Some(
                        Delivery::new(stored.message, stored.attempts, Box::new(ack))
                            .with_stream_seq(stored.seq),
                    ));
                }
                Arc::clone(&c.wake)
            };
            // A publish between the unlock and here leaves a permit, so this cannot miss it.
            wake.notified().await;
        }
    }
}

impl Subscription for MemorySubscription {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<Delivery>, MeshError>> {
        Box::pin(self.next_inner())
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        match &self.key {
            Key::Ephemeral(_) => {
                st.consumers.remove(&self.key);
            }
            Key::Durable(_) => {
                if let Some(c) = st.consumers.get_mut(&self.key) {
                    c.attached = false;
                    c.requeue_unacked();
                }
            }
        }
        drop(st);
        self.shared.space.notify_waiters();
    }
}

struct MemoryAck {
    shared: Arc<Shared>,
    key: Key,
    seq: u64,
}

impl AckHandle for MemoryAck {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), MeshError>> {
        let mut st = self.shared.lock();
        if let Some(c) = st.consumers.get_mut(&self.key)
            && c.unacked.remove(&self.seq).is_none()
        {
            // Put back by a restart before this ack arrived: it is done all the same.
            c.queue.retain(|s| s.seq != self.seq);
        }
        drop(st);
        self.shared.space.notify_waiters();
        Box::pin(async { Ok(()) })
    }

    fn nak(self: Box<Self>) -> BoxFuture<'static, Result<(), MeshError>> {
        let mut st = self.shared.lock();
        if let Some(c) = st.consumers.get_mut(&self.key)
            && let Some(stored) = c.unacked.remove(&self.seq)
        {
            let at = c
                .queue
                .iter()
                .position(|s| s.seq > stored.seq)
                .unwrap_or(c.queue.len());
            c.queue.insert(at, stored);
            c.wake.notify_one();
        }
        Box::pin(async { Ok(()) })
    }
}
