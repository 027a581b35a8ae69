//! The `Supervisor` state machine: inputs in (`ingest`, `approve`, `reject`, `tick`), effects
//! out (`poll_effect`). No I/O, no clock: time is passed in.

mod counts;
mod cycle;
mod ids;
mod partial;
mod recommendation;
mod state;

pub use partial::{Merged, Partial, PartialArms};
pub use recommendation::{Recommendation, RecommendationKind, SILENT_CYCLES};
pub use state::{AppliedChange, Approval, DirectiveState, PatternTrack, PolicyState, State};

use crate::config::SupervisorConfig;
use crate::directive::{DirectiveType, Status};
use crate::health::HealthGraph;
use crate::kpi::{ArmWindows, DomainWindow};
use crate::policy::MetaPolicy;
use crate::protocol::{
    Arm, DirectiveApplied, DirectiveMessage, DirectiveRefused, EventData, SpineEvent,
};
use crate::record::{Entry, IntoEntry, RecordBody};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Something the driver must do, in order. A `Record` must be durable before any later
/// `Publish` is sent (decide → log → act).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append to the ledger.
    Record(Entry),
    /// Send a directive to the spine.
    Publish(DirectiveMessage),
    /// Tell humans.
    Notify(Notification),
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Summary,
    ApprovalRequest,
    Published,
    Applied,
    Verdict,
    Rollback,
    Expired,
    ReviewRequest,
    AlertFiring,
    AlertResolved,
}

/// A message for human channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: NotificationKind,
    pub time: Timestamp,
    pub text: String,
    /// The directive or alert it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Why an input was refused. Nothing changed when one is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("unknown directive {0}")]
    UnknownDirective(String),
    #[error("directive {id} is {status}, not {expected}")]
    WrongStatus {
        id: String,
        status: Status,
        expected: &'static str,
    },
    #[error("{approver} already approved directive {id}")]
    AlreadyApproved { id: String, approver: String },
    #[error("directive {0} needs a review note with its approval")]
    ReviewNoteRequired(String),
    #[error("directive {0} expired before the approval arrived")]
    Expired(String),
    #[error("approver name must not be empty")]
    EmptyApprover,
    #[error("ack for directive {id} names {got}, but the directive targets {expected}")]
    AckMismatch {
        id: String,
        got: String,
        expected: String,
    },
    #[error("unknown policy {0}")]
    UnknownPolicy(String),
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    #[error("invalid {event_type} event {id}: {field}: {reason}")]
    InvalidEvent {
        event_type: &'static str,
        id: String,
        field: &'static str,
        reason: String,
    },
}

/// Counts of ingested events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestCounters {
    pub accepted: u64,
    pub rejected: u64,
}

/// The meta-loop supervisor.
pub struct Supervisor {
    cfg: SupervisorConfig,
    state: State,
    open: BTreeMap<String, DomainWindow>,
    /// The open cycle's experiment arms, by experiment id.
    open_arms: BTreeMap<String, ArmWindows>,
    open_health: HealthGraph,
    open_regime: BTreeMap<String, Timestamp>,
    open_start: Timestamp,
    next_cycle_at: Timestamp,
    effects: VecDeque<Effect>,
    /// Records since the last summary, for its text.
    journal: Vec<std::sync::Arc<RecordBody>>,
    counters: IngestCounters,
    /// Per directive being verified, its pre window's statistics (derived from its record:
    /// computed at its first look, reused at the next ones; a restart recomputes them).
    pre_stats: BTreeMap<String, crate::verify::series::PreStats>,
    /// Each domain's recent window, kept from one snapshot to the next (derived from the
    /// history: rebuilt from it after a restart).
    recent: crate::snapshot::RecentWindows,
}

impl Supervisor {
    /// Starts a fresh supervisor at `start`. Fails with a message naming the bad setting.
    pub fn new(cfg: SupervisorConfig, start: Timestamp) -> Result<Self, String> {
        cfg.validate()?;
        let mut s = Supervisor {
            next_cycle_at: start.plus_millis(cfg.cycle_seconds * 1000),
            cfg,
            state: State::default(),
            open: BTreeMap::new(),
            open_arms: BTreeMap::new(),
            open_health: HealthGraph::default(),
            open_regime: BTreeMap::new(),
            open_start: start,
            effects: VecDeque::new(),
            journal: Vec::new(),
            counters: IngestCounters::default(),
            pre_stats: BTreeMap::new(),
            recent: crate::snapshot::RecentWindows::default(),
        };
        s.record_start(start);
        Ok(s)
    }

