//! The ingest pipeline: bytes → size check → parse → schema check → signature check →
//! event time → dedupe → admission by the caller → [`SpineEvent`]. Every rejection carries a
//! [`RejectReason`] and is counted; only admitted events are remembered for dedupe.
//!
//! The pipeline is plain synchronous code with the time passed in, so the runtime, tests and
//! benchmarks drive it the same way.

mod counters;
mod dedupe;
mod rejection;
mod schema;

pub use counters::{CountersSnapshot, IngestCounters};
pub use dedupe::{DedupeConfig, DedupeWindow, event_key};
pub use rejection::{RejectReason, Rejection};
pub use schema::{INBOUND_TYPES, decode_data};

use crate::envelope::{self, CloudEvent, Format, SizeLimits};
use crate::keys::KeyRegistry;
use crate::verifiability::{self, PendingSignature, Prepared, VerifyError};
use metaloop_core::protocol::{EventData, SpineEvent};
use metaloop_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Ingest settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub limits: SizeLimits,
    pub dedupe: DedupeConfig,
    /// Oldest event accepted, seconds before its arrival; older is `stale`. At most the
    /// dedupe window, so that a copy is either caught as a duplicate or stale.
    pub max_event_age_secs: u64,
    /// Furthest an event may be dated after its arrival, seconds; later is `future`.
    pub max_clock_skew_secs: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            limits: SizeLimits::default(),
            dedupe: DedupeConfig::default(),
            max_event_age_secs: 3600,
            max_clock_skew_secs: 300,
        }
    }
}

impl IngestConfig {
    /// Checks the settings; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.max_event_bytes == 0 || l.max_batch_bytes == 0 || l.max_batch_events == 0 {
            return Err("size limits must be at least 1".into());
        }
        if self.dedupe.capacity == 0 {
            return Err("dedupe.capacity must be at least 1".into());
        }
        if self.dedupe.window_secs == 0 {
            return Err("dedupe.window_secs must be at least 1".into());
        }
        if self.max_event_age_secs > self.dedupe.window_secs {
            return Err(format!(
                "max_event_age ({} s) must not exceed dedupe.window_secs ({} s): a copy older than the window would be accepted again",
                self.max_event_age_secs, self.dedupe.window_secs
            ));
        }
        Ok(())
    }
}

/// What the caller does with an event that passed every check: `Ok` folds it in (it is then
/// remembered and counted as accepted), `Err(message)` refuses it (`refused_by_supervisor`,
/// not remembered, so a corrected copy with the same id is still taken).
pub type Admit<'a> = dyn FnMut(&SpineEvent) -> Result<(), String> + 'a;

/// A message checked up to and including its signatures, not yet admitted: nothing is
/// counted or remembered until [`Ingestor::admit`].
#[derive(Debug)]
pub struct Verified(Staged);

#[derive(Debug)]
enum Staged {
    Single(Result<Checked, Rejection>),
    Batch(Vec<Result<Checked, Rejection>>),
    Refused(Rejection),
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    /// One structured-mode event.
    Single(Result<SpineEvent, Rejection>),
    /// A batch: one result per element, in order.
    Batch(Vec<Result<SpineEvent, Rejection>>),
    /// The message as a whole was refused (an oversized or unparseable batch, an
    /// unsupported content type); no event in it was looked at.
    Refused(Rejection),
}

impl IngestOutcome {
    /// Every per-event result (a refused message gives one).
    pub fn results(&self) -> Vec<Result<&SpineEvent, &Rejection>> {
        match self {
            IngestOutcome::Single(r) => vec![r.as_ref()],
            IngestOutcome::Batch(rs) => rs.iter().map(Result::as_ref).collect(),
            IngestOutcome::Refused(r) => vec![Err(r)],
        }
    }

    /// The accepted events.
    pub fn accepted(self) -> Vec<SpineEvent> {
        match self {
            IngestOutcome::Single(r) => r.into_iter().collect(),
            IngestOutcome::Batch(rs) => rs.into_iter().filter_map(Result::ok).collect(),
            IngestOutcome::Refused(_) => Vec::new(),
        }
    }

    /// The rejections.
    pub fn rejections(&self) -> Vec<&Rejection> {
        self.results().into_iter().filter_map(Result::err).collect()
    }
}

/// An event that passed everything up to the signature equation.
#[derive(Debug)]
struct Checked {
    id: String,
    source: String,
    time: Timestamp,
    data: EventData,
}

