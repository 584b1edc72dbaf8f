//! Controller mode on a compute node: subnets whose workloads named no CNCI ask the controller
//! for it (EVENT CnciRequest, after every (re)connect and every [`REQUEST_EVERY`] while any
//! waits), and the controller's answer (COMMAND CnciAssignment) gives them their tunnel
//! through [`netcore::Node::assign_cnci`], which queues the TenantAdded that delivery sends.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use netcore::{AssignOutcome, Awaiting, Cnci, Kernel, Node, RefuseOutcome};
use ssntp::frame::{command, error, event, kind, Frame};
use ssntp::payloads::{CnciAssignment, CnciRefused, CnciRequest, Ipv4Subnet, Payload};
use uuid::Uuid;

/// How often the subnets still awaiting their CNCI ask again while connected.
pub const REQUEST_EVERY: Duration = Duration::from_secs(2);

/// One CnciRequest frame per awaiting subnet. `agent_ip` is the subnet's underlay address if
/// the node found one, else `fallback` (the source address toward the scheduler).
pub fn requests(agent: Uuid, awaiting: &[Awaiting], fallback: Option<Ipv4Addr>) -> Vec<Frame> {
    awaiting
        .iter()
        .filter_map(|a| {
            let subnet = Ipv4Subnet::new(a.subnet.network(), a.subnet.prefix_len())?;
            let ip = a.agent_ip.or(fallback).unwrap_or(Ipv4Addr::UNSPECIFIED);
            let payload = CnciRequest::new(agent, a.tenant, subnet, ip).to_yaml();
            Some(Frame::new(kind::EVENT, event::CNCI_REQUEST, agent, payload))
        })
        .collect()
}

/// The local address the kernel would use toward `scheduler` (`host:port`): a UDP socket is
/// connected, which sends nothing. `None` if it cannot be resolved or routed.
pub fn source_toward(scheduler: &str) -> Option<Ipv4Addr> {
    let addr = scheduler
        .to_socket_addrs()
        .ok()?
        .find(SocketAddr::is_ipv4)?;
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect(addr).ok()?;
    match socket.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
        _ => None,
    }
}

/// True for a COMMAND CnciAssignment.
pub fn is_assignment(frame: &Frame) -> bool {
    (frame.kind, frame.operand) == (kind::COMMAND, command::CNCI_ASSIGNMENT)
}

/// True for an ERROR CnciRefused.
pub fn is_refusal(frame: &Frame) -> bool {
    (frame.kind, frame.operand) == (kind::ERROR, error::CNCI_REFUSED)
}

/// What became of one CnciAssignment or CnciRefused frame.
#[derive(Debug)]
pub enum Handled {
    /// Applied to the node's subnet `(tenant, subnet)` (the outcome says how).
    Assigned {
        outcome: AssignOutcome,
        tenant: Uuid,
        subnet: ipnet::Ipv4Net,
    },
    /// The controller refused `subnet` for `reason`; the outcome says what the node recorded.
    Withheld {
        outcome: RefuseOutcome,
        subnet: ipnet::Ipv4Net,
        reason: String,
    },
    /// For another node, or unreadable: ignored (and logged).
    Ignored(String),
    /// Readable and for this node, but the node refused it (and logged).
    Refused(netcore::Error),
}

