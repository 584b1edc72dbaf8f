//! CNI results: built once, printed in the form of the requested spec version.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::version::Version;

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// One address of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// One route of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConfig {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// A version-independent result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub dns: Value,
}

impl CniResult {
    /// Reads a `prevResult` of any supported version (fields it does not model are dropped).
    pub fn from_prev(value: &Value) -> Option<CniResult> {
        serde_json::from_value(value.clone()).ok()
    }

    /// Appends `other`'s entries, renumbering its interface indexes (a chained ADD).
    pub fn append(&mut self, other: CniResult) {
        let offset = self.interfaces.len();
        self.interfaces.extend(other.interfaces);
        self.ips.extend(other.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + offset);
            ip
        }));
        self.routes.extend(other.routes);
        if self.dns.is_null() || self.dns == json!({}) {
            self.dns = other.dns;
        }
    }

    /// The JSON a runtime of spec `version` expects.
    pub fn to_json(&self, version: Version, version_text: &str) -> Value {
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut v = serde_json::to_value(i).unwrap_or(Value::Null);
                if !version.interface_has_mtu() {
                    if let Some(obj) = v.as_object_mut() {
                        obj.remove("mtu");
                    }
                }
                v
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = serde_json::to_value(ip).unwrap_or(Value::Null);
                if version.ip_has_version_field() {
                    if let Some(obj) = v.as_object_mut() {
                        let family = if ip.address.contains(':') { "6" } else { "4" };
                        obj.insert("version".into(), Value::String(family.into()));
                    }
                }
                v
            })
            .collect();
        let mut out = Map::new();
        out.insert("cniVersion".into(), Value::String(version_text.into()));
        out.insert("interfaces".into(), Value::Array(interfaces));
        out.insert("ips".into(), Value::Array(ips));
        out.insert(
            "routes".into(),
            serde_json::to_value(&self.routes).unwrap_or(Value::Null),
        );
        out.insert(
            "dns".into(),
            if self.dns.is_null() {
                json!({})
            } else {
                self.dns.clone()
            },
        );
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: Some("02:00:ac:10:01:05".into()),
                mtu: Some(1450),
                sandbox: Some("/run/netns/x".into()),
            }],
            ips: vec![IpConfig {
                address: "172.16.1.5/24".into(),
                gateway: Some("172.16.1.1".into()),
                interface: Some(0),
            }],
            routes: vec![],
            dns: Value::Null,
        }
    }

    #[test]
    fn formats_per_version() {
        let old = sample().to_json(Version(0, 4, 0), "0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
        assert!(old["interfaces"][0].get("mtu").is_none());
        let new = sample().to_json(Version(1, 1, 0), "1.1.0");
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["interfaces"][0]["mtu"], 1450);
        assert_eq!(new["dns"], json!({}));
    }

    #[test]
    fn prev_result_round_trips_and_appends() {
        let old = sample().to_json(Version(0, 4, 0), "0.4.0");
        let mut prev = CniResult::from_prev(&old).expect("parse 0.4.0 result");
        prev.append(sample());
        assert_eq!(prev.interfaces.len(), 2);
        assert_eq!(prev.ips[1].interface, Some(1));
    }
}
