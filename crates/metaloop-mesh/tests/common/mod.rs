//! Fixtures shared by the behaviour tests: keys, events, one bad event per rejection reason,
//! and the NATS service policy.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use metaloop_core::protocol::{
    ComplianceScore, Decision, DirectiveApplied, EventData, HealthChange, HealthState, Recovery,
};
use metaloop_core::time::Timestamp;
use metaloop_mesh::envelope::{CloudEvent, Data, JsonData, MEDIA_TYPE_EVENT};
use metaloop_mesh::keys::{EventSigner, KeyRegistry, spine_event_unsigned};
use metaloop_mesh::{IngestConfig, Ingestor, RejectReason};

pub const SOURCE: &str = "urn:spine:application";
pub const OTHER_SOURCE: &str = "urn:spine:security";
pub const STRANGER_SOURCE: &str = "urn:spine:unknown";

/// 2026-01-01T00:00:00Z.
pub const T0: Timestamp = Timestamp::from_secs(1_767_225_600);

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The adapter under test, another registered adapter, and an unregistered one.
pub struct Keys {
    pub app: EventSigner,
    pub other: EventSigner,
    pub stranger: EventSigner,
    pub registry: KeyRegistry,
}

pub fn keys() -> Keys {
    let app = EventSigner::new(SOURCE, key(1));
    let other = EventSigner::new(OTHER_SOURCE, key(2));
    let stranger = EventSigner::new(STRANGER_SOURCE, key(3));
    let mut registry = KeyRegistry::new();
    registry.register(SOURCE, app.verifying_key()).unwrap();
    registry
        .register(OTHER_SOURCE, other.verifying_key())
        .unwrap();
    // the security adapter speaks for its own domain only
    registry.bind_domains(OTHER_SOURCE, ["security".to_string()]);
    Keys {
        app,
        other,
        stranger,
        registry,
    }
}

pub fn ingestor(keys: &Keys) -> Ingestor {
    Ingestor::new(IngestConfig::default(), keys.registry.clone())
}

/// When the tests' events arrive: a minute after [`T0`], so events dated around `T0` are
/// neither `stale` nor `future`.
pub fn now() -> Timestamp {
    T0.plus_millis(60_000)
}

pub fn recovery(i: usize, ok: bool) -> EventData {
    let r = Recovery {
        domain: "application".into(),
        incident_id: format!("inc-{i}"),
        playbook: "restart-service".into(),
        duration_s: 10.0 + i as f64,
        autonomous: !i.is_multiple_of(3),
        human_override: false,
        experiment: None,
    };
    if ok {
        EventData::RecoverySucceeded(r)
    } else {
        EventData::RecoveryFailed(r)
    }
}

/// A mix of every inbound payload kind, by index.
pub fn payload(i: usize) -> EventData {
    match i % 6 {
        0 | 1 => recovery(i, i.is_multiple_of(2)),
        2 => EventData::DecisionMade(Decision {
            domain: "application".into(),
            decision_id: format!("d-{i}"),
            confidence: 0.8,
            autonomous: true,
            approved_by_human: false,
            overridden: false,
            experiment: None,
        }),
        3 => EventData::HealthChanged(HealthChange {
            domain: "infrastructure".into(),
            node: "db-1".into(),
            state: HealthState::Degraded,
            depends_on: vec!["net-1".into()],
        }),
        4 => EventData::ComplianceScored(ComplianceScore {
            domain: "security".into(),
            score: 97.5,
        }),
        _ => EventData::DirectiveApplied(DirectiveApplied {
            directive_id: format!("dir-{i}"),
            domain: "application".into(),
            knob: "planner.confidence_threshold".into(),
            previous: serde_json::json!(0.7),
            current: serde_json::json!(0.75),
        }),
    }
}

/// A signed spine event from the adapter under test.
pub fn signed(keys: &Keys, id: &str, i: usize) -> CloudEvent {
    keys.app
        .spine_event(id, T0.plus_millis(i as i64 * 1000), &payload(i))
}

