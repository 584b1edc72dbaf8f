//! The hub and the registration handlers on netcore's recording fake kernel: no root, no
//! kernel module, milliseconds. Flood-list (and point-to-point device) convergence under any
//! sequence of TenantAdded / TenantRemoved / TenantSync, rollback when the kernel refuses a
//! step, reconcile of planted leftovers at start, and destroy going past failures. The same
//! logic keeps its root tests against the real kernel (tests/registrations_netns.rs and the
//! cluster tests); these add the cases the real kernel cannot be made to produce on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::sync::Arc;

use ipnet::Ipv4Net;
use netcore::fake::{FakeKernel, FakeWorld, Fault, Trigger};
use netcore::kernel::Kernel;
use netcore::netlink::{LinkKind, NewLink, VxlanSpec};
use netcore::TunnelKind;
use ssntp::frame::{event, kind, Frame};
use ssntp::payloads::{
    Payload, TenantAdded, TenantAddedEvent, TenantRemoved, TenantSync, TenantSyncEvent,
};
use uuid::Uuid;

use super::fake_host::FakeHost;
use super::{alias, destroy_with, Hub};
use crate::handlers::{Agent, Policy};
use crate::names;
use crate::register::Limits;
use crate::state::{AgentRecord, Store, SubnetRecord};

const UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 3);
const EIO: i32 = 5;

/// A fake network node with an underlay interface, and a CNCI's record and state directory.
struct Node {
    world: FakeWorld,
    host: Arc<FakeHost>,
    record: AgentRecord,
    state: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let world = FakeWorld::new();
        let mut k = world.kernel();
        let eth0 = k
            .create_link(&NewLink::new("eth0", LinkKind::Bridge))
            .expect("eth0");
        k.add_address(eth0.index, "10.99.0.3/24".parse().expect("net"))
            .expect("address");
        k.set_up(eth0.index, true).expect("up");
        let record = AgentRecord {
            uuid: Uuid::from_u128(0xc0c1),
            tenant: Uuid::from_u128(0x7e4a),
            netns: "cnci-fake".into(),
            underlay_ip: UNDERLAY,
            external_dev: None,
            uplink: "100.64.0.0/31".parse().expect("uplink"),
            dns: vec![],
        };
        Node {
            host: Arc::new(FakeHost::new(world.clone())),
            world,
            record,
            state: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn store(&self) -> Store {
        Store::open(self.state.path()).expect("store")
    }

    fn agent(&self) -> Agent<FakeKernel> {
        self.agent_with(64, vec![])
    }

    /// An agent with a small limit and the public range 203.0.113.8/29 (the public-IP,
    /// forward and ingress-rule tests).
    fn public_agent(&self) -> Agent<FakeKernel> {
        self.agent_with(4, vec![net("203.0.113.8/29")])
    }

    fn agent_with(&self, limit: usize, public_ranges: Vec<Ipv4Net>) -> Agent<FakeKernel> {
        let hub = Hub::open_with(self.world.kernel(), self.host.clone(), &self.record)
            .expect("hub on the fake");
        let policy = Policy {
            lease_secs: 3600,
            limits: Limits {
                max_subnets: limit,
                max_nodes_per_subnet: limit,
            },
            public_ranges,
        };
        Agent::start_with(hub, self.store(), self.record.clone(), policy).expect("agent")
    }

    /// A handle in the tenant namespace (created by the hub, or here to plant things).
    fn tenant(&self) -> FakeKernel {
        let ns = super::HubHost::ensure_netns(&*self.host, &self.record.netns).expect("netns");
        self.world.kernel().open_in(ns.as_fd()).expect("open_in")
    }

    fn body(&self, agent: Uuid, ip: Ipv4Addr, subnet: Ipv4Net, k: TunnelKind) -> TenantAddedEvent {
        TenantAddedEvent::new(
            agent,
            ip,
            self.record.tenant,
            ssntp::payloads::Ipv4Subnet::new(subnet.network(), subnet.prefix_len())
                .expect("subnet"),
            self.record.uuid,
            UNDERLAY,
        )
        .with_tunnel(k, vni(subnet))
    }

    fn added(&self, b: TenantAddedEvent) -> Frame {
        let yaml = TenantAdded(b).to_yaml();
        Frame::new(kind::EVENT, event::TENANT_ADDED, self.record.uuid, yaml)
    }

    fn removed(&self, b: TenantAddedEvent) -> Frame {
        let yaml = TenantRemoved(b).to_yaml();
        Frame::new(kind::EVENT, event::TENANT_REMOVED, self.record.uuid, yaml)
    }

    fn sync(&self, agent: Uuid, subnets: Vec<TenantAddedEvent>) -> Frame {
        let body = TenantSyncEvent {
            agent_uuid: agent.to_string(),
            concentrator_uuid: self.record.uuid.to_string(),
            tenant_uuid: self.record.tenant.to_string(),
            subnets,
        };
        Frame::new(
            kind::EVENT,
            event::TENANT_SYNC,
            agent,
            TenantSync(body).to_yaml(),
        )
    }
}

fn vni(subnet: Ipv4Net) -> u32 {
    4000 + u32::from(subnet.network().octets()[2])
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("subnet")
}

/// The tunnel ports on `bridge` by name, and the flood list of each.
fn ports(tenant: &mut FakeKernel, bridge: &str) -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
    let Some(bridge) = tenant.link_by_name(bridge).expect("lookup") else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for port in tenant.links().expect("links") {
        if port.master == Some(bridge.index) {
            let flood = super::tunnel::flood_list(tenant, port.index).expect("fdb");
            out.insert(port.name, flood);
        }
    }
    out
}

