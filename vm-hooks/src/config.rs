//! Where the hooks learn which tenant subnet a tap belongs to, and its strict validation.
//!
//! QEMU runs `script=`/`downscript=` with the tap name as the only argument and its own
//! environment unchanged (reference/qemu-hooks.md §4), so the launcher passes the configuration
//! in one of two ways:
//!
//! - a per-interface file `<CIAO_VNIC_DIR>/<tap>.json` (default directory `/run/ciao/vnics`):
//!   when it exists it is the whole configuration of that interface (VMs with several NICs);
//! - otherwise `CIAO_*` environment variables of the QEMU process.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use netcore::{Cnci, SubnetConfig, TunnelKind};
use serde::Deserialize;
use uuid::Uuid;

use crate::Error;

/// Default directory of the per-interface files.
pub const DEFAULT_VNIC_DIR: &str = "/run/ciao/vnics";

/// The environment variables the hooks read.
pub mod var {
    pub const TENANT: &str = "CIAO_TENANT";
    pub const SUBNET: &str = "CIAO_SUBNET";
    /// Without CIAO_SUBNET: how long ifup waits for the controller's subnet (default 10).
    pub const SUBNET_WAIT_SECONDS: &str = "CIAO_SUBNET_WAIT_SECONDS";
    pub const CNCI_UUID: &str = "CIAO_CNCI_UUID";
    pub const CNCI_IP: &str = "CIAO_CNCI_IP";
    pub const VM_IP: &str = "CIAO_VM_IP";
    pub const VM_MAC: &str = "CIAO_VM_MAC";
    pub const VM_ID: &str = "CIAO_VM_ID";
    pub const TUNNEL_KIND: &str = "CIAO_TUNNEL_KIND";
    pub const TUNNEL_ID: &str = "CIAO_TUNNEL_ID";
    pub const GATEWAY: &str = "CIAO_GATEWAY";
    pub const MTU: &str = "CIAO_MTU";
    pub const UNDERLAY: &str = "CIAO_UNDERLAY";
    pub const STATE_DIR: &str = "CIAO_STATE_DIR";
    pub const VNIC_DIR: &str = "CIAO_VNIC_DIR";
    /// Extra source addresses the VM may send from (VRRP-style virtual IPs), comma-separated.
    pub const ALLOWED_ADDRESSES: &str = "CIAO_ALLOWED_ADDRESSES";
    /// Security groups the VM joins, comma-separated; none: not filtered.
    pub const SECURITY_GROUPS: &str = "CIAO_SECURITY_GROUPS";
}

/// Reads one environment variable (the process environment, or a map in tests).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// One tap's validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    pub state_dir: PathBuf,
    pub subnet: SubnetConfig,
    /// The VM's identity on the node (the VNIC's owner); default `qemu-<tap>`.
    pub vm_id: String,
    pub ip: Ipv4Addr,
    /// The guest's MAC: ciao's `02:00:a:b:c:d` of `ip`, which the CNCI's DHCP answers.
    pub mac: [u8; 6],
    /// Extra source addresses the VM may send from; anti-spoofing drops any other.
    pub allowed: Vec<Ipv4Addr>,
    /// Security groups the VM joins (checked names, sorted).
    pub security_groups: Vec<String>,
    /// The file the configuration came from, if not the environment.
    pub file: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Tenant,
    Subnet,
    CnciUuid,
    CnciIp,
    Ip,
    Mac,
    VmId,
    TunnelKind,
    TunnelId,
    Gateway,
    Mtu,
    Underlay,
    StateDir,
    SubnetWait,
    Allowed,
    Groups,
}

