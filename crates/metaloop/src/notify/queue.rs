//! A bounded queue that never blocks the producer: when it is full the oldest message is
//! dropped to make room, and the consumer awaits the next message.

use super::message::Message;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

struct State {
    items: VecDeque<Message>,
    /// The consumer holds a message (or a resend) it has not finished delivering.
    busy: bool,
    closed: bool,
}

/// One channel's queue: many producers, one consumer task.
pub(crate) struct Queue {
    capacity: usize,
    state: Mutex<State>,
    ready: Notify,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Queue {
        debug_assert!(capacity > 0);
        Queue {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(1024)),
                busy: false,
                closed: false,
            }),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // a panic while holding the lock leaves the queue itself consistent
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `m`; returns the message dropped to make room, if the queue was full.
    pub(crate) fn push(&self, m: Message) -> Option<Message> {
        let dropped = {
            let mut s = self.lock();
            let dropped = if s.items.len() >= self.capacity {
                s.items.pop_front()
            } else {
                None
            };
            s.items.push_back(m);
            dropped
        };
        self.ready.notify_one();
        dropped
    }

    /// The next message, once there is one; `None` after [`Queue::close`] once drained.
    /// Cancel-safe: a message is only taken in the poll that returns it.
    pub(crate) async fn pop(&self) -> Option<Message> {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.lock();
                if let Some(m) = s.items.pop_front() {
                    s.busy = true;
                    return Some(m);
                }
                if s.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// The consumer started work that did not come from the queue.
    pub(crate) fn set_busy(&self) {
        self.lock().busy = true;
    }

    /// The consumer finished the message it took.
    pub(crate) fn done(&self) {
        self.lock().busy = false;
    }

    /// Messages waiting, plus one if the consumer is busy.
    pub(crate) fn pending(&self) -> usize {
        let s = self.lock();
        s.items.len() + usize::from(s.busy)
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// No more messages will come; the consumer drains what is left, then stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::MessageKind;
    use super::*;
    use metaloop_core::time::Timestamp;

    fn msg(n: i64) -> Message {
        Message::new(MessageKind::Summary, Timestamp(n), format!("m{n}"))
    }

    #[tokio::test]
    async fn full_queue_drops_the_oldest() {
        let q = Queue::new(2);
        assert!(q.push(msg(1)).is_none());
        assert!(q.push(msg(2)).is_none());
        assert_eq!(q.push(msg(3)).map(|m| m.text), Some("m1".into()));
        assert_eq!(q.push(msg(4)).map(|m| m.text), Some("m2".into()));
        assert_eq!(q.pop().await.map(|m| m.text), Some("m3".into()));
        assert_eq!(q.pending(), 2);
        q.done();
        q.close();
        assert_eq!(q.pop().await.map(|m| m.text), Some("m4".into()));
        assert!(q.pop().await.is_none());
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let q = std::sync::Arc::new(Queue::new(4));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.pop().await.map(|m| m.text) });
        tokio::task::yield_now().await;
        q.push(msg(7));
        assert_eq!(waiter.await.unwrap(), Some("m7".into()));
    }
}