/// The kernel's tunnel ports of every recorded subnet are exactly what the record asks for:
/// one VXLAN device flooding to each registered node, or one device per node; nothing else is
/// a tunnel or an `sb…` bridge in the tenant namespace.
fn assert_converged(node: &Node, agent: &mut Agent<FakeKernel>, context: &str) {
    agent.wait_removed();
    let mut tenant = node.tenant();
    let cnci = node.record.uuid;
    for rec in agent.desired().subnets.values() {
        let nodes = rec.nodes();
        let want: BTreeMap<String, BTreeSet<Ipv4Addr>> = match rec.kind {
            TunnelKind::Vxlan => [(names::vxlan(cnci, rec.subnet), nodes.clone())].into(),
            _ => nodes
                .iter()
                .map(|n| (names::p2p(cnci, rec.subnet, *n), BTreeSet::new()))
                .collect(),
        };
        let have = ports(&mut tenant, &names::bridge(rec.subnet));
        assert_eq!(have, want, "{context}: subnet {}", rec.subnet);
        let programmed = super::programmed(&mut tenant, cnci, rec).expect("programmed");
        assert_eq!(programmed, nodes, "{context}: programmed {}", rec.subnet);
    }
    let wanted: BTreeSet<String> = agent
        .desired()
        .subnets
        .keys()
        .map(|s| names::bridge(*s))
        .collect();
    for link in tenant.links().expect("links") {
        let tunnel =
            link.name.starts_with(names::VXLAN_PREFIX) || link.name.starts_with(names::P2P_PREFIX);
        let bridge = link.name.starts_with(names::BRIDGE_PREFIX);
        assert!(
            !bridge || wanted.contains(&link.name),
            "{context}: stray bridge {}",
            link.name
        );
        assert!(
            !tunnel || link.master.is_some(),
            "{context}: unattached tunnel {}",
            link.name
        );
    }
}