impl Key {
    fn env(self) -> &'static str {
        match self {
            Key::Tenant => var::TENANT,
            Key::Subnet => var::SUBNET,
            Key::CnciUuid => var::CNCI_UUID,
            Key::CnciIp => var::CNCI_IP,
            Key::Ip => var::VM_IP,
            Key::Mac => var::VM_MAC,
            Key::VmId => var::VM_ID,
            Key::TunnelKind => var::TUNNEL_KIND,
            Key::TunnelId => var::TUNNEL_ID,
            Key::Gateway => var::GATEWAY,
            Key::Mtu => var::MTU,
            Key::Underlay => var::UNDERLAY,
            Key::StateDir => var::STATE_DIR,
            Key::SubnetWait => var::SUBNET_WAIT_SECONDS,
            Key::Allowed => var::ALLOWED_ADDRESSES,
            Key::Groups => var::SECURITY_GROUPS,
        }
    }

    fn json(self) -> &'static str {
        match self {
            Key::Tenant => "tenant",
            Key::Subnet => "subnet",
            Key::CnciUuid => "cnci.uuid",
            Key::CnciIp => "cnci.ip",
            Key::Ip => "ip",
            Key::Mac => "mac",
            Key::VmId => "vmId",
            Key::TunnelKind => "tunnel.kind",
            Key::TunnelId => "tunnel.id",
            Key::Gateway => "gateway",
            Key::Mtu => "mtu",
            Key::Underlay => "underlay",
            Key::StateDir => "stateDir",
            Key::SubnetWait => "subnetWaitSeconds",
            Key::Allowed => "allowedAddresses",
            Key::Groups => "securityGroups",
        }
    }

    /// The key behind a field name of `netcore::SubnetConfig::validate`.
    fn from_core_field(field: &str) -> Option<Key> {
        Some(match field {
            "tenant" => Key::Tenant,
            "subnet" => Key::Subnet,
            "cnci.uuid" => Key::CnciUuid,
            "cnci.ip" => Key::CnciIp,
            "tunnel.id" => Key::TunnelId,
            "gateway" => Key::Gateway,
            "mtu" => Key::Mtu,
            "underlay" => Key::Underlay,
            _ => return None,
        })
    }
}

/// The per-interface file, as the launcher writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VnicFile {
    tenant: Option<String>,
    subnet: Option<String>,
    cnci: Option<CnciFile>,
    ip: Option<String>,
    mac: Option<String>,
    vm_id: Option<String>,
    tunnel: Option<TunnelFile>,
    gateway: Option<String>,
    mtu: Option<u32>,
    underlay: Option<String>,
    state_dir: Option<String>,
    subnet_wait_seconds: Option<f64>,
    allowed_addresses: Option<Vec<String>>,
    security_groups: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CnciFile {
    uuid: Option<String>,
    ip: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TunnelFile {
    kind: Option<String>,
    id: Option<u32>,
}

/// Raw values of one source, and how to name each in an error.
enum Source<'a> {
    Env(Lookup<'a>),
    File { path: PathBuf, file: Box<VnicFile> },
}

impl Source<'_> {
    fn label(&self, key: Key) -> String {
        match self {
            Source::Env(_) => key.env().to_string(),
            Source::File { path, .. } => format!("{} field {}", path.display(), key.json()),
        }
    }

    /// The value of `key`; an empty or whitespace-only value counts as missing.
    fn get(&self, key: Key) -> Result<Option<String>, Error> {
        let value = match self {
            Source::Env(lookup) => match lookup(key.env()) {
                None => None,
                Some(v) => Some(v.into_string().map_err(|_| Error::Invalid {
                    field: key.env().to_string(),
                    message: "is not valid UTF-8".into(),
                })?),
            },
            Source::File { file: f, .. } => match key {
                Key::Tenant => f.tenant.clone(),
                Key::Subnet => f.subnet.clone(),
                Key::CnciUuid => f.cnci.as_ref().and_then(|c| c.uuid.clone()),
                Key::CnciIp => f.cnci.as_ref().and_then(|c| c.ip.clone()),
                Key::Ip => f.ip.clone(),
                Key::Mac => f.mac.clone(),
                Key::VmId => f.vm_id.clone(),
                Key::TunnelKind => f.tunnel.as_ref().and_then(|t| t.kind.clone()),
                Key::TunnelId => f.tunnel.as_ref().and_then(|t| t.id.map(|i| i.to_string())),
                Key::Gateway => f.gateway.clone(),
                Key::Mtu => f.mtu.map(|m| m.to_string()),
                Key::Underlay => f.underlay.clone(),
                Key::StateDir => f.state_dir.clone(),
                Key::SubnetWait => f.subnet_wait_seconds.map(|w| w.to_string()),
                Key::Allowed => f.allowed_addresses.as_ref().map(|a| a.join(",")),
                Key::Groups => f.security_groups.as_ref().map(|a| a.join(",")),
            },
        };
        Ok(value.filter(|v| !v.trim().is_empty()))
    }

    fn required(&self, key: Key) -> Result<String, Error> {
        self.get(key)?
            .ok_or_else(|| Error::Missing(self.label(key)))
    }

    fn invalid(&self, key: Key, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: self.label(key),
            message: message.into(),
        }
    }

    fn parse<T>(&self, key: Key, what: &str, text: &str) -> Result<T, Error>
    where
        T: std::str::FromStr,
    {
        text.trim()
            .parse()
            .map_err(|_| self.invalid(key, format!("{text:?} is not {what}")))
    }
}

