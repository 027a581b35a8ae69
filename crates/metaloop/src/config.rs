//! `metaloop.toml`: the daemon's one configuration file (DESIGN.md §7). Unknown keys are
//! rejected with file:line:column; secrets come from the environment, never from the file.

use metaloop_core::SupervisorConfig;
use metaloop_core::alert::AlertConfig;
use metaloop_core::goal::{Goal, default_goals};
use metaloop_core::pipeline::ApprovalMatrix;
use metaloop_core::policy::{MetaPolicy, default_policies};
use metaloop_core::verify::VerifyConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `production`, `staging`, …: selects approval rules.
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Time between cycles: seconds as a number, or text like "5m", "30s", "1h".
    #[serde(default = "default_cycle_interval")]
    pub cycle_interval: Interval,
    /// HTTP listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the ledger (SQLite), the supervisor's key and other state live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub ledger: LedgerSection,
    #[serde(default)]
    pub mesh: MeshSection,
    #[serde(default)]
    pub signing: SigningSection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub dedupe: DedupeSection,
    /// Spine adapters allowed to send events, with their public keys.
    #[serde(default)]
    pub adapters: Vec<AdapterEntry>,
    /// API bearer tokens, stored as SHA-256 hashes.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// Strategic goals (default: the seed's five).
    #[serde(default)]
    pub goals: Option<Vec<Goal>>,
    /// Meta-policies (default: the built-in four).
    #[serde(default)]
    pub policies: Option<Vec<MetaPolicy>>,
    /// Approval matrix (default: the seed's).
    #[serde(default)]
    pub approval: Option<ApprovalMatrix>,
    /// Verification settings (default: see docs/VERIFICATION.md).
    #[serde(default)]
    pub verification: Option<VerifyConfig>,
    /// Alert thresholds.
    #[serde(default)]
    pub alerts: Option<AlertConfig>,
    /// Human notification channels.
    #[serde(default)]
    pub notify: Vec<NotifyEntry>,
    /// Shadow mode for the whole supervisor: decisions are recorded as would-have (shadow)
    /// directives with estimated verdicts, never published (`run --shadow` sets it too).
    #[serde(default)]
    pub shadow: bool,
    /// Replicas with one leader on a PostgreSQL ledger (docs/HA.md).
    #[serde(default)]
    pub ha: HaSection,
    /// What time it is for the supervisor: this machine's clock (the default), or a time
    /// that `POST /v1/admin/clock` moves (simulations, replays, deterministic tests).
    #[serde(default)]
    pub clock: ClockSection,
}

/// `[clock]`: what moves the supervisor's time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClockSection {
    pub mode: ClockMode,
    /// With `mode = "driven"`: the time on an empty ledger, before the first advance
    /// (RFC 3339, e.g. "2026-01-01T00:00:00Z").
    pub start: Option<String>,
}

/// `wall` (the default): cycles close on this machine's clock. `driven`: they close when
/// `POST /v1/admin/clock` advances the time past their end; events, acks and decisions are
/// stamped with that time (docs/HA.md, "A driven clock").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    #[default]
    Wall,
    Driven,
}

impl ClockSection {
    /// The driven clock's start, when the clock is driven.
    pub fn driven_start(&self) -> Result<Option<metaloop_core::time::Timestamp>, String> {
        match (self.mode, &self.start) {
            (ClockMode::Wall, None) => Ok(None),
            (ClockMode::Wall, Some(_)) => {
                Err("clock.start is only read with clock.mode = \"driven\"".into())
            }
            (ClockMode::Driven, None) => Err(
                "clock.mode = \"driven\" needs clock.start, the time before the first advance (RFC 3339, e.g. \"2026-01-01T00:00:00Z\")"
                    .into(),
            ),
            (ClockMode::Driven, Some(t)) => metaloop_core::time::Timestamp::parse_rfc3339(t)
                .map(Some)
                .ok_or_else(|| {
                    format!("clock.start: {t:?} is not an RFC 3339 time like \"2026-01-01T00:00:00Z\"")
                }),
        }
    }
}