/// A small deterministic generator (xorshift), so a failing sequence can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn converge_under_random_frames(kind: TunnelKind, seed: u64) {
    let node = Node::new();
    let mut agent = node.agent();
    let agents: Vec<(Uuid, Ipv4Addr)> = (0..4u8)
        .map(|i| {
            (
                Uuid::from_u128(0xa000 + u128::from(i)),
                Ipv4Addr::new(10, 99, 0, 10 + i),
            )
        })
        .collect();
    let subnets = [net("172.16.1.0/24"), net("172.16.2.0/24")];
    // The model: which agent has registered which subnet.
    let mut model: BTreeMap<Ipv4Net, BTreeMap<Uuid, Ipv4Addr>> = BTreeMap::new();
    let mut rng = Rng(seed);
    for step in 0..40 {
        let (uuid, ip) = agents[rng.below(agents.len())];
        let subnet = subnets[rng.below(subnets.len())];
        let frame = match rng.below(3) {
            0 => {
                model.entry(subnet).or_default().insert(uuid, ip);
                node.added(node.body(uuid, ip, subnet, kind))
            }
            1 => {
                if let Some(m) = model.get_mut(&subnet) {
                    m.remove(&uuid);
                }
                node.removed(node.body(uuid, ip, subnet, kind))
            }
            _ => {
                let listed: Vec<Ipv4Net> = subnets
                    .iter()
                    .copied()
                    .filter(|_| rng.below(2) == 0)
                    .collect();
                for s in &subnets {
                    let m = model.entry(*s).or_default();
                    if listed.contains(s) {
                        m.insert(uuid, ip);
                    } else {
                        m.remove(&uuid);
                    }
                }
                let entries = listed
                    .iter()
                    .map(|s| node.body(uuid, ip, *s, kind))
                    .collect();
                node.sync(uuid, entries)
            }
        };
        model.retain(|_, m| !m.is_empty());
        agent.handle(&frame);
        if rng.below(2) == 0 {
            agent.idle(); // sometimes frames queue up, sometimes the agent is idle between
        }
        let recorded: BTreeMap<Ipv4Net, BTreeMap<Uuid, Ipv4Addr>> = agent
            .desired()
            .subnets
            .values()
            .map(|r| (r.subnet, r.agents.clone()))
            .collect();
        assert_eq!(recorded, model, "{kind} seed {seed} step {step}: records");
    }
    assert_converged(&node, &mut agent, &format!("{kind} seed {seed}"));
    // A restarted agent on the same kernel and records finds nothing to change.
    drop(agent);
    let before = node.world.snapshot();
    let mut again = node.agent();
    assert_converged(&node, &mut again, &format!("{kind} seed {seed}, restarted"));
    assert_eq!(
        node.world.snapshot(),
        before,
        "{kind} seed {seed}: restart changed the kernel"
    );
}

#[test]
fn the_flood_list_ends_as_the_registered_nodes_whatever_the_frame_sequence() {
    for seed in 1..=25 {
        converge_under_random_frames(TunnelKind::Vxlan, seed);
    }
}

#[test]
fn point_to_point_devices_end_as_the_registered_nodes_whatever_the_frame_sequence() {
    for kind in [TunnelKind::Gretap, TunnelKind::Geneve] {
        for seed in 1..=10 {
            converge_under_random_frames(kind, seed);
        }
    }
}

#[test]
fn a_refused_flood_entry_rolls_the_record_and_the_kernel_back() {
    let node = Node::new();
    let mut agent = node.agent();
    let s1 = net("172.16.1.0/24");
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    let (ip_a, ip_b) = (Ipv4Addr::new(10, 99, 0, 10), Ipv4Addr::new(10, 99, 0, 11));
    agent.handle(&node.added(node.body(a, ip_a, s1, TunnelKind::Vxlan)));
    agent.idle();
    let before = node.world.snapshot();
    let on_disk = node.store().desired().expect("records");

    node.world.clear_calls();
    node.world
        .inject(Trigger::Op("fdb_append", 1), Fault::Fail(EIO));
    agent.handle(&node.added(node.body(b, ip_b, s1, TunnelKind::Vxlan)));
    agent.idle();
    assert!(node.world.calls().iter().any(|c| c.op == "fdb_append"));
    assert_eq!(
        node.store().desired().expect("records"),
        on_disk,
        "record on disk"
    );
    assert_eq!(agent.desired(), &on_disk, "record in memory");
    assert_eq!(node.world.snapshot(), before, "kernel");

    // Asked again with the kernel willing, the same frame succeeds.
    agent.handle(&node.added(node.body(b, ip_b, s1, TunnelKind::Vxlan)));
    assert_converged(&node, &mut agent, "after the retry");
    assert_eq!(agent.desired().subnets[&s1].nodes(), [ip_a, ip_b].into());
}

