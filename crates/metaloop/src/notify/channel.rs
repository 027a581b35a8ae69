//! One channel's delivery task: takes messages off its queue in order and delivers each with
//! retries (exponential backoff with jitter) until it arrives or its retry budget runs out.

use super::alertmanager::{self, Tracker};
use super::message::{Message, MessageKind};
use super::queue::Queue;
use super::{RetryPolicy, slack, webhook};
use crate::metrics::Metrics;
use backon::{ExponentialBuilder, Retryable};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A webhook secret; never printed.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) Arc<[u8]>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where a channel delivers, and how it formats.
#[derive(Debug)]
pub(crate) enum Sink {
    Log,
    Webhook { url: String, secret: Option<Secret> },
    Slack { url: String },
    Alertmanager { url: String, tracker: Tracker },
}

impl Sink {
    /// Whether messages of `kind` go to this channel.
    pub(crate) fn accepts(&self, kind: MessageKind) -> bool {
        match self {
            Sink::Alertmanager { .. } => kind.is_alert(),
            Sink::Log | Sink::Webhook { .. } | Sink::Slack { .. } => true,
        }
    }

    /// What to deliver for `m`, if anything.
    fn prepare(&mut self, m: Message) -> Option<Outgoing> {
        match self {
            Sink::Log => Some(Outgoing::Log(m)),
            Sink::Webhook { url, .. } => {
                let id = uuid::Uuid::now_v7().to_string();
                Some(Outgoing::Post {
                    url: url.clone(),
                    body: webhook::body(&id, &m).into(),
                    delivery: Some(id),
                    signed: true,
                })
            }
            Sink::Slack { url } => Some(Outgoing::Post {
                url: url.clone(),
                body: serde_json::to_vec(&slack::payload(&m))
                    .unwrap_or_default()
                    .into(),
                delivery: None,
                signed: false,
            }),
            Sink::Alertmanager { url, tracker } => {
                let alert = tracker.apply(&m)?;
                Some(Outgoing::Post {
                    url: alertmanager::endpoint(url),
                    body: serde_json::to_vec(&[alert]).unwrap_or_default().into(),
                    delivery: None,
                    signed: false,
                })
            }
        }
    }

    /// The periodic re-send of alerts still firing (Alertmanager only).
    fn resend(&self) -> Option<Outgoing> {
        let Sink::Alertmanager { url, tracker } = self else {
            return None;
        };
        let firing = tracker.firing();
        if firing.is_empty() {
            return None;
        }
        Some(Outgoing::Post {
            url: alertmanager::endpoint(url),
            body: serde_json::to_vec(&firing).unwrap_or_default().into(),
            delivery: None,
            signed: false,
        })
    }

    fn secret(&self) -> Option<&Secret> {
        match self {
            Sink::Webhook { secret, .. } => secret.as_ref(),
            _ => None,
        }
    }
}

/// One delivery, ready to attempt (and re-attempt unchanged).
#[derive(Debug)]
enum Outgoing {
    Log(Message),
    Post {
        url: String,
        body: bytes::Bytes,
        /// Webhook delivery id header.
        delivery: Option<String>,
        /// Add the timestamp (and, with a secret, signature) headers.
        signed: bool,
    },
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("receiver answered {status}: {body}")]
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
}

impl DeliveryError {
    /// Worth another attempt: the receiver may be down, slow or rate-limiting.
    fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Transport(_) => true,
            DeliveryError::Status { status, .. } => {
                matches!(status, 408 | 425 | 429) || (500..600).contains(status)
            }
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Status { retry_after, .. } => *retry_after,
            DeliveryError::Transport(_) => None,
        }
    }
}

/// Counts of one channel.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) sent: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
}

/// The task that owns a channel's sink.
pub(crate) struct Worker {
    pub(crate) name: String,
    pub(crate) sink: Sink,
    pub(crate) queue: Arc<Queue>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) metrics: Option<Metrics>,
    pub(crate) retry: RetryPolicy,
    pub(crate) client: reqwest::Client,
    pub(crate) resend: Option<Duration>,
}