/// `[ha]`: several `metaloop run` on one PostgreSQL ledger, one of them leading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaSection {
    /// Take part in leader election (needs a `postgres://` ledger). Off: this process is
    /// the only supervisor of its ledger.
    pub enabled: bool,
    /// This replica's name in the lease and the ledger (default: host name and listen
    /// address); each start adds a random suffix, so a restarted replica is a new holder.
    pub node: Option<String>,
    /// How long a lease lasts without renewal, by the database's clock.
    pub lease_ttl: Interval,
    /// How often the leader renews it (well under `lease_ttl`).
    pub renew_every: Interval,
    /// Up to this much random delay added to each renewal and each standby attempt,
    /// milliseconds, so replicas do not move in step.
    pub jitter_ms: u64,
    /// How often a standby reads the records the leader appended, milliseconds.
    pub tail_every_ms: u64,
}

impl Default for HaSection {
    fn default() -> Self {
        HaSection {
            enabled: false,
            node: None,
            lease_ttl: Interval(15),
            renew_every: Interval(5),
            jitter_ms: 500,
            tail_every_ms: 1000,
        }
    }
}

/// A duration in whole seconds, written as a number or as "5m" / "30s" / "1h".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Interval(pub u64);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Interval(s)),
            Raw::Text(t) => parse_interval(&t)
                .map(Interval)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses "90", "90s", "5m", "1h".
pub fn parse_interval(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            format!(
                "invalid interval {text:?}: expected seconds or a number with s, m or h (e.g. \"5m\")"
            )
        })
}

/// `[ledger]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// `sqlite://PATH` or `postgres://…`; default: `ledger.db` in the data directory.
    pub url: Option<String>,
    /// Sign a checkpoint every this many records …
    pub checkpoint_every_records: u64,
    /// … or this often (when there are new records), and at shutdown: the bound on how long
    /// records stay covered by the hash chain only.
    pub checkpoint_every: Interval,
    /// Witnesses (c2sp.org/tlog-witness) each new checkpoint is sent to for cosigning.
    pub witnesses: Vec<WitnessEntry>,
}

/// `[[ledger.witnesses]]`: a witness's submission URL and cosigner verifier key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEntry {
    /// The submission prefix, e.g. `http://witness.example:7380`.
    pub url: String,
    /// Its verifier key, `name+id+base64(0x04 ‖ key)` (what `metaloop witness` prints).
    pub vkey: String,
}

impl Default for LedgerSection {
    fn default() -> Self {
        LedgerSection {
            url: None,
            checkpoint_every_records: 1000,
            checkpoint_every: Interval(10),
            witnesses: Vec::new(),
        }
    }
}

/// `[mesh]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshSection {
    /// `memory://` (in-process) or `nats://host:port`.
    pub url: String,
    /// Prefix of every subject on the bus.
    pub subject_prefix: String,
    /// The JetStream stream that captures `<subject_prefix>.>`; default `METALOOP` for the
    /// prefix `metaloop`, `METALOOP_<PREFIX>` (upper case) for any other, so deployments with
    /// different prefixes can share a NATS server.
    pub stream: Option<String>,
    /// A delivery not acknowledged within this is delivered again (to this supervisor, or
    /// to the next leader after a failover); default: two cycles plus a minute. Longer than
    /// `cycle_interval`: deliveries are acknowledged when their cycle closes.
    pub ack_wait: Option<Interval>,
    /// False when `metaloop ingest-worker` processes read the mesh: the leader then verifies
    /// no event itself and only merges the workers' partial windows (docs/HA.md). True (the
    /// default): the leader reads the mesh too, beside any workers.
    pub leader_consumes: bool,
    /// How often an ingest worker hands its partial windows to the leader, milliseconds.
    pub worker_flush_ms: u64,
    /// Public keys (hex) of the ingest workers whose partials the leader merges. Empty (the
    /// default): partials are not authenticated, and the leader trusts whoever can publish
    /// on the workers' subject.
    pub worker_keys: Vec<String>,
    /// An ingest worker's own secret key (`metaloop keys generate`), which signs its
    /// partials; needed when the leader has `worker_keys`.
    pub worker_key_file: Option<PathBuf>,
}

impl Default for MeshSection {
    fn default() -> Self {
        MeshSection {
            url: "memory://".into(),
            subject_prefix: "metaloop".into(),
            stream: None,
            ack_wait: None,
            leader_consumes: true,
            worker_flush_ms: 250,
            worker_keys: Vec::new(),
            worker_key_file: None,
        }
    }
}

