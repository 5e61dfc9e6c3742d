//! How the application's values travel: JSON (docs/protocol.md), with two
//! things serde_json alone would get wrong on the way.
//!
//! - **Floats that JSON cannot hold** (NaN, infinities): serde_json writes
//!   them as `null`, which the receiver then fails to decode as a number.
//!   [`Ser`] refuses them where the message is sent, naming the value.
//! - **Byte strings** (serde's bytes: `serde_bytes::ByteBuf`,
//!   `#[serde(with = "serde_bytes")]`): serde_json writes an array of
//!   numbers, up to four characters a byte. [`Ser`] writes
//!   `{"$bytes":"BASE64"}` instead, and [`De`] turns that back into bytes
//!   wherever the receiving type asks for bytes (an array of numbers, or
//!   a string, still decode as before).
//!
//! Floats themselves round-trip exactly: serde_json's `float_roundtrip`
//! feature, enabled in Cargo.toml, parses each to the nearest double.
//!
//! Both adapters wrap every nested value, so a value anywhere in a message
//! is seen; everything else is passed on to serde_json unchanged.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use serde::ser::{self, Serialize, Serializer};

use super::base64;

/// The key of the one-entry object that carries a byte string.
pub(crate) const BYTES_KEY: &str = "$bytes";

// ---------------------------------------------------------------- encoding

/// A serializer that refuses non-finite floats and writes bytes as
/// `{"$bytes":"BASE64"}`; the rest goes to the wrapped serializer.
pub(crate) struct Ser<S>(pub S);

/// A value serialized through [`Ser`].
pub(crate) struct Wrap<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for Wrap<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Ser(s))
    }
}

/// A compound value (sequence, map, struct...) whose parts go through [`Ser`].
pub(crate) struct Compound<C>(C);

fn not_finite<E: ser::Error>(v: f64) -> E {
    E::custom(format_args!(
        "the message holds the float {v}, which JSON cannot carry (it would arrive \
         as null and fail to decode); send it as an Option (None) or a string instead"
    ))
}

struct Base64Str<'a>(&'a [u8]);

impl Serialize for Base64Str<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&base64::Display(self.0))
    }
}

macro_rules! forward_ser {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.0.$method(v)
        }
    )*};
}

impl<S: Serializer> Serializer for Ser<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<S::SerializeSeq>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Compound<S::SerializeMap>;
    type SerializeStruct = Compound<S::SerializeStruct>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    forward_ser!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        if !v.is_finite() {
            return Err(not_finite(f64::from(v)));
        }
        self.0.serialize_f32(v)
    }

    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        if !v.is_finite() {
            return Err(not_finite(v));
        }
        self.0.serialize_f64(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        use ser::SerializeMap;
        let mut map = self.0.serialize_map(Some(1))?;
        map.serialize_entry(BYTES_KEY, &Base64Str(v))?;
        map.end()
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Wrap(v))
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Wrap(v))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Wrap(v))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Compound)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Compound)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Compound)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Compound)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Compound)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Compound)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Compound)
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(v)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! compound {
    ($trait:ident, $method:ident) => {
        impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
                self.0.$method(&Wrap(v))
            }
            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), C::Error> {
        self.0.serialize_key(&Wrap(k))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&Wrap(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

macro_rules! compound_struct {
    ($trait:ident) => {
        impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), C::Error> {
                self.0.serialize_field(key, &Wrap(v))
            }
            fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
                self.0.skip_field(key)
            }
            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        }
    };
}

compound_struct!(SerializeStruct);
compound_struct!(SerializeStructVariant);

/// Writes `msg` as JSON onto `out`, through [`Ser`].
pub(crate) fn to_writer<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    msg: &T,
) -> Result<(), serde_json::Error> {
    msg.serialize(Ser(&mut serde_json::Serializer::new(out)))
}

// ---------------------------------------------------------------- decoding

/// A deserializer that gives `{"$bytes":"BASE64"}` back as bytes where the
/// type asks for bytes; the rest comes from the wrapped deserializer.
pub(crate) struct De<D>(pub D);

/// A visitor whose nested deserializers go through [`De`].
struct Vis<V>(V);

/// A visitor for a type that asked for bytes.
struct BytesVis<V>(V);

/// A seed deserialized through [`De`].
struct Seed<S>(S);

/// A sequence, map, enum or variant whose parts go through [`De`].
struct Access<A>(A);

macro_rules! forward_de {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.0.$method(Vis(v))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<D> {
    type Error = D::Error;

    forward_de!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(BytesVis(v))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(BytesVis(v))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Vis(v))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Vis(v))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Vis(v))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Vis(v))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, Vis(v))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Vis(v))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.0.$method(v)
        }
    )*};
}

