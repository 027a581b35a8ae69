//! The async shell around the sans-IO core: one task owns the `Supervisor`; every input goes
//! through it, and after each input its effects are carried out in order — records made
//! durable first (decide → log → act), then directives published, then humans notified.
//!
//! A ledger failure stops the supervisor (fail-stop): its in-memory state would otherwise run
//! ahead of what is durable. A restart rebuilds the state from the ledger.

use anyhow::{Result, anyhow};
use metaloop_core::Supervisor;
use metaloop_core::protocol::DirectiveMessage;
use metaloop_core::record::Entry;
use metaloop_core::supervisor::{Effect, Notification};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};

/// A boxed future that can move between threads.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Makes records durable; returns once they are.
pub trait RecordSink: Send + 'static {
    /// Appends in order, all or nothing.
    fn append(&mut self, entries: Vec<Entry>) -> BoxFuture<Result<()>>;
}

/// Sends directives to the spine.
pub trait Publisher: Send + 'static {
    /// Publishes one directive (at least once; the spine dedupes on its id).
    fn publish(&mut self, message: DirectiveMessage) -> BoxFuture<Result<()>>;

    /// A publish failed: try again later, in the background (default: not at all).
    fn retry(&mut self, message: DirectiveMessage) {
        tracing::error!(directive = %message.directive_id, "directive not published; no retry");
    }
}

/// Receives human notifications; must not block.
pub trait NotificationSink: Send + 'static {
    /// Queues one notification.
    fn notify(&mut self, notification: Notification);
}

/// Sees every input's outcome: the supervisor after it, the records it produced, and how
/// long it took (deciding plus making the records durable). Metrics hang here.
pub trait Observer: Send + 'static {
    /// Called after each input's effects are carried out.
    fn observe(&mut self, sup: &Supervisor, records: &[Entry], elapsed: std::time::Duration);
}

impl<T: Observer> Observer for Option<T> {
    fn observe(&mut self, sup: &Supervisor, records: &[Entry], elapsed: std::time::Duration) {
        if let Some(o) = self {
            o.observe(sup, records, elapsed);
        }
    }
}

/// Observes nothing.
pub struct NoObserver;

impl Observer for NoObserver {
    fn observe(&mut self, _: &Supervisor, _: &[Entry], _: std::time::Duration) {}
}

type Reply = Box<dyn FnOnce() + Send>;
type Job = Box<dyn FnOnce(&mut Supervisor) -> Reply + Send>;

/// A handle on the running supervisor; cheap to clone. Every clone follows
/// [`Runtime::retarget`], so a replica can hand its API from a standby's supervisor to a
/// leader's without rebuilding it.
#[derive(Clone)]
pub struct Runtime {
    jobs: std::sync::Arc<std::sync::RwLock<mpsc::Sender<Job>>>,
    /// Why the supervisor stopped, once it has (the ledger's error).
    failure: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// Why a call did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the supervisor has stopped: {0}")]
    Stopped(String),
}

struct Actor<R, P, N, O> {
    sup: Supervisor,
    records: R,
    publisher: P,
    notifier: N,
    observer: O,
}

impl<R: RecordSink, P: Publisher, N: NotificationSink, O: Observer> Actor<R, P, N, O> {
    /// Carries out every queued effect: records first (one durable batch), then publications,
    /// then notifications. Publications wait until the records that decided them are durable.
    async fn carry_out(&mut self, started: std::time::Instant) -> Result<()> {
        let mut entries = Vec::new();
        let mut publishes = Vec::new();
        let mut notes = Vec::new();
        while let Some(e) = self.sup.poll_effect() {
            match e {
                Effect::Record(entry) => entries.push(entry),
                Effect::Publish(m) => publishes.push(m),
                Effect::Notify(n) => notes.push(n),
            }
        }
        if !entries.is_empty() {
            self.records.append(entries.clone()).await?;
        }
        self.observer
            .observe(&self.sup, &entries, started.elapsed());
        for m in publishes {
            let id = m.directive_id.clone();
            if let Err(e) = self.publisher.publish(m.clone()).await {
                // recorded as published: tried again with backoff, under the same id (the
                // spine dedupes on it); the ack timeout alerts if it never arrives
                tracing::warn!(directive = %id, error = %e, "publishing a directive failed; retrying");
                self.publisher.retry(m);
            }
        }
        for n in notes {
            self.notifier.notify(n);
        }
        Ok(())
    }
}

impl Runtime {
    /// Starts the actor task. Effects already queued in `sup` (its start record) are carried
    /// out first.
    pub async fn start<R: RecordSink, P: Publisher, N: NotificationSink>(
        sup: Supervisor,
        records: R,
        publisher: P,
        notifier: N,
    ) -> Result<(Runtime, tokio::task::JoinHandle<Supervisor>)> {
        Self::start_observed(sup, records, publisher, notifier, NoObserver).await
    }

