//! The CloudEvents 1.0 envelope in JSON structured mode, single and batch (DESIGN.md §4).
//!
//! Parsing keeps the `data` member's bytes exactly as they were received, because the
//! signature covers those bytes (see `docs/PROTOCOL.md`). Writing produces compact JSON in a
//! fixed member order and writes `data` back byte for byte, so a parsed event re-serialises
//! with its signature intact.

use base64::Engine;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt;

/// The only `specversion` understood.
pub const SPEC_VERSION: &str = "1.0";
/// Media type of one event in structured mode.
pub const MEDIA_TYPE_EVENT: &str = "application/cloudevents+json";
/// Media type of a batch: a JSON array of structured-mode events.
pub const MEDIA_TYPE_BATCH: &str = "application/cloudevents-batch+json";
/// Media type of JSON event data.
pub const MEDIA_TYPE_JSON: &str = "application/json";

/// Context attributes defined by the CloudEvents specification (not extensions).
pub const CORE_ATTRIBUTES: [&str; 8] = [
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
];

/// Size limits, checked on the raw bytes before anything is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SizeLimits {
    /// Largest single event, bytes (a batch element counts as a single event).
    pub max_event_bytes: usize,
    /// Largest batch document, bytes.
    pub max_batch_bytes: usize,
    /// Most events in one batch.
    pub max_batch_events: usize,
}

impl Default for SizeLimits {
    fn default() -> Self {
        SizeLimits {
            max_event_bytes: 64 * 1024,
            max_batch_bytes: 1024 * 1024,
            max_batch_events: 1000,
        }
    }
}

/// The value of an extension context attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionValue {
    String(String),
    Integer(i64),
    Boolean(bool),
}

impl ExtensionValue {
    /// The CloudEvents canonical string form (what the signature digests).
    pub fn canonical_string(&self) -> String {
        match self {
            ExtensionValue::String(s) => s.clone(),
            ExtensionValue::Integer(i) => i.to_string(),
            ExtensionValue::Boolean(b) => b.to_string(),
        }
    }

    /// The string, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ExtensionValue::String(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for ExtensionValue {
    fn from(s: &str) -> Self {
        ExtensionValue::String(s.to_owned())
    }
}

impl From<String> for ExtensionValue {
    fn from(s: String) -> Self {
        ExtensionValue::String(s)
    }
}

/// JSON event data, kept as text: the whitespace that preceded the value after `"data":` on
/// the wire, then the value itself. Both are covered by the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonData {
    text: String,
    value_start: usize,
}

impl JsonData {
    /// Serialises a value as compact JSON.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        let text = serde_json::to_string(value)?;
        Ok(JsonData {
            text,
            value_start: 0,
        })
    }

    /// Takes JSON text as it is (it must be one valid JSON value, no surrounding whitespace).
    pub fn from_json_text(text: impl Into<String>) -> Result<Self, EnvelopeError> {
        let text = text.into();
        let raw: &RawValue = serde_json::from_str(&text)
            .map_err(|e| EnvelopeError::new(format!("data is not valid JSON: {e}")))?;
        if raw.get().len() != text.len() {
            return Err(EnvelopeError::new(
                "data has whitespace around the JSON value",
            ));
        }
        Ok(JsonData {
            text,
            value_start: 0,
        })
    }

    /// The JSON value's text.
    pub fn value(&self) -> &str {
        &self.text[self.value_start..]
    }

    /// The bytes the signature covers: leading whitespace from the wire, then the value.
    pub fn signed_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

/// The event payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// `data`: a JSON value.
    Json(JsonData),
    /// `data_base64`: binary data.
    Binary(Vec<u8>),
}

impl Data {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> &[u8] {
        match self {
            Data::Json(j) => j.signed_bytes(),
            Data::Binary(b) => b,
        }
    }
}

/// One CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    /// `id`: unique per `source`.
    pub id: String,
    /// `source`: the producer, e.g. `urn:spine:application`.
    pub source: String,
    /// `type`: e.g. `recovery.succeeded`; also the event's subject on the mesh.
    pub event_type: String,
    /// `datacontenttype`.
    pub datacontenttype: Option<String>,
    /// `dataschema`.
    pub dataschema: Option<String>,
    /// `subject`.
    pub subject: Option<String>,
    /// `time`, as text (RFC 3339).
    pub time: Option<String>,
    /// Extension attributes by name (lower-case ASCII letters and digits).
    pub extensions: BTreeMap<String, ExtensionValue>,
    /// `data` or `data_base64`.
    pub data: Option<Data>,
}

