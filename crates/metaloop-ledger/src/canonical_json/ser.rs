//! Canonical JSON straight from a `Serialize` value, without building a `serde_json::Value`
//! first: the same bytes as `to_canonical_json(&serde_json::to_value(value)?)`, several times
//! faster and with a fraction of the allocations (a cycle's records are written this way).
//!
//! `serde_json::to_value`'s reading of the serde data model is followed exactly: a
//! non-finite float is `null`, an `Option` is its value or `null`, a unit variant is its
//! name, a newtype, tuple or struct variant is an object with the variant's name as its one
//! key, bytes are an array of numbers, map keys may be strings, chars, booleans, integers or
//! finite floats (written as text), and of two equal keys the later one wins. Objects are
//! written in key order as [`super::write_canonical_json`] writes them, and nesting is
//! limited the same way ([`MAX_DEPTH`]).

use std::borrow::Cow;

use serde::ser::{self, Serialize};

use super::{CanonicalJsonError, MAX_DEPTH, write_f64, write_string};

impl ser::Error for CanonicalJsonError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        CanonicalJsonError::Unserializable(msg.to_string())
    }
}

/// Returns the canonical JSON text of `value`, as [`super::to_canonical_json`] would give for
/// `serde_json::to_value(value)`.
pub fn to_canonical_string<T: Serialize + ?Sized>(value: &T) -> Result<String, CanonicalJsonError> {
    let mut out = String::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

/// Appends the canonical JSON text of `value` to `out`; on error `out` holds a partial
/// document and should be discarded.
pub fn write_canonical<T: Serialize + ?Sized>(
    value: &T,
    out: &mut String,
) -> Result<(), CanonicalJsonError> {
    let mut scratch = Scratch::default();
    value.serialize(Canon {
        out,
        depth: 0,
        scratch: &mut scratch,
    })
}

/// Room shared by the objects being written: their members (each object's are the last
/// ones while it is open) and the text an object moves aside to put its members in order.
#[derive(Default)]
struct Scratch {
    text: String,
    members: Vec<(Cow<'static, str>, usize, usize)>,
}

/// Writes one value at nesting `depth` into `out`. `scratch` is lent to each object as it
/// puts its members in order.
struct Canon<'a> {
    out: &'a mut String,
    depth: usize,
    scratch: &'a mut Scratch,
}

impl<'a> Canon<'a> {
    /// A container starts at this depth: refused as `write_value` refuses it.
    fn open(&self) -> Result<(), CanonicalJsonError> {
        if self.depth >= MAX_DEPTH {
            Err(CanonicalJsonError::TooDeep)
        } else {
            Ok(())
        }
    }

    /// Writes `{"variant":` and returns the serializer of the variant's content.
    fn variant(self, variant: &str) -> Result<Canon<'a>, CanonicalJsonError> {
        self.open()?;
        self.out.push('{');
        write_string(variant, self.out);
        self.out.push(':');
        Ok(Canon {
            out: self.out,
            depth: self.depth + 1,
            scratch: self.scratch,
        })
    }

    fn object(self, wrapped: bool) -> Result<Object<'a>, CanonicalJsonError> {
        self.open()?;
        self.out.push('{');
        let start = self.out.len();
        let base = self.scratch.members.len();
        Ok(Object {
            out: self.out,
            depth: self.depth,
            scratch: self.scratch,
            start,
            base,
            key: None,
            wrapped,
        })
    }

    fn array(self, wrapped: bool) -> Result<Array<'a>, CanonicalJsonError> {
        self.open()?;
        self.out.push('[');
        Ok(Array {
            out: self.out,
            depth: self.depth,
            scratch: self.scratch,
            first: true,
            wrapped,
        })
    }
}

fn integer(out: &mut String, v: impl itoa::Integer) -> Result<(), CanonicalJsonError> {
    out.push_str(itoa::Buffer::new().format(v));
    Ok(())
}