#[test]
fn a_new_subnet_the_kernel_refuses_leaves_no_record_and_no_device() {
    for (op, kind) in [
        ("move_to_netns", TunnelKind::Vxlan),
        ("set_master", TunnelKind::Vxlan),
        ("create_link", TunnelKind::Gretap),
        ("set_up", TunnelKind::Geneve),
    ] {
        let node = Node::new();
        let mut agent = node.agent();
        agent.wait_removed();
        let before = node.world.snapshot();
        let on_disk = node.store().desired().expect("records");
        let (a, ip) = (Uuid::from_u128(0xa), Ipv4Addr::new(10, 99, 0, 10));
        node.world.clear_calls();
        node.world.inject(Trigger::Op(op, 1), Fault::Fail(EIO));
        agent.handle(&node.added(node.body(a, ip, net("172.16.5.0/24"), kind)));
        agent.wait_removed();
        assert!(
            node.world.calls().iter().any(|c| c.op == op),
            "{op}: never reached"
        );
        assert_eq!(
            node.store().desired().expect("records"),
            on_disk,
            "{op}: disk"
        );
        assert!(agent.desired().subnets.is_empty(), "{op}: memory");
        assert_eq!(node.world.snapshot(), before, "{op} ({kind}): kernel");
    }
}

#[test]
fn leftovers_with_our_names_and_no_record_are_removed_at_start() {
    let node = Node::new();
    let cnci = node.record.uuid;
    let kept = net("172.16.1.0/24");
    let (a, ip_a) = (Uuid::from_u128(0xa), Ipv4Addr::new(10, 99, 0, 10));
    let mut rec = SubnetRecord::new(kept, TunnelKind::Vxlan, vni(kept));
    rec.agents.insert(a, ip_a);
    node.store().put_subnet(&rec).expect("record");

    let vxlan = |vni: u32| {
        LinkKind::Vxlan(VxlanSpec {
            vni,
            local: UNDERLAY,
            remote: None,
            port: netcore::netlink::VXLAN_PORT,
            underlay: None,
            learning: true,
        })
    };
    let mut tenant = node.tenant();
    // A removed subnet's bridge with its port, an unattached tunnel (killed between its move
    // and its enslaving), and someone else's bridge.
    let gone = net("172.16.8.0/24");
    let stray_bridge = tenant
        .create_link(&NewLink::new(names::bridge(gone), LinkKind::Bridge))
        .expect("plant bridge");
    let mut port = NewLink::new(names::vxlan(cnci, gone), vxlan(vni(gone)));
    port.master = Some(stray_bridge.index);
    tenant.create_link(&port).expect("plant port");
    let unattached = names::vxlan(cnci, net("172.16.9.0/24"));
    tenant
        .create_link(&NewLink::new(&unattached, vxlan(4009)))
        .expect("plant tunnel");
    tenant
        .create_link(&NewLink::new("br-other", LinkKind::Bridge))
        .expect("plant foreign");
    // In the underlay: a tunnel labelled ours (killed before its move), and another's.
    let mut underlay = node.world.kernel();
    let half = names::p2p(cnci, kept, ip_a);
    let made = underlay
        .create_link(&NewLink::new(&half, vxlan(4100)))
        .expect("plant half-made");
    underlay
        .set_alias(made.index, &alias(&node.record, &half))
        .expect("label");
    underlay
        .create_link(&NewLink::new("vx-other", vxlan(4101)))
        .expect("plant foreign");

    let mut agent = node.agent();
    assert_converged(&node, &mut agent, "after start");
    let mut tenant = node.tenant();
    let mut underlay = node.world.kernel();
    for name in [names::bridge(gone), names::vxlan(cnci, gone), unattached] {
        assert!(
            tenant.link_by_name(&name).expect("lookup").is_none(),
            "{name} left"
        );
    }
    assert!(underlay.link_by_name(&half).expect("lookup").is_none());
    assert!(tenant.link_by_name("br-other").expect("lookup").is_some());
    assert!(underlay.link_by_name("vx-other").expect("lookup").is_some());
}