/// The extra addresses the VM may send from: exact host addresses of the subnet, never its
/// gateway (CIAO_ALLOWED_ADDRESSES, comma- or space-separated; a list in the file).
fn allowed_addresses(source: &Source<'_>, subnet: &SubnetConfig) -> Result<Vec<Ipv4Addr>, Error> {
    let Some(text) = source.get(Key::Allowed)? else {
        return Ok(Vec::new());
    };
    let allowed = text
        .split([',', ' '])
        .filter(|a| !a.trim().is_empty())
        .map(|a| source.parse::<Ipv4Addr>(Key::Allowed, "an IPv4 address", a))
        .collect::<Result<Vec<_>, _>>()?;
    netcore::ipam::check_allowed(subnet, &allowed).map_err(|e| match e {
        netcore::Error::Invalid { message, .. } => source.invalid(Key::Allowed, message),
        other => Error::Core(other),
    })?;
    Ok(allowed)
}

/// The groups the VM joins (CIAO_SECURITY_GROUPS `web,admin`; a list in the file).
fn security_groups(source: &Source<'_>) -> Result<Vec<String>, Error> {
    let Some(text) = source.get(Key::Groups)? else {
        return Ok(Vec::new());
    };
    netcore::secgroups::parse_list(&text).map_err(|e| match e {
        netcore::Error::Invalid { message, .. } => source.invalid(Key::Groups, message),
        other => Error::Core(other),
    })
}

/// The per-interface file of `tap`, if the launcher wrote one.
pub fn vnic_file(tap: &str, env: Lookup<'_>) -> PathBuf {
    let dir = env(var::VNIC_DIR)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VNIC_DIR));
    dir.join(format!("{tap}.json"))
}

fn read_file(path: &Path) -> Result<VnicFile, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        Error::File {
            path: path.display().to_string(),
            message: if at == "." {
                inner.to_string()
            } else {
                format!("field {at}: {inner}")
            },
        }
    })
}

