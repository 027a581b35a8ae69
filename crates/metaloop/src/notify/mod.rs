//! Human notification channels (`[[notify]]`): log, webhook, Slack and Alertmanager.
//!
//! [`Notifier::notify`] never blocks: each channel has a bounded queue (when it is full the
//! oldest message is dropped and counted) and its own task that delivers in order, retrying
//! with exponential backoff and jitter within a retry budget ([`RetryPolicy`]: by default 5
//! attempts within about a minute). A message is lost only when its budget runs out or the
//! receiver refuses it for good (a 4xx other than 408/425/429); both are counted. A receiver
//! that is down delays nothing but its own channel.
//!
//! Payloads: [`webhook`] (signed JSON), [`slack`] (incoming-webhook blocks), [`alertmanager`]
//! (v2 API, alerts only); the `log` channel writes one `tracing` event per message with
//! structured fields (`kind`, `time`, `subject`, `fields`, `text`).

pub mod alertmanager;
mod channel;
mod message;
mod queue;
pub mod slack;
pub mod webhook;

pub use message::{Message, MessageKind, field, severity_name};

use crate::config::{NotifyEntry, NotifyKind};
use crate::metrics::Metrics;
use channel::{Secret, Sink, Stats, Worker};
use metaloop_core::alert::Alert;
use metaloop_core::supervisor::Notification;
use metaloop_core::time::Timestamp;
use queue::Queue;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How hard a channel tries before a message is counted as lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: usize,
    /// Wait before the first retry; each later wait doubles, plus random jitter of up to
    /// the wait itself.
    pub min_delay: Duration,
    /// Longest wait between two attempts (before jitter).
    pub max_delay: Duration,
    /// No retry is started once the waits would add up to more than this.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, waits of about 2, 4, 8 and 16 s: within about a minute.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            min_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

/// Settings every channel shares.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    /// Messages a channel holds while it is busy or its receiver is down.
    pub queue_capacity: usize,
    pub retry: RetryPolicy,
    /// Time limit of one HTTP attempt.
    pub request_timeout: Duration,
    /// How often Alertmanager channels re-send the alerts still firing.
    pub alert_resend_interval: Duration,
    /// Added as the `environment` label of Alertmanager alerts.
    pub environment: Option<String>,
    /// Where to count sent, dropped, failed and retried notifications.
    pub metrics: Option<Metrics>,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        NotifyOptions {
            queue_capacity: 256,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(10),
            alert_resend_interval: Duration::from_secs(60),
            environment: None,
            metrics: None,
        }
    }
}

/// Counts of one channel, for tests and status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStats {
    /// `log`, `webhook`, `slack`, `alertmanager`; `webhook-2` etc. when a kind repeats.
    pub channel: String,
    pub kind: NotifyKind,
    /// Delivered.
    pub sent: u64,
    /// Dropped from a full queue.
    pub dropped: u64,
    /// Lost after the retry budget or a permanent refusal.
    pub failed: u64,
    /// Attempts retried.
    pub retried: u64,
    /// Waiting in the queue now.
    pub queued: usize,
}

struct Channel {
    name: String,
    kind: NotifyKind,
    alerts_only: bool,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
}

struct Shared {
    channels: Vec<Channel>,
    metrics: Option<Metrics>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // the tasks deliver what is queued, then stop
        for c in &self.channels {
            c.queue.close();
        }
    }
}

/// The handle the runtime notifies through; cheap to clone, never blocks.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("channels", &self.channel_names())
            .finish()
    }
}

impl Notifier {
    /// A notifier with no channels: every message is discarded.
    pub fn none() -> Notifier {
        Notifier {
            shared: Arc::new(Shared {
                channels: Vec::new(),
                metrics: None,
            }),
        }
    }

    /// Channels from `[[notify]]` with default options. Must be called inside a tokio runtime
    /// (each channel starts a task) unless `entries` is empty.
    pub fn from_config(entries: &[NotifyEntry]) -> Result<Notifier, String> {
        Notifier::from_config_with(entries, NotifyOptions::default())
    }

    /// Channels from `[[notify]]` with `options`. Errors name the entry (`notify[1].url: …`).
    pub fn from_config_with(
        entries: &[NotifyEntry],
        options: NotifyOptions,
    ) -> Result<Notifier, String> {
        Notifier::from_config_in(entries, options, |name| std::env::var_os(name))
    }

