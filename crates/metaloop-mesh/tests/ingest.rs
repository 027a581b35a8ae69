//! The ingest pipeline through its public interface: every rejection reason, batches, size
//! limits, the dedupe window's bounds, key rotation, directives and their acknowledgements.

mod common;

use common::*;
use metaloop_core::protocol::{DirectiveMessage, DirectiveRefused, EventData};
use metaloop_core::time::Timestamp;
use metaloop_mesh::envelope::{self, MEDIA_TYPE_BATCH, SizeLimits};
use metaloop_mesh::ingest::{DedupeConfig, DedupeWindow};
use metaloop_mesh::keys::{EventSigner, KeyId, KeyRegistry};
use metaloop_mesh::{
    IngestConfig, IngestOutcome, Ingestor, RejectReason, directive_event, read_directive,
};

#[test]
fn every_rejection_reason_is_specific_counted_and_accepts_nothing() {
    let keys = keys();
    let mut ing = ingestor(&keys);
    let counters = ing.counters();
    for case in cases(&keys) {
        let before = counters.snapshot();
        let outcome = ing.ingest(&case.bytes, case.content_type, now());
        let after = counters.snapshot();
        let results = outcome.results();
        assert_eq!(results.len(), 1, "{}", case.label);
        match (case.expect, &results[0]) {
            (None, Ok(_)) => assert_eq!(after.accepted, before.accepted + 1, "{}", case.label),
            (Some(reason), Err(r)) => {
                assert_eq!(r.reason, reason, "{}: {r}", case.label);
                assert!(
                    r.message.contains(case.message_has),
                    "{}: message {:?} should mention {:?}",
                    case.label,
                    r.message,
                    case.message_has
                );
                assert_eq!(
                    after.rejected[&reason],
                    before.rejected[&reason] + 1,
                    "{}",
                    case.label
                );
                assert_eq!(
                    after.rejected_total(),
                    before.rejected_total() + 1,
                    "{}",
                    case.label
                );
                assert_eq!(
                    after.accepted, before.accepted,
                    "{}: nothing accepted",
                    case.label
                );
            }
            (expect, got) => panic!("{}: expected {expect:?}, got {got:?}", case.label),
        }
    }
    // the last check is the caller's (the supervisor's): a refusal is counted, and the event
    // is not remembered, so a later copy is judged afresh
    let refused_event = signed(&keys, "refused", 3).to_json();
    let verified = ing.verify(&refused_event, None);
    let outcome = ing.admit(verified, now(), &mut |_| {
        Err("unknown directive dir-3".into())
    });
    let r = outcome.rejections()[0].clone();
    assert_eq!(r.reason, RejectReason::RefusedBySupervisor);
    assert_eq!(r.message, "unknown directive dir-3");
    assert!(ing.ingest_event(&refused_event, now()).is_ok());
    let total = counters.snapshot();
    assert_eq!(total.accepted, 2);
    for reason in RejectReason::ALL {
        assert!(total.rejected[&reason] >= 1, "{reason} was exercised");
    }
}

#[test]
fn an_accepted_event_carries_exactly_what_was_signed() {
    let keys = keys();
    let mut ing = ingestor(&keys);
    let time = T0.plus_millis(1_250);
    let event = keys.app.spine_event("e1", time, &payload(0));
    let accepted = ing.ingest_event(&event.to_json(), now()).unwrap();
    assert_eq!(accepted.id, "e1");
    assert_eq!(accepted.source, SOURCE);
    assert_eq!(accepted.data, payload(0));
    // The signature covers whole seconds, so the verified time is the whole second.
    assert_eq!(accepted.time, T0.plus_millis(1_000));
}

#[test]
fn size_is_checked_before_parsing() {
    let keys = keys();
    let mut ing = Ingestor::new(
        IngestConfig {
            limits: SizeLimits {
                max_event_bytes: 100,
                ..SizeLimits::default()
            },
            ..IngestConfig::default()
        },
        keys.registry.clone(),
    );
    // 101 bytes of garbage: oversized, not malformed.
    let r = ing.ingest_event(&[b'x'; 101], now()).unwrap_err();
    assert_eq!(r.reason, RejectReason::Oversized);
    let r = ing.ingest_event(&[b'x'; 100], now()).unwrap_err();
    assert_eq!(r.reason, RejectReason::Malformed);
}

