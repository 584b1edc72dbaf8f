//! The cluster configuration a scheduler hands out in CONNECTED: ciao's defaults, an
//! operator's file read strictly, and the checks both pass before any node sees them. A Go
//! launcher that gets no configuration exits ("Unable to get Cluster Configuration"), so a
//! scheduler always has one.

use serde_yaml_ng::{Mapping, Value};

use super::{
    invalid, ipv4_key, Configure, ConfigurePayload, ControllerConfig, LauncherConfig, Payload,
    PayloadError,
};

/// The keys of each `configure:` section, in Go's field order (`payloads/configure.go`).
const SECTIONS: &[(&str, &[&str])] = &[
    ("scheduler", &["storage_uri"]),
    ("storage", &["ceph_id"]),
    (
        "controller",
        &[
            "ciao_port",
            "compute_ca",
            "compute_cert",
            "cnci_vcpus",
            "cnci_mem",
            "cnci_disk",
            "admin_ssh_key",
            "client_auth_ca_cert_path",
            "cnci_net",
        ],
    ),
    (
        "launcher",
        &[
            "compute_net",
            "mgmt_net",
            "disk_limit",
            "mem_limit",
            "child_user",
        ],
    ),
];

const FILE: &str = "cluster configuration";

impl ConfigurePayload {
    /// Go's `Configure.InitDefaults`: what a key left out of a configuration file becomes.
    pub fn ciao_defaults() -> Self {
        ConfigurePayload {
            controller: ControllerConfig {
                ciao_port: 8889,
                cnci_vcpus: 4,
                cnci_mem: 2048,
                cnci_disk: 2048,
                cnci_net: "192.168.0.0".into(),
                ..ControllerConfig::default()
            },
            launcher: LauncherConfig {
                disk_limit: true,
                mem_limit: true,
                ..LauncherConfig::default()
            },
            ..ConfigurePayload::default()
        }
    }

    /// Values every node can act on: CIDRs in `launcher.compute_net`/`mgmt_net`, an IPv4
    /// `controller.cnci_net`, a TCP port in `controller.ciao_port`, CNCI sizes not negative.
    pub fn validate(&self) -> Result<(), PayloadError> {
        self.launcher.compute_nets()?;
        self.launcher.mgmt_nets()?;
        let c = &self.controller;
        if !c.cnci_net.is_empty() {
            ipv4_key(FILE, "controller.cnci_net", &c.cnci_net)?;
        }
        if !(1..=65535).contains(&c.ciao_port) {
            let port = c.ciao_port.to_string();
            return Err(invalid(
                FILE,
                "controller.ciao_port",
                &port,
                "is not a TCP port",
            ));
        }
        for (key, v) in [
            ("controller.cnci_vcpus", c.cnci_vcpus),
            ("controller.cnci_mem", c.cnci_mem),
            ("controller.cnci_disk", c.cnci_disk),
        ] {
            if v < 0 {
                return Err(invalid(FILE, key, &v.to_string(), "is negative"));
            }
        }
        Ok(())
    }
}

impl Configure {
    /// What a scheduler sends when it is given no configuration: ciao's defaults, with no
    /// compute or management networks (each node then uses its only physical link).
    pub fn cluster_default() -> Self {
        Configure(ConfigurePayload::ciao_defaults())
    }

    /// Reads an operator's configuration file as Go's `configuration.Payload` does (keys left
    /// out take [`ConfigurePayload::ciao_defaults`]), but strictly: a key Go would silently
    /// ignore, a value of the wrong type or one [`ConfigurePayload::validate`] refuses is an
    /// error naming the key.
    pub fn from_operator_yaml(yaml: &[u8]) -> Result<Self, PayloadError> {
        let yaml_error = |error| PayloadError::Yaml {
            payload: FILE,
            error,
        };
        let file: Value = serde_yaml_ng::from_slice(yaml).map_err(yaml_error)?;
        check_known_keys(&file)?;
        // Type errors reported against the operator's own lines, before the merge moves them.
        Self::from_yaml(yaml)?;
        let defaults: Value =
            serde_yaml_ng::from_slice(&Self::cluster_default().to_yaml()).map_err(yaml_error)?;
        let merged = merge(defaults, file);
        let text = serde_yaml_ng::to_string(&merged).map_err(yaml_error)?;
        let conf = Self::from_yaml(text.as_bytes())?;
        conf.validate()?;
        Ok(conf)
    }
}

/// Refuses a key that is not `configure:`, one of its [`SECTIONS`] or one of their keys.
fn check_known_keys(file: &Value) -> Result<(), PayloadError> {
    let unknown = |key: String, known: &[&str]| PayloadError::UnknownKey {
        payload: FILE,
        key,
        known: known.join(", "),
    };
    let missing = PayloadError::Missing {
        payload: FILE,
        key: "configure",
    };
    let top = file.as_mapping().ok_or(missing)?;
    if let Some(key) = top.keys().find(|k| k.as_str() != Some("configure")) {
        return Err(unknown(key_text(key), &["configure"]));
    }
    let Some(body) = top.get("configure").and_then(Value::as_mapping) else {
        return Err(PayloadError::Missing {
            payload: FILE,
            key: "configure",
        });
    };
    let section_names: Vec<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
    for (section, value) in body {
        let name = key_text(section);
        let Some((_, known)) = SECTIONS.iter().find(|(s, _)| *s == name) else {
            return Err(unknown(format!("configure.{name}"), &section_names));
        };
        let keys = value.as_mapping().map(Mapping::keys).into_iter().flatten();
        for key in keys.map(key_text) {
            if !known.contains(&key.as_str()) {
                return Err(unknown(format!("configure.{name}.{key}"), known));
            }
        }
    }
    Ok(())
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default(),
    }
}

/// `over` on top of `base`: mappings merge key by key, anything else (null too: yaml.v2 sets
/// the zero value for it) replaces.
fn merge(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Mapping(mut base), Value::Mapping(over)) => {
            for (k, v) in over {
                let merged = match base.remove(&k) {
                    Some(b) => merge(b, v),
                    None => v,
                };
                base.insert(k, merged);
            }
            Value::Mapping(base)
        }
        (_, over) => over,
    }
}