/// Applies a CnciAssignment frame addressed to `agent` to `node`: the payload is checked with
/// its accessors; a frame for another agent or an unreadable one is ignored.
pub fn handle_assignment<K: Kernel>(node: &mut Node<K>, agent: Uuid, frame: &Frame) -> Handled {
    let parsed = CnciAssignment::from_yaml(&frame.payload).and_then(|p| {
        Ok((
            p.agent()?,
            p.tenant()?,
            p.subnet()?,
            Cnci {
                uuid: p.concentrator()?,
                ip: p.concentrator_ip()?,
            },
            p.0.tunnel_kind,
            p.tunnel_id()?,
        ))
    });
    let (to, tenant, subnet, cnci, tunnel_kind, tunnel_id) = match parsed {
        Ok(fields) => fields,
        Err(e) => return Handled::Ignored(format!("an unreadable CnciAssignment: {e}")),
    };
    let subnet = match local_subnet("CnciAssignment", to, agent, subnet) {
        Ok(net) => net,
        Err(ignored) => return ignored,
    };
    tracing::info!(
        %tenant, %subnet, cnci = %cnci.uuid, cnci_ip = %cnci.ip, %tunnel_kind, tunnel_id,
        "CNCI assignment"
    );
    match node.assign_cnci(tenant, subnet, cnci, tunnel_kind, tunnel_id) {
        Ok(outcome) => Handled::Assigned {
            outcome,
            tenant,
            subnet,
        },
        Err(e) => Handled::Refused(e),
    }
}

/// The subnet of a frame `what` addressed to agent `to`, if that is this node (`agent`);
/// otherwise the frame is ignored.
fn local_subnet(
    what: &str,
    to: Uuid,
    agent: Uuid,
    subnet: Ipv4Subnet,
) -> Result<ipnet::Ipv4Net, Handled> {
    if to != agent {
        return Err(Handled::Ignored(format!(
            "a {what} for agent {to}, not this node ({agent})"
        )));
    }
    ipnet::Ipv4Net::new(subnet.network(), subnet.prefix_len())
        .map_err(|e| Handled::Ignored(e.to_string()))
}

/// Records a CnciRefused frame addressed to `agent` in `node`: the subnet stops asking and
/// new attaches into it fail naming the reason.
pub fn handle_refusal<K: Kernel>(node: &mut Node<K>, agent: Uuid, frame: &Frame) -> Handled {
    let parsed = CnciRefused::from_yaml(&frame.payload)
        .and_then(|p| Ok((p.agent()?, p.tenant()?, p.subnet()?, p.0.reason)));
    let (to, tenant, subnet, reason) = match parsed {
        Ok(fields) => fields,
        Err(e) => return Handled::Ignored(format!("an unreadable CnciRefused: {e}")),
    };
    let subnet = match local_subnet("CnciRefused", to, agent, subnet) {
        Ok(net) => net,
        Err(ignored) => return ignored,
    };
    match node.refuse_cnci(tenant, subnet, &reason) {
        Ok(outcome) => Handled::Withheld {
            outcome,
            subnet,
            reason,
        },
        Err(e) => Handled::Refused(e),
    }
}

impl Handled {
    /// Logs the result; true if a TenantAdded was queued (delivery should send it now).
    pub fn log(&self) -> bool {
        match self {
            Handled::Assigned { outcome, .. } => {
                tracing::info!(?outcome, "CNCI assignment applied");
                self.new_tunnel().is_some()
            }
            Handled::Withheld {
                outcome,
                subnet,
                reason,
            } => {
                tracing::warn!(
                    %subnet, ?outcome,
                    "the controller refuses a CNCI for this subnet: {reason}; \
                     it is no longer asked for, and new attaches into it fail"
                );
                false
            }
            Handled::Ignored(why) => {
                tracing::warn!("ignoring {why}");
                false
            }
            Handled::Refused(e) => {
                tracing::error!("cannot apply the CNCI assignment: {e}");
                false
            }
        }
    }

    /// The subnet whose tunnel this assignment just made (created or replaced), if any.
    pub fn new_tunnel(&self) -> Option<(Uuid, ipnet::Ipv4Net)> {
        match self {
            Handled::Assigned {
                outcome: AssignOutcome::Created | AssignOutcome::Replaced,
                tenant,
                subnet,
            } => Some((*tenant, *subnet)),
            _ => None,
        }
    }
}

