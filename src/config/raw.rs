//! A serde `Deserializer` for one string given for one dotted key (an environment variable
//! or a flag), so it is parsed by the same mirror types, and with the same messages, as the
//! file.
//!
//! `Given::new(&["cache", "ttl"], "750ms")` deserializes like the TOML document
//! `[cache]` / `ttl = 750ms`, where the leaf becomes whatever type the field asks for:
//! numbers and booleans are parsed from the string, strings and enum names are taken as is.

use serde::de::value::{Error, MapDeserializer};
use serde::de::{self, IntoDeserializer, Unexpected, Visitor};
use serde::forward_to_deserialize_any;

/// The remaining path (sections, then the key) and the value at its end.
#[derive(Clone, Copy)]
pub(super) struct Given<'a> {
    path: &'a [&'a str],
    value: &'a str,
}

impl<'a> Given<'a> {
    pub(super) fn new(path: &'a [&'a str], value: &'a str) -> Self {
        Given { path, value }
    }

    fn is_leaf(&self) -> bool {
        self.path.is_empty()
    }
}

impl<'de> IntoDeserializer<'de, Error> for Given<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

/// A leaf parsed with `FromStr` as the number or boolean the field asks for.
macro_rules! parsed {
    ($($method:ident => $visit:ident($ty:ty)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            if !self.is_leaf() {
                return self.deserialize_any(visitor);
            }
            match self.value.parse::<$ty>() {
                Ok(v) => visitor.$visit(v),
                Err(_) => Err(de::Error::invalid_value(Unexpected::Str(self.value), &visitor)),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Given<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.path.split_first() {
            None => visitor.visit_str(self.value),
            Some((key, rest)) => {
                let entry = (*key, Given::new(rest, self.value));
                visitor.visit_map(MapDeserializer::new(std::iter::once(entry)))
            }
        }
    }

    /// A given value is always "some": absent values are simply not given.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if !self.is_leaf() {
            return self.deserialize_any(visitor);
        }
        visitor.visit_enum(self.value.into_deserializer())
    }

    parsed! {
        deserialize_bool => visit_bool(bool),
        deserialize_i8 => visit_i8(i8),
        deserialize_i16 => visit_i16(i16),
        deserialize_i32 => visit_i32(i32),
        deserialize_i64 => visit_i64(i64),
        deserialize_u8 => visit_u8(u8),
        deserialize_u16 => visit_u16(u16),
        deserialize_u32 => visit_u32(u32),
        deserialize_u64 => visit_u64(u64),
        deserialize_f32 => visit_f32(f32),
        deserialize_f64 => visit_f64(f64),
    }

    forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default)]
        inner: Inner,
        top: Option<String>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        count: Option<usize>,
        rate: Option<f64>,
        on: Option<bool>,
        #[serde(default, with = "humantime_serde")]
        wait: Option<Duration>,
        mode: Option<Mode>,
        #[serde(default)]
        deeper: Deeper,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Deeper {
        name: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Slow,
    }

    fn given(key: &str, value: &str) -> Result<Outer, Error> {
        let path: Vec<&str> = key.split('.').collect();
        Outer::deserialize(Given::new(&path, value))
    }

    #[test]
    fn each_type_is_parsed_from_the_string() {
        assert_eq!(
            given("inner.count", "42").expect("usize").inner.count,
            Some(42)
        );
        assert_eq!(given("inner.rate", "0").expect("f64").inner.rate, Some(0.0));
        assert_eq!(
            given("inner.rate", "2.5").expect("f64").inner.rate,
            Some(2.5)
        );
        assert_eq!(
            given("inner.on", "true").expect("bool").inner.on,
            Some(true)
        );
        assert_eq!(
            given("inner.wait", "750ms").expect("duration").inner.wait,
            Some(Duration::from_millis(750))
        );
        assert_eq!(
            given("inner.mode", "slow").expect("enum").inner.mode,
            Some(Mode::Slow)
        );
        assert_eq!(
            given("top", "x y").expect("string").top.as_deref(),
            Some("x y")
        );
        assert_eq!(
            given("inner.deeper.name", "n")
                .expect("nested")
                .inner
                .deeper
                .name
                .as_deref(),
            Some("n")
        );
        let mut expected = Outer::default();
        expected.inner.mode = Some(Mode::Fast);
        assert_eq!(
            given("inner.mode", "fast").expect("only that key"),
            expected
        );
    }

    #[test]
    fn bad_values_quote_the_value_and_the_expected_type() {
        for (key, value, expected) in [
            ("inner.count", "-1", "usize"),
            ("inner.count", "many", "usize"),
            ("inner.on", "yes", "a boolean"),
            ("inner.wait", "abc", "a duration"),
            ("inner.mode", "xml", "fast"),
        ] {
            let e = given(key, value).expect_err(value).to_string();
            assert!(
                e.contains(value) && e.contains(expected),
                "{key}={value}: {e}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(given("inner.nope", "1").is_err());
        assert!(given("nope", "1").is_err());
    }
}
