//! The CloudEvents envelope: round trips (also under arbitrary content), and the faults that
//! make an event malformed.

mod common;

use common::*;
use metaloop_mesh::envelope::{
    self, CloudEvent, Data, ExtensionValue, JsonData, batch_to_json, parse_event, split_batch,
};
use metaloop_mesh::verifiability;
use proptest::prelude::*;

fn full_event() -> CloudEvent {
    let mut e = CloudEvent::new("id-1", "urn:spine:application", "recovery.succeeded")
        .with_time("2026-01-01T00:05:00.250+01:00")
        .with_json_data(&serde_json::json!({"domain": "application", "n": [1, 2.5, "x\u{e9}\n"]}))
        .unwrap();
    e.dataschema = Some("https://example.com/schema.json".into());
    e.subject = Some("incident/42".into());
    e.extensions
        .insert("traceparent".into(), "00-abc-01".into());
    e.extensions
        .insert("retries".into(), ExtensionValue::Integer(-3));
    e.extensions
        .insert("sampled".into(), ExtensionValue::Boolean(true));
    e
}

#[test]
fn an_event_round_trips_with_every_attribute() {
    let e = full_event();
    let json = e.to_json();
    assert_eq!(parse_event(&json).unwrap(), e);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["specversion"], "1.0");
    assert_eq!(v["retries"], -3);
    assert_eq!(v["sampled"], true);
    assert_eq!(v["data"]["n"][2], "x\u{e9}\n");
}

#[test]
fn binary_data_round_trips_as_data_base64() {
    let mut e = CloudEvent::new("b", "s", "t");
    e.data = Some(Data::Binary(vec![0, 159, 146, 150, 255]));
    let json = e.to_json();
    assert!(String::from_utf8_lossy(&json).contains("\"data_base64\":\"AJ+Slv8=\""));
    assert_eq!(parse_event(&json).unwrap(), e);
}

#[test]
fn a_batch_round_trips() {
    let keys = keys();
    let events: Vec<CloudEvent> = (0..5).map(|i| signed(&keys, &format!("b{i}"), i)).collect();
    let doc = batch_to_json(&events);
    let parts = split_batch(&doc, 10).unwrap();
    let back: Vec<CloudEvent> = parts
        .iter()
        .map(|p| parse_event(p.as_bytes()).unwrap())
        .collect();
    assert_eq!(back, events);
    assert_eq!(
        split_batch(&doc, 4).unwrap_err(),
        envelope::BatchError::TooManyEvents { count: 5, limit: 4 }
    );
    assert!(matches!(
        split_batch(b"{}", 4),
        Err(envelope::BatchError::Malformed(_))
    ));
    assert_eq!(split_batch(b"[]", 10).unwrap().len(), 0);
}

#[test]
fn a_signed_event_still_verifies_after_a_round_trip_through_other_json_layouts() {
    // Members reordered and whitespace added around (not inside or right before) `data`: the
    // signature covers attribute values and data bytes, not the document's layout.
    let keys = keys();
    let e = signed(&keys, "layout", 0);
    let data = match &e.data {
        Some(Data::Json(j)) => j.value().to_owned(),
        _ => unreachable!(),
    };
    let doc = format!(
        "{{\n  \"data\":{data} ,\n  \"dssematerial\" : {dm},\n  \"time\": {t},\n  \"type\": {ty},\n  \"source\": {s},\n  \"id\": {id},\n  \"datacontenttype\": \"application/json\",\n  \"specversion\": \"1.0\"\n}}\n",
        dm = serde_json::to_string(e.extensions["dssematerial"].as_str().unwrap()).unwrap(),
        t = serde_json::to_string(e.time.as_ref().unwrap()).unwrap(),
        ty = serde_json::to_string(&e.event_type).unwrap(),
        s = serde_json::to_string(&e.source).unwrap(),
        id = serde_json::to_string(&e.id).unwrap(),
    );
    let parsed = parse_event(doc.as_bytes()).unwrap();
    assert!(verifiability::verify(&parsed, keys.registry.keys(SOURCE).unwrap()).is_ok());
    // Whitespace between the colon and the value is part of the signed data bytes.
    let spaced = doc.replacen("\"data\":{", "\"data\": {", 1);
    let parsed = parse_event(spaced.as_bytes()).unwrap();
    assert!(verifiability::verify(&parsed, keys.registry.keys(SOURCE).unwrap()).is_err());
}

#[test]
fn malformed_events_name_what_is_wrong() {
    for (doc, says) in [
        (&b"\xff\xfe"[..], "not UTF-8"),
        (b"[1]", "not a CloudEvent object"),
        (b"{\"specversion\":\"1.0\",\"id\":\"1\",\"id\":\"2\",\"source\":\"s\",\"type\":\"t\"}", "member \"id\" appears twice"),
        (b"{\"specversion\":\"0.3\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\"}", "specversion \"0.3\" is not supported"),
        (b"{\"id\":\"1\",\"source\":\"s\",\"type\":\"t\"}", "specversion is missing"),
        (b"{\"specversion\":\"1.0\",\"id\":\"\",\"source\":\"s\",\"type\":\"t\"}", "id is empty"),
        (b"{\"specversion\":\"1.0\",\"id\":1,\"source\":\"s\",\"type\":\"t\"}", "\"id\" must be a string"),
        (b"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"Ext\":\"x\"}", "\"Ext\" is invalid"),
        (b"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"my_ext\":\"x\"}", "\"my_ext\" is invalid"),
        (b"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"ext\":1.5}", "must be integers"),
        (b"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"ext\":{}}", "string, integer or boolean"),
        (b"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"data\":{},\"data_base64\":\"AA==\"}", "both present"),
        (b"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"data_base64\":\"!\"}", "data_base64 is not valid base64"),
        (b"{\"specversion\":\"1.0\"", "not valid JSON"),
        (b"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\"} x", "not valid JSON"),
    ] {
        let err = parse_event(doc).unwrap_err();
        assert!(err.0.contains(says), "{:?}: {err} should say {says:?}", String::from_utf8_lossy(doc));
    }
    // A null optional attribute or extension is absent.
    let e = parse_event(b"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"subject\":null,\"ext\":null}").unwrap();
    assert_eq!((e.subject, e.extensions.len()), (None, 0));
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z:/._-]{1,20}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e9f64..1e9).prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any event the writer produces parses back to itself and keeps its signature.
    #[test]
    fn write_then_parse_is_the_identity_and_keeps_signatures(
        id in arb_text(),
        ty in arb_text(),
        subject in proptest::option::of(any::<String>()),
        ext in proptest::collection::btree_map("[a-z0-9]{1,8}", any::<String>(), 0..3),
        data in arb_json(),
    ) {
        let keys = keys();
        let mut e = CloudEvent::new(id, SOURCE, ty).with_time("2026-01-01T00:00:00Z");
        e.subject = subject;
        for (k, v) in ext {
            let reserved = envelope::CORE_ATTRIBUTES.contains(&k.as_str())
                || ["data", "dssematerial", "signedextattrs"].contains(&k.as_str());
            if !reserved {
                e.extensions.insert(k, ExtensionValue::String(v));
            }
        }
        e.data = Some(Data::Json(JsonData::from_value(&data).unwrap()));
        let names: Vec<String> = e.extensions.keys().cloned().collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        keys.app.sign_with_extensions(&mut e, &refs).unwrap();
        let back = envelope::parse_event(&e.to_json()).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(
            verifiability::verify(&back, keys.registry.keys(SOURCE).unwrap()).unwrap(),
            names
        );
    }
}
