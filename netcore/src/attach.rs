//! The compute-node attach/detach logic shared by every front end.
//!
//! The first VNIC of a tenant subnet on a node creates the subnet bridge and the tunnel to the
//! tenant's CNCI and queues a TenantAdded report (in controller mode, without a CNCI, only the
//! bridge: the tunnel comes with the controller's assignment, see [`crate::assign`]); the last one to leave removes both and queues
//! TenantRemoved. Every call holds the node lock and writes a journal entry before it touches
//! the kernel, so a call killed at any step is finished or undone by the next one.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};

use ipnet::{IpNet, Ipv4Net};
use uuid::Uuid;

use crate::config::{Cnci, NodeConfig, SubnetConfig, VnicId, VnicKind, VnicRequest};
use crate::crash::crash_point;
use crate::error::{Error, Result};
use crate::ids;
use crate::ipam;
use crate::kernel::Kernel;
use crate::netlink::{LinkChange, LinkKind, Netlink, NewLink, Route, VethPeer};
use crate::netns;
use crate::state::{Journal, Locked, StateDir, VnicRecord};
use crate::subnet::{check_same_network, create_net, plan_net, repair_net};
use crate::teardown;

/// What an attach produced, for the front end's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub vnic: VnicRecord,
    /// Address with the subnet's prefix length.
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub bridge: String,
    pub bridge_mac: Option<[u8; 6]>,
    pub host_mac: Option<[u8; 6]>,
    /// True if this attach created the subnet's bridge and tunnel on this node.
    pub first_instance: bool,
    /// True if this attach installed the default route in the workload. False when none was
    /// asked for, and when the workload already had one (it is left as it is: replacing a
    /// route another plugin made would hijack that workload's traffic).
    pub default_route: bool,
}

/// One compute node: its state directory and its kernel (a netlink socket in the caller's
/// namespace, or a fake in tests).
pub struct Node<K: Kernel = Netlink> {
    pub(crate) state: StateDir,
    pub(crate) nl: K,
}

impl Node<Netlink> {
    /// Opens the node's state directory and a netlink socket in the calling thread's network
    /// namespace, which the state directory must own (see [`crate::claim`]).
    pub fn open(cfg: &NodeConfig) -> Result<Self> {
        let state = StateDir::open(&cfg.state_dir)?;
        crate::claim::claim_namespace(state.root())?;
        Ok(Self {
            state,
            nl: Netlink::open()?,
        })
    }
}