#[test]
fn destroy_goes_past_failures_and_returns_every_one() {
    let node = Node::new();
    let mut agent = node.agent();
    let s1 = net("172.16.1.0/24");
    agent.handle(&node.added(node.body(
        Uuid::from_u128(0xa),
        Ipv4Addr::new(10, 99, 0, 10),
        s1,
        TunnelKind::Vxlan,
    )));
    agent.wait_removed();
    drop(agent);
    // A tunnel labelled ours left in the underlay, besides the uplink.
    let mut underlay = node.world.kernel();
    let half = names::p2p(node.record.uuid, s1, Ipv4Addr::new(10, 99, 0, 11));
    let made = underlay
        .create_link(&NewLink::new(&half, LinkKind::Bridge))
        .expect("plant");
    underlay
        .set_alias(made.index, &alias(&node.record, &half))
        .expect("label");
    let uplink = names::uplink_underlay(node.record.uuid);
    assert!(lock_uplinks(&node).contains(&uplink));

    node.host.fail_once("remove_uplink");
    node.world.clear_calls();
    node.world
        .inject(Trigger::Op("delete_link", 1), Fault::Fail(EIO));
    let public = BTreeMap::new();
    let failed = destroy_with(Ok(node.world.kernel()), &*node.host, &node.record, &public)
        .expect_err("two steps fail");
    assert_eq!(failed.0.len(), 2, "{failed}");
    assert!(
        failed.to_string().contains("remove_uplink (injected)"),
        "{failed}"
    );
    assert!(
        failed.to_string().contains("delete_link (injected)"),
        "{failed}"
    );
    // Every other step ran: the namespace is gone, and with it the uplink's underlay end.
    assert!(node.host.netns_id(&node.record.netns).is_none());
    assert_eq!(
        node.world.snapshot().namespaces.len(),
        1,
        "only the host remains"
    );
    let labelled = |k: &mut FakeKernel| {
        k.links()
            .expect("links")
            .into_iter()
            .filter(|l| {
                l.alias
                    .as_deref()
                    .is_some_and(|a| a.starts_with("ciao-hub:"))
            })
            .count()
    };
    let deletions = node
        .world
        .calls()
        .iter()
        .filter(|c| c.op == "delete_link")
        .count();
    assert_eq!(deletions, 2, "both labelled links were attempted");
    assert!(
        underlay.link_by_name(&half).expect("lookup").is_none(),
        "the deletion after the refused one ran"
    );
    // The refused one was the uplink, whose far end went with the namespace.
    assert_eq!(labelled(&mut underlay), 0);

    // A second destroy finishes the job.
    destroy_with(Ok(node.world.kernel()), &*node.host, &node.record, &public)
        .expect("second destroy");
    assert_eq!(labelled(&mut underlay), 0);
    assert!(node.host.tables(None).is_empty());
    assert!(lock_uplinks(&node).is_empty(), "its elements are gone");
}