    /// Rebuilds a supervisor from its ledger records and records the restart at `now`.
    pub fn restore(
        cfg: SupervisorConfig,
        records: &[(Timestamp, RecordBody)],
        now: Timestamp,
    ) -> Result<Self, String> {
        let mut s = Supervisor::follower(cfg, records)?;
        s.record_start(now);
        Ok(s)
    }

    /// Rebuilds a supervisor from its ledger records without recording anything: a standby
    /// replica's, kept current with [`Supervisor::follow`] until it takes over
    /// ([`Supervisor::take_over`]).
    pub fn follower(
        cfg: SupervisorConfig,
        records: &[(Timestamp, RecordBody)],
    ) -> Result<Self, String> {
        cfg.validate()?;
        let state = State::replay(&cfg, records.iter().map(|(t, r)| (*t, r)));
        let open_start = state.last_cycle_end.unwrap_or(state.started_at);
        // what happened since the last summary still belongs in the next one
        let since_summary = records
            .iter()
            .rposition(|(_, r)| matches!(r, RecordBody::Summary { .. }))
            .map_or(0, |i| i + 1);
        let journal = records[since_summary..]
            .iter()
            .map(|(_, r)| std::sync::Arc::new(r.clone()))
            .collect();
        let s = Supervisor {
            next_cycle_at: open_start.plus_millis(cfg.cycle_seconds * 1000),
            open_health: state.health.clone(),
            cfg,
            state,
            open: BTreeMap::new(),
            open_arms: BTreeMap::new(),
            open_regime: BTreeMap::new(),
            open_start,
            effects: VecDeque::new(),
            journal,
            counters: IngestCounters::default(),
            pre_stats: BTreeMap::new(),
            recent: crate::snapshot::RecentWindows::default(),
        };
        Ok(s)
    }

    /// Brings a standby's supervisor up to date with records another replica appended:
    /// the same fold as [`Supervisor::restore`], one batch at a time, producing no effects.
    pub fn follow(&mut self, records: &[(Timestamp, RecordBody)]) {
        if records.is_empty() {
            return;
        }
        for (t, r) in records {
            self.state.apply(&self.cfg, r, *t);
            if matches!(r, RecordBody::Summary { .. }) {
                self.journal.clear();
            } else {
                self.journal.push(std::sync::Arc::new(r.clone()));
            }
        }
        self.open_start = self.state.last_cycle_end.unwrap_or(self.state.started_at);
        self.next_cycle_at = self.open_start.plus_millis(self.cfg.cycle_seconds * 1000);
        self.open_health = self.state.health.clone();
        self.open.clear();
        self.open_arms.clear();
        self.open_regime.clear();
    }

    /// A standby that took the lead: records the (re)start, as [`Supervisor::restore`]
    /// does.
    pub fn take_over(&mut self, now: Timestamp) {
        self.record_start(now);
    }

    fn record_start(&mut self, at: Timestamp) {
        let body = RecordBody::Started {
            environment: self.cfg.environment.clone(),
            cycle_seconds: self.cfg.cycle_seconds,
            goals: self.cfg.goals.clone(),
            policies: self.cfg.policies.clone(),
            approval: self.cfg.approval.clone(),
            method: self.cfg.verification.method.as_str().into(),
            start: at,
            verification: Some(self.cfg.verification.clone()),
            shadow: self.cfg.shadow,
            id_seed: Some(self.cfg.id_seed),
        };
        let actor = self.cfg.actor.clone();
        self.commit(at, &actor, body);
    }

    /// The configuration.
    pub fn config(&self) -> &SupervisorConfig {
        &self.cfg
    }

    /// The decision state (a fold over the records emitted so far).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// When the next cycle closes.
    pub fn next_cycle_at(&self) -> Timestamp {
        self.next_cycle_at
    }