/// The ingest pipeline with its key registry, dedupe window and counters.
#[derive(Debug)]
pub struct Ingestor {
    config: IngestConfig,
    registry: KeyRegistry,
    dedupe: DedupeWindow,
    counters: Arc<IngestCounters>,
}

impl Ingestor {
    /// A pipeline accepting events signed by the registry's keys.
    pub fn new(config: IngestConfig, registry: KeyRegistry) -> Self {
        Ingestor {
            config,
            registry,
            dedupe: DedupeWindow::new(config.dedupe),
            counters: Arc::new(IngestCounters::default()),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// The keys it accepts.
    pub fn registry(&self) -> &KeyRegistry {
        &self.registry
    }

    /// Replaces the keys and domain bindings (a rotation, a reload); the dedupe window is
    /// kept.
    pub fn set_registry(&mut self, registry: KeyRegistry) {
        self.registry = registry;
    }

    /// The counters, to export.
    pub fn counters(&self) -> Arc<IngestCounters> {
        Arc::clone(&self.counters)
    }

    /// The dedupe window.
    pub fn dedupe(&self) -> &DedupeWindow {
        &self.dedupe
    }

    /// Ingests one message: a structured-mode event or a batch, told apart by the content
    /// type (or by the first byte when there is none). `now` is the arrival time.
    pub fn ingest(
        &mut self,
        bytes: &[u8],
        content_type: Option<&str>,
        now: Timestamp,
    ) -> IngestOutcome {
        let verified = self.verify(bytes, content_type);
        self.admit(verified, now, &mut |_| Ok(()))
    }

    /// Every check that needs no state (size, parse, schema, source, signatures): the
    /// expensive part, which may run apart from [`Self::admit`].
    pub fn verify(&self, bytes: &[u8], content_type: Option<&str>) -> Verified {
        Verified(match envelope::classify(content_type, bytes) {
            Ok(Format::Event) => Staged::Single(self.verify_event(bytes)),
            Ok(Format::Batch) => self.verify_batch(bytes),
            Err(media) => Staged::Refused(Rejection::new(
                RejectReason::UnsupportedContentType,
                format!(
                    "content type {media:?} is not {} or {}",
                    envelope::MEDIA_TYPE_EVENT,
                    envelope::MEDIA_TYPE_BATCH
                ),
            )),
        })
    }

    /// The checks that need state, in order: event time (`stale`, `future`), dedupe, then
    /// `admit_event` (the supervisor). Counts every result; remembers only events `admit_event`
    /// took.
    pub fn admit(
        &mut self,
        verified: Verified,
        now: Timestamp,
        admit_event: &mut Admit<'_>,
    ) -> IngestOutcome {
        match verified.0 {
            Staged::Single(s) => IngestOutcome::Single(self.finish(s, now, admit_event)),
            Staged::Batch(stages) => IngestOutcome::Batch(
                stages
                    .into_iter()
                    .map(|s| self.finish(s, now, admit_event))
                    .collect(),
            ),
            Staged::Refused(r) => IngestOutcome::Refused(self.reject(r)),
        }
    }

    /// Ingests one structured-mode event.
    pub fn ingest_event(&mut self, bytes: &[u8], now: Timestamp) -> Result<SpineEvent, Rejection> {
        let stage = self.verify_event(bytes);
        self.finish(stage, now, &mut |_| Ok(()))
    }

    fn verify_event(&self, bytes: &[u8]) -> Result<Checked, Rejection> {
        self.check(bytes).and_then(|(event, checked)| {
            let keys = self
                .registry
                .keys(&checked.source)
                .expect("check() looked the source up");
            verifiability::verify(&event, keys)
                .map_err(|e| self.signature_rejection(e, &checked))?;
            Ok(checked)
        })
    }

    /// Ingests a batch document: a per-event result, or one rejection when the batch as a
    /// whole is oversized or not a JSON array of at most `max_batch_events` elements.
    pub fn ingest_batch(&mut self, bytes: &[u8], now: Timestamp) -> IngestOutcome {
        let verified = Verified(self.verify_batch(bytes));
        self.admit(verified, now, &mut |_| Ok(()))
    }

    fn verify_batch(&self, bytes: &[u8]) -> Staged {
        let limits = self.config.limits;
        if bytes.len() > limits.max_batch_bytes {
            return Staged::Refused(Rejection::new(
                RejectReason::Oversized,
                format!(
                    "batch is {} bytes; the limit is {}",
                    bytes.len(),
                    limits.max_batch_bytes
                ),
            ));
        }
        let elements = match envelope::split_batch(bytes, limits.max_batch_events) {
            Ok(elements) => elements,
            Err(e) => {
                let reason = match e {
                    envelope::BatchError::TooManyEvents { .. } => RejectReason::Oversized,
                    envelope::BatchError::Malformed(_) => RejectReason::Malformed,
                };
                return Staged::Refused(Rejection::new(reason, e.to_string()));
            }
        };
        let elements: Vec<&[u8]> = elements.iter().map(|e| e.as_bytes()).collect();
        Staged::Batch(self.verify_many(&elements))
    }

    /// Ingests several structured-mode events at once, verifying their signatures together
    /// (`ed25519_dalek::verify_batch`, falling back to one by one when the batch fails).
    /// Results are in order and duplicates within `events` are caught.
    pub fn ingest_many(
        &mut self,
        events: &[&[u8]],
        now: Timestamp,
    ) -> Vec<Result<SpineEvent, Rejection>> {
        let staged = self.verify_many(events);
        staged
            .into_iter()
            .map(|s| self.finish(s, now, &mut |_| Ok(())))
            .collect()
    }

    fn verify_many(&self, events: &[&[u8]]) -> Vec<Result<Checked, Rejection>> {
        let mut staged: Vec<Result<Checked, Rejection>> = Vec::with_capacity(events.len());
        let mut pending: Vec<(usize, PendingSignature)> = Vec::new();
        for bytes in events {
            let stage = match self.check(bytes) {
                Err(r) => Err(r),
                Ok((event, checked)) => {
                    let keys = self
                        .registry
                        .keys(&checked.source)
                        .expect("check() looked the source up");
                    match verifiability::prepare(&event, keys) {
                        Ok(Prepared::Single(p)) => {
                            pending.push((staged.len(), *p));
                            Ok(checked)
                        }
                        Ok(Prepared::Multiple) => match verifiability::verify(&event, keys) {
                            Ok(_) => Ok(checked),
                            Err(e) => Err(self.signature_rejection(e, &checked)),
                        },
                        Err(e) => Err(self.signature_rejection(e, &checked)),
                    }
                }
            };
            staged.push(stage);
        }
        for index in failed_signatures(&pending) {
            if let Ok(c) = &staged[index] {
                let r = self.signature_rejection_for(
                    VerifyError::BadSignature(c.source.clone()),
                    &c.source,
                    &c.id,
                );
                staged[index] = Err(r);
            }
        }
        staged
    }

    /// Size, parse, schema and source checks.
    fn check(&self, bytes: &[u8]) -> Result<(CloudEvent, Checked), Rejection> {
        let max = self.config.limits.max_event_bytes;
        if bytes.len() > max {
            return Err(Rejection::new(
                RejectReason::Oversized,
                format!("event is {} bytes; the limit is {max}", bytes.len()),
            ));
        }
        let event = envelope::parse_event(bytes)
            .map_err(|e| Rejection::new(RejectReason::Malformed, e.0))?;
        let checked = schema::check(&event).map_err(|m| {
            Rejection::new(RejectReason::WrongSchema, m).of_event(&event.source, &event.id)
        })?;
        if self.registry.keys(&event.source).is_none() {
            return Err(Rejection::new(
                RejectReason::UnknownSource,
                format!("source {:?} has no registered key", event.source),
            )
            .of_event(&event.source, &event.id));
        }
        let checked = Checked {
            id: event.id.clone(),
            source: event.source.clone(),
            // The signature covers whole seconds only: keep only what was verified.
            time: Timestamp(checked.time.millis().div_euclid(1000) * 1000),
            data: checked.data,
        };
        Ok((event, checked))
    }

    fn signature_rejection(&self, e: VerifyError, checked: &Checked) -> Rejection {
        self.signature_rejection_for(e, &checked.source, &checked.id)
    }

    fn signature_rejection_for(&self, e: VerifyError, source: &str, id: &str) -> Rejection {
        let reason = match &e {
            VerifyError::Unsigned => RejectReason::Unsigned,
            VerifyError::UnknownKey { .. } => RejectReason::UnknownKey,
            VerifyError::Time(_) => RejectReason::WrongSchema,
            VerifyError::Corrupt(_)
            | VerifyError::BadSignature(_)
            | VerifyError::Modified
            | VerifyError::SignedExtAttrs(_) => RejectReason::BadSignature,
        };
        let mut message = e.to_string();
        if let VerifyError::UnknownKey { keyid, .. } = &e {
            let elsewhere = keyid
                .split(',')
                .flat_map(|k| self.registry.sources_of(k))
                .collect::<Vec<_>>();
            if !elsewhere.is_empty() {
                message.push_str(&format!(" (it is registered for {})", elsewhere.join(", ")));
            }
        }
        Rejection::new(reason, message).of_event(source, id)
    }

    /// Event time, dedupe, admission and counting: the last steps of every event.
    fn finish(
        &mut self,
        stage: Result<Checked, Rejection>,
        now: Timestamp,
        admit_event: &mut Admit<'_>,
    ) -> Result<SpineEvent, Rejection> {
        let checked = match stage.and_then(|c| self.check_time(c, now)) {
            Ok(c) => c,
            Err(r) => return Err(self.reject(r)),
        };
        let domain = checked.data.domain();
        if !self.registry.may_speak_for(&checked.source, domain) {
            let allowed = self
                .registry
                .domains_of(&checked.source)
                .map(|d| d.iter().map(String::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            return Err(self.reject(
                Rejection::new(
                    RejectReason::ForbiddenDomain,
                    format!(
                        "source {:?} may speak for [{allowed}], not for domain {domain:?}",
                        checked.source
                    ),
                )
                .of_event(&checked.source, &checked.id),
            ));
        }
        if self.dedupe.contains(&checked.source, &checked.id, now) {
            return Err(self.reject(
                Rejection::new(
                    RejectReason::Duplicate,
                    format!(
                        "already accepted within the dedupe window ({} s, {} events)",
                        self.dedupe.config().window_secs,
                        self.dedupe.config().capacity
                    ),
                )
                .of_event(&checked.source, &checked.id),
            ));
        }
        let event = SpineEvent {
            id: checked.id,
            source: checked.source,
            time: checked.time,
            data: checked.data,
        };
        if let Err(message) = admit_event(&event) {
            return Err(self.reject(
                Rejection::new(RejectReason::RefusedBySupervisor, message)
                    .of_event(&event.source, &event.id),
            ));
        }
        let fresh = self.dedupe.insert(&event.source, &event.id, now);
        debug_assert!(fresh, "contains() said it was not there");
        self.counters.count_accepted();
        Ok(event)
    }

    /// `stale` / `future`: the event's time against its arrival.
    fn check_time(&self, c: Checked, now: Timestamp) -> Result<Checked, Rejection> {
        let age_ms = now.millis().saturating_sub(c.time.millis());
        let max_age_ms = secs_to_ms(self.config.max_event_age_secs);
        let max_skew_ms = secs_to_ms(self.config.max_clock_skew_secs);
        if age_ms > max_age_ms {
            return Err(Rejection::new(
                RejectReason::Stale,
                format!(
                    "time {} is {} s before its arrival; max_event_age is {} s",
                    c.time,
                    age_ms / 1000,
                    self.config.max_event_age_secs
                ),
            )
            .of_event(&c.source, &c.id));
        }
        if -age_ms > max_skew_ms {
            return Err(Rejection::new(
                RejectReason::Future,
                format!(
                    "time {} is {} s after its arrival; max_clock_skew is {} s",
                    c.time,
                    -age_ms / 1000,
                    self.config.max_clock_skew_secs
                ),
            )
            .of_event(&c.source, &c.id));
        }
        Ok(c)
    }

    /// The dedupe window, to persist it or restore it after a restart.
    pub fn dedupe_mut(&mut self) -> &mut DedupeWindow {
        &mut self.dedupe
    }

    fn reject(&self, r: Rejection) -> Rejection {
        self.counters.count_rejected(r.reason);
        tracing::debug!(reason = %r.reason, source = ?r.source, id = ?r.id, message = %r.message, "event rejected");
        r
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Indices (into the staged list) of the pending signatures that do not verify: one batch
/// equation first, one by one only when it fails.
fn failed_signatures(pending: &[(usize, PendingSignature)]) -> Vec<usize> {
    let one_by_one = || {
        pending
            .iter()
            .filter(|(_, p)| p.key.verify_strict(&p.message, &p.signature).is_err())
            .map(|(i, _)| *i)
            .collect()
    };
    if pending.len() < 2 {
        return one_by_one();
    }
    let messages: Vec<&[u8]> = pending.iter().map(|(_, p)| p.message.as_slice()).collect();
    let signatures: Vec<ed25519_dalek::Signature> =
        pending.iter().map(|(_, p)| p.signature).collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = pending.iter().map(|(_, p)| p.key).collect();
    match ed25519_dalek::verify_batch(&messages, &signatures, &keys) {
        Ok(()) => Vec::new(),
        Err(_) => one_by_one(),
    }
}