#[test]
fn destroy_without_a_kernel_handle_still_deletes_the_namespace_and_rules() {
    let node = Node::new();
    drop(node.agent());
    let refused = Err(crate::Error::Invalid("no netlink socket (injected)".into()));
    let failed = destroy_with::<FakeKernel>(refused, &*node.host, &node.record, &BTreeMap::new())
        .expect_err("one step fails");
    assert_eq!(failed.0.len(), 1, "{failed}");
    assert!(node.host.netns_id(&node.record.netns).is_none());
    assert!(node.host.tables(None).is_empty());
    assert!(lock_uplinks(&node).is_empty());
}

/// The uplinks whose elements are in the node-wide underlay table.
fn lock_uplinks(node: &Node) -> Vec<String> {
    let map = node.host.uplinks.lock().unwrap_or_else(|p| p.into_inner());
    map.keys().cloned().collect()
}

/// An AssignPublicIP or ReleasePublicIP frame for `public` → `private`.
fn public_ip_frame(node: &Node, public: &str, private: &str, assign: bool) -> Frame {
    use ssntp::frame::command;
    use ssntp::payloads::{AssignPublicIp, PublicIpCommand, ReleasePublicIp};
    let cmd = PublicIpCommand {
        concentrator_uuid: node.record.uuid.to_string(),
        tenant_uuid: node.record.tenant.to_string(),
        instance_uuid: "d6c5ee7b-5a1d-4f4b-8a4e-3f0c2b1a0e9d".into(),
        public_ip: public.into(),
        private_ip: private.into(),
        vnic_mac: "02:00:ac:10:01:0a".into(),
    };
    let (op, yaml) = if assign {
        (command::ASSIGN_PUBLIC_IP, AssignPublicIp(cmd).to_yaml())
    } else {
        (command::RELEASE_PUBLIC_IP, ReleasePublicIp(cmd).to_yaml())
    };
    Frame::new(kind::COMMAND, op, node.record.uuid, yaml)
}

#[test]
fn a_public_ip_the_kernel_refuses_is_rolled_back_and_a_good_one_comes_and_goes() {
    let mut node = Node::new();
    let mut k = node.world.kernel();
    let ext = k
        .create_link(&NewLink::new("ext0", LinkKind::Bridge))
        .expect("ext0");
    k.add_address(ext.index, "203.0.113.2/24".parse().expect("net"))
        .expect("address");
    k.set_up(ext.index, true).expect("up");
    node.record.external_dev = Some("ext0".into());
    let mut agent = node.public_agent();
    let s1 = net("172.16.1.0/24");
    agent.handle(&node.added(node.body(
        Uuid::from_u128(0xa),
        Ipv4Addr::new(10, 99, 0, 10),
        s1,
        TunnelKind::Vxlan,
    )));
    agent.wait_removed();
    let tenant_ns = node.host.netns_id(&node.record.netns);
    let before = node.world.snapshot();
    let table_before = node.host.tables(tenant_ns);

    node.world.clear_calls();
    node.world
        .inject(Trigger::Op("add_proxy_neighbour", 1), Fault::Fail(EIO));
    let reply = agent.handle(&public_ip_frame(&node, "203.0.113.10", "172.16.1.10", true));
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0].kind, kind::ERROR, "a refusal is an ERROR frame");
    assert!(String::from_utf8_lossy(&reply[0].payload).contains("assign_failure"));
    assert!(node
        .store()
        .desired()
        .expect("records")
        .public_ips
        .is_empty());
    assert!(agent.desired().public_ips.is_empty());
    assert_eq!(
        node.world.snapshot(),
        before,
        "routes and proxy entries rolled back"
    );
    assert_eq!(
        node.host.tables(tenant_ns),
        table_before,
        "DNAT rolled back"
    );

    let reply = agent.handle(&public_ip_frame(&node, "203.0.113.10", "172.16.1.10", true));
    assert_eq!(reply[0].kind, kind::EVENT);
    let underlay = node.world.snapshot().ns("host");
    assert!(underlay
        .proxy
        .contains(&("ext0".into(), "203.0.113.10".into())));
    assert!(underlay
        .routes
        .iter()
        .any(|(dst, _, _)| dst == "203.0.113.10/32"));
    let rules = node.host.tables(tenant_ns);
    assert!(rules[names::TENANT_TABLE].contains("203.0.113.10"));

    let reply = agent.handle(&public_ip_frame(
        &node,
        "203.0.113.10",
        "172.16.1.10",
        false,
    ));
    assert_eq!(reply[0].kind, kind::EVENT);
    assert_eq!(node.world.snapshot(), before, "released: as before");
}

