//! The network configuration on stdin and the CNI_* environment, parsed strictly.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, Code};
use crate::version::{self, Version};

/// `cnci`: the tenant's concentrator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnciConf {
    pub uuid: uuid::Uuid,
    pub ip: Ipv4Addr,
}

/// `tunnel`: kind and optional id override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelConf {
    #[serde(default)]
    pub kind: netcore::TunnelKind,
    #[serde(default)]
    pub id: Option<u32>,
}

/// `range`: what this node allocates from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeConf {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

/// `runtimeConfig`: the capabilities this plugin declares (`ips`, `mac`) and ones runtimes send
/// anyway (`portMappings`, `bandwidth`), which are accepted and ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConf {
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
    // Accepted (runtimes send them for capabilities they know) but not acted on.
    #[allow(dead_code)]
    #[serde(default, rename = "portMappings")]
    pub port_mappings: Option<Value>,
    #[allow(dead_code)]
    #[serde(default)]
    pub bandwidth: Option<Value>,
}

/// One `cni.dev/valid-attachments` entry of a GC request.
#[derive(Debug, Clone, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The plugin's configuration: the standard CNI keys plus ciao's own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[allow(dead_code)]
    #[serde(rename = "type")]
    pub plugin_type: String,
    pub tenant: uuid::Uuid,
    /// Absent: the controller gives the tenant a subnet (asked through `ciao-node run`).
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    /// How long ADD waits for the controller's answer when `subnet` is absent.
    #[serde(default, rename = "subnetWaitSeconds")]
    pub subnet_wait_seconds: Option<f64>,
    /// Absent: the node asks the controller for the tenant's CNCI (controller mode).
    #[serde(default)]
    pub cnci: Option<CnciConf>,
    #[serde(default)]
    pub tunnel: TunnelConf,
    #[serde(default)]
    pub range: Option<RangeConf>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub underlay: Option<String>,
    #[serde(default, rename = "stateDir")]
    pub state_dir: Option<PathBuf>,
    #[serde(default = "yes", rename = "defaultRoute")]
    pub default_route: bool,
    /// Extra source addresses the container may send from (VRRP-style virtual IPs).
    #[serde(default, rename = "allowedAddresses")]
    pub allowed_addresses: Vec<std::net::Ipv4Addr>,
    /// Security groups the container joins (with CNI_ARGS `CIAO_SECURITY_GROUPS`); none: not
    /// filtered.
    #[serde(default, rename = "securityGroups")]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub dns: Option<Value>,
    #[allow(dead_code)]
    #[serde(default)]
    pub capabilities: Option<BTreeMap<String, bool>>,
    #[serde(default, rename = "runtimeConfig")]
    pub runtime_config: RuntimeConf,
    #[serde(default, rename = "prevResult")]
    pub prev_result: Option<Value>,
    #[allow(dead_code)]
    #[serde(default)]
    pub args: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

fn yes() -> bool {
    true
}

/// The CNI_* environment of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

impl Env {
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).unwrap_or_default();
        Env {
            command: get("CNI_COMMAND"),
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
            path: get("CNI_PATH"),
        }
    }

    /// Fails with code 4 naming the first required variable that is empty.
    pub fn require(&self, vars: &[&str]) -> Result<(), CniError> {
        for var in vars {
            let value = match *var {
                "CNI_CONTAINERID" => &self.container_id,
                "CNI_NETNS" => &self.netns,
                "CNI_IFNAME" => &self.ifname,
                "CNI_PATH" => &self.path,
                _ => continue,
            };
            if value.is_empty() {
                return Err(CniError::new(
                    Code::InvalidEnv,
                    format!("required environment variable {var} is missing or empty"),
                ));
            }
        }
        Ok(())
    }
}

/// Static IP and MAC requested through CNI_ARGS (`IP=`, `MAC=`), as podman sends them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
    /// `CIAO_SECURITY_GROUPS=web,admin`, checked.
    pub security_groups: Vec<String>,
}

/// Parses `K=V;K=V`. Unknown keys are an error unless `IgnoreUnknown=1`, as in the reference
/// plugins; Kubernetes' `K8S_POD_*` keys are always accepted.
pub fn parse_cni_args(text: &str) -> Result<CniArgs, CniError> {
    let mut out = CniArgs::default();
    let mut unknown = Vec::new();
    let mut ignore_unknown = false;
    for pair in text.split(';').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            CniError::new(
                Code::InvalidEnv,
                format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
            )
        })?;
        match key {
            "IgnoreUnknown" => ignore_unknown = matches!(value, "1" | "true" | "True"),
            "IP" => {
                let ip = parse_ip_text(value).ok_or_else(|| {
                    CniError::new(
                        Code::InvalidEnv,
                        format!("CNI_ARGS: IP={value:?} is not an IPv4 address"),
                    )
                })?;
                out.ip = Some(ip);
            }
            "MAC" => {
                let mac = netcore::ids::parse_mac(value).ok_or_else(|| {
                    CniError::new(
                        Code::InvalidEnv,
                        format!("CNI_ARGS: MAC={value:?} is not a MAC address"),
                    )
                })?;
                out.mac = Some(mac);
            }
            "CIAO_SECURITY_GROUPS" => {
                out.security_groups = netcore::secgroups::parse_list(value).map_err(|e| {
                    CniError::new(
                        Code::InvalidConfig,
                        format!("CNI_ARGS: CIAO_SECURITY_GROUPS: {e}"),
                    )
                })?;
            }
            k if k.starts_with("K8S_POD_") => {}
            other => unknown.push(other.to_string()),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(CniError::new(
            Code::UnsupportedField,
            format!("CNI_ARGS: unknown keys {unknown:?} (set IgnoreUnknown=1 to ignore them)"),
        ));
    }
    Ok(out)
}