/// Why bytes are not a well-formed CloudEvent (or batch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

impl EnvelopeError {
    fn new(message: impl Into<String>) -> Self {
        EnvelopeError(message.into())
    }
}

/// True for a valid extension attribute name: lower-case ASCII letters and digits.
pub fn is_valid_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl CloudEvent {
    /// A new event with the required attributes and nothing else.
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        event_type: impl Into<String>,
    ) -> Self {
        CloudEvent {
            id: id.into(),
            source: source.into(),
            event_type: event_type.into(),
            datacontenttype: None,
            dataschema: None,
            subject: None,
            time: None,
            extensions: BTreeMap::new(),
            data: None,
        }
    }

    /// Sets `time`.
    pub fn with_time(mut self, time: impl Into<String>) -> Self {
        self.time = Some(time.into());
        self
    }

    /// Sets JSON `data` (compact) and `datacontenttype: application/json`.
    pub fn with_json_data<T: Serialize + ?Sized>(
        mut self,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        self.data = Some(Data::Json(JsonData::from_value(value)?));
        self.datacontenttype = Some(MEDIA_TYPE_JSON.into());
        Ok(self)
    }

    /// An extension attribute's value.
    pub fn extension(&self, name: &str) -> Option<&ExtensionValue> {
        self.extensions.get(name)
    }

    /// Keeps only the named extension attributes (after verification: only signed ones).
    pub fn retain_extensions(&mut self, keep: &[String]) {
        self.extensions.retain(|k, _| keep.iter().any(|s| s == k));
    }

    /// Compact structured-mode JSON: `specversion`, `id`, `source`, `type`, the optional
    /// attributes, extensions by name, then `data`/`data_base64`, with `data` written back
    /// byte for byte.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(256 + self.data.as_ref().map_or(0, |d| d.signed_bytes().len()));
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        fn member(out: &mut Vec<u8>, first: &mut bool, name: &str) {
            if !*first {
                out.push(b',');
            }
            *first = false;
            write_json_string(out, name);
            out.push(b':');
        }
        out.push(b'{');
        let mut first = true;
        member(out, &mut first, "specversion");
        write_json_string(out, SPEC_VERSION);
        member(out, &mut first, "id");
        write_json_string(out, &self.id);
        member(out, &mut first, "source");
        write_json_string(out, &self.source);
        member(out, &mut first, "type");
        write_json_string(out, &self.event_type);
        for (name, value) in [
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
            ("subject", &self.subject),
            ("time", &self.time),
        ] {
            if let Some(v) = value {
                member(out, &mut first, name);
                write_json_string(out, v);
            }
        }
        for (name, value) in &self.extensions {
            member(out, &mut first, name);
            match value {
                ExtensionValue::String(s) => write_json_string(out, s),
                ExtensionValue::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
                ExtensionValue::Boolean(b) => out.extend_from_slice(b.to_string().as_bytes()),
            }
        }
        match &self.data {
            Some(Data::Json(j)) => {
                member(out, &mut first, "data");
                out.extend_from_slice(j.text.as_bytes());
            }
            Some(Data::Binary(b)) => {
                member(out, &mut first, "data_base64");
                write_json_string(out, &base64::engine::general_purpose::STANDARD.encode(b));
            }
            None => {}
        }
        out.push(b'}');
    }
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing a string to a Vec cannot fail");
}

/// A batch document: `[event, event, …]`.
pub fn batch_to_json(events: &[CloudEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 512 + 2);
    out.push(b'[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        e.write_json(&mut out);
    }
    out.push(b']');
    out
}

/// What a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One structured-mode event.
    Event,
    /// A batch of structured-mode events.
    Batch,
}

/// Decides the format from a content type (parameters such as `charset` are ignored), or
/// from the first non-whitespace byte when there is none. `Err` names an unsupported type.
pub fn classify(content_type: Option<&str>, bytes: &[u8]) -> Result<Format, String> {
    match content_type {
        Some(ct) => {
            let media = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match media.as_str() {
                MEDIA_TYPE_EVENT | MEDIA_TYPE_JSON => Ok(Format::Event),
                MEDIA_TYPE_BATCH => Ok(Format::Batch),
                _ => Err(media),
            }
        }
        None => {
            let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
            Ok(if first == Some(&b'[') {
                Format::Batch
            } else {
                Format::Event
            })
        }
    }
}