#[test]
fn a_recorded_subnet_the_kernel_refuses_at_start_does_not_keep_the_others_down() {
    let node = Node::new();
    let (a, ip_a) = (Uuid::from_u128(0xa), Ipv4Addr::new(10, 99, 0, 10));
    for s in ["172.16.1.0/24", "172.16.2.0/24"] {
        let mut rec = SubnetRecord::new(net(s), TunnelKind::Vxlan, vni(net(s)));
        rec.agents.insert(a, ip_a);
        node.store().put_subnet(&rec).expect("record");
    }
    // The first tunnel device the start creates is refused (say, its VNI is taken).
    node.world
        .inject(Trigger::Op("move_to_netns", 1), Fault::Fail(EIO));
    let mut agent = node.agent();
    agent.wait_removed();
    let mut tenant = node.tenant();
    let reached: Vec<usize> = agent
        .desired()
        .subnets
        .values()
        .map(|rec| {
            super::programmed(&mut tenant, node.record.uuid, rec)
                .expect("programmed")
                .len()
        })
        .collect();
    assert_eq!(reached, [0, 1], "the refused subnet waits, the other works");
    // The next start repairs the refused one.
    drop(agent);
    let mut again = node.agent();
    assert_converged(&node, &mut again, "second start");
}

fn ingress_frame(node: &Node, forward_ip: &str, private: &str) -> Frame {
    use ssntp::payloads::{IngressForward, TenantIngress, TenantIngressCmd};
    let body = TenantIngressCmd {
        concentrator_uuid: node.record.uuid.to_string(),
        tenant_uuid: node.record.tenant.to_string(),
        generation: 5,
        forward_ip: forward_ip.into(),
        forwards: if forward_ip.is_empty() {
            vec![]
        } else {
            vec![IngressForward {
                protocol: "tcp".into(),
                public_port: 8080,
                private_ip: private.into(),
                private_port: 80,
            }]
        },
        ssh: vec![],
        ..TenantIngressCmd::default()
    };
    let yaml = TenantIngress(body).to_yaml();
    Frame::new(
        kind::COMMAND,
        ssntp::frame::command::TENANT_INGRESS,
        Uuid::nil(),
        yaml,
    )
}