enum Next {
    Message(Message),
    Resend,
    Closed,
}

impl Worker {
    /// Delivers until the queue is closed and drained.
    pub(crate) async fn run(mut self) {
        let mut resend = self.resend.map(|every| {
            let mut iv = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            iv
        });
        loop {
            let next = match resend.as_mut() {
                Some(iv) => tokio::select! {
                    m = self.queue.pop() => m.map_or(Next::Closed, Next::Message),
                    _ = iv.tick() => Next::Resend,
                },
                None => self.queue.pop().await.map_or(Next::Closed, Next::Message),
            };
            let (out, about) = match next {
                Next::Closed => return,
                Next::Message(m) => {
                    let about = (m.kind, m.subject.clone());
                    (self.sink.prepare(m), about)
                }
                Next::Resend => {
                    self.queue.set_busy();
                    (self.sink.resend(), (MessageKind::AlertFiring, None))
                }
            };
            if let Some(out) = out {
                self.deliver(&out, about).await;
            }
            self.queue.done();
        }
    }

    async fn deliver(&self, out: &Outgoing, (kind, subject): (MessageKind, Option<String>)) {
        let p = self.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(p.min_delay)
            .with_max_delay(p.max_delay)
            .with_max_times(p.max_attempts.saturating_sub(1))
            .with_total_delay(Some(p.max_elapsed))
            .with_jitter();
        let secret = self.sink.secret();
        let max_delay = p.max_delay;
        let result = (|| attempt(&self.client, out, secret))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(DeliveryError::is_retryable)
            .adjust(|e, delay| match (delay, e.retry_after()) {
                // the receiver asked us to wait: honour it, within the longest backoff step
                (Some(d), Some(asked)) => Some(d.max(asked.min(max_delay))),
                (d, _) => d,
            })
            .notify(|e, delay| {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = &self.metrics {
                    m.notification_retried(&self.name);
                }
                tracing::debug!(
                    channel = %self.name,
                    kind = kind.as_str(),
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "notification delivery failed, retrying"
                );
            })
            .await;
        match result {
            Ok(()) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = &self.metrics {
                    m.notification_sent(&self.name);
                }
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = &self.metrics {
                    m.notification_failed(&self.name);
                }
                tracing::warn!(
                    channel = %self.name,
                    kind = kind.as_str(),
                    subject = subject.as_deref().unwrap_or(""),
                    error = %e,
                    "notification lost"
                );
            }
        }
    }
}

/// One delivery attempt.
async fn attempt(
    client: &reqwest::Client,
    out: &Outgoing,
    secret: Option<&Secret>,
) -> Result<(), DeliveryError> {
    let (url, body, delivery, signed) = match out {
        Outgoing::Log(m) => {
            log(m);
            return Ok(());
        }
        Outgoing::Post {
            url,
            body,
            delivery,
            signed,
        } => (url, body, delivery, *signed),
    };
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.clone());
    if let Some(id) = delivery {
        req = req.header(webhook::DELIVERY_HEADER, id);
    }
    if signed {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        req = req.header(webhook::TIMESTAMP_HEADER, now.to_string());
        if let Some(s) = secret {
            req = req.header(
                webhook::SIGNATURE_HEADER,
                webhook::signature(&s.0, now, body),
            );
        }
    }
    let resp = req.send().await?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    Err(DeliveryError::Status {
        status: status.as_u16(),
        body: text.chars().take(200).collect(),
        retry_after,
    })
}

/// The `log` channel: one structured tracing event per message.
fn log(m: &Message) {
    let subject = m.subject.as_deref().unwrap_or("");
    let time = m.time.to_rfc3339();
    if m.kind == MessageKind::AlertFiring {
        tracing::warn!(
            target: "metaloop::notify",
            kind = m.kind.as_str(),
            %time,
            subject,
            fields = ?m.fields,
            text = %m.text,
            "notification"
        );
    } else {
        tracing::info!(
            target: "metaloop::notify",
            kind = m.kind.as_str(),
            %time,
            subject,
            fields = ?m.fields,
            text = %m.text,
            "notification"
        );
    }
}