impl<K: Kernel> Node<K> {
    /// A node on the state directory of `cfg` with the kernel `nl` (a fake in tests). Unlike
    /// [`Node::open`] it claims no namespace: `nl` need not be the calling thread's.
    pub fn with_kernel(cfg: &NodeConfig, nl: K) -> Result<Self> {
        Ok(Self {
            state: StateDir::open(&cfg.state_dir)?,
            nl,
        })
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// Takes the node lock and first finishes or undoes whatever a killed call left behind.
    /// Returns the lock and the netlink socket as disjoint borrows.
    pub(crate) fn lock_and_recover(&mut self) -> Result<(Locked<'_>, &mut K)> {
        let locked = self.state.lock()?;
        recover(&mut self.nl, &locked)?;
        Ok((locked, &mut self.nl))
    }

    /// Attaches one VNIC to its tenant subnet's bridge, creating bridge and tunnel if first.
    pub fn attach(&mut self, cfg: &SubnetConfig, req: &VnicRequest) -> Result<Attachment> {
        cfg.validate()?;
        req.id.validate()?;
        if let Some(ip) = req.ip {
            ipam::check_requested(cfg, ip)?;
        }
        ipam::check_allowed(cfg, &req.allowed)?;
        let security_groups = crate::secgroups::check_names(&req.security_groups)?;
        let net_key = cfg.net_key();
        let vnic_key = req.id.key();

        let state_root = self.state.root().to_owned();
        let (locked, nl) = self.lock_and_recover()?;
        // Everything that can be checked without side effects is checked before any change.
        let container = match &req.kind {
            VnicKind::Veth {
                netns: path,
                ifname,
            } => {
                crate::config::validate_ifname("interface name", ifname)?;
                let fd = netns::open(path)?;
                if nl.is_own_netns(fd.as_fd())? {
                    return Err(Error::invalid(
                        "netns",
                        format!(
                            "{} is this node's own network namespace, not a workload's",
                            path.display()
                        ),
                    ));
                }
                let mut inside = nl.open_in(fd.as_fd())?;
                if inside.link_by_name(ifname)?.is_some() {
                    return Err(Error::Conflict(format!(
                        "interface {ifname} already exists in {}",
                        path.display()
                    )));
                }
                Some((fd, inside))
            }
            VnicKind::Handoff { ifname } => {
                crate::config::validate_ifname("interface name", ifname)?;
                if nl.link_by_name(ifname)?.is_some() {
                    return Err(Error::Conflict(format!(
                        "interface {ifname} already exists on this node"
                    )));
                }
                None
            }
            VnicKind::Tap { name, .. } => {
                crate::config::validate_ifname("tap name", name)?;
                None
            }
        };

        if let Some(existing) = locked.vnic(&net_key, &req.id)? {
            return Err(Error::Conflict(format!(
                "{} is already attached to {} as {}",
                vnic_key, cfg.subnet, existing.host_ifname
            )));
        }
        if let Some(mac) = req.mac {
            let bridge_mac = ids::bridge_mac(cfg.tenant, cfg.subnet);
            crate::config::validate_mac("mac", mac, bridge_mac)?;
        }
        if let Some(cnci) = cfg.cnci {
            check_cnci_not_local(nl, cnci)?;
        }
        let node_tag = locked.node_tag()?;
        let existing_net = locked.net(&net_key)?;
        let net = match &existing_net {
            Some(net) => {
                crate::refuse::check_not_refused(net)?;
                check_same_network(net, cfg)?;
                net.clone()
            }
            None => {
                let nets = locked.nets()?;
                crate::refuse::check_no_overlap(&nets, cfg.tenant, cfg.subnet)?;
                let mut net = plan_net(nl, cfg)?;
                // Chosen under the state lock and written with the record, before any flow.
                net.ct_zone = crate::secgroups::free_zone(&nets, &net.bridge);
                net
            }
        };
        let host_ifname = match &req.kind {
            VnicKind::Veth { ifname, .. } | VnicKind::Handoff { ifname } => {
                ids::host_veth_name(&net_key, &req.id.owner, ifname)
            }
            VnicKind::Tap { name, .. } => name.clone(),
        };
        let existing_tap = match &req.kind {
            VnicKind::Tap { name, .. } => nl.link_by_name(name)?,
            VnicKind::Veth { .. } | VnicKind::Handoff { .. } => None,
        };
        if let (Some(link), VnicKind::Tap { name, .. }) = (&existing_tap, &req.kind) {
            if link.master.is_some() {
                return Err(Error::Conflict(format!(
                    "tap {name} is already attached to a bridge"
                )));
            }
        }

        // The planned record goes into the journal before anything changes.
        let mut vnic = VnicRecord {
            net: net_key.clone(),
            id: req.id.clone(),
            kind: req.kind.clone(),
            host_ifname,
            ip: req.ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            mac: String::new(),
            mtu: net.mtu,
            created_tap: matches!(req.kind, VnicKind::Tap { .. }) && existing_tap.is_none(),
            allowed: req.allowed.clone(),
            security_groups,
        };
        locked.write_journal(&Journal::Attach { vnic: vnic.clone() })?;
        crash_point(1);

        let mut default_route = false;
        let result = (|| -> Result<Attachment> {
            let first_instance = existing_net.is_none();
            let bridge = if first_instance {
                create_net(nl, &locked, &net)?
            } else {
                repair_net(nl, &node_tag, &net)?
            };
            // The journal has no address yet: an undo releases whatever this VNIC holds.
            let ip = ipam::reserve(&locked, cfg, &net_key, &vnic_key, req.ip)?;
            vnic.ip = ip;
            let mac = req.mac.unwrap_or_else(|| ids::mac_from_ip(ip));
            vnic.mac = ids::format_mac(mac);
            crash_point(6);
            // Guarded before the port exists (or, for QEMU's tap, is on the bridge and up): it
            // never carries an unchecked frame. An undo removes the guard with the port.
            let guard = vnic
                .guard()
                .ok_or_else(|| Error::Internal("a VNIC without address or MAC".into()))?;
            nl.guard_port(&guard)?;
            if !vnic.security_groups.is_empty() {
                // Fail closed until the node daemon has the port in its security groups.
                nl.sg_pending(&net.bridge, ip)?;
            }

            let address = Ipv4Net::new(ip, cfg.subnet.prefix_len())
                .map_err(|e| Error::Internal(e.to_string()))?;
            let gateway = cfg.gateway();
            let host_mac = match &req.kind {
                VnicKind::Veth { ifname, .. } | VnicKind::Handoff { ifname } => {
                    // A hand-off veth keeps its far end here, down and without an address: the
                    // runtime (Docker) moves it into the workload and configures it there.
                    let far_netns = match (&req.kind, &container) {
                        (_, Some((fd, _))) => Some(fd.as_raw_fd()),
                        (VnicKind::Handoff { .. }, None) => None,
                        _ => return Err(Error::Internal("no netns handle".into())),
                    };
                    let host = nl
                        .create_link(&NewLink {
                            name: vnic.host_ifname.clone(),
                            kind: LinkKind::Veth(VethPeer {
                                name: ifname.clone(),
                                mac: Some(mac),
                                mtu: Some(net.mtu),
                                netns: far_netns,
                                // The kernel refuses to open a veth end before its peer is linked
                                // (ENOTCONN), so the far end comes up in a second step.
                                up: false,
                            }),
                            mtu: Some(net.mtu),
                            mac: None,
                            master: Some(bridge.index),
                            up: false,
                        })
                        .map_err(|e| bridge_full(e, &net.bridge))?;
                    crash_point(7);
                    nl.disable_ipv6(&vnic.host_ifname)?;
                    nl.change_link(
                        host.index,
                        &LinkChange {
                            up: Some(true),
                            alias: Some(ids::vnic_alias(&node_tag, &net_key, &vnic_key)),
                            ..LinkChange::default()
                        },
                    )?;
                    if let Some((_, mut inside)) = container {
                        let peer = inside.link_by_name(ifname)?.ok_or_else(|| {
                            Error::Internal(format!("{ifname} vanished from the container"))
                        })?;
                        inside.set_up(peer.index, true)?;
                        inside.add_address(peer.index, IpNet::V4(address))?;
                        if req.default_route {
                            default_route = inside.add_route_new(&Route {
                                dst: "0.0.0.0/0"
                                    .parse()
                                    .map_err(|_| Error::Internal("net".into()))?,
                                gateway: Some(IpAddr::V4(gateway)),
                                oif: peer.index,
                            })?;
                        }
                    }
                    host.mac
                }
                VnicKind::Tap { name, .. } => {
                    if vnic.created_tap {
                        nl.create_tap(name, req.kind.tap_owner())?;
                    }
                    crash_point(7);
                    let link = nl
                        .link_by_name(name)?
                        .ok_or_else(|| Error::Internal(format!("tap {name} vanished")))?;
                    nl.disable_ipv6(name)?;
                    nl.change_link(
                        link.index,
                        &LinkChange {
                            up: Some(true),
                            alias: Some(ids::vnic_alias(&node_tag, &net_key, &vnic_key)),
                            mtu: Some(net.mtu),
                            master: Some(bridge.index),
                        },
                    )
                    .map_err(|e| bridge_full(e, &net.bridge))?;
                    // For a tap the MAC that matters is the guest's.
                    Some(mac)
                }
            };
            crash_point(8);
            locked.write_vnic(&vnic)?;
            crash_point(9);
            Ok(Attachment {
                vnic: vnic.clone(),
                address,
                gateway,
                bridge: net.bridge.clone(),
                bridge_mac: bridge.mac,
                host_mac,
                first_instance,
                default_route,
            })
        })();

        match result {
            Ok(att) => {
                locked.clear_journal()?;
                // A new subnet, or a filtered port: the daemon acts now, not at its next poll.
                if att.first_instance || !vnic.security_groups.is_empty() {
                    crate::auto_subnet::poke(&state_root);
                }
                Ok(att)
            }
            Err(err) => {
                // Undo everything this call did; report the original error, and the undo's too.
                let undo =
                    teardown::vnic(nl, &locked, &vnic, true).and_then(|()| locked.clear_journal());
                match undo {
                    Ok(()) => Err(err),
                    Err(undo_err) => Err(Error::Internal(format!(
                        "{err}; cleaning up after it also failed: {undo_err}"
                    ))),
                }
            }
        }
    }

    /// Detaches one VNIC; the last one of its subnet removes the tunnel and the bridge.
    /// Detaching something that is not attached succeeds.
    pub fn detach(&mut self, net_key: &str, id: &VnicId) -> Result<()> {
        let state_root = self.state.root().to_owned();
        let (locked, nl) = self.lock_and_recover()?;
        let Some(vnic) = locked.vnic(net_key, id)? else {
            return Ok(());
        };
        locked.write_journal(&Journal::Detach {
            net: net_key.to_string(),
            vnic: id.clone(),
        })?;
        teardown::vnic(nl, &locked, &vnic, false)?;
        locked.clear_journal()?;
        // A filtered port: the daemon drops its security-group entries now.
        if !vnic.security_groups.is_empty() {
            crate::auto_subnet::poke(&state_root);
        }
        Ok(())
    }

    /// The VNIC record of `id`, if attached.
    pub fn vnic(&mut self, net_key: &str, id: &VnicId) -> Result<Option<VnicRecord>> {
        let (locked, _) = self.lock_and_recover()?;
        locked.vnic(net_key, id)
    }

    /// This node's SSNTP identity.
    pub fn identity(&self) -> Result<Uuid> {
        Ok(self.state.lock()?.node_identity()?.uuid)
    }
}

/// Finishes (detach) or undoes (attach) the operation a killed call left in the journal.
pub(crate) fn recover(nl: &mut impl Kernel, locked: &Locked<'_>) -> Result<()> {
    let Some(journal) = locked.journal()? else {
        return Ok(());
    };
    match journal {
        Journal::Attach { vnic } => teardown::vnic(nl, locked, &vnic, true)?,
        Journal::Detach { net, vnic } => {
            if let Some(record) = locked.vnic(&net, &vnic)? {
                teardown::vnic(nl, locked, &record, false)?;
            } else if locked.net(&net)?.is_some() && !locked.has_vnics(&net)? {
                teardown::net(nl, locked, &net, false)?;
            }
        }
        Journal::Assign { net, since } => {
            return crate::assign::undo_assign(nl, locked, &net, since)
        }
    }
    locked.clear_journal()
}

/// Refuses a CNCI address that is one of this node's own: the tunnel would point at itself.
pub(crate) fn check_cnci_not_local(nl: &mut impl Kernel, cnci: Cnci) -> Result<()> {
    let ip = IpAddr::V4(cnci.ip);
    if nl.addresses(None)?.iter().any(|a| a.net.addr() == ip) {
        return Err(Error::invalid(
            "cnci.ip",
            format!(
                "{} is an address of this node itself, not of the tenant's CNCI",
                cnci.ip
            ),
        ));
    }
    Ok(())
}

fn bridge_full(err: Error, bridge: &str) -> Error {
    // A Linux bridge holds at most 1,023 ports; the kernel says "exchange full" (EXFULL).
    if err.errno() == Some(libc::EXFULL) {
        Error::Conflict(format!(
            "bridge {bridge} is full: a subnet can have at most 1023 workloads on one node"
        ))
    } else {
        err
    }
}