/// Reads and checks `tap`'s configuration: the per-interface file if it exists, else the
/// environment. Every value is checked; the error names the variable (or file field).
pub fn load(tap: &str, env: Lookup<'_>) -> Result<HookConfig, Error> {
    let path = vnic_file(tap, env);
    let source = if path.exists() {
        Source::File {
            file: Box::new(read_file(&path)?),
            path,
        }
    } else {
        Source::Env(env)
    };
    let file = match &source {
        Source::File { path, .. } => Some(path.clone()),
        Source::Env(_) => None,
    };

    // In the order a launcher would write them, so the first missing one is named first.
    let tenant: Uuid = source.parse(Key::Tenant, "a UUID", &source.required(Key::Tenant)?)?;
    let (subnet, node_range) = match source.get(Key::Subnet)? {
        Some(text) => (
            source.parse::<Ipv4Net>(Key::Subnet, "an IPv4 CIDR", &text)?,
            None,
        ),
        // Everything local is checked before the node is asked.
        None => {
            source.required(Key::Ip)?;
            auto_subnet(&source, env, tenant)?
        }
    };
    // Both or neither: without a CNCI the node asks the controller for it (controller mode).
    let cnci = if source.get(Key::CnciUuid)?.is_some() || source.get(Key::CnciIp)?.is_some() {
        Some(Cnci {
            uuid: source.parse(Key::CnciUuid, "a UUID", &source.required(Key::CnciUuid)?)?,
            ip: source.parse(
                Key::CnciIp,
                "an IPv4 address",
                &source.required(Key::CnciIp)?,
            )?,
        })
    } else {
        None
    };
    let ip: Ipv4Addr = source.parse(Key::Ip, "an IPv4 address", &source.required(Key::Ip)?)?;

    let tunnel_kind = match source.get(Key::TunnelKind)? {
        Some(text) => text
            .trim()
            .parse::<TunnelKind>()
            .map_err(|e| source.invalid(Key::TunnelKind, e.to_string()))?,
        None => TunnelKind::default(),
    };
    let tunnel_id = match source.get(Key::TunnelId)? {
        Some(text) => Some(source.parse::<u32>(Key::TunnelId, "a number", &text)?),
        None => None,
    };
    let gateway = match source.get(Key::Gateway)? {
        Some(text) => Some(source.parse::<Ipv4Addr>(Key::Gateway, "an IPv4 address", &text)?),
        None => None,
    };
    let mtu = match source.get(Key::Mtu)? {
        Some(text) => Some(source.parse::<u32>(Key::Mtu, "a number", &text)?),
        None => None,
    };
    let underlay_device = source.get(Key::Underlay)?.map(|s| s.trim().to_string());

    let subnet_cfg = SubnetConfig {
        tenant,
        subnet,
        cnci,
        tunnel_kind,
        tunnel_id,
        node_range,
        gateway,
        mtu,
        underlay_device,
    };
    subnet_cfg.validate().map_err(|e| match e {
        netcore::Error::Invalid { field, message } => match Key::from_core_field(&field) {
            Some(key) => source.invalid(key, message),
            None => Error::Invalid { field, message },
        },
        other => Error::Core(other),
    })?;

    if let Some(r) = subnet_cfg
        .node_range
        .as_ref()
        .filter(|r| ip < r.start || ip > r.end)
    {
        return Err(source.invalid(
            Key::Ip,
            format!(
                "{ip} is outside this node's range {}-{} of the tenant's automatic subnet {subnet}",
                r.start, r.end
            ),
        ));
    }
    if !subnet_cfg.is_host(ip) {
        return Err(source.invalid(Key::Ip, format!("{ip} is not a host address of {subnet}")));
    }
    if ip == subnet_cfg.gateway() {
        return Err(source.invalid(
            Key::Ip,
            format!("{ip} is the gateway (the CNCI's address) of {subnet}"),
        ));
    }
    let mac = netcore::ids::mac_from_ip(ip);
    if let Some(text) = source.get(Key::Mac)? {
        let given = netcore::ids::parse_mac(text.trim())
            .ok_or_else(|| source.invalid(Key::Mac, format!("{text:?} is not a MAC address")))?;
        if given != mac {
            return Err(source.invalid(
                Key::Mac,
                format!(
                    "{} is not {}, the MAC the CNCI's DHCP answers with {ip}; \
                     give QEMU -device ...,mac={}",
                    netcore::ids::format_mac(given),
                    netcore::ids::format_mac(mac),
                    netcore::ids::format_mac(mac),
                ),
            ));
        }
    }

    let allowed = allowed_addresses(&source, &subnet_cfg)?;
    let security_groups = security_groups(&source)?;

    let vm_id = match source.get(Key::VmId)? {
        Some(id) => id.trim().to_string(),
        None => format!("qemu-{tap}"),
    };
    let id = netcore::VnicId {
        owner: vm_id.clone(),
        ifname: tap.to_string(),
    };
    if let Err(netcore::Error::Invalid { message, .. }) = id.validate() {
        return Err(source.invalid(Key::VmId, message));
    }

    let state_dir = state_dir_of(&source, env)?;
    Ok(HookConfig {
        state_dir,
        subnet: subnet_cfg,
        vm_id,
        ip,
        mac,
        allowed,
        security_groups,
        file,
    })
}