    /// When the open cycle began: the end of the last closed cycle, or the start.
    pub fn open_start(&self) -> Timestamp {
        self.open_start
    }

    /// Ingest counters.
    pub fn counters(&self) -> &IngestCounters {
        &self.counters
    }

    /// Directives recorded as published to the spine and not yet acknowledged, oldest
    /// first: what a restarted supervisor (or a new leader) sends again, under the same ids.
    pub fn unacknowledged(&self) -> Vec<crate::protocol::DirectiveMessage> {
        self.state
            .order
            .iter()
            .map(|id| &self.state.directives[id])
            .filter(|d| {
                d.status == Status::Published
                    && d.directive.directive_type != DirectiveType::RequestReview
                    && !d.directive.shadow
            })
            .map(|d| d.directive.message())
            .collect()
    }

    /// Records the mesh deliveries (stream sequences) folded into the open cycle; call it
    /// in the same input as the [`Supervisor::tick`] that closes the cycle, so both are
    /// durable together.
    pub fn record_folded(&mut self, stream: &str, seqs: &[u64], now: Timestamp) {
        if seqs.is_empty() {
            return;
        }
        let mut sorted = seqs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut ranges: Vec<[u64; 2]> = Vec::new();
        for s in sorted {
            match ranges.last_mut() {
                Some(r) if r[1] + 1 == s => r[1] = s,
                _ => ranges.push([s, s]),
            }
        }
        let actor = self.cfg.actor.clone();
        self.commit(
            now,
            &actor,
            RecordBody::EventsFolded {
                cycle: self.state.cycle + 1,
                stream: stream.to_string(),
                ranges,
            },
        );
    }

    /// Records an operational fact that changes no decision (a reload of the adapters, a
    /// new leader). Other record kinds are refused.
    pub fn record_operational(
        &mut self,
        now: Timestamp,
        actor: &str,
        body: RecordBody,
    ) -> Result<(), String> {
        match body {
            RecordBody::AdaptersReloaded { .. } | RecordBody::LeaderElected { .. } => {
                self.commit(now, actor, body);
                Ok(())
            }
            other => Err(format!("{} is not an operational record", other.action())),
        }
    }

    /// The next effect to carry out.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Appends a record: applies it to the state, then queues it for the ledger.
    fn commit(&mut self, time: Timestamp, actor: &str, body: RecordBody) {
        self.state.apply(&self.cfg, &body, time);
        // shared by the record and the journal: its payload is encoded by whoever writes it
        let body = std::sync::Arc::new(body);
        self.effects
            .push_back(Effect::Record(body.clone().into_entry(time, actor)));
        self.journal.push(body);
    }

    fn notify(
        &mut self,
        kind: NotificationKind,
        time: Timestamp,
        text: String,
        subject: Option<String>,
    ) {
        self.effects.push_back(Effect::Notify(Notification {
            kind,
            time,
            text,
            subject,
        }));
    }

    /// Folds one authenticated spine event in. Acks change directives; other events go into
    /// the open cycle's KPI windows in O(1).
    pub fn ingest(&mut self, event: &SpineEvent) -> Result<(), InputError> {
        let r = self.ingest_inner(event);
        if r.is_ok() {
            self.counters.accepted += 1
        } else {
            self.counters.rejected += 1
        }
        r
    }

    fn ingest_inner(&mut self, event: &SpineEvent) -> Result<(), InputError> {
        validate_event(event)?;
        match &event.data {
            EventData::DirectiveApplied(a) => self.handle_applied(event, a),
            EventData::DirectiveRefused(r) => self.handle_refused(event, r),
            EventData::HealthChanged(h) => {
                let before = self
                    .open_health
                    .nodes
                    .get(&format!("{}/{}", h.domain, h.node))
                    .map(|n| n.state);
                self.open_health.apply(h);
                if before != Some(h.state) {
                    self.open_regime.insert(h.domain.clone(), event.time);
                }
                self.open
                    .entry(h.domain.clone())
                    .or_default()
                    .observe(&event.data);
                Ok(())
            }
            data => {
                self.open
                    .entry(data.domain().to_string())
                    .or_default()
                    .observe(data);
                let arm = partial::experiment_arm(data);
                // only the arms of an experiment of ours in this domain, still running
                if let Some(tag) = arm
                    && let Some(ds) = self.state.directives.get(&tag.id)
                    && ds.directive.directive_type == DirectiveType::ScheduleExperiment
                    && ds.directive.target_domain == data.domain()
                    && ds.status.in_flight()
                {
                    let arms = self.open_arms.entry(tag.id.clone()).or_default();
                    match tag.arm {
                        Arm::Control => arms.control.observe(data),
                        Arm::Treatment => arms.treatment.observe(data),
                    }
                }
                Ok(())
            }
        }
    }

