//! The operator's config file (TOML). Every key has a default except the certificates; a bad
//! value is refused at start with an error naming its key, never replaced by a default.
//!
//! ```toml
//! state_dir = "/var/lib/ciao-controller"
//! default_tunnel_kind = "vxlan"
//! public_pools = ["203.0.113.0/28", "198.51.100.10-198.51.100.20"]
//!
//! [tenant_subnets]   # for workloads that name no subnet
//! range = "172.16.0.0/12"
//! prefix = 24
//! node_slice_prefix = 27
//!
//! [ssh]            # SSH access to tenant workloads through their forward IP
//! default = false   # for tenants that never chose (`ciao-net ssh on|off`)
//! port_base = 33000 # where a tenant's first block of SSH ports starts
//!
//! [scheduler]
//! address = "sched.example:8888"
//! cert = "/etc/ciao/cert-controller-ctl.pem"
//! ca = "/etc/ciao/CAcert-sched.example.pem"
//! ```

use std::path::{Path, PathBuf};

use ciao_types::TunnelKind;
use serde::Deserialize;

use crate::auto_subnet::TenantSubnets;
use crate::pool::PublicPool;
use crate::security::forward::SshPolicy;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/ciao-controller";
pub const DEFAULT_SCHEDULER_ADDRESS: &str = "localhost:8888";

/// The controller's validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Where the store file lives.
    pub state_dir: PathBuf,
    /// The tunnel kind of a new tenant subnet.
    pub default_tunnel_kind: TunnelKind,
    /// Public addresses to hand out, in order; empty: public IPs are refused.
    pub public_pools: Vec<PublicPool>,
    /// Where a tenant's automatic subnets come from.
    pub tenant_subnets: TenantSubnets,
    /// SSH access: the cluster default and the first port of the blocks.
    pub ssh: SshPolicy,
    pub scheduler: SchedulerConfig,
}

/// How the controller reaches the scheduler (SSNTP, controller role).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// `host:port`.
    pub address: String,
    /// The name the scheduler's certificate is checked against, if not the address's host.
    pub server_name: Option<String>,
    /// The controller's certificate and key (one PEM file).
    pub cert: PathBuf,
    /// The CA certificate to trust.
    pub ca: PathBuf,
}

/// Why a config is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("config key {key}: {why}")]
    Value { key: String, why: String },
}

/// The file as written: every key optional, so that a missing one gets its default and a
/// present one is checked by [`ControllerConfig::from_toml`] with its name at hand.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    default_tunnel_kind: Option<String>,
    public_pools: Option<Vec<String>>,
    tenant_subnets: Option<RawTenantSubnets>,
    ssh: Option<RawSsh>,
    scheduler: Option<RawScheduler>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    default: Option<bool>,
    port_base: Option<u16>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTenantSubnets {
    range: Option<String>,
    prefix: Option<u8>,
    node_slice_prefix: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    address: Option<String>,
    server_name: Option<String>,
    cert: Option<PathBuf>,
    ca: Option<PathBuf>,
}

fn refuse(key: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key: key.into(),
        why: why.into(),
    }
}

impl ControllerConfig {
    /// Read and check the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parse and check a config's text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        Ok(ControllerConfig {
            state_dir: state_dir(raw.state_dir)?,
            default_tunnel_kind: match raw.default_tunnel_kind {
                None => TunnelKind::default(),
                Some(text) => text
                    .parse()
                    .map_err(|e| refuse("default_tunnel_kind", format!("{e}")))?,
            },
            public_pools: public_pools(raw.public_pools.unwrap_or_default())?,
            tenant_subnets: tenant_subnets(raw.tenant_subnets.unwrap_or_default())?,
            ssh: ssh(raw.ssh.unwrap_or_default())?,
            scheduler: scheduler(raw.scheduler)?,
        })
    }
}

fn state_dir(raw: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    let dir = raw.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    if !dir.is_absolute() {
        return Err(refuse(
            "state_dir",
            format!("{} is not an absolute path", dir.display()),
        ));
    }
    Ok(dir)
}

fn public_pools(raw: Vec<String>) -> Result<Vec<PublicPool>, ConfigError> {
    let mut pools: Vec<PublicPool> = Vec::with_capacity(raw.len());
    for (i, text) in raw.iter().enumerate() {
        let key = format!("public_pools[{i}]");
        let pool: PublicPool = text.parse().map_err(|e| refuse(&key, format!("{e}")))?;
        if let Some(j) = pools.iter().position(|earlier| earlier.overlaps(pool)) {
            return Err(refuse(
                key,
                format!("{pool} overlaps public_pools[{j}] ({})", pools[j]),
            ));
        }
        pools.push(pool);
    }
    Ok(pools)
}

fn tenant_subnets(raw: RawTenantSubnets) -> Result<TenantSubnets, ConfigError> {
    let default = TenantSubnets::default();
    let range = match raw.range {
        None => default.range,
        Some(text) => text.parse().map_err(|_| {
            refuse(
                "tenant_subnets.range",
                format!("{text:?} is not an IPv4 CIDR"),
            )
        })?,
    };
    TenantSubnets::new(
        range,
        raw.prefix.unwrap_or(default.prefix),
        raw.node_slice_prefix.unwrap_or(default.node_slice_prefix),
    )
    .map_err(|(key, why)| refuse(format!("tenant_subnets.{key}"), why))
}

fn ssh(raw: RawSsh) -> Result<SshPolicy, ConfigError> {
    let default = SshPolicy::default();
    let port_base = raw.port_base.unwrap_or(default.port_base);
    if port_base == 0 {
        return Err(refuse("ssh.port_base", "0 is not a port (1-65535)"));
    }
    Ok(SshPolicy {
        default: raw.default.unwrap_or(default.default),
        port_base,
    })
}

fn scheduler(raw: Option<RawScheduler>) -> Result<SchedulerConfig, ConfigError> {
    let raw = raw.ok_or_else(|| {
        refuse(
            "scheduler",
            "missing: the [scheduler] table with cert and ca is required",
        )
    })?;
    let address = raw
        .address
        .unwrap_or_else(|| DEFAULT_SCHEDULER_ADDRESS.to_owned());
    check_address(&address).map_err(|why| refuse("scheduler.address", why))?;
    if raw.server_name.as_deref() == Some("") {
        return Err(refuse("scheduler.server_name", "is empty"));
    }
    let required = |value: Option<PathBuf>, key: &str| match value {
        Some(path) if !path.as_os_str().is_empty() => Ok(path),
        Some(_) => Err(refuse(key, "is empty")),
        None => Err(refuse(key, "missing: it has no default")),
    };
    Ok(SchedulerConfig {
        address,
        server_name: raw.server_name,
        cert: required(raw.cert, "scheduler.cert")?,
        ca: required(raw.ca, "scheduler.ca")?,
    })
}

/// `host:port` with a non-empty host and a port in 1..=65535 (`[v6]:port` for IPv6).
fn check_address(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} is not host:port"))?;
    if host.is_empty() || host.trim() != host {
        return Err(format!("{address:?} has no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("{address:?}: an IPv6 host is written [addr]:port"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!("{address:?} has no valid port (1-65535)")),
    }
}

#[cfg(test)]
mod tests;