/// The visits that are the same for [`Vis`] and [`BytesVis`].
macro_rules! visitor_common {
    () => {
        type Value = V::Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.expecting(f)
        }

        forward_visit!(
            visit_bool(bool),
            visit_i8(i8),
            visit_i16(i16),
            visit_i32(i32),
            visit_i64(i64),
            visit_i128(i128),
            visit_u8(u8),
            visit_u16(u16),
            visit_u32(u32),
            visit_u64(u64),
            visit_u128(u128),
            visit_f32(f32),
            visit_f64(f64),
            visit_char(char),
            visit_str(&str),
            visit_borrowed_str(&'de str),
            visit_string(String),
            visit_bytes(&[u8]),
            visit_borrowed_bytes(&'de [u8]),
            visit_byte_buf(Vec<u8>),
        );

        fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
            self.0.visit_none()
        }

        fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
            self.0.visit_unit()
        }

        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
            self.0.visit_some(De(d))
        }

        fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
            self.0.visit_newtype_struct(De(d))
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
            self.0.visit_seq(Access(a))
        }

        fn visit_enum<A: de::EnumAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
            self.0.visit_enum(Access(a))
        }
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Vis<V> {
    visitor_common!();

    fn visit_map<A: de::MapAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Access(a))
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for BytesVis<V> {
    visitor_common!();

    /// `{"$bytes":"BASE64"}`, and nothing else, is a byte string.
    fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<V::Value, A::Error> {
        let not_bytes = || {
            de::Error::custom(format_args!(
                "expected a byte string, as {{\"{BYTES_KEY}\": \"BASE64\"}}, an array of \
                 numbers or a string; found another object"
            ))
        };
        match a.next_key::<std::borrow::Cow<'de, str>>()? {
            Some(k) if k == BYTES_KEY => {}
            _ => return Err(not_bytes()),
        }
        let text: std::borrow::Cow<'de, str> = a.next_value()?;
        if a.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(not_bytes());
        }
        let bytes = base64::decode(&text).map_err(|e| {
            de::Error::custom(format_args!("a byte string's base64 is malformed: {e}"))
        })?;
        self.0.visit_byte_buf(bytes)
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(De(d))
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<A> {
    type Error = A::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<A> {
    type Error = A::Error;
    type Variant = Access<A::Variant>;
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (v, variant) = self.0.variant_seed(Seed(seed))?;
        Ok((v, Access(variant)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<A> {
    type Error = A::Error;
    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Vis(v))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Vis(v))
    }
}

/// Decodes `json` (all of it) into `T`, through [`De`].
pub(crate) fn from_slice<T: de::DeserializeOwned>(json: &[u8]) -> Result<T, serde_json::Error> {
    let mut d = serde_json::Deserializer::from_slice(json);
    let v = T::deserialize(De(&mut d))?;
    d.end()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Bytes {
        #[serde(with = "bytes_as_bytes")]
        data: Vec<u8>,
        n: Option<f64>,
        tag: Tag,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Tag {
        A(Vec<u32>),
        B { x: f32 },
        C,
    }

    /// `serde_bytes`'s `with` module, written out (the library does not
    /// depend on serde_bytes).
    mod bytes_as_bytes {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                    Ok(v)
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    fn encode<T: Serialize>(v: &T) -> Result<String, serde_json::Error> {
        let mut out = Vec::new();
        to_writer(&mut out, v)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn bytes_travel_as_base64_and_come_back_as_bytes() {
        let v = Bytes {
            data: (0..=255).collect(),
            n: Some(0.1),
            tag: Tag::B { x: 1.5 },
        };
        let json = encode(&v).unwrap();
        assert!(json.starts_with(r#"{"data":{"$bytes":"AAECAw"#), "{json}");
        assert_eq!(from_slice::<Bytes>(json.as_bytes()).unwrap(), v);
        for tag in [Tag::A(vec![1, 2]), Tag::C] {
            let v = Bytes {
                data: vec![],
                n: None,
                tag,
            };
            assert_eq!(
                from_slice::<Bytes>(encode(&v).unwrap().as_bytes()).unwrap(),
                v
            );
        }
        // Other objects where bytes are asked for are refused, by name.
        let e = from_slice::<Bytes>(br#"{"data":{"x":1},"n":null,"tag":"C"}"#).unwrap_err();
        assert!(e.to_string().contains("byte string"), "{e}");
        let e = from_slice::<Bytes>(br#"{"data":{"$bytes":"!!"},"n":null,"tag":"C"}"#);
        assert!(e.unwrap_err().to_string().contains("base64"));
    }

    #[test]
    fn non_finite_floats_are_refused_where_they_are_sent() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = encode(&Bytes {
                data: vec![],
                n: Some(v),
                tag: Tag::C,
            })
            .unwrap_err();
            assert!(e.to_string().contains("JSON cannot carry"), "{e}");
        }
        let e = encode(&vec![Tag::B { x: f32::NAN }]).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
    }

    #[test]
    fn floats_round_trip_exactly() {
        for f in [
            123456789.12345679_f64,
            0.1,
            5e-324,
            2.2250738585072014e-308,
            f64::MAX,
            -1.7976931348623157e308,
            9007199254740993.0,
            0.30000000000000004,
        ] {
            let back: f64 = from_slice(encode(&f).unwrap().as_bytes()).unwrap();
            assert_eq!(back.to_bits(), f.to_bits(), "{f}");
        }
    }
}