#[test]
fn a_batch_gives_one_result_per_event_in_order() {
    let keys = keys();
    let mut ing = ingestor(&keys);
    let good1 = signed(&keys, "b1", 0);
    let good2 = signed(&keys, "b2", 3);
    let unsigned = metaloop_mesh::keys::spine_event_unsigned("b3", SOURCE, T0, &payload(1));
    let mut wrong = signed(&keys, "b4", 4);
    wrong.event_type = "compliance.unknown".into();
    let batch = envelope::batch_to_json(&[good1.clone(), good1, unsigned, good2, wrong]);
    let outcome = ing.ingest(&batch, Some(MEDIA_TYPE_BATCH), now());
    let IngestOutcome::Batch(results) = &outcome else {
        panic!("a batch: {outcome:?}")
    };
    let reasons: Vec<Option<RejectReason>> = results
        .iter()
        .map(|r| r.as_ref().err().map(|r| r.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            None,
            Some(RejectReason::Duplicate),
            Some(RejectReason::Unsigned),
            None,
            Some(RejectReason::WrongSchema),
        ]
    );
    assert_eq!(
        outcome
            .accepted()
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["b1", "b2"]
    );
    let c = ing.counters().snapshot();
    assert_eq!((c.accepted, c.rejected_total()), (2, 3));
}

#[test]
fn a_batch_is_refused_whole_when_too_big_or_not_an_array() {
    let keys = keys();
    let limits = SizeLimits {
        max_event_bytes: 64 * 1024,
        max_batch_bytes: 4096,
        max_batch_events: 3,
    };
    let mut ing = Ingestor::new(
        IngestConfig {
            limits,
            ..IngestConfig::default()
        },
        keys.registry.clone(),
    );
    let events: Vec<_> = (0..4).map(|i| signed(&keys, &format!("r{i}"), i)).collect();
    let four = envelope::batch_to_json(&events);
    let IngestOutcome::Refused(r) = ing.ingest(&four, Some(MEDIA_TYPE_BATCH), now()) else {
        panic!("refused")
    };
    assert_eq!(r.reason, RejectReason::Oversized);
    assert!(r.message.contains("4 events; the limit is 3"), "{r}");

    let huge = format!("[{}]", " ".repeat(5000));
    let IngestOutcome::Refused(r) = ing.ingest(huge.as_bytes(), Some(MEDIA_TYPE_BATCH), now())
    else {
        panic!("refused")
    };
    assert_eq!(r.reason, RejectReason::Oversized);
    assert!(r.message.contains("the limit is 4096"), "{r}");

    let IngestOutcome::Refused(r) =
        ing.ingest(b"{\"not\":\"an array\"}", Some(MEDIA_TYPE_BATCH), now())
    else {
        panic!("refused")
    };
    assert_eq!(r.reason, RejectReason::Malformed);
    // Without a content type a leading '[' means a batch.
    assert!(matches!(
        ing.ingest(&envelope::batch_to_json(&events[..3]), None, now()),
        IngestOutcome::Batch(rs) if rs.iter().all(Result::is_ok)
    ));
    assert_eq!(ing.counters().rejected(RejectReason::Oversized), 2);
    assert_eq!(ing.counters().rejected(RejectReason::Malformed), 1);
}