/// No subnet given: the controller's subnet for the tenant and this node's range, from the
/// node's cache or `ciao-node run` (at most the configured wait).
fn auto_subnet(
    source: &Source<'_>,
    env: Lookup<'_>,
    tenant: Uuid,
) -> Result<(Ipv4Net, Option<netcore::AddrRange>), Error> {
    let wait = match source.get(Key::SubnetWait)? {
        None => netcore::auto_subnet::DEFAULT_WAIT,
        Some(text) => {
            let secs: f64 = source.parse(Key::SubnetWait, "a number of seconds", &text)?;
            if !(secs > 0.0 && secs <= 3600.0) {
                return Err(source.invalid(Key::SubnetWait, format!("{secs} is not in (0, 3600]")));
            }
            std::time::Duration::from_secs_f64(secs)
        }
    };
    let state_dir = state_dir_of(source, env)?;
    let got = netcore::auto_subnet::resolve(&state_dir, tenant, wait)
        .map_err(|e| Error::AutoSubnet(e.to_string()))?;
    let range = netcore::AddrRange {
        start: got.range_start,
        end: got.range_end,
    };
    Ok((got.subnet, Some(range)))
}

/// The node state directory: the file's `stateDir`, else `CIAO_STATE_DIR`, else the default.
fn state_dir_of(source: &Source<'_>, env: Lookup<'_>) -> Result<PathBuf, Error> {
    let (key_label, text) = match source.get(Key::StateDir)? {
        Some(text) => (source.label(Key::StateDir), text),
        None => match Source::Env(env).get(Key::StateDir)? {
            Some(text) => (var::STATE_DIR.to_string(), text),
            None => return Ok(PathBuf::from(netcore::NodeConfig::DEFAULT_STATE_DIR)),
        },
    };
    let path = PathBuf::from(&text);
    if !path.is_absolute() {
        return Err(Error::Invalid {
            field: key_label,
            message: format!("{text:?} is not an absolute path"),
        });
    }
    Ok(path)
}