impl MeshSection {
    /// The worker keys the leader accepts.
    pub fn accepted_worker_keys(&self) -> Result<Vec<ed25519_dalek::VerifyingKey>, String> {
        self.worker_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                metaloop_mesh::keys::parse_public_key(k)
                    .map_err(|e| format!("mesh.worker_keys[{i}]: {e}"))
            })
            .collect()
    }

    /// This worker's signing key, when it has one.
    pub fn worker_key(&self) -> Result<Option<ed25519_dalek::SigningKey>, String> {
        let Some(path) = &self.worker_key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        metaloop_mesh::keys::parse_secret_key(text.trim())
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The ack wait in force, milliseconds.
    pub fn ack_wait_ms(&self, cycle_secs: u64) -> u64 {
        self.ack_wait
            .map_or((cycle_secs * 2 + 60) * 1000, |w| w.0 * 1000)
    }

    /// The core NATS subject (outside the stream) on which ingest workers hand partial
    /// windows to the leader; `<it>.closed` announces closed cycles to them.
    pub fn workers_subject(&self) -> String {
        format!("_metaloop.{}.partials", self.stream_name())
    }

    /// The stream name in force.
    pub fn stream_name(&self) -> String {
        match &self.stream {
            Some(s) => s.clone(),
            None if self.subject_prefix == "metaloop" => "METALOOP".into(),
            None => format!(
                "METALOOP_{}",
                self.subject_prefix
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    })
                    .collect::<String>()
            ),
        }
    }
}

/// `[ingest]`: limits on what the spine may send (docs/PROTOCOL.md §1, §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Largest event, bytes (also per element of a batch); larger is `oversized`.
    pub max_event_bytes: usize,
    /// Largest batch document, bytes.
    pub max_batch_bytes: usize,
    /// Most events in one batch.
    pub max_batch_events: usize,
    /// Oldest event time accepted, before its arrival ("1h"); older is `stale`. At most
    /// `[dedupe] window_secs`.
    pub max_event_age: Interval,
    /// Furthest an event may be dated after its arrival ("5m"); later is `future`.
    pub max_clock_skew: Interval,
}

impl Default for IngestSection {
    fn default() -> Self {
        let d = metaloop_mesh::IngestConfig::default();
        IngestSection {
            max_event_bytes: d.limits.max_event_bytes,
            max_batch_bytes: d.limits.max_batch_bytes,
            max_batch_events: d.limits.max_batch_events,
            max_event_age: Interval(d.max_event_age_secs),
            max_clock_skew: Interval(d.max_clock_skew_secs),
        }
    }
}

/// `[dedupe]`: how long and how many accepted events are remembered (docs/PROTOCOL.md §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupeSection {
    /// Seconds an accepted (`source`, `id`) is remembered.
    pub window_secs: u64,
    /// Most events remembered (memory: about 120 bytes each).
    pub capacity: usize,
}

impl Default for DedupeSection {
    fn default() -> Self {
        let d = metaloop_mesh::ingest::DedupeConfig::default();
        DedupeSection {
            window_secs: d.window_secs,
            capacity: d.capacity,
        }
    }
}

/// `[signing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningSection {
    /// The supervisor's Ed25519 secret key (created on first start with mode 0600);
    /// default: `supervisor.key` in the data directory.
    pub key_file: Option<PathBuf>,
    /// The CloudEvents `source` of what metaloop publishes.
    pub source: String,
}

impl Default for SigningSection {
    fn default() -> Self {
        SigningSection {
            key_file: None,
            source: "urn:metaloop:supervisor".into(),
        }
    }
}

/// `[[adapters]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterEntry {
    /// The CloudEvents `source` the adapter signs as.
    pub source: String,
    /// Ed25519 public keys (hex, 64 characters); two during a rotation.
    pub public_keys: Vec<String>,
    /// The domains the adapter may send events and acks about; absent: any domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
}

/// A principal's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Admin,
    Adapter,
}

/// `[[tokens]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub principal: String,
    pub roles: Vec<Role>,
    /// SHA-256 of the token, hex (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
}

/// Kinds of notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    Log,
    Webhook,
    Slack,
    Alertmanager,
}