    /// [`Runtime::start`] with an observer of every input's outcome.
    pub async fn start_observed<R: RecordSink, P: Publisher, N: NotificationSink, O: Observer>(
        sup: Supervisor,
        records: R,
        publisher: P,
        notifier: N,
        observer: O,
    ) -> Result<(Runtime, tokio::task::JoinHandle<Supervisor>)> {
        let mut actor = Actor {
            sup,
            records,
            publisher,
            notifier,
            observer,
        };
        actor.carry_out(std::time::Instant::now()).await?;
        let (tx, mut rx) = mpsc::channel::<Job>(1024);
        let failure: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let failed = failure.clone();
        let task = tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let started = std::time::Instant::now();
                let reply = job(&mut actor.sup);
                if let Err(e) = actor.carry_out(started).await {
                    tracing::error!(error = %e, "the ledger failed; stopping the supervisor");
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:#}"));
                    rx.close();
                    drop(reply); // the caller sees the supervisor stop, never a false success
                    break;
                }
                reply();
            }
            actor.sup
        });
        Ok((
            Runtime {
                jobs: std::sync::Arc::new(std::sync::RwLock::new(tx)),
                failure,
            },
            task,
        ))
    }

    /// A handle on no supervisor: every call fails as stopped.
    pub fn closed() -> Runtime {
        let (tx, _) = mpsc::channel(1);
        Runtime {
            jobs: std::sync::Arc::new(std::sync::RwLock::new(tx)),
            failure: Default::default(),
        }
    }

    /// A handle on the same supervisor that [`Runtime::retarget`] moves on its own (with
    /// its clones), leaving this one where it is.
    pub fn detached(&self) -> Runtime {
        let tx = self.jobs.read().unwrap_or_else(|e| e.into_inner()).clone();
        Runtime {
            jobs: std::sync::Arc::new(std::sync::RwLock::new(tx)),
            failure: self.failure.clone(),
        }
    }

    /// Points this handle, and every clone of it, at `other`'s supervisor.
    pub fn retarget(&self, other: &Runtime) {
        let next = other.jobs.read().unwrap_or_else(|e| e.into_inner()).clone();
        *self.jobs.write().unwrap_or_else(|e| e.into_inner()) = next;
        // the failure cell stays this handle's: a retargeted handle reports by its calls
    }

    /// Runs `f` on the supervisor; returns once its effects are carried out (its records
    /// durable).
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Supervisor) -> T + Send + 'static,
    ) -> Result<T, RuntimeError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |sup| {
            let out = f(sup);
            Box::new(move || {
                let _ = tx.send(out);
            })
        });
        let jobs = self.jobs.read().unwrap_or_else(|e| e.into_inner()).clone();
        jobs.send(job)
            .await
            .map_err(|_| RuntimeError::Stopped("it is no longer running".into()))?;
        rx.await.map_err(|_| {
            RuntimeError::Stopped(
                self.failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .map_or_else(
                        || "the ledger failed; see the log".into(),
                        |e| format!("the ledger failed: {e}"),
                    ),
            )
        })
    }
}

/// Records kept in memory (tests).
pub struct MemoryRecords(pub std::sync::Arc<std::sync::Mutex<Vec<Entry>>>);

impl RecordSink for MemoryRecords {
    fn append(&mut self, entries: Vec<Entry>) -> BoxFuture<Result<()>> {
        let store = self.0.clone();
        Box::pin(async move {
            store
                .lock()
                .map_err(|_| anyhow!("record store poisoned"))?
                .extend(entries);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metaloop_core::SupervisorConfig;
    use metaloop_core::time::Timestamp;
    use std::sync::{Arc, Mutex};

    struct NoPublish;
    impl Publisher for NoPublish {
        fn publish(&mut self, _: DirectiveMessage) -> BoxFuture<Result<()>> {
            Box::pin(async { Ok(()) })
        }
    }
    struct Notes(Arc<Mutex<Vec<Notification>>>);
    impl NotificationSink for Notes {
        fn notify(&mut self, n: Notification) {
            self.0.lock().unwrap().push(n);
        }
    }
    struct FailingRecords;
    impl RecordSink for FailingRecords {
        fn append(&mut self, _: Vec<Entry>) -> BoxFuture<Result<()>> {
            Box::pin(async { Err(anyhow!("disk full")) })
        }
    }

    #[tokio::test]
    async fn calls_return_after_their_records_are_durable() {
        let start = Timestamp::from_secs(1_767_225_600);
        let sup = Supervisor::new(SupervisorConfig::default(), start).unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let notes = Arc::new(Mutex::new(Vec::new()));
        let (rt, task) = Runtime::start(
            sup,
            MemoryRecords(records.clone()),
            NoPublish,
            Notes(notes.clone()),
        )
        .await
        .unwrap();
        assert_eq!(
            records.lock().unwrap().len(),
            1,
            "the start record is durable before anything else"
        );
        let next = rt.call(|s| s.next_cycle_at()).await.unwrap();
        rt.call(move |s| s.tick(next)).await.unwrap();
        let actions: Vec<String> = records
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.action.clone())
            .collect();
        assert!(actions.contains(&"snapshot.built".to_string()));
        assert!(actions.contains(&"cycle.summary".to_string()));
        assert!(
            notes
                .lock()
                .unwrap()
                .iter()
                .any(|n| n.text.starts_with("Cycle 1"))
        );
        drop(rt);
        let sup = task.await.unwrap();
        assert_eq!(sup.state().cycle, 1);
    }

    #[tokio::test]
    async fn a_ledger_failure_stops_the_supervisor_without_a_false_success() {
        let start = Timestamp::from_secs(1_767_225_600);
        let sup = Supervisor::new(SupervisorConfig::default(), start).unwrap();
        assert!(
            Runtime::start(sup, FailingRecords, NoPublish, Notes(Arc::default()))
                .await
                .is_err()
        );
    }
}
