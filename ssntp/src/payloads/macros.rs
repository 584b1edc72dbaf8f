//! The declarative macros the payload modules are written with; declared before them so that
//! textual macro scope covers them.

/// Declares a payload body: a serde struct whose fields parse like yaml.v2 and whose
/// [`Field::node`] lists them in declaration order (= the Go struct's order = wire order).
macro_rules! yaml_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct $name {
            $(
                $(#[$fm])*
                #[serde(
                    deserialize_with = "crate::payloads::Field::de",
                    skip_serializing_if = "crate::payloads::Field::omit"
                )]
                pub $f: $t,
            )*
        }

        impl crate::payloads::Field for $name {
            fn de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <Option<Self> as serde::Deserialize>::deserialize(d).map(Option::unwrap_or_default)
            }

            fn node(&self) -> Option<crate::payloads::emit::Node> {
                let entries = [$((stringify!($f), crate::payloads::Field::node(&self.$f)),)*];
                Some(crate::payloads::emit::Node::Map(
                    entries.into_iter().filter_map(|(k, v)| Some((k, v?))).collect(),
                ))
            }
        }
    };
}

/// Declares a payload that is a mapping with one top-level key around a body.
macro_rules! wrapped_payload {
    ($(#[$m:meta])* $name:ident($body:ty) = $key:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name(pub $body);

        impl crate::payloads::Payload for $name {
            const NAME: &'static str = $key;

            fn to_yaml(&self) -> Vec<u8> {
                crate::payloads::wrapped_yaml($key, &self.0)
            }

            fn from_yaml(yaml: &[u8]) -> Result<Self, crate::payloads::PayloadError> {
                crate::payloads::parse_wrapped($key, yaml).map($name)
            }
        }

        crate::payloads::newtype_impls!($name($body));
    };
}

/// Declares a flat payload (no top-level key): on the body itself, or as a newtype around a
/// body shared by several payloads.
macro_rules! flat_payload {
    ($name:ident = $label:literal) => {
        impl crate::payloads::Payload for $name {
            const NAME: &'static str = $label;

            fn to_yaml(&self) -> Vec<u8> {
                crate::payloads::flat_yaml(self)
            }

            fn from_yaml(yaml: &[u8]) -> Result<Self, crate::payloads::PayloadError> {
                crate::payloads::parse_flat($label, yaml)
            }
        }
    };
    ($(#[$m:meta])* $name:ident($body:ty) = $label:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name(pub $body);

        impl crate::payloads::Payload for $name {
            const NAME: &'static str = $label;

            fn to_yaml(&self) -> Vec<u8> {
                crate::payloads::flat_yaml(&self.0)
            }

            fn from_yaml(yaml: &[u8]) -> Result<Self, crate::payloads::PayloadError> {
                crate::payloads::parse_flat($label, yaml).map($name)
            }
        }

        crate::payloads::newtype_impls!($name($body));
    };
}

macro_rules! newtype_impls {
    ($name:ident($body:ty)) => {
        impl std::ops::Deref for $name {
            type Target = $body;

            fn deref(&self) -> &$body {
                &self.0
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $body {
                &mut self.0
            }
        }

        impl From<$body> for $name {
            fn from(body: $body) -> Self {
                $name(body)
            }
        }
    };
}

/// Declares a Go string type with known values: unknown values are kept (`Other`) so that they
/// survive a round trip, as they do through a Go peer.
macro_rules! string_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)*
            /// A value this crate does not know (also `""`, yaml.v2's zero value).
            Other(String),
        }

        impl $name {
            /// The wire text.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(s) => s,
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::Other(String::new())
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <String as crate::payloads::Field>::de(d).map(|s| $name::from(s.as_str()))
            }
        }

        impl crate::payloads::Field for $name {
            fn de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <Self as serde::Deserialize>::deserialize(d)
            }

            fn node(&self) -> Option<crate::payloads::emit::Node> {
                Some(crate::payloads::emit::Node::Str(self.as_str().to_owned()))
            }
        }
    };
}

pub(crate) use newtype_impls;