/// Members of one JSON object, in order, values unparsed.
struct RawMembers<'de>(Vec<(String, &'de RawValue)>);

impl<'de> Deserialize<'de> for RawMembers<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMembers<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members: Vec<(String, &'de RawValue)> = Vec::with_capacity(12);
                while let Some(key) = map.next_key::<String>()? {
                    let value: &'de RawValue = map.next_value()?;
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("member {key:?} appears twice")));
                    }
                    members.push((key, value));
                }
                Ok(RawMembers(members))
            }
        }
        d.deserialize_map(V)
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, EnvelopeError> {
    std::str::from_utf8(bytes).map_err(|e| {
        EnvelopeError::new(format!(
            "not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

fn string_member(name: &str, raw: &RawValue) -> Result<Option<String>, EnvelopeError> {
    if raw.get() == "null" {
        return Ok(None);
    }
    serde_json::from_str::<String>(raw.get())
        .map(Some)
        .map_err(|_| EnvelopeError::new(format!("attribute {name:?} must be a string")))
}

/// Parses one structured-mode event.
pub fn parse_event(bytes: &[u8]) -> Result<CloudEvent, EnvelopeError> {
    let text = utf8(bytes)?;
    let members: RawMembers = serde_json::from_str(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            EnvelopeError::new(format!("not valid JSON: {e}"))
        } else {
            EnvelopeError::new(format!("not a CloudEvent object: {e}"))
        }
    })?;
    let mut spec_version = None;
    let mut id = None;
    let mut source = None;
    let mut event_type = None;
    let mut event = CloudEvent::new("", "", "");
    let mut data_json = None;
    let mut data_binary = None;
    for (name, raw) in members.0 {
        match name.as_str() {
            "specversion" => spec_version = string_member(&name, raw)?,
            "id" => id = string_member(&name, raw)?,
            "source" => source = string_member(&name, raw)?,
            "type" => event_type = string_member(&name, raw)?,
            "datacontenttype" => event.datacontenttype = string_member(&name, raw)?,
            "dataschema" => event.dataschema = string_member(&name, raw)?,
            "subject" => event.subject = string_member(&name, raw)?,
            "time" => event.time = string_member(&name, raw)?,
            "data" => data_json = Some(json_data_with_leading_space(text, raw)),
            "data_base64" => {
                if let Some(b64) = string_member(&name, raw)? {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(b64.as_bytes())
                        .map_err(|e| {
                            EnvelopeError::new(format!("data_base64 is not valid base64: {e}"))
                        })?;
                    data_binary = Some(decoded);
                }
            }
            ext => {
                if !is_valid_extension_name(ext) {
                    return Err(EnvelopeError::new(format!(
                        "attribute name {ext:?} is invalid: extension names are lower-case ASCII letters and digits"
                    )));
                }
                if let Some(value) = extension_value(ext, raw)? {
                    event.extensions.insert(name, value);
                }
            }
        }
    }
    match spec_version.as_deref() {
        Some(SPEC_VERSION) => {}
        Some(other) => {
            return Err(EnvelopeError::new(format!(
                "specversion {other:?} is not supported (expected \"1.0\")"
            )));
        }
        None => return Err(EnvelopeError::new("specversion is missing")),
    }
    for (attr, value, slot) in [
        ("id", id, &mut event.id),
        ("source", source, &mut event.source),
        ("type", event_type, &mut event.event_type),
    ] {
        match value {
            Some(v) if !v.is_empty() => *slot = v,
            Some(_) => return Err(EnvelopeError::new(format!("{attr} is empty"))),
            None => return Err(EnvelopeError::new(format!("{attr} is missing"))),
        }
    }
    event.data = match (data_json, data_binary) {
        (Some(_), Some(_)) => {
            return Err(EnvelopeError::new(
                "data and data_base64 are both present (at most one is allowed)",
            ));
        }
        (Some(j), None) => Some(Data::Json(j)),
        (None, Some(b)) => Some(Data::Binary(b)),
        (None, None) => None,
    };
    Ok(event)
}

/// `data`'s text from the byte after the `:` to the end of the value: the signature covers
/// the whitespace between the two as well (see `docs/PROTOCOL.md`).
fn json_data_with_leading_space(document: &str, raw: &RawValue) -> JsonData {
    let value = raw.get();
    let start = value.as_ptr() as usize - document.as_ptr() as usize;
    debug_assert!(start + value.len() <= document.len());
    let before = &document[..start];
    let ws_start = before.trim_end_matches([' ', '\t', '\n', '\r']).len();
    debug_assert!(before[..ws_start].ends_with(':'));
    let leading = &document[ws_start..start];
    let mut text = String::with_capacity(leading.len() + value.len());
    text.push_str(leading);
    text.push_str(value);
    JsonData {
        text,
        value_start: leading.len(),
    }
}

fn extension_value(name: &str, raw: &RawValue) -> Result<Option<ExtensionValue>, EnvelopeError> {
    let v: serde_json::Value = serde_json::from_str(raw.get())
        .map_err(|e| EnvelopeError::new(format!("extension {name:?}: {e}")))?;
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(ExtensionValue::String(s))),
        serde_json::Value::Bool(b) => Ok(Some(ExtensionValue::Boolean(b))),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(Some(ExtensionValue::Integer(i))),
            None => Err(EnvelopeError::new(format!(
                "extension {name:?} is {n}: numbers must be integers"
            ))),
        },
        _ => Err(EnvelopeError::new(format!(
            "extension {name:?} must be a string, integer or boolean"
        ))),
    }
}