/// An IPv4 address given bare (`10.0.0.5`) or in CIDR form (`10.0.0.5/24`).
fn parse_ip_text(text: &str) -> Option<Ipv4Addr> {
    let ip = match text.parse::<IpNet>() {
        Ok(net) => net.addr(),
        Err(_) => text.parse::<IpAddr>().ok()?,
    };
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}

/// Parses stdin: JSON syntax errors are code 6, anything else wrong is code 7 naming the field,
/// an unsupported `cniVersion` is code 1.
pub fn parse_stdin(bytes: &[u8]) -> Result<(Version, NetConf), CniError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        CniError::new(
            Code::Decode,
            format!("network configuration is not valid JSON: {e}"),
        )
    })?;
    let version = parse_version(&value)?;
    let conf: NetConf = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let msg = if path == "." {
            format!("network configuration: {inner}")
        } else {
            format!("network configuration field {path}: {inner}")
        };
        CniError::new(Code::InvalidConfig, msg)
    })?;
    Ok((version, conf))
}

/// Reads and checks only `cniVersion` (VERSION needs nothing else).
pub fn parse_version(value: &Value) -> Result<Version, CniError> {
    let text = match value.get("cniVersion") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(CniError::new(
                Code::InvalidConfig,
                "network configuration field cniVersion: must be a string",
            ))
        }
        None => {
            return Err(CniError::new(
                Code::InvalidConfig,
                "network configuration field cniVersion: missing",
            ))
        }
    };
    Version::parse(text).ok_or_else(|| {
        CniError::new(
            Code::IncompatibleVersion,
            format!(
                "incompatible CNI version {text:?}: this plugin supports {}",
                version::SUPPORTED.join(", ")
            ),
        )
    })
}

impl NetConf {
    /// The core's view of this network.
    pub fn subnet_config(&self) -> netcore::SubnetConfig {
        netcore::SubnetConfig {
            tenant: self.tenant,
            // Resolved before any command runs (`commands::with_auto_subnet`).
            subnet: self.subnet.unwrap_or_default(),
            cnci: self.cnci.as_ref().map(|c| netcore::Cnci {
                uuid: c.uuid,
                ip: c.ip,
            }),
            tunnel_kind: self.tunnel.kind,
            tunnel_id: self.tunnel.id,
            node_range: self.range.as_ref().map(|r| netcore::AddrRange {
                start: r.start,
                end: r.end,
            }),
            gateway: self.gateway,
            mtu: self.mtu,
            underlay_device: self.underlay.clone(),
        }
    }

