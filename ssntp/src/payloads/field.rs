//! Field-level yaml.v2 behaviour: how each Go field type reads (leniently) and writes, and
//! whole-document parsing and writing for wrapped and flat payloads.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::emit::{self, Node};
use super::PayloadError;

/// How one field type reads (yaml.v2 leniency) and writes (yaml.v2 text).
pub(crate) trait Field: Sized {
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;

    /// The node to write, or `None` to leave the key out.
    fn node(&self) -> Option<Node>;

    /// serde's `skip_serializing_if`: only absent optional fields are left out.
    fn omit(&self) -> bool {
        self.node().is_none()
    }
}

/// Adapts a [`Field`] to serde's `Deserialize`, for containers of fields.
struct Lenient<T>(T);

impl<'de, T: Field> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::de(d).map(Lenient)
    }
}

/// yaml.v2 puts any scalar's text into a string field and `null` as `""`.
impl Field for String {
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<String>::deserialize(d).map(Option::unwrap_or_default)
    }

    fn node(&self) -> Option<Node> {
        Some(Node::Str(self.clone()))
    }
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Option::<$t>::deserialize(d).map(Option::unwrap_or_default)
            }

            fn node(&self) -> Option<Node> {
                Some(Node::Plain(self.to_string()))
            }
        }
    )*};
}

int_field!(i64, u32, u64);

/// yaml.v2 reads YAML 1.1 booleans (`yes`, `on`, …), which serde_yaml_ng does not.
impl Field for bool {
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BoolVisitor;

        impl Visitor<'_> for BoolVisitor {
            type Value = bool;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean")
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<bool, E> {
                Ok(v)
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
                match v {
                    "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True"
                    | "TRUE" => Ok(true),
                    "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
                    | "FALSE" => Ok(false),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }

        struct OptBool(bool);

        impl<'de> Deserialize<'de> for OptBool {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(BoolVisitor).map(OptBool)
            }
        }

        Option::<OptBool>::deserialize(d).map(|b| b.is_some_and(|b| b.0))
    }

    fn node(&self) -> Option<Node> {
        Some(Node::Plain(self.to_string()))
    }
}

/// A nil slice and an empty one are the same to yaml.v2 (`[]` on output).
impl<T: Field> Field for Vec<T> {
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Option::<Vec<Lenient<T>>>::deserialize(d)?.unwrap_or_default();
        Ok(items.into_iter().map(|l| l.0).collect())
    }

    fn node(&self) -> Option<Node> {
        Some(Node::Seq(self.iter().filter_map(Field::node).collect()))
    }
}

/// This project's optional keys: absent when `None`, so Go peers see the payload they expect.
impl<T: Field> Field for Option<T> {
    fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<Lenient<T>>::deserialize(d)?.map(|l| l.0))
    }

    fn node(&self) -> Option<Node> {
        self.as_ref().and_then(Field::node)
    }
}

pub(crate) fn wrapped_yaml<T: Field>(key: &'static str, body: &T) -> Vec<u8> {
    let inner = body.node().unwrap_or(Node::Map(Vec::new()));
    emit::document(&Node::Map(vec![(key, inner)]))
}

pub(crate) fn flat_yaml<T: Field>(body: &T) -> Vec<u8> {
    emit::document(&body.node().unwrap_or(Node::Map(Vec::new())))
}

/// Deserializes the first YAML document (yaml.v2 reads only that one); `None` for no document.
fn first_document<'de, S: DeserializeSeed<'de>>(
    yaml: &'de [u8],
    seed: S,
) -> Result<Option<S::Value>, serde_yaml_ng::Error> {
    match serde_yaml_ng::Deserializer::from_slice(yaml).next() {
        None => Ok(None),
        Some(doc) => seed.deserialize(doc).map(Some),
    }
}

pub(crate) fn parse_flat<T: Field + Default>(
    payload: &'static str,
    yaml: &[u8],
) -> Result<T, PayloadError> {
    let body = first_document(yaml, PhantomData::<Option<Lenient<T>>>)
        .map_err(|error| PayloadError::Yaml { payload, error })?;
    Ok(body.flatten().map(|l| l.0).unwrap_or_default())
}

pub(crate) fn parse_wrapped<T: Field>(key: &'static str, yaml: &[u8]) -> Result<T, PayloadError> {
    let body = first_document(yaml, Envelope::<T>(key, PhantomData)).map_err(|error| {
        PayloadError::Yaml {
            payload: key,
            error,
        }
    })?;
    body.flatten()
        .ok_or(PayloadError::Missing { payload: key, key })
}

/// Reads a mapping, keeping the value under one key (`None` if absent or null).
struct Envelope<T>(&'static str, PhantomData<T>);

impl<'de, T: Field> DeserializeSeed<'de> for Envelope<T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, T: Field> Visitor<'de> for Envelope<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a mapping with the key `{}`", self.0)
    }

    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.0 {
                found = map.next_value::<Option<Lenient<T>>>()?.map(|l| l.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}
