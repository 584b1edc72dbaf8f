//! The CNI commands, each a thin translation to one call of the shared core.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::conf::{self, Env, NetConf};
use crate::error::{CniError, Code};
use crate::result::{CniResult, Interface, IpConfig, RouteConfig};
use crate::version::{self, Version};

/// Runs one invocation; `Ok(None)` means success with no output.
pub fn run(env: &Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let versioned = |err: CniError, text: &str| CniError {
        cni_version: text.to_string(),
        ..err
    };
    match env.command.as_str() {
        "VERSION" => version_reply(stdin).map(Some),
        "" => Err(CniError::new(
            Code::InvalidEnv,
            "required environment variable CNI_COMMAND is missing or empty",
        )),
        cmd @ ("ADD" | "DEL" | "CHECK" | "STATUS" | "GC") => {
            let (version, conf) = conf::parse_stdin(stdin)?;
            let text = conf.cni_version.clone();
            let conf = match crate::auto::with_auto_subnet(cmd, conf) {
                Ok(Some(conf)) => conf,
                // DEL or GC of a network whose ADD never got a subnet: nothing to undo.
                Ok(None) => return Ok(None),
                Err(e) => return Err(versioned(e, &text)),
            };
            let out = match cmd {
                "ADD" => add(env, version, &conf),
                "DEL" => del(env, &conf).map(|()| None),
                "CHECK" => check(env, version, &conf).map(|()| None),
                "STATUS" => status(version, &conf).map(|()| None),
                _ => gc(version, &conf).map(|()| None),
            };
            out.map_err(|e| versioned(e, &text))
        }
        other => Err(CniError::new(
            Code::InvalidEnv,
            format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
        )),
    }
}

fn version_reply(stdin: &[u8]) -> Result<Value, CniError> {
    // VERSION must answer even for versions we do not speak, so a runtime can negotiate.
    let requested = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|v| version::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| version::LATEST.to_string());
    Ok(json!({"cniVersion": requested, "supportedVersions": version::SUPPORTED}))
}

fn open_node(conf: &NetConf) -> Result<netcore::Node, CniError> {
    netcore::Node::open(&netcore::NodeConfig {
        state_dir: conf.state_dir(),
    })
    .map_err(|e| match e {
        netcore::Error::Invalid { field, message } => CniError::new(
            Code::InvalidConfig,
            format!("network configuration field {field}: {message}"),
        ),
        other => CniError::new(Code::NotAvailable, other.to_string()),
    })
}

/// Maps the core's validation errors of a request to the CNI input they came from: the
/// environment (code 4, naming the variable) or the configuration (code 7, naming the field).
fn request_error(err: netcore::Error) -> CniError {
    let netcore::Error::Invalid { field, message } = err else {
        return err.into();
    };
    let var = match field.as_str() {
        "netns" => Some("CNI_NETNS"),
        "interface name" => Some("CNI_IFNAME"),
        "container id" => Some("CNI_CONTAINERID"),
        _ => None,
    };
    match (var, field.as_str()) {
        (Some(var), _) => CniError::new(
            Code::InvalidEnv,
            format!("environment variable {var}: {message}"),
        ),
        (None, netcore::ipam::ALLOWED_FIELD) => CniError::new(
            Code::InvalidConfig,
            format!("network configuration field allowedAddresses: {message}"),
        ),
        (None, "mac") => CniError::new(
            Code::InvalidConfig,
            format!("network configuration field runtimeConfig.mac (or CNI_ARGS MAC): {message}"),
        ),
        (None, _) => CniError::new(
            Code::InvalidConfig,
            format!("network configuration field {field}: {message}"),
        ),
    }
}

/// The union of the config's `securityGroups` and CNI_ARGS `CIAO_SECURITY_GROUPS` (code 7).
fn security_groups(conf: &NetConf, args: &conf::CniArgs) -> Result<Vec<String>, CniError> {
    let mut names = netcore::secgroups::check_names(&conf.security_groups).map_err(|e| {
        CniError::new(
            Code::InvalidConfig,
            format!("network configuration field securityGroups: {e}"),
        )
    })?;
    names.extend(args.security_groups.iter().cloned());
    names.sort();
    names.dedup();
    Ok(names)
}

/// Checks CNI_CONTAINERID and CNI_IFNAME (code 4 naming the variable).
fn validated_id(env: &Env) -> Result<netcore::VnicId, CniError> {
    let id = vnic_id(env);
    id.validate().map_err(request_error)?;
    Ok(id)
}

fn vnic_id(env: &Env) -> netcore::VnicId {
    netcore::VnicId {
        owner: env.container_id.clone(),
        ifname: env.ifname.clone(),
    }
}

fn subnet_config(conf: &NetConf) -> Result<netcore::SubnetConfig, CniError> {
    if conf.name.is_empty() {
        return Err(CniError::new(
            Code::InvalidConfig,
            "network configuration field name: must not be empty",
        ));
    }
    let cfg = conf.subnet_config();
    cfg.validate().map_err(|e| match e {
        netcore::Error::Invalid { field, message } => CniError::new(
            Code::InvalidConfig,
            format!("network configuration field {field}: {message}"),
        ),
        other => other.into(),
    })?;
    Ok(cfg)
}