/// `[[notify]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyEntry {
    pub kind: NotifyKind,
    /// Where to post (not for `log`).
    #[serde(default)]
    pub url: Option<String>,
    /// Name of the environment variable holding the webhook's HMAC secret.
    #[serde(default)]
    pub secret_env: Option<String>,
}

fn default_environment() -> String {
    "production".into()
}
fn default_cycle_interval() -> Interval {
    Interval(300)
}
fn default_listen() -> String {
    "127.0.0.1:7171".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("metaloop-data")
}

/// A configuration error, already formatted with where it is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Line and column (1-based) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// Checks the CEL expressions of `policies` written in `text`; an error names the file and
/// the line and column of the mistake in it (in the expression when it cannot be found in
/// the file, e.g. written with escapes).
pub fn check_expressions(
    text: &str,
    name: &str,
    policies: &[MetaPolicy],
) -> Result<(), ConfigError> {
    fn expressions<'a>(c: &'a metaloop_core::policy::Condition, out: &mut Vec<&'a str>) {
        if let Some(e) = &c.expression {
            out.push(e);
        }
        for sub in c.all.iter().chain(&c.any) {
            expressions(sub, out);
        }
    }
    for p in policies {
        let mut found = Vec::new();
        expressions(&p.condition, &mut found);
        for source in found {
            if let Err(e) = metaloop_core::policy::expression::compile(source) {
                let at = text
                    .find(source)
                    .map(|start| line_col(text, start + e.offset));
                return Err(ConfigError(match at {
                    Some((l, c)) => format!(
                        "{name}:{l}:{c}: policy {}: condition expression: {}",
                        p.id, e.message
                    ),
                    None => format!(
                        "{name}: policy {}: condition expression at {}:{}: {}",
                        p.id, e.line, e.column, e.message
                    ),
                }));
            }
        }
    }
    Ok(())
}

/// Parses TOML text into `T`; errors carry `name:line:column`.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    name: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| line_col(text, s.start));
        let msg = e.message().trim().to_string();
        match at {
            Some((l, c)) => ConfigError(format!("{name}:{l}:{c}: {msg}")),
            None => ConfigError(format!("{name}: {msg}")),
        }
    })
}