/// Why a batch document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Not UTF-8, not JSON, or not an array.
    #[error("{0}")]
    Malformed(EnvelopeError),
    /// More elements than allowed.
    #[error("batch has {count} events; the limit is {limit}")]
    TooManyEvents { count: usize, limit: usize },
}

/// Splits a batch document into its elements' JSON texts, refusing more than `max_events`.
pub fn split_batch(bytes: &[u8], max_events: usize) -> Result<Vec<&str>, BatchError> {
    let text = utf8(bytes).map_err(BatchError::Malformed)?;
    let elements: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
        BatchError::Malformed(if e.is_syntax() || e.is_eof() {
            EnvelopeError::new(format!("batch is not valid JSON: {e}"))
        } else {
            EnvelopeError::new(format!("a batch must be a JSON array: {e}"))
        })
    })?;
    if elements.len() > max_events {
        return Err(BatchError::TooManyEvents {
            count: elements.len(),
            limit: max_events,
        });
    }
    Ok(elements.into_iter().map(RawValue::get).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keeps_the_whitespace_after_the_colon() {
        let doc = br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data" :  {"a" : 1}}"#;
        let e = parse_event(doc).unwrap();
        let Some(Data::Json(j)) = &e.data else {
            panic!("json data expected")
        };
        assert_eq!(j.value(), r#"{"a" : 1}"#);
        assert_eq!(j.signed_bytes(), br#"  {"a" : 1}"#);
        // Written back byte for byte.
        let out = String::from_utf8(e.to_json()).unwrap();
        assert!(out.ends_with(r#""data":  {"a" : 1}}"#), "{out}");
        assert_eq!(parse_event(out.as_bytes()).unwrap(), e);
    }

    #[test]
    fn classify_by_content_type_or_first_byte() {
        assert_eq!(
            classify(Some("application/cloudevents+json; charset=utf-8"), b""),
            Ok(Format::Event)
        );
        assert_eq!(classify(Some("Application/JSON"), b""), Ok(Format::Event));
        assert_eq!(classify(Some(MEDIA_TYPE_BATCH), b""), Ok(Format::Batch));
        assert_eq!(classify(None, b"  [ ]"), Ok(Format::Batch));
        assert_eq!(classify(None, b"{}"), Ok(Format::Event));
        assert_eq!(
            classify(Some("text/plain"), b"{}"),
            Err("text/plain".into())
        );
    }

    #[test]
    fn json_data_from_text_must_be_bare() {
        assert!(JsonData::from_json_text(r#"{"a":1}"#).is_ok());
        assert!(JsonData::from_json_text(r#" {"a":1}"#).is_err());
        assert!(JsonData::from_json_text("{").is_err());
    }
}