/// Nudges the waiting ARP entries of a subnet whose tunnel just came up
/// ([`netcore::arp_nudge`]), on a blocking thread, after the TenantAdded went out. Best
/// effort: what failed is logged.
pub fn nudge_in_background(state_dir: std::path::PathBuf, tenant: Uuid, subnet: ipnet::Ipv4Net) {
    tokio::task::spawn_blocking(move || {
        let state = match netcore::state::StateDir::open(&state_dir) {
            Ok(state) => state,
            Err(e) => return tracing::warn!(%subnet, "no ARP nudge: {e}"),
        };
        let done = netcore::arp_nudge::nudge_repeatedly(&state, tenant, subnet);
        tracing::info!(
            %tenant, %subnet, garps = done.garps, requests = done.requests.len(),
            failures = done.failures.len(), "ARP nudge after the tunnel came up"
        );
        for (from, target) in &done.requests {
            tracing::debug!(%from, %target, "ARP request on a workload's behalf");
        }
        for e in &done.failures {
            tracing::warn!(%subnet, "ARP nudge: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcore::fake::{FakeKernel, FakeWorld};
    use netcore::{SubnetConfig, TunnelKind, VnicId, VnicKind, VnicRequest};
    use ssntp::payloads::CnciAssignmentCmd;

    const TENANT: Uuid = Uuid::from_u128(0x7e4a);
    const CNCI: Uuid = Uuid::from_u128(0xc0c1);

    /// A fake node (uplink 192.0.2.10/24) with one workload attached in controller mode.
    struct Fixture {
        world: FakeWorld,
        node: Node<FakeKernel>,
        agent: Uuid,
        _dir: tempfile::TempDir,
        _netns: tempfile::NamedTempFile,
    }

    fn fixture() -> Fixture {
        let world = FakeWorld::with_uplink();
        let netns = tempfile::NamedTempFile::new().expect("netns file");
        world.add_netns(netns.path()).expect("netns");
        let dir = tempfile::tempdir().expect("state dir");
        let mut node = world.node(dir.path()).expect("node");
        let subnet = SubnetConfig::controlled(TENANT, "10.6.0.0/24".parse().expect("subnet"));
        let req = VnicRequest {
            id: VnicId {
                owner: "c1".into(),
                ifname: "eth0".into(),
            },
            kind: VnicKind::Veth {
                netns: netns.path().into(),
                ifname: "eth0".into(),
            },
            ip: None,
            mac: None,
            default_route: true,
            allowed: Vec::new(),
            security_groups: Vec::new(),
        };
        node.attach(&subnet, &req).expect("attach");
        let agent = node.identity().expect("identity");
        Fixture {
            world,
            node,
            agent,
            _dir: dir,
            _netns: netns,
        }
    }

    fn assignment(agent: Uuid, id: u32) -> Frame {
        let cmd = CnciAssignment(CnciAssignmentCmd {
            agent_uuid: agent.to_string(),
            tenant_uuid: TENANT.to_string(),
            subnet: "10.6.0.0/24".into(),
            concentrator_uuid: CNCI.to_string(),
            concentrator_ip: "192.0.2.1".into(),
            tunnel_kind: TunnelKind::Vxlan,
            tunnel_id: id,
        });
        Frame::new(
            kind::COMMAND,
            command::CNCI_ASSIGNMENT,
            Uuid::from_u128(0xc0),
            cmd.to_yaml(),
        )
    }

    #[test]
    fn an_awaiting_subnet_is_asked_for_with_the_fallback_address() {
        let mut f = fixture();
        let awaiting = f.node.awaiting_cnci().expect("awaiting");
        let frames = requests(f.agent, &awaiting, Some(Ipv4Addr::new(198, 51, 100, 7)));
        assert_eq!(frames.len(), 1);
        assert_eq!(
            (frames[0].kind, frames[0].operand),
            (kind::EVENT, event::CNCI_REQUEST)
        );
        let req = CnciRequest::from_yaml(&frames[0].payload).expect("payload");
        assert_eq!(req.agent().expect("agent"), f.agent);
        assert_eq!(req.tenant().expect("tenant"), TENANT);
        assert_eq!(req.subnet().expect("subnet").to_string(), "10.6.0.0/24");
        // No default route on the fake node: no underlay address known, so the fallback.
        assert_eq!(req.agent_ip().expect("ip"), Ipv4Addr::new(198, 51, 100, 7));
    }

    #[test]
    fn an_assignment_frame_gives_the_subnet_its_tunnel_once() {
        let mut f = fixture();
        let frame = assignment(f.agent, 4242);
        assert!(is_assignment(&frame));
        let handled = handle_assignment(&mut f.node, f.agent, &frame);
        assert!(
            matches!(
                handled,
                Handled::Assigned {
                    outcome: AssignOutcome::Created,
                    ..
                }
            ),
            "{handled:?}"
        );
        assert!(handled.log());
        assert_eq!(
            handled.new_tunnel(),
            Some((TENANT, "10.6.0.0/24".parse().expect("subnet")))
        );
        let view = f.node.view().expect("view");
        assert_eq!(view.nets[0].net.tunnel_id, 4242);
        assert_eq!(view.pending_reports.len(), 1, "TenantAdded queued");
        assert_eq!(view.pending_reports[0].concentrator_uuid, CNCI);
        assert!(f.node.awaiting_cnci().expect("awaiting").is_empty());
        assert!(requests(f.agent, &[], None).is_empty());
        let again = handle_assignment(&mut f.node, f.agent, &frame);
        assert!(matches!(
            again,
            Handled::Assigned {
                outcome: AssignOutcome::Unchanged,
                ..
            }
        ));
        assert_eq!(again.new_tunnel(), None);
        assert!(!again.log());
        let tunnels = f
            .world
            .snapshot()
            .ns("host")
            .links
            .values()
            .filter(|l| l.kind == "vxlan")
            .count();
        assert_eq!(tunnels, 1);
    }

    fn refusal(agent: Uuid) -> Frame {
        let payload = CnciRefused::new(agent, TENANT, "10.6.0.0/24", "overlaps 10.6.0.0/16");
        Frame::new(
            kind::ERROR,
            error::CNCI_REFUSED,
            Uuid::from_u128(0xc0),
            payload.to_yaml(),
        )
    }

    #[test]
    fn a_refusal_frame_stops_the_requests_and_one_for_another_node_is_ignored() {
        let mut f = fixture();
        let other = handle_refusal(&mut f.node, f.agent, &refusal(Uuid::from_u128(9)));
        assert!(matches!(other, Handled::Ignored(ref why) if why.contains("not this node")));
        assert_eq!(f.node.awaiting_cnci().expect("awaiting").len(), 1);
        let frame = refusal(f.agent);
        assert!(is_refusal(&frame) && !is_assignment(&frame));
        let handled = handle_refusal(&mut f.node, f.agent, &frame);
        assert!(
            matches!(
                handled,
                Handled::Withheld {
                    outcome: RefuseOutcome::Recorded,
                    ..
                }
            ),
            "{handled:?}"
        );
        assert!(!handled.log(), "nothing to send");
        let awaiting = f.node.awaiting_cnci().expect("awaiting");
        assert!(requests(f.agent, &awaiting, None).is_empty());
    }

    #[test]
    fn an_assignment_for_another_node_or_unreadable_is_ignored() {
        let mut f = fixture();
        let other = handle_assignment(&mut f.node, f.agent, &assignment(Uuid::from_u128(9), 7));
        assert!(matches!(other, Handled::Ignored(ref why) if why.contains("not this node")));
        let mut bad = assignment(f.agent, 7);
        bad.payload = b"cnci_assignment:\n  agent_uuid: nope\n".to_vec();
        assert!(matches!(
            handle_assignment(&mut f.node, f.agent, &bad),
            Handled::Ignored(_)
        ));
        let out_of_range = handle_assignment(&mut f.node, f.agent, &assignment(f.agent, 1 << 24));
        assert!(
            matches!(out_of_range, Handled::Ignored(_)),
            "{out_of_range:?}"
        );
        assert_eq!(f.node.awaiting_cnci().expect("awaiting").len(), 1);
        assert!(f.node.view().expect("view").pending_reports.is_empty());
    }
}