    /// Like [`Notifier::from_config_with`], reading `secret_env` variables through `env`
    /// instead of the process environment (for embedding and tests).
    pub fn from_config_in(
        entries: &[NotifyEntry],
        options: NotifyOptions,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Notifier, String> {
        if entries.is_empty() {
            return Ok(Notifier::none());
        }
        if options.queue_capacity == 0 {
            return Err("notify: the queue capacity must be at least 1".into());
        }
        if options.retry.max_attempts == 0 {
            return Err("notify: a retry policy needs at least 1 attempt".into());
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "notify: channels must be started inside a tokio runtime".to_string())?;
        let client = crate::http::builder()
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout.min(Duration::from_secs(5)))
            // a webhook that redirects is misconfigured; following it would turn POST into GET
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("metaloop/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("notify: cannot build the HTTP client: {e}"))?;

        let mut sinks = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            sinks.push((e.kind, sink(i, e, &options, &env)?));
        }
        let mut channels = Vec::with_capacity(sinks.len());
        for (i, (kind, sink)) in sinks.into_iter().enumerate() {
            let name = channel_name(entries, i);
            let queue = Arc::new(Queue::new(options.queue_capacity));
            let stats = Arc::new(Stats::default());
            if let Some(m) = &options.metrics {
                m.register_channel(&name);
            }
            let alerts_only = !sink.accepts(MessageKind::Summary);
            let resend = matches!(sink, Sink::Alertmanager { .. })
                .then_some(options.alert_resend_interval)
                .filter(|d| !d.is_zero());
            let worker = Worker {
                name: name.clone(),
                sink,
                queue: queue.clone(),
                stats: stats.clone(),
                metrics: options.metrics.clone(),
                retry: options.retry,
                client: client.clone(),
                resend,
            };
            runtime.spawn(worker.run());
            channels.push(Channel {
                name,
                kind,
                alerts_only,
                queue,
                stats,
            });
        }
        Ok(Notifier {
            shared: Arc::new(Shared {
                channels,
                metrics: options.metrics,
            }),
        })
    }

    /// Queues a core notification on every channel that takes its kind. Never blocks.
    pub fn notify(&self, n: &Notification) {
        self.send(Message::from(n));
    }

    /// Queues `m` on every channel that takes its kind. Never blocks.
    pub fn send(&self, m: Message) {
        for c in &self.shared.channels {
            if c.alerts_only && !m.kind.is_alert() {
                continue;
            }
            if let Some(old) = c.queue.push(m.clone()) {
                let dropped = c.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(metrics) = &self.shared.metrics {
                    metrics.notification_dropped(&c.name);
                }
                if dropped == 1 || dropped.is_multiple_of(100) {
                    tracing::warn!(
                        channel = %c.name,
                        kind = old.kind.as_str(),
                        dropped,
                        "notification queue full, dropped the oldest"
                    );
                }
            }
        }
    }

    /// Queues a firing alert, with its kind, severity and first cycle as fields.
    pub fn alert_firing(&self, alert: &Alert, time: Timestamp) {
        self.send(Message::alert_firing(alert, time));
    }

    /// Queues the resolution of the alert with `key`.
    pub fn alert_resolved(&self, key: &str, time: Timestamp) {
        self.send(Message::alert_resolved(key, time));
    }

    /// The channels' names, in config order.
    pub fn channel_names(&self) -> Vec<String> {
        self.shared
            .channels
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// Counts per channel, in config order.
    pub fn stats(&self) -> Vec<ChannelStats> {
        self.shared
            .channels
            .iter()
            .map(|c| ChannelStats {
                channel: c.name.clone(),
                kind: c.kind,
                sent: c.stats.sent.load(Ordering::Relaxed),
                dropped: c.stats.dropped.load(Ordering::Relaxed),
                failed: c.stats.failed.load(Ordering::Relaxed),
                retried: c.stats.retried.load(Ordering::Relaxed),
                queued: c.queue.len(),
            })
            .collect()
    }

    /// Waits until every channel has delivered (or given up on) everything queued, at most
    /// `timeout`; true when all is done. For graceful shutdown and tests.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.shared.channels.iter().all(|c| c.queue.pending() == 0) {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl crate::runtime::NotificationSink for Notifier {
    fn notify(&mut self, notification: Notification) {
        self.send(Message::from(&notification));
    }
}

/// `webhook`, or `webhook-2`, `webhook-3` … when several channels share a kind.
fn channel_name(entries: &[NotifyEntry], i: usize) -> String {
    let kind = entries[i].kind;
    let base = kind_name(kind);
    if entries.iter().filter(|e| e.kind == kind).count() == 1 {
        return base.to_string();
    }
    let n = entries[..=i].iter().filter(|e| e.kind == kind).count();
    if n == 1 {
        base.to_string()
    } else {
        format!("{base}-{n}")
    }
}

fn kind_name(k: NotifyKind) -> &'static str {
    match k {
        NotifyKind::Log => "log",
        NotifyKind::Webhook => "webhook",
        NotifyKind::Slack => "slack",
        NotifyKind::Alertmanager => "alertmanager",
    }
}