/// The state directory ifdown uses: like ifup's, but never failing on a broken file or value
/// (ifdown must clean up whatever it can).
pub fn state_dir_for_cleanup(tap: &str, env: Lookup<'_>) -> PathBuf {
    let path = vnic_file(tap, env);
    if path.exists() {
        if let Ok(file) = read_file(&path) {
            let source = Source::File {
                path,
                file: Box::new(file),
            };
            if let Ok(dir) = state_dir_of(&source, env) {
                return dir;
            }
        }
    }
    state_dir_of(&Source::Env(env), env)
        .unwrap_or_else(|_| PathBuf::from(netcore::NodeConfig::DEFAULT_STATE_DIR))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const TAP: &str = "tapvm0";

    fn good() -> HashMap<&'static str, String> {
        HashMap::from([
            (
                var::TENANT,
                "2491851d-dce9-48d6-b83a-a717417072ce".to_string(),
            ),
            (var::SUBNET, "172.16.1.0/24".to_string()),
            (
                var::CNCI_UUID,
                "3390740c-dce9-48d6-b83a-a717417072ce".to_string(),
            ),
            (var::CNCI_IP, "10.250.0.3".to_string()),
            (var::VM_IP, "172.16.1.32".to_string()),
            (var::STATE_DIR, "/tmp/ciao-hook-test".to_string()),
            (var::VNIC_DIR, "/nonexistent-ciao-vnic-dir".to_string()),
        ])
    }

    fn load_map(map: &HashMap<&'static str, String>) -> Result<HookConfig, Error> {
        let lookup = |k: &str| map.get(k).map(OsString::from);
        load(TAP, &lookup)
    }

    #[test]
    fn a_complete_environment_is_accepted_with_the_derived_mac() {
        let cfg = load_map(&good()).expect("valid");
        assert_eq!(netcore::ids::format_mac(cfg.mac), "02:00:ac:10:01:20");
        assert_eq!(cfg.vm_id, "qemu-tapvm0");
        assert_eq!(cfg.state_dir, PathBuf::from("/tmp/ciao-hook-test"));
        assert_eq!(cfg.subnet.tunnel_kind, TunnelKind::Vxlan);
        assert!(cfg.file.is_none());
    }

    #[test]
    fn without_a_subnet_the_nodes_automatic_subnet_and_range_are_used() {
        let dir = tempfile::tempdir().expect("state dir");
        let mut env = good();
        env.remove(var::SUBNET);
        env.remove(var::CNCI_UUID);
        env.remove(var::CNCI_IP);
        env.insert(var::STATE_DIR, dir.path().display().to_string());
        env.insert(var::SUBNET_WAIT_SECONDS, "0.2".to_string());
        // No ciao-node run, nothing cached: exit 2, at once, saying so.
        let err = load_map(&env).expect_err("no daemon");
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("ciao-node run is not running"),
            "{err}"
        );
        let tenant = env[var::TENANT].parse().expect("tenant");
        let got = netcore::auto_subnet::AutoSubnet {
            subnet: "172.16.1.0/24".parse().expect("subnet"),
            range_start: Ipv4Addr::new(172, 16, 1, 32),
            range_end: Ipv4Addr::new(172, 16, 1, 63),
        };
        netcore::auto_subnet::remember(dir.path(), tenant, got).expect("cache");
        let cfg = load_map(&env).expect("from the cache");
        assert_eq!(cfg.subnet.subnet, got.subnet);
        let range = cfg.subnet.node_range.expect("the node's range");
        assert_eq!((range.start, range.end), (got.range_start, got.range_end));
        env.insert(var::VM_IP, "172.16.1.10".to_string());
        let err = load_map(&env).expect_err("outside the range").to_string();
        assert!(err.contains("outside this node's range"), "{err}");
    }

    #[test]
    fn without_a_cnci_the_controller_assigns_one() {
        let mut env = good();
        env.remove(var::CNCI_UUID);
        env.remove(var::CNCI_IP);
        let cfg = load_map(&env).expect("controller mode");
        assert_eq!(cfg.subnet.cnci, None);
        env.remove(var::TENANT);
        let err = load_map(&env).expect_err("no tenant").to_string();
        assert_eq!(err, format!("{} is missing", var::TENANT));
    }

    #[test]
    fn each_missing_variable_is_named() {
        // CIAO_SUBNET may be left out (the controller's subnet, tested below).
        for var in [var::TENANT, var::CNCI_UUID, var::CNCI_IP, var::VM_IP] {
            let mut env = good();
            env.remove(var);
            let err = load_map(&env).expect_err(var);
            assert_eq!(err.to_string(), format!("{var} is missing"), "{var}");
            env.insert(var, "  ".into());
            let err = load_map(&env).expect_err(var);
            assert_eq!(err.to_string(), format!("{var} is missing"), "{var} empty");
        }
    }

    #[test]
    fn each_bad_value_is_named() {
        let cases = [
            (var::TENANT, "not-a-uuid"),
            (var::TENANT, "00000000-0000-0000-0000-000000000000"),
            (var::SUBNET, "172.16.1.0"),
            (var::SUBNET, "172.16.1.5/24"),
            (var::SUBNET, "172.16.1.0/31"),
            (var::CNCI_UUID, "x"),
            (var::CNCI_IP, "10.250.0"),
            (var::CNCI_IP, "0.0.0.0"),
            (var::VM_IP, "172.16.2.5"),
            (var::VM_IP, "172.16.1.1"),
            (var::VM_IP, "172.16.1.255"),
            (var::VM_MAC, "52:54:00:12:34:56"),
            (var::VM_MAC, "zz"),
            (var::VM_ID, "a/b"),
            (var::TUNNEL_KIND, "ipip"),
            (var::TUNNEL_ID, "-1"),
            (var::TUNNEL_ID, "16777216"),
            (var::GATEWAY, "10.0.0.1"),
            (var::MTU, "100"),
            (var::MTU, "big"),
            (var::UNDERLAY, "a-name-longer-than-15"),
            (var::STATE_DIR, "relative/dir"),
            (var::ALLOWED_ADDRESSES, "172.16.1.0/28"),
            (var::ALLOWED_ADDRESSES, "172.16.1.1"),
            (var::ALLOWED_ADDRESSES, "172.16.1.255"),
            (var::ALLOWED_ADDRESSES, "0.0.0.0"),
            (var::ALLOWED_ADDRESSES, "172.16.1.40,10.0.0.5"),
        ];
        for (var, value) in cases {
            let mut env = good();
            env.insert(var, value.into());
            let err = load_map(&env).expect_err(var).to_string();
            assert!(err.starts_with(&format!("{var}: ")), "{var}={value}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn security_groups_are_checked_names() {
        let mut env = good();
        env.insert(var::SECURITY_GROUPS, "web, admin".into());
        assert_eq!(
            load_map(&env).expect("valid").security_groups,
            ["admin", "web"]
        );
        assert!(load_map(&good()).expect("valid").security_groups.is_empty());
        env.insert(var::SECURITY_GROUPS, "web,a/b".into());
        let err = load_map(&env).expect_err("bad name").to_string();
        assert!(err.starts_with("CIAO_SECURITY_GROUPS: "), "{err}");
    }

    #[test]
    fn allowed_addresses_are_a_list_of_exact_addresses() {
        let mut env = good();
        env.insert(var::ALLOWED_ADDRESSES, "172.16.1.40, 172.16.1.41".into());
        let cfg = load_map(&env).expect("valid");
        let want: Vec<Ipv4Addr> = vec![
            "172.16.1.40".parse().expect("ip"),
            "172.16.1.41".parse().expect("ip"),
        ];
        assert_eq!(cfg.allowed, want);
        assert!(load_map(&good()).expect("valid").allowed.is_empty());
    }

    #[test]
    fn the_matching_mac_and_the_optional_values_are_accepted() {
        let mut env = good();
        env.insert(var::VM_MAC, "02:00:AC:10:01:20".into());
        env.insert(var::TUNNEL_KIND, "vxlan".into());
        env.insert(var::TUNNEL_ID, "4242".into());
        env.insert(var::MTU, "1400".into());
        env.insert(var::VM_ID, "vm-7".into());
        let cfg = load_map(&env).expect("valid");
        assert_eq!(cfg.subnet.tunnel_id, Some(4242));
        assert_eq!(cfg.subnet.mtu, Some(1400));
        assert_eq!(cfg.vm_id, "vm-7");
    }

    #[test]
    fn a_per_interface_file_is_the_whole_configuration() {
        let dir = tempfile::tempdir().expect("dir");
        let mut env = good();
        env.insert(var::VNIC_DIR, dir.path().display().to_string());
        env.remove(var::VM_IP); // the file is used, not the environment
        let path = dir.path().join(format!("{TAP}.json"));
        std::fs::write(
            &path,
            r#"{"tenant":"2491851d-dce9-48d6-b83a-a717417072ce","subnet":"172.16.9.0/24",
               "cnci":{"uuid":"3390740c-dce9-48d6-b83a-a717417072ce","ip":"10.250.0.3"},
               "ip":"172.16.9.7","tunnel":{"kind":"vxlan","id":77},"mtu":1400,
               "stateDir":"/tmp/other-state"}"#,
        )
        .expect("write");
        let cfg = load_map(&env).expect("file config");
        assert_eq!(cfg.ip, Ipv4Addr::new(172, 16, 9, 7));
        assert_eq!(cfg.subnet.tunnel_id, Some(77));
        assert_eq!(cfg.state_dir, PathBuf::from("/tmp/other-state"));
        assert_eq!(cfg.file.as_deref(), Some(path.as_path()));

        std::fs::write(
            &path,
            r#"{"tenant":"2491851d-dce9-48d6-b83a-a717417072ce"}"#,
        )
        .expect("write");
        let err = load_map(&env).expect_err("incomplete").to_string();
        assert_eq!(err, format!("{} field ip is missing", path.display()));

        std::fs::write(&path, r#"{"tenant":"x","subnett":"y"}"#).expect("write");
        let err = load_map(&env).expect_err("unknown key").to_string();
        assert!(err.contains("subnett"), "{err}");

        std::fs::write(&path, r#"{"mtu":"1400"}"#).expect("write");
        let err = load_map(&env).expect_err("wrong type").to_string();
        assert!(err.contains("field mtu"), "{err}");

        std::fs::write(&path, "{").expect("write");
        assert!(load_map(&env).is_err());
    }
}