    fn handle_applied(
        &mut self,
        event: &SpineEvent,
        a: &DirectiveApplied,
    ) -> Result<(), InputError> {
        let ds = self
            .state
            .directives
            .get(&a.directive_id)
            .ok_or_else(|| InputError::UnknownDirective(a.directive_id.clone()))?;
        if ds.status != Status::Published
            || ds.directive.directive_type == DirectiveType::RequestReview
        {
            return Err(InputError::WrongStatus {
                id: a.directive_id.clone(),
                status: ds.status,
                expected: "published",
            });
        }
        if a.domain != ds.directive.target_domain || a.knob != ds.directive.knob {
            return Err(InputError::AckMismatch {
                id: a.directive_id.clone(),
                got: format!("{}/{}", a.domain, a.knob),
                expected: ds.directive.knob_key(),
            });
        }
        let rollback_of = ds.directive.rollback_of.clone();
        let knob_key = ds.directive.knob_key();
        let was_late = ds.ack_timed_out;
        let time = event.time;
        self.commit(
            time,
            &event.source,
            RecordBody::Applied {
                directive_id: a.directive_id.clone(),
                previous: a.previous.clone(),
                current: a.current.clone(),
                at: time,
            },
        );
        self.notify(
            NotificationKind::Applied,
            time,
            format!(
                "Spine applied directive {}: {knob_key} changed from {} to {}.",
                short(&a.directive_id),
                a.previous,
                a.current
            ),
            Some(a.directive_id.clone()),
        );
        if let Some(orig) = rollback_of {
            let actor = self.cfg.actor.clone();
            self.commit(
                time,
                &actor,
                RecordBody::RolledBack {
                    directive_id: orig.clone(),
                    rollback_id: a.directive_id.clone(),
                    restored: a.current.clone(),
                },
            );
            self.notify(
                NotificationKind::Rollback,
                time,
                format!(
                    "Rolled back directive {}: {knob_key} restored to {}.",
                    short(&orig),
                    a.current
                ),
                Some(orig),
            );
        }
        if was_late {
            self.resolve_alert(time, &format!("directive_no_ack:{}", a.directive_id));
        }
        Ok(())
    }

    fn handle_refused(
        &mut self,
        event: &SpineEvent,
        r: &DirectiveRefused,
    ) -> Result<(), InputError> {
        let ds = self
            .state
            .directives
            .get(&r.directive_id)
            .ok_or_else(|| InputError::UnknownDirective(r.directive_id.clone()))?;
        if ds.status != Status::Published {
            return Err(InputError::WrongStatus {
                id: r.directive_id.clone(),
                status: ds.status,
                expected: "published",
            });
        }
        let was_late = ds.ack_timed_out;
        self.commit(
            event.time,
            &event.source,
            RecordBody::Refused {
                directive_id: r.directive_id.clone(),
                reason: r.reason.clone(),
            },
        );
        self.notify(
            NotificationKind::Applied,
            event.time,
            format!(
                "Spine refused directive {}: {}.",
                short(&r.directive_id),
                r.reason
            ),
            Some(r.directive_id.clone()),
        );
        if was_late {
            self.resolve_alert(event.time, &format!("directive_no_ack:{}", r.directive_id));
        }
        Ok(())
    }

    fn resolve_alert(&mut self, time: Timestamp, key: &str) {
        if self.state.alerts.contains_key(key) {
            let actor = self.cfg.actor.clone();
            let cycle = self.state.cycle;
            self.commit(
                time,
                &actor,
                RecordBody::AlertResolved {
                    key: key.to_string(),
                    cycle,
                },
            );
            self.notify(
                NotificationKind::AlertResolved,
                time,
                format!("Resolved: {key}."),
                Some(key.to_string()),
            );
        }
    }