fn float(out: &mut String, v: f64) -> Result<(), CanonicalJsonError> {
    if v.fract() == 0.0 && v.abs() < 1e15 && v != 0.0 {
        // a whole number below 10^15 is laid out plainly: its digits and ".0" (zero keeps its
        // sign, below)
        out.push_str(itoa::Buffer::new().format(v as i64));
        out.push_str(".0");
    } else if v.is_finite() {
        write_f64(v, out);
    } else {
        out.push_str("null");
    }
    Ok(())
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = CanonicalJsonError;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), CanonicalJsonError> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), CanonicalJsonError> {
        integer(self.out, v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), CanonicalJsonError> {
        integer(self.out, v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), CanonicalJsonError> {
        integer(self.out, v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), CanonicalJsonError> {
        integer(self.out, v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), CanonicalJsonError> {
        if u64::try_from(v).is_ok() || i64::try_from(v).is_ok() {
            integer(self.out, v)
        } else {
            Err(CanonicalJsonError::Unserializable(format!(
                "number {v} is out of range"
            )))
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), CanonicalJsonError> {
        integer(self.out, v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), CanonicalJsonError> {
        integer(self.out, v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), CanonicalJsonError> {
        integer(self.out, v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), CanonicalJsonError> {
        integer(self.out, v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), CanonicalJsonError> {
        if u64::try_from(v).is_ok() {
            integer(self.out, v)
        } else {
            Err(CanonicalJsonError::Unserializable(format!(
                "number {v} is out of range"
            )))
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalJsonError> {
        float(self.out, f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalJsonError> {
        float(self.out, v)
    }
    fn serialize_char(self, v: char) -> Result<(), CanonicalJsonError> {
        write_string(v.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonicalJsonError> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonicalJsonError> {
        let mut seq = self.array(false)?;
        for b in v {
            ser::SerializeSeq::serialize_element(&mut seq, b)?;
        }
        ser::SerializeSeq::end(seq)
    }
    fn serialize_none(self) -> Result<(), CanonicalJsonError> {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalJsonError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonicalJsonError> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CanonicalJsonError> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalJsonError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CanonicalJsonError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalJsonError> {
        let inner = self.variant(variant)?;
        value.serialize(Canon {
            out: &mut *inner.out,
            depth: inner.depth,
            scratch: &mut *inner.scratch,
        })?;
        inner.out.push('}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, CanonicalJsonError> {
        self.array(false)
    }
    fn serialize_tuple(self, _: usize) -> Result<Array<'a>, CanonicalJsonError> {
        self.array(false)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Array<'a>, CanonicalJsonError> {
        self.array(false)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Array<'a>, CanonicalJsonError> {
        self.variant(variant)?.array(true)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Object<'a>, CanonicalJsonError> {
        self.object(false)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Object<'a>, CanonicalJsonError> {
        self.object(false)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Object<'a>, CanonicalJsonError> {
        self.variant(variant)?.object(true)
    }
}

/// An array being written; `wrapped` when it is a tuple variant's content (one more brace).
pub(super) struct Array<'a> {
    out: &'a mut String,
    depth: usize,
    scratch: &'a mut Scratch,
    first: bool,
    wrapped: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalJsonError> {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        value.serialize(Canon {
            out: &mut *self.out,
            depth: self.depth + 1,
            scratch: &mut *self.scratch,
        })
    }

    fn close(self) -> Result<(), CanonicalJsonError> {
        self.out.push(']');
        if self.wrapped {
            self.out.push('}');
        }
        Ok(())
    }
}

impl ser::SerializeSeq for Array<'_> {
    type Ok = ();
    type Error = CanonicalJsonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.close()
    }
}

impl ser::SerializeTuple for Array<'_> {
    type Ok = ();
    type Error = CanonicalJsonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Array<'_> {
    type Ok = ();
    type Error = CanonicalJsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.close()
    }
}

impl ser::SerializeTupleVariant for Array<'_> {
    type Ok = ();
    type Error = CanonicalJsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.close()
    }
}

/// An object being written. Each member is written to `out` as it comes (`"key":value`,
/// after a comma when it is not the first); `members` holds each one's key and where its
/// text lies. At the end, members that came out of key order (or twice) are moved to
/// `scratch` and written back in key order; members that came in order stay where they are.
pub(super) struct Object<'a> {
    out: &'a mut String,
    depth: usize,
    scratch: &'a mut Scratch,
    /// Where the first member starts, after the opening brace.
    start: usize,
    /// Where this object's members start in `scratch.members` (the ones after are its own).
    base: usize,
    /// A map's key, waiting for its value.
    key: Option<String>,
    /// A struct variant's content: one more brace.
    wrapped: bool,
}

impl Object<'_> {
    fn member<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        value: &T,
    ) -> Result<(), CanonicalJsonError> {
        if self.scratch.members.len() > self.base {
            self.out.push(',');
        }
        let from = self.out.len();
        write_string(&key, self.out);
        self.out.push(':');
        value.serialize(Canon {
            out: &mut *self.out,
            depth: self.depth + 1,
            scratch: &mut *self.scratch,
        })?;
        self.scratch.members.push((key, from, self.out.len()));
        Ok(())
    }

    fn close(self) -> Result<(), CanonicalJsonError> {
        let Scratch { text, members } = self.scratch;
        let mine = &mut members[self.base..];
        let in_order = mine
            .windows(2)
            .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes());
        if !in_order {
            // a stable sort keeps equal keys in the order they came: the last one wins
            mine.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            text.clear();
            text.push_str(&self.out[self.start..]);
            self.out.truncate(self.start);
            let mut first = true;
            for (i, (key, from, to)) in mine.iter().enumerate() {
                if mine.get(i + 1).is_some_and(|next| next.0 == *key) {
                    continue;
                }
                if !first {
                    self.out.push(',');
                }
                first = false;
                self.out.push_str(&text[from - self.start..to - self.start]);
            }
        }
        members.truncate(self.base);
        self.out.push('}');
        if self.wrapped {
            self.out.push('}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = CanonicalJsonError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        self.key = Some(key.serialize(KeyText)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
        let key = self.key.take().ok_or_else(|| {
            CanonicalJsonError::Unserializable("a map value without its key".into())
        })?;
        self.member(Cow::Owned(key), v)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.close()
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = CanonicalJsonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Self::Error> {
        self.member(Cow::Borrowed(key), v)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.close()
    }
}

impl ser::SerializeStructVariant for Object<'_> {
    type Ok = ();
    type Error = CanonicalJsonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Self::Error> {
        self.member(Cow::Borrowed(key), v)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.close()
    }
}

/// A map key as text, as `serde_json` makes one.
struct KeyText;

fn not_a_key() -> CanonicalJsonError {
    CanonicalJsonError::Unserializable("key must be a string".into())
}

fn float_key(v: f64) -> Result<String, CanonicalJsonError> {
    if v.is_finite() {
        Ok(zmij::Buffer::new().format_finite(v).to_owned())
    } else {
        Err(CanonicalJsonError::Unserializable(
            "float key must be finite".into(),
        ))
    }
}

impl ser::Serializer for KeyText {
    type Ok = String;
    type Error = CanonicalJsonError;
    type SerializeSeq = ser::Impossible<String, CanonicalJsonError>;
    type SerializeTuple = ser::Impossible<String, CanonicalJsonError>;
    type SerializeTupleStruct = ser::Impossible<String, CanonicalJsonError>;
    type SerializeTupleVariant = ser::Impossible<String, CanonicalJsonError>;
    type SerializeMap = ser::Impossible<String, CanonicalJsonError>;
    type SerializeStruct = ser::Impossible<String, CanonicalJsonError>;
    type SerializeStructVariant = ser::Impossible<String, CanonicalJsonError>;

    fn serialize_bool(self, v: bool) -> Result<String, Self::Error> {
        Ok(if v { "true" } else { "false" }.to_owned())
    }
    fn serialize_i8(self, v: i8) -> Result<String, Self::Error> {
        Ok(itoa::Buffer::new().format(v).to_owned())
    }
    fn serialize_i16(self, v: i16) -> Result<String, Self::Error> {
        Ok(itoa::Buffer::new().format(v).to_owned())
    }
    fn serialize_i32(self, v: i32) -> Result<String, Self::Error> {
        Ok(itoa::Buffer::new().format(v).to_owned())
    }
    fn serialize_i64(self, v: i64) -> Result<String, Self::Error> {
        Ok(itoa::Buffer::new().format(v).to_owned())
    }
    fn serialize_i128(self, v: i128) -> Result<String, Self::Error> {
        Ok(itoa::Buffer::new().format(v).to_owned())
    }
    fn serialize_u8(self, v: u8) -> Result<String, Self::Error> {
        Ok(itoa::Buffer::new().format(v).to_owned())
    }
    fn serialize_u16(self, v: u16) -> Result<String, Self::Error> {
        Ok(itoa::Buffer::new().format(v).to_owned())
    }
    fn serialize_u32(self, v: u32) -> Result<String, Self::Error> {
        Ok(itoa::Buffer::new().format(v).to_owned())
    }
    fn serialize_u64(self, v: u64) -> Result<String, Self::Error> {
        Ok(itoa::Buffer::new().format(v).to_owned())
    }
    fn serialize_u128(self, v: u128) -> Result<String, Self::Error> {
        Ok(itoa::Buffer::new().format(v).to_owned())
    }
    fn serialize_f32(self, v: f32) -> Result<String, Self::Error> {
        if v.is_finite() {
            Ok(zmij::Buffer::new().format_finite(v).to_owned())
        } else {
            Err(CanonicalJsonError::Unserializable(
                "float key must be finite".into(),
            ))
        }
    }
    fn serialize_f64(self, v: f64) -> Result<String, Self::Error> {
        float_key(v)
    }
    fn serialize_char(self, v: char) -> Result<String, Self::Error> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, Self::Error> {
        Ok(v.to_owned())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_none(self) -> Result<String, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_unit(self) -> Result<String, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Self::Error> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Self::Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        Err(not_a_key())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        Err(not_a_key())
    }
}