impl FileConfig {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        let cfg = Self::parse(&text, &path.display().to_string())?;
        if let Some(policies) = &cfg.policies {
            check_expressions(&text, &path.display().to_string(), policies)?;
        }
        cfg.validate()
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Ok(cfg)
    }

    /// Parses TOML text; errors carry `name:line:column`.
    pub fn parse(text: &str, name: &str) -> Result<FileConfig, ConfigError> {
        parse_toml(text, name)
    }

    /// The supervisor's core configuration.
    pub fn supervisor(&self) -> SupervisorConfig {
        let d = SupervisorConfig::default();
        SupervisorConfig {
            environment: self.environment.clone(),
            cycle_seconds: self.cycle_interval.0 as i64,
            goals: self.goals.clone().unwrap_or_else(default_goals),
            policies: self.policies.clone().unwrap_or_else(default_policies),
            approval: self.approval.clone().unwrap_or(d.approval.clone()),
            verification: self.verification.clone().unwrap_or(d.verification.clone()),
            alerts: self.alerts.clone().unwrap_or(d.alerts.clone()),
            shadow: self.shadow,
            ..d
        }
    }

    /// The ingest pipeline's settings.
    pub fn ingest_config(&self) -> metaloop_mesh::IngestConfig {
        metaloop_mesh::IngestConfig {
            limits: metaloop_mesh::SizeLimits {
                max_event_bytes: self.ingest.max_event_bytes,
                max_batch_bytes: self.ingest.max_batch_bytes,
                max_batch_events: self.ingest.max_batch_events,
            },
            dedupe: metaloop_mesh::ingest::DedupeConfig {
                capacity: self.dedupe.capacity,
                window_secs: self.dedupe.window_secs,
            },
            max_event_age_secs: self.ingest.max_event_age.0,
            max_clock_skew_secs: self.ingest.max_clock_skew.0,
        }
    }

    /// The adapters' keys, as the key registry takes them.
    pub fn adapter_keys(&self) -> Vec<metaloop_mesh::AdapterKeys> {
        self.adapters
            .iter()
            .map(|a| metaloop_mesh::AdapterKeys {
                source: a.source.clone(),
                public_keys: a.public_keys.clone(),
                domains: a.domains.clone(),
            })
            .collect()
    }

    /// The ledger URL in force.
    pub fn ledger_url(&self) -> String {
        self.ledger
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ledger.db").display()))
    }

    /// The supervisor key file in force.
    pub fn key_file(&self) -> PathBuf {
        self.signing
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("supervisor.key"))
    }

    /// Checks everything that parsing cannot; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.ha.enabled {
            let url = self.ledger_url();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(format!(
                    "ha.enabled needs a postgres:// ledger (replicas share it); ledger.url is {url}"
                ));
            }
            if self.ha.lease_ttl.0 < 2 {
                return Err("ha.lease_ttl must be at least 2 seconds".into());
            }
            if self.ha.renew_every.0 == 0 || self.ha.renew_every.0 * 2 > self.ha.lease_ttl.0 {
                return Err(format!(
                    "ha.renew_every ({} s) must be at least 1 s and at most half of ha.lease_ttl ({} s)",
                    self.ha.renew_every.0, self.ha.lease_ttl.0
                ));
            }
            if self.ha.jitter_ms >= self.ha.renew_every.0 * 1000 {
                return Err("ha.jitter_ms must be shorter than ha.renew_every".into());
            }
            if self.ha.tail_every_ms == 0 {
                return Err("ha.tail_every_ms must be at least 1".into());
            }
            if self.ha.node.as_deref().is_some_and(|n| n.trim().is_empty()) {
                return Err("ha.node must not be empty".into());
            }
        }
        if self.cycle_interval.0 == 0 {
            return Err("cycle_interval must be at least 1 second".into());
        }
        self.clock.driven_start()?;
        self.mesh.accepted_worker_keys()?;
        // (a driven clock's cycles are not wall-clock seconds: no bound between them)
        if let Some(w) = self.mesh.ack_wait
            && w.0 <= self.cycle_interval.0
            && self.clock.mode == ClockMode::Wall
        {
            return Err(format!(
                "mesh.ack_wait ({} s) must be longer than cycle_interval ({} s): deliveries are acknowledged when their cycle closes",
                w.0, self.cycle_interval.0
            ));
        }
        if !self.mesh.leader_consumes && self.mesh.url == "memory://" {
            return Err(
                "mesh.leader_consumes = false needs ingest workers, which read a nats:// mesh; mesh.url is memory://"
                    .into(),
            );
        }
        if self.mesh.worker_flush_ms == 0 || self.mesh.worker_flush_ms > 60_000 {
            return Err(format!(
                "mesh.worker_flush_ms must be between 1 and 60000, got {}",
                self.mesh.worker_flush_ms
            ));
        }
        if self.cycle_interval.0 > 7 * 86_400 {
            return Err(format!(
                "cycle_interval must be at most a week (604800 s), got {} s",
                self.cycle_interval.0
            ));
        }
        self.supervisor().validate()?;
        self.listen.parse::<SocketAddr>().map_err(|e| {
            format!(
                "listen: {:?} is not an address like 127.0.0.1:7171 ({e})",
                self.listen
            )
        })?;
        let url = self.ledger_url();
        if !(url.starts_with("sqlite://")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "ledger.url: {url:?} must start with sqlite:// or postgres://"
            ));
        }
        if self.ledger.checkpoint_every_records == 0 {
            return Err("ledger.checkpoint_every_records must be at least 1".into());
        }
        for (i, w) in self.ledger.witnesses.iter().enumerate() {
            crate::cosign::Witness::new(&w.url, &w.vkey)
                .map_err(|e| format!("ledger.witnesses[{i}]: {e:#}"))?;
        }
        if !(self.mesh.url == "memory://" || self.mesh.url.starts_with("nats://")) {
            return Err(format!(
                "mesh.url: {:?} must be memory:// or nats://host:port",
                self.mesh.url
            ));
        }
        if self.mesh.subject_prefix.is_empty()
            || self
                .mesh
                .subject_prefix
                .contains(|c: char| c.is_whitespace() || c == '*' || c == '>' || c == '.')
        {
            return Err(format!(
                "mesh.subject_prefix: {:?} must be one subject token (no spaces, dots, * or >)",
                self.mesh.subject_prefix
            ));
        }
        let mut sources = Vec::new();
        for (i, a) in self.adapters.iter().enumerate() {
            if a.source.trim().is_empty() {
                return Err(format!("adapters[{i}].source must not be empty"));
            }
            if sources.contains(&&a.source) {
                return Err(format!("adapters[{i}].source {:?} appears twice", a.source));
            }
            sources.push(&a.source);
            if a.public_keys.is_empty() || a.public_keys.len() > 2 {
                return Err(format!(
                    "adapters[{i}].public_keys: give one key, or two during a rotation"
                ));
            }
            for (j, k) in a.public_keys.iter().enumerate() {
                decode_public_key(k).map_err(|e| format!("adapters[{i}].public_keys[{j}]: {e}"))?;
                // the key registry's own checks (weak keys among them), as at start-up
                metaloop_mesh::keys::parse_public_key(k)
                    .map_err(|e| format!("adapters[{i}].public_keys[{j}]: {e}"))?;
            }
        }
        self.ingest_config()
            .validate()
            .map_err(|e| format!("ingest: {e}"))?;
        let stream = self.mesh.stream_name();
        if stream.is_empty()
            || stream.len() > 255
            || stream
                .contains(|c: char| c.is_whitespace() || c.is_control() || ".*>/\\".contains(c))
        {
            return Err(format!(
                "mesh.stream: {stream:?} is not a JetStream stream name (no spaces, ., *, >, / or \\)"
            ));
        }
        let mut principals = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if t.principal.trim().is_empty() {
                return Err(format!("tokens[{i}].principal must not be empty"));
            }
            if principals.contains(&&t.principal) {
                return Err(format!(
                    "tokens[{i}].principal {:?} appears twice",
                    t.principal
                ));
            }
            principals.push(&t.principal);
            if t.roles.is_empty() {
                return Err(format!("tokens[{i}].roles must name at least one role"));
            }
            if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "tokens[{i}].sha256 must be the 64-character hex SHA-256 of the token, not the token itself"
                ));
            }
        }
        // what start-up builds from the file, built the same way here
        crate::api::auth::Tokens::from_config(&self.tokens).map_err(|e| format!("tokens: {e}"))?;
        metaloop_mesh::SubjectPrefix::new(self.mesh.subject_prefix.clone())
            .map_err(|e| format!("mesh.subject_prefix: {e}"))?;
        metaloop_mesh::KeyRegistry::from_entries(&self.adapter_keys())
            .map_err(|e| format!("adapters: {e}"))?;
        for (i, n) in self.notify.iter().enumerate() {
            match (n.kind, &n.url) {
                (NotifyKind::Log, _) => {}
                (_, None) => {
                    return Err(format!("notify[{i}]: a {:?} channel needs a url", n.kind));
                }
                (_, Some(u)) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                    return Err(format!(
                        "notify[{i}].url: {u:?} must be an http:// or https:// URL"
                    ));
                }
                _ => {}
            }
            if let Some(var) = &n.secret_env
                && std::env::var_os(var).is_none()
            {
                return Err(format!(
                    "notify[{i}].secret_env: environment variable {var} is not set"
                ));
            }
        }
        Ok(())
    }
}