/// One bad message per rejection reason (plus the first, accepted copy of the duplicate).
pub struct Case {
    pub label: &'static str,
    pub bytes: Vec<u8>,
    pub content_type: Option<&'static str>,
    /// `None`: accepted.
    pub expect: Option<RejectReason>,
    /// Words the rejection message must contain.
    pub message_has: &'static str,
}

pub fn cases(keys: &Keys) -> Vec<Case> {
    let ct = Some(MEDIA_TYPE_EVENT);
    let mut cases = Vec::new();

    // oversized: a valid signed event over 64 KiB.
    let mut big = recovery(0, true);
    if let EventData::RecoverySucceeded(r) = &mut big {
        r.playbook = "x".repeat(70 * 1024);
    }
    cases.push(Case {
        label: "oversized",
        bytes: keys.app.spine_event("big", T0, &big).to_json(),
        content_type: ct,
        expect: Some(RejectReason::Oversized),
        message_has: "the limit is 65536",
    });

    // malformed: truncated JSON.
    cases.push(Case {
        label: "malformed-json",
        bytes: br#"{"specversion":"1.0","id":"m1","source":"urn:spine:application""#.to_vec(),
        content_type: ct,
        expect: Some(RejectReason::Malformed),
        message_has: "not valid JSON",
    });
    // malformed: a required attribute missing.
    cases.push(Case {
        label: "malformed-no-source",
        bytes: br#"{"specversion":"1.0","id":"m2","type":"recovery.succeeded","data":{}}"#.to_vec(),
        content_type: ct,
        expect: Some(RejectReason::Malformed),
        message_has: "source is missing",
    });

    // unsupported content type.
    cases.push(Case {
        label: "content-type",
        bytes: signed(keys, "ct", 0).to_json(),
        content_type: Some("text/plain"),
        expect: Some(RejectReason::UnsupportedContentType),
        message_has: "text/plain",
    });

    // wrong schema: unknown type (signed, so only the schema can be the reason).
    let mut unknown = CloudEvent::new("ws1", SOURCE, "recovery.exploded")
        .with_time(T0.to_rfc3339())
        .with_json_data(&serde_json::json!({"domain": "application"}))
        .unwrap();
    keys.app.sign(&mut unknown).unwrap();
    cases.push(Case {
        label: "schema-type",
        bytes: unknown.to_json(),
        content_type: ct,
        expect: Some(RejectReason::WrongSchema),
        message_has: "unknown event type \"recovery.exploded\"",
    });
    // wrong schema: an unknown field in data.
    let mut extra = CloudEvent::new("ws2", SOURCE, "compliance.scored")
        .with_time(T0.to_rfc3339())
        .with_json_data(&serde_json::json!({"domain": "security", "score": 90.0, "grade": "A"}))
        .unwrap();
    keys.app.sign(&mut extra).unwrap();
    cases.push(Case {
        label: "schema-field",
        bytes: extra.to_json(),
        content_type: ct,
        expect: Some(RejectReason::WrongSchema),
        message_has: "unknown field `grade`",
    });
    // wrong schema: no time.
    let mut timeless = signed(keys, "ws3", 4);
    timeless.time = None;
    keys.app.sign(&mut timeless).unwrap();
    cases.push(Case {
        label: "schema-time",
        bytes: timeless.to_json(),
        content_type: ct,
        expect: Some(RejectReason::WrongSchema),
        message_has: "time is missing",
    });

    // unsigned.
    cases.push(Case {
        label: "unsigned",
        bytes: spine_event_unsigned("u1", SOURCE, T0, &payload(0)).to_json(),
        content_type: ct,
        expect: Some(RejectReason::Unsigned),
        message_has: "not signed",
    });

    // unknown source: properly signed by an adapter nobody registered.
    cases.push(Case {
        label: "unknown-source",
        bytes: keys.stranger.spine_event("us1", T0, &payload(0)).to_json(),
        content_type: ct,
        expect: Some(RejectReason::UnknownSource),
        message_has: STRANGER_SOURCE,
    });

    // unknown key: claims our source, signed with the security adapter's key.
    let mut forged = spine_event_unsigned("uk1", SOURCE, T0, &payload(1));
    let mut as_other = forged.clone();
    as_other.source = OTHER_SOURCE.into();
    keys.other.sign(&mut as_other).unwrap();
    forged.extensions = as_other.extensions;
    cases.push(Case {
        label: "unknown-key",
        bytes: forged.to_json(),
        content_type: ct,
        expect: Some(RejectReason::UnknownKey),
        message_has: "registered for urn:spine:security",
    });

    // bad signature: signed, then the data changed.
    let mut tampered = keys.app.spine_event("bs1", T0, &recovery(7, false));
    tampered.data = Some(Data::Json(
        JsonData::from_json_text(
            r#"{"domain":"application","incident_id":"inc-7","playbook":"restart-service","duration_s":1.0,"autonomous":true,"human_override":false}"#,
        )
        .unwrap(),
    ));
    cases.push(Case {
        label: "bad-signature",
        bytes: tampered.to_json(),
        content_type: ct,
        expect: Some(RejectReason::BadSignature),
        message_has: "modified after signing",
    });

    // forbidden domain: the security adapter, properly signed, about the application domain;
    // an acknowledgement for another domain is refused the same way.
    cases.push(Case {
        label: "forbidden-domain",
        bytes: keys.other.spine_event("fd1", T0, &payload(0)).to_json(),
        content_type: ct,
        expect: Some(RejectReason::ForbiddenDomain),
        message_has: "not for domain \"application\"",
    });
    cases.push(Case {
        label: "forbidden-domain-ack",
        bytes: keys
            .other
            .spine_event(
                "fd2",
                T0,
                &EventData::DirectiveRefused(metaloop_core::protocol::DirectiveRefused {
                    directive_id: "dir-1".into(),
                    domain: "application".into(),
                    reason: "not mine".into(),
                }),
            )
            .to_json(),
        content_type: ct,
        expect: Some(RejectReason::ForbiddenDomain),
        message_has: "may speak for [security]",
    });

    // duplicate: the same signed event twice; the first is accepted.
    let dup = signed(keys, "dup", 2).to_json();
    cases.push(Case {
        label: "dup-first",
        bytes: dup.clone(),
        content_type: ct,
        expect: None,
        message_has: "",
    });
    cases.push(Case {
        label: "dup-second",
        bytes: dup,
        content_type: ct,
        expect: Some(RejectReason::Duplicate),
        message_has: "already accepted",
    });

    // event time: more than max_event_age (1 h) before arrival, more than max_clock_skew
    // (5 min) after it.
    cases.push(Case {
        label: "stale",
        bytes: keys
            .app
            .spine_event("old", Timestamp(now().millis() - 3_601_000), &payload(0))
            .to_json(),
        content_type: ct,
        expect: Some(RejectReason::Stale),
        message_has: "max_event_age is 3600 s",
    });
    cases.push(Case {
        label: "future",
        bytes: keys
            .app
            .spine_event("ahead", Timestamp(now().millis() + 301_000), &payload(0))
            .to_json(),
        content_type: ct,
        expect: Some(RejectReason::Future),
        message_has: "max_clock_skew is 300 s",
    });
    cases
}

/// The NATS URL to test against, or `None` (with a message) to skip; with `CI=true` an
/// unreachable server fails the test instead.
pub async fn nats_url() -> Option<String> {
    let url =
        std::env::var("METALOOP_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let reachable = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        async_nats::connect(url.as_str()),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if reachable {
        return Some(url);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "NATS tests: cannot connect to {url} (CI=true requires the NATS service; set METALOOP_TEST_NATS)"
        );
    }
    // Straight to stderr (not through the test harness's capture), once per test binary.
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipping NATS tests: cannot connect to {url} (set METALOOP_TEST_NATS)"
        );
    });
    None
}

/// A unique token for stream, prefix and consumer names.
pub fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