#[test]
fn batched_verification_gives_the_same_results_as_one_by_one() {
    let keys = keys();
    let mut events: Vec<Vec<u8>> = (0..40)
        .map(|i| signed(&keys, &format!("v{i}"), i).to_json())
        .collect();
    // Break a few signatures in ways only the Ed25519 equation can notice.
    for i in [3usize, 17, 31] {
        let mut e = signed(&keys, &format!("v{i}"), i);
        let other = keys.app.spine_event(format!("v{i}"), T0, &payload(i + 1));
        let mut material = e.extensions["dssematerial"].as_str().unwrap().to_owned();
        let env: metaloop_mesh::dsse::Envelope =
            serde_json::from_slice(&metaloop_mesh::dsse::decode_base64(&material).unwrap())
                .unwrap();
        let other_env: metaloop_mesh::dsse::Envelope = serde_json::from_slice(
            &metaloop_mesh::dsse::decode_base64(other.extensions["dssematerial"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        let mixed = metaloop_mesh::dsse::Envelope {
            signatures: other_env.signatures,
            ..env
        };
        material = metaloop_mesh::dsse::encode_base64(&serde_json::to_vec(&mixed).unwrap());
        e.extensions.insert("dssematerial".into(), material.into());
        events[i] = e.to_json();
    }
    let slices: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
    let mut batched = ingestor(&keys);
    let batch_results = batched.ingest_many(&slices, now());
    let mut single = ingestor(&keys);
    let single_results: Vec<_> = slices
        .iter()
        .map(|b| single.ingest_event(b, now()))
        .collect();
    assert_eq!(batch_results, single_results);
    let bad: Vec<usize> = batch_results
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.as_ref()
                .is_err_and(|r| r.reason == RejectReason::BadSignature)
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bad, vec![3, 17, 31]);
}

#[test]
fn dedupe_memory_stays_within_its_bound_on_a_long_stream_of_unique_ids() {
    let capacity = 1000;
    let mut window = DedupeWindow::new(DedupeConfig {
        capacity,
        window_secs: 3600,
    });
    let t = Timestamp::from_secs(0);
    // Largest allocation during warm-up (the first 20,000) and after it (the next 180,000).
    let (mut warm, mut after) = (0, 0);
    for i in 0..200_000u64 {
        assert!(window.insert(SOURCE, &format!("id-{i}"), t));
        assert!(window.len() <= capacity);
        let slots = window.allocated_slots();
        if i < 20_000 {
            warm = warm.max(slots);
        } else {
            after = after.max(slots);
        }
    }
    assert_eq!(window.len(), capacity);
    assert!(
        after <= warm,
        "no growth after warm-up: {warm} then {after}"
    );
    assert!(
        warm <= 6 * capacity,
        "allocation {warm} bounded by the capacity {capacity}"
    );
    // The most recent ids are still duplicates, the oldest were forgotten.
    assert!(window.contains(SOURCE, "id-199999", t));
    assert!(!window.contains(SOURCE, "id-0", t));
}

#[test]
fn dedupe_window_rejects_duplicates_within_and_accepts_after() {
    let keys = keys();
    let mut ing = Ingestor::new(
        IngestConfig {
            dedupe: DedupeConfig {
                capacity: 50,
                window_secs: 60,
            },
            ..IngestConfig::default()
        },
        keys.registry.clone(),
    );
    let first = signed(&keys, "w0", 0).to_json();
    let t = T0;
    assert!(ing.ingest_event(&first, t).is_ok());
    let dup = ing.ingest_event(&first, t.plus_millis(59_000)).unwrap_err();
    assert_eq!(dup.reason, RejectReason::Duplicate);
    assert!(dup.message.contains("60 s, 50 events"), "{dup}");
    // Past the window the same event is new again (the window is documented as the bound).
    assert!(ing.ingest_event(&first, t.plus_millis(60_000)).is_ok());
    // Count bound: after 50 newer events it is forgotten too.
    for i in 1..=50 {
        ing.ingest_event(
            &signed(&keys, &format!("w{i}"), i).to_json(),
            t.plus_millis(61_000),
        )
        .unwrap();
    }
    assert!(ing.dedupe().len() <= 50);
    assert!(ing.ingest_event(&first, t.plus_millis(61_000)).is_ok());
}

#[test]
fn rotation_accepts_both_keys_then_only_the_new_one() {
    let old = EventSigner::new(SOURCE, key(10));
    let new = EventSigner::new(SOURCE, key(11));
    let mut registry = KeyRegistry::new();
    registry.register(SOURCE, old.verifying_key()).unwrap();
    registry.register(SOURCE, new.verifying_key()).unwrap();
    let mut ing = Ingestor::new(IngestConfig::default(), registry.clone());
    assert!(
        ing.ingest_event(&old.spine_event("r1", T0, &payload(0)).to_json(), now())
            .is_ok()
    );
    assert!(
        ing.ingest_event(&new.spine_event("r2", T0, &payload(0)).to_json(), now())
            .is_ok()
    );
    assert!(registry.remove(SOURCE, &KeyId::of(&old.verifying_key())));
    ing.set_registry(registry);
    let r = ing
        .ingest_event(&old.spine_event("r3", T0, &payload(0)).to_json(), now())
        .unwrap_err();
    assert_eq!(r.reason, RejectReason::UnknownKey);
    assert!(
        ing.ingest_event(&new.spine_event("r4", T0, &payload(0)).to_json(), now())
            .is_ok()
    );
}

#[test]
fn signed_extension_attributes_are_covered_and_unsigned_ones_are_not() {
    let keys = keys();
    let mut ing = ingestor(&keys);
    let mut e = metaloop_mesh::keys::spine_event_unsigned("x1", SOURCE, T0, &payload(0));
    e.extensions
        .insert("traceparent".into(), "00-abc-01".into());
    e.extensions.insert("partitionkey".into(), "app".into());
    keys.app
        .sign_with_extensions(&mut e, &["traceparent"])
        .unwrap();
    assert_eq!(e.extensions["signedextattrs"].as_str(), Some("traceparent"));

    let mut unsigned_changed = e.clone();
    unsigned_changed.id = "x2".into();
    keys.app
        .sign_with_extensions(&mut unsigned_changed, &["traceparent"])
        .unwrap();
    unsigned_changed
        .extensions
        .insert("partitionkey".into(), "other".into());
    assert!(ing.ingest_event(&unsigned_changed.to_json(), now()).is_ok());

    let mut signed_changed = e.clone();
    signed_changed
        .extensions
        .insert("traceparent".into(), "00-evil-01".into());
    let r = ing
        .ingest_event(&signed_changed.to_json(), now())
        .unwrap_err();
    assert_eq!(r.reason, RejectReason::BadSignature);
    assert!(ing.ingest_event(&e.to_json(), now()).is_ok());
}

fn directive() -> DirectiveMessage {
    DirectiveMessage {
        directive_id: "0190a7a0-0000-7000-8000-000000000001".into(),
        directive_type: "ADJUST_THRESHOLD".into(),
        target_domain: "application".into(),
        target_subsystem: "planner".into(),
        knob: "planner.confidence_threshold".into(),
        action: "adjust".into(),
        parameters: serde_json::json!({"adjustment": 0.05}),
        target_kpi: "overall_success_rate".into(),
        rollback_of: None,
        justification: "success 0.87 vs 0.95".into(),
    }
}

#[test]
fn directives_are_signed_by_metaloop_and_checked_by_the_spine() {
    let metaloop = EventSigner::new("urn:metaloop:supervisor", key(20));
    let msg = directive();
    let event = directive_event(&msg, &metaloop, T0).unwrap();
    assert_eq!(event.event_type, "meta.directive.adjust_threshold");
    assert_eq!(event.source, "urn:metaloop:supervisor");
    assert_eq!(event.id, msg.directive_id);
    let mut spine_keys = KeyRegistry::new();
    spine_keys
        .register("urn:metaloop:supervisor", metaloop.verifying_key())
        .unwrap();
    let limits = SizeLimits::default();
    assert_eq!(
        read_directive(&event.to_json(), &spine_keys, &limits).unwrap(),
        msg
    );

    // A directive signed by anyone else, or altered, is refused by the spine.
    let impostor = EventSigner::new("urn:metaloop:supervisor", key(21));
    let forged = directive_event(&msg, &impostor, T0).unwrap();
    assert_eq!(
        read_directive(&forged.to_json(), &spine_keys, &limits)
            .unwrap_err()
            .reason,
        RejectReason::UnknownKey
    );
    let altered = String::from_utf8(event.to_json())
        .unwrap()
        .replace("0.05", "0.50");
    assert_eq!(
        read_directive(altered.as_bytes(), &spine_keys, &limits)
            .unwrap_err()
            .reason,
        RejectReason::BadSignature
    );
    // Reserved and malformed directive types are refused at the source.
    for bad in ["APPLIED", "refused", "A.B", "", "A B"] {
        let mut m = directive();
        m.directive_type = bad.into();
        assert!(directive_event(&m, &metaloop, T0).is_err(), "{bad:?}");
    }
}

#[test]
fn acknowledgements_come_back_as_spine_events() {
    let keys = keys();
    let mut ing = ingestor(&keys);
    let refused = EventData::DirectiveRefused(DirectiveRefused {
        directive_id: directive().directive_id,
        domain: "application".into(),
        reason: "knob is locked".into(),
    });
    let applied = payload(5);
    for (id, data) in [("a1", applied), ("a2", refused)] {
        let e = keys.app.spine_event(id, T0, &data);
        assert!(e.event_type.starts_with("meta.directive."));
        assert_eq!(ing.ingest_event(&e.to_json(), now()).unwrap().data, data);
    }
    // metaloop's own directives are not spine events.
    let metaloop = EventSigner::new(SOURCE, key(1));
    let d = directive_event(&directive(), &metaloop, T0).unwrap();
    assert_eq!(
        ing.ingest_event(&d.to_json(), now()).unwrap_err().reason,
        RejectReason::WrongSchema
    );
}