    /// The state directory: config, then `CIAO_STATE_DIR`, then the default.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .or_else(|| std::env::var_os("CIAO_STATE_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(netcore::NodeConfig::DEFAULT_STATE_DIR))
    }

    /// The requested static address: `runtimeConfig.ips` (bare or CIDR, duplicates tolerated, as
    /// podman's reload sends them), else CNI_ARGS `IP=`.
    pub fn requested_ip(&self, args: &CniArgs) -> Result<Option<Ipv4Addr>, CniError> {
        let mut ips: Vec<Ipv4Addr> = Vec::new();
        for text in &self.runtime_config.ips {
            let ip = parse_ip_text(text).ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    format!("network configuration field runtimeConfig.ips: {text:?} is not an IPv4 address"),
                )
            })?;
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        match ips.as_slice() {
            [] => Ok(args.ip),
            [one] => Ok(Some(*one)),
            _ => Err(CniError::new(
                Code::InvalidConfig,
                format!("network configuration field runtimeConfig.ips: one IPv4 address per interface, got {ips:?}"),
            )),
        }
    }

    /// The requested MAC: `runtimeConfig.mac`, else CNI_ARGS `MAC=`.
    pub fn requested_mac(&self, args: &CniArgs) -> Result<Option<[u8; 6]>, CniError> {
        match &self.runtime_config.mac {
            Some(text) => netcore::ids::parse_mac(text).map(Some).ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    format!("network configuration field runtimeConfig.mac: {text:?} is not a MAC address"),
                )
            }),
            None => Ok(args.mac),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"cniVersion":"1.1.0","name":"blue","type":"ciao",
        "tenant":"2491851d-dce9-48d6-b83a-a717417072ce","subnet":"172.16.1.0/24",
        "cnci":{"uuid":"3390740c-dce9-48d6-b83a-a717417072ce","ip":"10.99.0.3"}}"#;

    fn with(key: &str, value: Value) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(GOOD).expect("json");
        v[key] = value;
        serde_json::to_vec(&v).expect("json")
    }

    #[test]
    fn minimal_config_parses_with_defaults() {
        let (version, conf) = parse_stdin(GOOD.as_bytes()).expect("valid");
        assert_eq!(version, Version(1, 1, 0));
        assert_eq!(conf.tunnel.kind, netcore::TunnelKind::Vxlan);
        assert!(conf.default_route);
        conf.subnet_config().validate().expect("core accepts it");
    }

    #[test]
    fn a_config_without_cnci_is_controller_mode() {
        let mut v: Value = serde_json::from_str(GOOD).expect("json");
        v.as_object_mut().expect("object").remove("cnci");
        let (_, conf) = parse_stdin(&serde_json::to_vec(&v).expect("json")).expect("valid");
        let cfg = conf.subnet_config();
        assert_eq!(cfg.cnci, None);
        cfg.validate().expect("core accepts it");
        v["tunnel"] = serde_json::json!({"id": 7});
        let (_, conf) = parse_stdin(&serde_json::to_vec(&v).expect("json")).expect("parses");
        let err = conf
            .subnet_config()
            .validate()
            .expect_err("id without cnci");
        assert!(err.to_string().contains("tunnel.id"), "{err}");
    }

    #[test]
    fn errors_name_the_field_and_use_the_right_code() {
        let cases = [
            (b"{not json".to_vec(), 6, "JSON"),
            (with("cniVersion", "9.9.9".into()), 1, "9.9.9"),
            (with("bogus", 1.into()), 7, "bogus"),
            (with("subnet", "nonsense".into()), 7, "subnet"),
            (with("tenant", "not-a-uuid".into()), 7, "tenant"),
            (
                with(
                    "cnci",
                    serde_json::json!({"uuid": "3390740c-dce9-48d6-b83a-a717417072ce", "ip": "x"}),
                ),
                7,
                "cnci.ip",
            ),
            (
                with("tunnel", serde_json::json!({"kind": "ipip"})),
                7,
                "tunnel.kind",
            ),
            (with("mtu", "big".into()), 7, "mtu"),
        ];
        for (input, code, needle) in cases {
            let err = parse_stdin(&input).expect_err(needle);
            assert_eq!(err.code, code, "{needle}: {}", err.msg);
            assert!(err.msg.contains(needle), "{needle} not in {:?}", err.msg);
        }
        let mut missing: Value = serde_json::from_str(GOOD).expect("json");
        missing.as_object_mut().expect("object").remove("tenant");
        missing.as_object_mut().expect("object").remove("cnci");
        let err = parse_stdin(&serde_json::to_vec(&missing).expect("json")).expect_err("missing");
        assert_eq!(err.code, 7);
        assert!(err.msg.contains("tenant"), "{}", err.msg);
    }

    #[test]
    fn cni_args_name_security_groups() {
        let args = parse_cni_args("CIAO_SECURITY_GROUPS=web,admin,web").expect("valid");
        assert_eq!(args.security_groups, ["admin", "web"]);
        let err = parse_cni_args("CIAO_SECURITY_GROUPS=we b").expect_err("bad name");
        assert_eq!(err.code, 7);
        assert!(err.msg.contains("CIAO_SECURITY_GROUPS"), "{}", err.msg);
    }

    #[test]
    fn cni_args_follow_podman() {
        let args =
            parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=pc1;MAC=02:00:00:00:00:51;IP=10.79.0.50")
                .expect("podman args");
        assert_eq!(args.ip, Some(Ipv4Addr::new(10, 79, 0, 50)));
        assert_eq!(args.mac, Some([2, 0, 0, 0, 0, 0x51]));
        assert_eq!(parse_cni_args("FOO=1").expect_err("unknown").code, 2);
        assert!(parse_cni_args("IgnoreUnknown=1;FOO=1").is_ok());
        assert_eq!(parse_cni_args("IP=banana").expect_err("bad ip").code, 4);
        assert_eq!(parse_cni_args("novalue").expect_err("no =").code, 4);
    }

    #[test]
    fn runtime_ips_accept_bare_cidr_and_duplicates() {
        let (_, conf) = parse_stdin(&with(
            "runtimeConfig",
            serde_json::json!({"ips": ["172.16.1.50", "172.16.1.50/24"]}),
        ))
        .expect("valid");
        assert_eq!(
            conf.requested_ip(&CniArgs::default()).expect("one ip"),
            Some(Ipv4Addr::new(172, 16, 1, 50))
        );
        let (_, conf) = parse_stdin(&with(
            "runtimeConfig",
            serde_json::json!({"ips": ["172.16.1.50", "172.16.1.51"]}),
        ))
        .expect("valid");
        assert_eq!(
            conf.requested_ip(&CniArgs::default())
                .expect_err("two")
                .code,
            7
        );
    }
}