fn sink(
    i: usize,
    e: &NotifyEntry,
    options: &NotifyOptions,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Sink, String> {
    let url = match (e.kind, &e.url) {
        (NotifyKind::Log, _) => String::new(),
        (kind, None) => {
            return Err(format!(
                "notify[{i}]: a {} channel needs a url",
                kind_name(kind)
            ));
        }
        (_, Some(u)) => {
            let parsed = reqwest::Url::parse(u)
                .map_err(|err| format!("notify[{i}].url: {u:?} is not a URL: {err}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!(
                    "notify[{i}].url: {u:?} must be an http:// or https:// URL"
                ));
            }
            u.clone()
        }
    };
    let secret = match &e.secret_env {
        None => None,
        Some(_) if e.kind != NotifyKind::Webhook => {
            return Err(format!(
                "notify[{i}].secret_env: only webhook channels are signed, not {}",
                kind_name(e.kind)
            ));
        }
        Some(var) => match env(var) {
            None => {
                return Err(format!(
                    "notify[{i}].secret_env: environment variable {var} is not set"
                ));
            }
            Some(v) if v.is_empty() => {
                return Err(format!(
                    "notify[{i}].secret_env: environment variable {var} is empty"
                ));
            }
            Some(v) => Some(Secret(Arc::from(v.into_encoded_bytes()))),
        },
    };
    Ok(match e.kind {
        NotifyKind::Log => Sink::Log,
        NotifyKind::Webhook => Sink::Webhook { url, secret },
        NotifyKind::Slack => Sink::Slack { url },
        NotifyKind::Alertmanager => Sink::Alertmanager {
            url,
            tracker: alertmanager::Tracker::new(options.environment.clone()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: NotifyKind, url: Option<&str>) -> NotifyEntry {
        NotifyEntry {
            kind,
            url: url.map(str::to_string),
            secret_env: None,
        }
    }

    #[test]
    fn repeated_kinds_get_numbered_names() {
        let e = [
            entry(NotifyKind::Webhook, Some("http://a")),
            entry(NotifyKind::Log, None),
            entry(NotifyKind::Webhook, Some("http://b")),
        ];
        assert_eq!(channel_name(&e, 0), "webhook");
        assert_eq!(channel_name(&e, 1), "log");
        assert_eq!(channel_name(&e, 2), "webhook-2");
    }

    #[tokio::test]
    async fn bad_entries_are_named() {
        let err = Notifier::from_config(&[entry(NotifyKind::Slack, None)]).unwrap_err();
        assert_eq!(err, "notify[0]: a slack channel needs a url");
        let err = Notifier::from_config(&[
            entry(NotifyKind::Log, None),
            entry(NotifyKind::Webhook, Some("ftp://x")),
        ])
        .unwrap_err();
        assert!(err.starts_with("notify[1].url:"), "{err}");
        let mut e = entry(NotifyKind::Webhook, Some("http://127.0.0.1:1/"));
        e.secret_env = Some("METALOOP_TEST_SURELY_UNSET_SECRET".into());
        let err = Notifier::from_config(&[e]).unwrap_err();
        assert_eq!(
            err,
            "notify[0].secret_env: environment variable METALOOP_TEST_SURELY_UNSET_SECRET is not set"
        );
    }

    #[test]
    fn no_channels_need_no_runtime() {
        let n = Notifier::from_config(&[]).unwrap();
        n.notify(&Notification {
            kind: metaloop_core::supervisor::NotificationKind::Summary,
            time: Timestamp(0),
            text: "x".into(),
            subject: None,
        });
        assert!(n.stats().is_empty());
    }
}