    /// Records an approval; publishes the directive once it has every approval it needs.
    pub fn approve(
        &mut self,
        id: &str,
        approver: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<(), InputError> {
        let approver = self.check_decision(id, approver, now)?;
        let ds = &self.state.directives[id];
        if ds.approvals.iter().any(|a| a.approver == approver) {
            return Err(InputError::AlreadyApproved {
                id: id.into(),
                approver: approver.into(),
            });
        }
        if ds.requirement.review_note && note.trim().is_empty() {
            return Err(InputError::ReviewNoteRequired(id.into()));
        }
        self.commit(
            now,
            approver,
            RecordBody::Approved {
                directive_id: id.into(),
                approver: approver.into(),
                note: note.into(),
            },
        );
        if self.state.directives[id].status == Status::Approved {
            self.publish(id, now);
        }
        Ok(())
    }

    /// Records a rejection: the directive is never published. A directive past its deadline
    /// has expired instead, and the rejection is refused like an approval would be.
    pub fn reject(
        &mut self,
        id: &str,
        approver: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<(), InputError> {
        let approver = self.check_decision(id, approver, now)?;
        self.commit(
            now,
            approver,
            RecordBody::Rejected {
                directive_id: id.into(),
                approver: approver.into(),
                note: note.into(),
            },
        );
        Ok(())
    }

    /// Checks a human decision on directive `id` before it is recorded: a named approver, a
    /// known directive that awaits approval and has not expired (one past its deadline is
    /// expired now, and the decision refused). Returns the approver's name, trimmed.
    fn check_decision<'a>(
        &mut self,
        id: &str,
        approver: &'a str,
        now: Timestamp,
    ) -> Result<&'a str, InputError> {
        let approver = approver.trim();
        if approver.is_empty() {
            return Err(InputError::EmptyApprover);
        }
        let ds = self
            .state
            .directives
            .get(id)
            .ok_or_else(|| InputError::UnknownDirective(id.into()))?;
        if ds.status != Status::PendingApproval {
            return Err(InputError::WrongStatus {
                id: id.into(),
                status: ds.status,
                expected: "pending_approval",
            });
        }
        if ds.expires_at.is_some_and(|t| now >= t) {
            self.expire(id, now);
            return Err(InputError::Expired(id.into()));
        }
        Ok(approver)
    }

    /// Registers a policy at run time (replacing one with the same id, keeping its track
    /// record), recorded with who did it.
    pub fn register_policy(
        &mut self,
        policy: MetaPolicy,
        by: &str,
        now: Timestamp,
    ) -> Result<(), InputError> {
        let by = by.trim();
        if by.is_empty() {
            return Err(InputError::EmptyApprover);
        }
        policy.validate().map_err(InputError::InvalidPolicy)?;
        policy
            .validate_against(&self.state.goals)
            .map_err(InputError::InvalidPolicy)?;
        let changes = self
            .state
            .policies
            .get(&policy.id)
            .map(|old| crate::record::policy_changes(&old.policy, &policy))
            .unwrap_or_default();
        self.commit(now, by, RecordBody::PolicyRegistered { policy, changes });
        Ok(())
    }