/// Decodes a 32-byte Ed25519 public key written as 64 hex characters.
pub fn decode_public_key(text: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let t = text.trim();
    if t.len() != 64 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("expected 64 hex characters (an Ed25519 public key)".into());
    }
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|e| format!("not a valid Ed25519 public key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/metaloop.toml");
        let cfg = FileConfig::load(&path).unwrap();
        assert_eq!(cfg.cycle_interval, Interval(300));
        assert!(!cfg.adapters.is_empty());
    }

    #[test]
    fn a_driven_clock_needs_a_start_and_frees_the_ack_wait() {
        let parse = |text: &str| {
            FileConfig::parse(text, "c.toml").and_then(|c| {
                c.validate().map_err(ConfigError)?;
                Ok(c)
            })
        };
        let cfg = parse("").unwrap();
        assert_eq!(cfg.clock.mode, ClockMode::Wall);
        assert_eq!(cfg.clock.driven_start(), Ok(None));
        let err = parse("[clock]\nmode = \"driven\"\n").unwrap_err();
        assert!(err.0.contains("needs clock.start"), "{}", err.0);
        let err = parse("[clock]\nmode = \"driven\"\nstart = \"yesterday\"\n").unwrap_err();
        assert!(
            err.0.contains("\"yesterday\" is not an RFC 3339 time"),
            "{}",
            err.0
        );
        let err = parse("[clock]\nstart = \"2026-01-01T00:00:00Z\"\n").unwrap_err();
        assert!(err.0.contains("only read with clock.mode"), "{}", err.0);
        let err = parse("[clock]\nmode = \"sundial\"\n").unwrap_err();
        assert!(err.0.contains("sundial"), "{}", err.0);
        // on the wall clock the ack wait must outlast a cycle; driven cycles are not seconds
        let text = "cycle_interval = 300\n[mesh]\nack_wait = 6\n";
        assert!(parse(text).unwrap_err().0.contains("mesh.ack_wait"));
        let cfg = parse(&format!(
            "{text}[clock]\nmode = \"driven\"\nstart = \"2026-01-01T00:00:00Z\"\n"
        ))
        .unwrap();
        assert_eq!(
            cfg.clock.driven_start(),
            Ok(Some(metaloop_core::time::Timestamp::from_secs(
                1_767_225_600
            )))
        );
    }

    #[test]
    fn empty_file_means_defaults() {
        let cfg = FileConfig::parse("", "x.toml").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.supervisor().policies.len(), 4);
        assert_eq!(cfg.ledger_url(), "sqlite://metaloop-data/ledger.db");
    }

    #[test]
    fn unknown_keys_name_file_line_and_column() {
        let err = FileConfig::parse(
            "environment = \"staging\"\n\n[mesh]\nurll = \"nats://x\"\n",
            "m.toml",
        )
        .unwrap_err();
        assert!(err.0.starts_with("m.toml:4:1:"), "{}", err.0);
        assert!(err.0.contains("urll"), "{}", err.0);
        let err = FileConfig::parse("cycle_interval = \"5 fortnights\"", "m.toml").unwrap_err();
        assert!(err.0.contains("m.toml:1:"), "{}", err.0);
    }

    #[test]
    fn semantic_errors_name_the_setting() {
        let bad = |text: &str, needle: &str| {
            let cfg = FileConfig::parse(text, "x.toml").unwrap();
            let err = cfg.validate().unwrap_err();
            assert!(err.contains(needle), "expected {needle:?} in {err:?}");
        };
        bad("listen = \"localhost\"", "listen");
        bad("[ledger]\nurl = \"mysql://x\"", "ledger.url");
        bad(
            "[[ledger.witnesses]]\nurl = \"http://w\"\nvkey = \"w+00000000+AA==\"",
            "ledger.witnesses[0]",
        );
        // A note signer's key (type 0x01) is not a witness's cosigner key.
        bad(
            "[[ledger.witnesses]]\nurl = \"http://w\"\n\
             vkey = \"PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\"",
            "not an Ed25519 cosigner key",
        );
        bad("[mesh]\nurl = \"kafka://x\"", "mesh.url");
        bad(
            "[[adapters]]\nsource = \"a\"\npublic_keys = [\"zz\"]",
            "adapters[0].public_keys[0]",
        );
        bad(
            "[[tokens]]\nprincipal = \"ops\"\nroles = [\"admin\"]\nsha256 = \"secret\"",
            "tokens[0].sha256",
        );
        bad("[[notify]]\nkind = \"webhook\"", "notify[0]");
        bad("cycle_interval = 0", "cycle_interval");
        bad(
            "cycle_interval = \"9223372036854775807s\"",
            "cycle_interval",
        );
        bad("environment = \"\"", "environment");
    }

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("5m"), Ok(300));
        assert_eq!(parse_interval("30s"), Ok(30));
        assert_eq!(parse_interval("1h"), Ok(3600));
        assert_eq!(parse_interval("42"), Ok(42));
        assert!(parse_interval("soon").is_err());
        // found by the config fuzz target: a multiplication that overflowed
        assert!(parse_interval("18446744073709551615h").is_err());
    }
}