/// A new CNCI gets the snapshot before any subnet is registered: refused, kept, and applied
/// once the subnet arrives; recorded, so a restarted agent rebuilds it; `""` takes it away.
#[test]
fn a_tenant_ingress_waits_for_its_subnet_survives_a_restart_and_goes_away() {
    let mut node = Node::new();
    let mut k = node.world.kernel();
    let ext = k
        .create_link(&NewLink::new("ext0", LinkKind::Bridge))
        .expect("ext0");
    k.add_address(ext.index, "203.0.113.2/24".parse().expect("net"))
        .expect("address");
    node.record.external_dev = Some("ext0".into());
    let start = |node: &Node| node.public_agent();
    let mut agent = start(&node);
    let tenant_ns = node.host.netns_id(&node.record.netns);
    let proxied = |node: &Node| {
        node.world
            .snapshot()
            .ns("host")
            .proxy
            .contains(&("ext0".into(), "203.0.113.9".into()))
    };
    let dnat = "tcp dport 8080 dnat to 172.16.1.10:80";

    let reply = agent.handle(&ingress_frame(&node, "203.0.113.9", "172.16.1.10"));
    assert_eq!(reply[0].kind, kind::ERROR, "no such subnet yet");
    assert!(String::from_utf8_lossy(&reply[0].payload).contains("172.16.1.10"));
    assert!(!proxied(&node));
    assert!(node.store().desired().expect("records").ingress.is_none());

    let reply = agent.handle(&node.added(node.body(
        Uuid::from_u128(0xa),
        Ipv4Addr::new(10, 99, 0, 10),
        net("172.16.1.0/24"),
        TunnelKind::Vxlan,
    )));
    assert_eq!(reply.len(), 1, "the pending snapshot is applied");
    assert_eq!(
        (reply[0].kind, reply[0].operand),
        (kind::EVENT, event::TENANT_INGRESS_APPLIED)
    );
    assert!(proxied(&node));
    assert!(node.host.tables(tenant_ns)[names::TENANT_TABLE].contains(dnat));
    let reply = agent.handle(&public_ip_frame(&node, "203.0.113.9", "172.16.1.11", true));
    assert_eq!(
        reply[0].kind,
        kind::ERROR,
        "the forward IP is no 1:1 address"
    );
    agent.wait_removed();
    drop(agent);

    node.host.delete_all_tables(tenant_ns);
    let mut agent = start(&node);
    assert!(node.host.tables(tenant_ns)[names::TENANT_TABLE].contains(dnat));
    assert!(proxied(&node));

    let reply = agent.handle(&ingress_frame(&node, "", ""));
    assert_eq!(reply[0].kind, kind::EVENT);
    assert!(!node.host.tables(tenant_ns)[names::TENANT_TABLE].contains(dnat));
    assert!(!proxied(&node));
    assert!(node.store().desired().expect("records").ingress.is_none());
}

fn rules_frame(node: &Node, default_deny: bool, port: u32) -> Frame {
    use ssntp::payloads::{IngressRule, TenantIngress, TenantIngressCmd};
    let body = TenantIngressCmd {
        concentrator_uuid: node.record.uuid.to_string(),
        tenant_uuid: node.record.tenant.to_string(),
        generation: u64::from(port),
        rules: vec![IngressRule {
            action: "deny".into(),
            protocol: "tcp".into(),
            port_min: port,
            port_max: port,
            remote_cidr: "203.0.113.101/32".into(),
        }],
        default_deny,
        ..TenantIngressCmd::default()
    };
    Frame::new(
        kind::COMMAND,
        ssntp::frame::command::TENANT_INGRESS,
        Uuid::nil(),
        TenantIngress(body).to_yaml(),
    )
}

/// Rules without a forward IP (they guard the public IPs) go into the tenant table, are
/// rebuilt the same by a restarted agent, and a refused snapshot leaves them as they were.
#[test]
fn tenant_ingress_rules_apply_survive_a_restart_and_a_refused_snapshot_changes_nothing() {
    let node = Node::new();
    let start = |node: &Node| node.public_agent();
    let mut agent = start(&node);
    let tenant_ns = node.host.netns_id(&node.record.netns);
    let table = |node: &Node| node.host.tables(tenant_ns)[names::TENANT_TABLE].clone();
    let reply = agent.handle(&rules_frame(&node, true, 8080));
    assert_eq!(reply[0].kind, kind::EVENT, "applied");
    let applied = table(&node);
    assert!(
        applied.contains("ip saddr 203.0.113.101/32 tcp dport 8080 drop\n    drop\n"),
        "{applied}"
    );
    let reply = agent.handle(&rules_frame(&node, true, 70000));
    assert_eq!(reply[0].kind, kind::ERROR, "port 70000 refused");
    assert_eq!(table(&node), applied, "the previous rules stay");
    agent.wait_removed();
    drop(agent);

    node.host.delete_all_tables(tenant_ns);
    let mut agent = start(&node);
    assert_eq!(table(&node), applied, "rebuilt from ingress.json");
    let reply = agent.handle(&rules_frame(&node, false, 8080));
    assert_eq!(reply[0].kind, kind::EVENT);
    assert!(!table(&node).contains("    drop\n  }"), "the default allow");
}