    /// Clears a policy's track record (an admin's decision, with a note saying why): its
    /// confidence starts again from the prior.
    pub fn reset_track_record(
        &mut self,
        id: &str,
        by: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<(), InputError> {
        let by = by.trim();
        if by.is_empty() {
            return Err(InputError::EmptyApprover);
        }
        let previous = self
            .state
            .policies
            .get(id)
            .ok_or_else(|| InputError::UnknownPolicy(id.into()))?
            .track;
        if note.trim().is_empty() {
            return Err(InputError::InvalidPolicy(format!(
                "policy {id}: resetting its track record needs a note saying why"
            )));
        }
        self.commit(
            now,
            by,
            RecordBody::TrackRecordReset {
                policy_id: id.into(),
                note: note.trim().into(),
                previous,
            },
        );
        Ok(())
    }

    /// Enables or disables a policy, recorded with who did it.
    pub fn set_policy_enabled(
        &mut self,
        id: &str,
        enabled: bool,
        by: &str,
        now: Timestamp,
    ) -> Result<(), InputError> {
        let by = by.trim();
        if by.is_empty() {
            return Err(InputError::EmptyApprover);
        }
        if !self.state.policies.contains_key(id) {
            return Err(InputError::UnknownPolicy(id.into()));
        }
        self.commit(
            now,
            by,
            RecordBody::PolicyEnabled {
                policy_id: id.into(),
                enabled,
            },
        );
        Ok(())
    }

    /// Directives waiting for approval, oldest first.
    pub fn pending_approvals(&self) -> Vec<&DirectiveState> {
        self.state
            .order
            .iter()
            .filter_map(|id| self.state.directives.get(id))
            .filter(|d| d.status == Status::PendingApproval)
            .collect()
    }

    /// Runs every cycle due by `now`.
    pub fn tick(&mut self, now: Timestamp) {
        while now >= self.next_cycle_at {
            let end = self.next_cycle_at;
            self.run_cycle(end);
            self.open_start = end;
            self.next_cycle_at = end.plus_millis(self.cfg.cycle_seconds * 1000);
        }
    }

    /// Closes the next cycle on recorded inputs instead of ingested events: the windows, the
    /// health graph and the regime changes of a `snapshot.built` record. Backtests replay a
    /// ledger's cycles through other policies this way. Events ingested since the last cycle
    /// are dropped.
    pub fn close_recorded_cycle(
        &mut self,
        windows: &crate::kpi::CycleWindows,
        health: &HealthGraph,
        regime_changes: &BTreeMap<String, Timestamp>,
    ) {
        let end = windows.end;
        self.open = windows.domains.clone();
        self.open_arms = windows.arms.clone();
        self.open_health = health.clone();
        self.open_regime = regime_changes.clone();
        self.open_start = windows.start;
        self.run_cycle(end);
        self.open_start = end;
        self.next_cycle_at = end.plus_millis(self.cfg.cycle_seconds * 1000);
    }

    fn expire(&mut self, id: &str, now: Timestamp) {
        let actor = self.cfg.actor.clone();
        self.commit(
            now,
            &actor,
            RecordBody::Expired {
                directive_id: id.into(),
            },
        );
        let d = &self.state.directives[id].directive;
        let text = format!(
            "Directive {} ({} {} in {}) expired without the approvals it needed; it will not be applied.",
            short(id),
            d.directive_type,
            d.knob,
            d.target_domain
        );
        self.notify(NotificationKind::Expired, now, text, Some(id.into()));
    }

    fn publish(&mut self, id: &str, now: Timestamp) {
        let ds = &self.state.directives[id];
        let message = ds.directive.message();
        let review = ds.directive.directive_type == DirectiveType::RequestReview;
        let notify = ds.requirement.notify || review;
        let text = if review {
            format!("Review requested: {}", ds.directive.justification)
        } else {
            format!(
                "Published directive {}: {} {} in {} ({}).",
                short(id),
                ds.directive.directive_type,
                ds.directive.knob,
                ds.directive.target_domain,
                ds.directive.justification
            )
        };
        let actor = self.cfg.actor.clone();
        self.commit(
            now,
            &actor,
            RecordBody::Published {
                directive_id: id.into(),
                message: message.clone(),
            },
        );
        if review {
            self.notify(NotificationKind::ReviewRequest, now, text, Some(id.into()));
        } else {
            self.effects.push_back(Effect::Publish(message));
            if notify {
                self.notify(NotificationKind::Published, now, text, Some(id.into()));
            }
        }
    }
}

/// The first 8 characters of an id, for text.
pub fn short(id: &str) -> &str {
    let end = id.char_indices().nth(8).map_or(id.len(), |(i, _)| i);
    &id[..end]
}

pub use crate::protocol::{MAX_DURATION_S, MAX_KPI_VALUE};

/// Rejects events whose values no spine could mean ([`crate::protocol::validate_data`]).
fn validate_event(e: &SpineEvent) -> Result<(), InputError> {
    crate::protocol::validate_data(&e.data).map_err(|d| InputError::InvalidEvent {
        event_type: e.data.type_name(),
        id: e.id.clone(),
        field: d.field,
        reason: d.reason,
    })
}