fn add(env: &Env, version: Version, conf: &NetConf) -> Result<Option<Value>, CniError> {
    env.require(&["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"])?;
    let args = conf::parse_cni_args(&env.args)?;
    let cfg = subnet_config(conf)?;
    let id = validated_id(env)?;
    let request = netcore::VnicRequest {
        id,
        kind: netcore::VnicKind::Veth {
            netns: PathBuf::from(&env.netns),
            ifname: env.ifname.clone(),
        },
        ip: conf.requested_ip(&args)?,
        mac: conf.requested_mac(&args)?,
        default_route: conf.default_route,
        allowed: conf.allowed_addresses.clone(),
        security_groups: security_groups(conf, &args)?,
    };
    let mut node = open_node(conf)?;
    let att = node.attach(&cfg, &request).map_err(request_error)?;

    let mac = |m: Option<[u8; 6]>| m.map(netcore::ids::format_mac);
    let ours = CniResult {
        interfaces: vec![
            Interface {
                name: att.bridge.clone(),
                mac: mac(att.bridge_mac),
                mtu: Some(att.vnic.mtu),
                sandbox: None,
            },
            Interface {
                name: att.vnic.host_ifname.clone(),
                mac: mac(att.host_mac),
                mtu: Some(att.vnic.mtu),
                sandbox: None,
            },
            Interface {
                name: env.ifname.clone(),
                mac: Some(att.vnic.mac.clone()),
                mtu: Some(att.vnic.mtu),
                sandbox: Some(env.netns.clone()),
            },
        ],
        ips: vec![IpConfig {
            address: att.address.to_string(),
            gateway: Some(att.gateway.to_string()),
            interface: Some(2),
        }],
        // Only what was installed: an existing default route in the container is left alone.
        routes: if att.default_route {
            vec![RouteConfig {
                dst: "0.0.0.0/0".into(),
                gw: Some(att.gateway.to_string()),
            }]
        } else {
            Vec::new()
        },
        dns: conf.dns.clone().unwrap_or_else(|| json!({})),
    };
    let mut result = match &conf.prev_result {
        Some(prev) => CniResult::from_prev(prev).ok_or_else(|| {
            CniError::new(
                Code::Decode,
                "network configuration field prevResult: not a CNI result",
            )
        })?,
        None => CniResult::default(),
    };
    result.append(ours);
    Ok(Some(result.to_json(version, &conf.cni_version)))
}

fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    // CNI_NETNS may be empty: the container is already gone (ctr does this).
    env.require(&["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"])?;
    let cfg = subnet_config(conf)?;
    let id = validated_id(env)?;
    let mut node = open_node(conf)?;
    node.detach(&cfg.net_key(), &id)?;
    Ok(())
}

fn check(env: &Env, version: Version, conf: &NetConf) -> Result<(), CniError> {
    if !version.has_check() {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "CHECK needs cniVersion 0.4.0 or newer, got {}",
                conf.cni_version
            ),
        ));
    }
    env.require(&["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"])?;
    let cfg = subnet_config(conf)?;
    let prev = conf
        .prev_result
        .as_ref()
        .and_then(CniResult::from_prev)
        .ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                "network configuration field prevResult: CHECK needs the ADD result",
            )
        })?;
    let id = validated_id(env)?;
    let mut node = open_node(conf)?;
    let vnic = node.check(&cfg.net_key(), &id)?;
    // The result the runtime cached must describe what is really attached.
    let index = prev
        .interfaces
        .iter()
        .position(|i| i.name == env.ifname && i.sandbox.is_some())
        .ok_or_else(|| {
            CniError::new(
                Code::CheckFailed,
                format!("check failed: prevResult has no interface {}", env.ifname),
            )
        })?;
    let iface = &prev.interfaces[index];
    if iface
        .mac
        .as_deref()
        .is_some_and(|m| !m.eq_ignore_ascii_case(&vnic.mac))
    {
        return Err(CniError::new(
            Code::CheckFailed,
            format!(
                "check failed: prevResult MAC of {} differs from the attached {}",
                env.ifname, vnic.mac
            ),
        ));
    }
    let listed = prev.ips.iter().any(|ip| {
        ip.interface == Some(index)
            && ip.address.split('/').next() == Some(vnic.ip.to_string().as_str())
    });
    if !listed {
        return Err(CniError::new(
            Code::CheckFailed,
            format!(
                "check failed: prevResult lacks address {} on {}",
                vnic.ip, env.ifname
            ),
        ));
    }
    Ok(())
}

fn status(version: Version, conf: &NetConf) -> Result<(), CniError> {
    if !version.has_status_and_gc() {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!("STATUS needs cniVersion 1.1.0, got {}", conf.cni_version),
        ));
    }
    subnet_config(conf)?;
    let node = open_node(conf)?;
    // Ready means: the state directory can be locked and written.
    node.identity()
        .map(|_| ())
        .map_err(|e| CniError::new(Code::NotAvailable, format!("plugin not available: {e}")))
}

fn gc(version: Version, conf: &NetConf) -> Result<(), CniError> {
    if !version.has_status_and_gc() {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!("GC needs cniVersion 1.1.0, got {}", conf.cni_version),
        ));
    }
    let cfg = subnet_config(conf)?;
    let keep: Vec<netcore::VnicId> = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| netcore::VnicId {
            owner: a.container_id.clone(),
            ifname: a.ifname.clone(),
        })
        .collect();
    let mut node = open_node(conf)?;
    node.gc(Some(&cfg.net_key()), &keep)?;
    Ok(())
}
