//! QEMU's tap hooks: `ciao-qemu-ifup` and `ciao-qemu-ifdown`.
//!
//! QEMU runs them as `-netdev tap,ifname=<tap>,script=ciao-qemu-ifup,downscript=ciao-qemu-ifdown`
//! with the tap name as the only argument, in its own environment and network namespace
//! (reference/qemu-hooks.md §4). They are thin: the tap's configuration ([`config`]) becomes one
//! `netcore` call, `Node::attach_existing_tap` or `Node::detach_tap`.

pub mod config;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use netcore::{Attachment, Node, NodeConfig, VnicId, VnicKind, VnicRequest};

pub use config::{HookConfig, Lookup};

/// What can go wrong in a hook; every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("usage: {0} <tap>  (QEMU runs it as -netdev tap,ifname=<tap>,script=...)")]
    Usage(String),
    #[error("{0} is missing")]
    Missing(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// No subnet configured and none from the controller (reason from `netcore::auto_subnet`).
    #[error("{0}")]
    AutoSubnet(String),
    #[error(transparent)]
    Core(#[from] netcore::Error),
}

impl Error {
    /// 2 for usage and configuration errors, 1 for everything else; QEMU only needs non-zero.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_)
            | Error::Missing(_)
            | Error::Invalid { .. }
            | Error::File { .. }
            | Error::AutoSubnet(_) => 2,
            // The core refused the configured subnet (one the controller refused, or one
            // overlapping another of the tenant's on this node). Other refusals of the core
            // (e.g. a missing tap) are failed attaches: 1, as documented.
            Error::Core(netcore::Error::Invalid { field, .. }) if field == "subnet" => 2,
            _ => 1,
        }
    }
}

/// The tap name from QEMU's argv (without the program name): exactly one valid interface name.
pub fn tap_from_args(prog: &str, args: &[OsString]) -> Result<String, Error> {
    let [arg] = args else {
        return Err(Error::Usage(prog.to_string()));
    };
    let tap = arg
        .to_str()
        .ok_or_else(|| Error::Usage(prog.to_string()))?
        .to_string();
    netcore::config::validate_ifname("tap name", &tap).map_err(|_| Error::Invalid {
        field: "tap name".into(),
        message: format!("{tap:?} is not an interface name (1-15 bytes, no '/', ':' or spaces)"),
    })?;
    Ok(tap)
}

/// What ifup did.
#[derive(Debug)]
pub struct Up {
    pub config: HookConfig,
    pub attachment: Attachment,
    /// Records of a previous VM with this tap name that was killed without its ifdown.
    pub stale_removed: Vec<String>,
}

/// Attaches QEMU's tap `tap` to its tenant subnet's bridge (creating bridge and tunnel and
/// queueing TenantAdded if it is the subnet's first VNIC on this node). On any error nothing
/// stays attached.
pub fn ifup(tap: &str, env: Lookup<'_>) -> Result<Up, Error> {
    let config = config::load(tap, env)?;
    let mut node = Node::open(&NodeConfig {
        state_dir: config.state_dir.clone(),
    })?;
    let request = VnicRequest {
        id: VnicId {
            owner: config.vm_id.clone(),
            ifname: tap.to_string(),
        },
        kind: VnicKind::Tap {
            name: tap.to_string(),
            uid: None,
            gid: None,
        },
        ip: Some(config.ip),
        // For a tap the MAC that matters is the guest's (QEMU's -device mac=); the tap keeps its own.
        mac: Some(config.mac),
        default_route: false,
        allowed: config.allowed.clone(),
        security_groups: config.security_groups.clone(),
    };
    // The core checks that the tap exists and drops records a killed QEMU left for its name.
    let done = node.attach_existing_tap(&config.subnet, &request)?;
    Ok(Up {
        config,
        attachment: done.attachment,
        stale_removed: done.stale_removed,
    })
}

/// Detaches whatever is recorded for tap `tap` on this node (the last VNIC of a subnet takes its
/// tunnel and bridge, and queues TenantRemoved). Succeeds when nothing is attached, when the tap
/// has vanished, and when run twice. Returns the detached VNICs' keys.
pub fn ifdown(tap: &str, env: Lookup<'_>) -> Result<Vec<String>, Error> {
    let state_dir: PathBuf = config::state_dir_for_cleanup(tap, env);
    // No state directory: nothing was ever attached with it; don't create one.
    if !state_dir.join("reports").is_dir() {
        return Ok(Vec::new());
    }
    let mut node = Node::open(&NodeConfig { state_dir })?;
    Ok(node.detach_tap(tap)?)
}

const HELP: &str = "\
QEMU runs this hook with the tap name as its only argument:
  -netdev tap,id=n0,ifname=<tap>,script=ciao-qemu-ifup,downscript=ciao-qemu-ifdown
  -device virtio-net-pci,netdev=n0,mac=02:00:a:b:c:d   (ciao's MAC of the VM's IP a.b.c.d)
Configuration: <CIAO_VNIC_DIR or /run/ciao/vnics>/<tap>.json if it exists, else the environment:
  CIAO_TENANT CIAO_SUBNET CIAO_CNCI_UUID CIAO_CNCI_IP CIAO_VM_IP (required)
  CIAO_VM_MAC CIAO_VM_ID CIAO_TUNNEL_KIND CIAO_TUNNEL_ID CIAO_GATEWAY CIAO_MTU CIAO_UNDERLAY
  CIAO_ALLOWED_ADDRESSES (extra source addresses the VM may use, e.g. a VRRP VIP)
  CIAO_STATE_DIR (default /var/lib/ciao-net)
Exit status: 0 done, 2 usage or configuration error, 1 any other error (one line on stderr).
";

/// Runs a hook as a binary does: `prog` for messages, argv without the program name, the
/// process environment. Prints a one-line error on stderr and returns the exit code.
pub fn main_with(prog: &str, hook: fn(&str, Lookup<'_>) -> Result<(), Error>) -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if matches!(args.first().and_then(|a| a.to_str()), Some("-h" | "--help")) {
        print!("{prog}: attaches or detaches a QEMU tap of a ciao tenant subnet.\n{HELP}");
        return ExitCode::SUCCESS;
    }
    let env = |k: &str| std::env::var_os(k);
    let (message, code) = match tap_from_args(prog, &args) {
        Err(e) => (e.to_string(), e.exit_code()),
        Ok(tap) => match hook(&tap, &env) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => (format!("{tap}: {e}"), e.exit_code()),
        },
    };
    eprintln!("{prog}: {}", message.replace('\n', " "));
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::Error;

    /// The subnet the core refuses at attach (one the controller refused, one overlapping
    /// another of the tenant's on the node) is a configuration error: exit 2, as the hook's
    /// own checks; anything else the core fails with (a missing tap) is 1.
    #[test]
    fn the_cores_invalid_value_exits_2_other_core_errors_1() {
        let invalid = Error::Core(netcore::Error::Invalid {
            field: "subnet".into(),
            message: "10.1.2.0/24 overlaps 10.1.0.0/16".into(),
        });
        assert_eq!(invalid.exit_code(), 2);
        let no_tap = Error::Core(netcore::Error::Invalid {
            field: "tap".into(),
            message: "tap vm0 does not exist in this network namespace".into(),
        });
        assert_eq!(no_tap.exit_code(), 1, "a failed attach, as documented");
        assert_eq!(
            Error::Core(netcore::Error::Conflict("in use".into())).exit_code(),
            1
        );
    }
}
