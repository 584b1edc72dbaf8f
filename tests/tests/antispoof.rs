//! Anti-spoofing with real frames: a workload (a container's veth, a guest's tap) sends crafted
//! frames with its neighbour's addresses; none reaches the neighbour, its own traffic does.
//! The bridge keeps order, so once a valid marker sent last has arrived, anything spoofed that
//! was going to arrive has arrived.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use netcore::{Cnci, Node, NodeConfig, SubnetConfig, VnicId, VnicKind, VnicRequest};
use testkit::frames::{
    arp, ether, ipv4_udp, ipv6_icmp, link_local, mac, neighbour_advert, router_advert, RawPort,
    BROADCAST,
};
use testkit::{require_root, ComputeNode, Netns, TENANT_A};

const SUBNET: &str = "172.16.9.0/24";
const WAIT: Duration = Duration::from_secs(10);

/// A container's MAC and IPv4 address on its eth0.
fn addr_of(ns: &Netns) -> ([u8; 6], Ipv4Addr) {
    let m = mac(ns.exec(&["cat", "/sys/class/net/eth0/address"]).trim());
    let shown = ns.exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    let cidr = shown
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .expect("an IPv4 address");
    let ip = cidr.split('/').next().expect("ip").parse().expect("ip");
    (m, ip)
}

fn container(node: &ComputeNode, name: &str) -> Netns {
    let ns = Netns::new(name);
    let conf = node.conf("1.0.0", "spoofnet", TENANT_A, SUBNET);
    node.cni("ADD", name, &ns.path().display().to_string(), &conf)
        .expect_ok("ADD");
    ns
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

fn udp(src_mac: [u8; 6], src: Ipv4Addr, sport: u16, dport: u16, tag: &[u8]) -> Vec<u8> {
    let bcast = ip("255.255.255.255");
    ether(
        BROADCAST,
        src_mac,
        0x0800,
        &ipv4_udp(src, bcast, sport, dport, tag),
    )
}

/// Sends `spoofed`, then `valid`, then a marker from `tx`; asserts at `rx` that every valid
/// frame arrived and no spoofed one did.
fn check(
    tx: &RawPort,
    rx: &RawPort,
    marker: Vec<u8>,
    spoofed: &[(&str, Vec<u8>)],
    valid: &[(&str, Vec<u8>)],
) {
    for (_, f) in spoofed.iter().chain(valid) {
        tx.send(f).expect("send");
    }
    tx.send(&marker).expect("send marker");
    let seen = rx
        .recv_until(WAIT, |f| f == marker.as_slice())
        .expect("the marker arrives");
    for (what, f) in spoofed {
        assert!(!seen.contains(f), "spoofed frame arrived: {what}");
    }
    for (what, f) in valid {
        assert!(seen.contains(f), "valid frame was dropped: {what}");
    }
}

#[test]
fn a_container_cannot_spoof_its_neighbour_and_its_own_traffic_flows() {
    require_root!();
    let node = ComputeNode::new();
    let attacker = container(&node, "atk");
    let victim = container(&node, "vic");
    let (a_mac, a_ip) = addr_of(&attacker);
    let (v_mac, v_ip) = addr_of(&victim);
    assert!(
        attacker.ping(&v_ip.to_string(), 1),
        "ping between neighbours"
    );

    let rx = RawPort::packet(&victim.path(), "eth0").expect("capture");
    let tx = RawPort::packet(&attacker.path(), "eth0").expect("raw socket");
    let all_nodes = "ff02::1".parse().expect("ff02::1");
    let v6 = |src, body: &[u8]| ether(BROADCAST, a_mac, 0x86dd, &ipv6_icmp(src, all_nodes, body));
    let spoofed = [
        ("neighbour's IP", udp(a_mac, v_ip, 5000, 5000, b"spoof ip")),
        (
            "neighbour's MAC",
            udp(v_mac, a_ip, 5000, 5000, b"spoof mac"),
        ),
        (
            "ARP reply claiming the neighbour's IP",
            ether(
                BROADCAST,
                a_mac,
                0x0806,
                &arp(2, a_mac, v_ip, BROADCAST, v_ip),
            ),
        ),
        (
            "ARP with the neighbour's sender MAC",
            ether(
                BROADCAST,
                a_mac,
                0x0806,
                &arp(2, v_mac, a_ip, BROADCAST, a_ip),
            ),
        ),
        (
            "IPv6 router advertisement",
            v6(link_local(a_mac), &router_advert()),
        ),
        (
            "IPv6 neighbour advertisement for a foreign address",
            v6(link_local(a_mac), &neighbour_advert(link_local(v_mac))),
        ),
        (
            "IPv6 from the neighbour's link-local address",
            v6(link_local(v_mac), &[128, 0, 0, 0, 0, 1, 0, 1]),
        ),
        ("DHCP server reply", udp(a_mac, a_ip, 67, 68, b"offer")),
        (
            "VLAN-tagged frame",
            ether(BROADCAST, a_mac, 0x8100, &[0, 5, 8, 0, 0x45, 0, 0, 20]),
        ),
    ];
    let valid = [
        (
            "own ARP reply",
            ether(
                BROADCAST,
                a_mac,
                0x0806,
                &arp(2, a_mac, a_ip, BROADCAST, a_ip),
            ),
        ),
        (
            "ARP probe from 0.0.0.0",
            ether(
                BROADCAST,
                a_mac,
                0x0806,
                &arp(1, a_mac, ip("0.0.0.0"), [0; 6], a_ip),
            ),
        ),
        (
            "own neighbour advertisement",
            v6(link_local(a_mac), &neighbour_advert(link_local(a_mac))),
        ),
    ];
    let marker = udp(a_mac, a_ip, 5001, 5001, b"marker");
    check(&tx, &rx, marker, &spoofed, &valid);
    assert!(attacker.ping(&v_ip.to_string(), 1), "ping still works");
    // The guard goes with the port: only the victim's remains.
    node.cni(
        "DEL",
        "atk",
        &attacker.path().display().to_string(),
        &node.conf("1.0.0", "spoofnet", TENANT_A, SUBNET),
    )
    .expect_ok("DEL");
    let listed = node
        .ns
        .exec(&["nft", "list", "set", "bridge", "ciao_guard_v2", "addrs4"]);
    assert!(listed.contains(&v_ip.to_string()), "{listed}");
    assert!(!listed.contains(&format!("{a_ip}")), "{listed}");
}

/// Runs `f` with a `Node` opened inside the compute node's namespace, on its own thread.
fn in_node<T: Send>(node: &ComputeNode, f: impl FnOnce(&mut Node) -> T + Send) -> T {
    let fd = netcore::netns::open(&node.ns.path()).expect("netns");
    let state: PathBuf = node.state.path().to_path_buf();
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let mut n = Node::open(&NodeConfig { state_dir: state }).expect("open node");
            f(&mut n)
        })
        .join()
        .expect("node thread")
    })
}

#[test]
fn a_guest_behind_its_tap_cannot_spoof_and_only_its_allowed_vip_passes() {
    require_root!();
    let node = ComputeNode::new();
    let victim = container(&node, "vic");
    let (v_mac, v_ip) = addr_of(&victim);
    // QEMU makes its tap and holds it open before the ifup hook runs.
    node.ns
        .exec(&["ip", "tuntap", "add", "dev", "tapg0", "mode", "tap"]);
    let tap = RawPort::tap(&node.ns.path(), "tapg0").expect("open tap");
    let cfg = SubnetConfig::new(
        TENANT_A.parse().expect("uuid"),
        SUBNET.parse().expect("subnet"),
        Cnci {
            uuid: "3390740c-dce9-48d6-b83a-a717417072ce"
                .parse()
                .expect("uuid"),
            ip: node.cnci_ip.parse().expect("ip"),
        },
    );
    let g_ip = ip("172.16.9.50");
    let vip = ip("172.16.9.60");
    let req = VnicRequest {
        id: VnicId {
            owner: "vm-g".into(),
            ifname: "tapg0".into(),
        },
        kind: VnicKind::Tap {
            name: "tapg0".into(),
            uid: None,
            gid: None,
        },
        ip: Some(g_ip),
        mac: None,
        default_route: false,
        allowed: vec![vip],
        security_groups: Vec::new(),
    };
    let att = in_node(&node, |n| n.attach(&cfg, &req)).expect("attach tap");
    let g_mac = mac(&att.vnic.mac);

    let rx = RawPort::packet(&victim.path(), "eth0").expect("capture");
    let spoofed = [
        ("neighbour's IP", udp(g_mac, v_ip, 5000, 5000, b"spoof ip")),
        (
            "an address not allowed",
            udp(g_mac, ip("172.16.9.61"), 5000, 5000, b"x"),
        ),
        (
            "neighbour's MAC",
            udp(v_mac, g_ip, 5000, 5000, b"spoof mac"),
        ),
        ("DHCP server reply", udp(g_mac, g_ip, 67, 68, b"offer")),
        (
            "ARP reply claiming the neighbour's IP",
            ether(
                BROADCAST,
                g_mac,
                0x0806,
                &arp(2, g_mac, v_ip, BROADCAST, v_ip),
            ),
        ),
    ];
    let valid = [
        ("the allowed VIP", udp(g_mac, vip, 5000, 5000, b"vip")),
        (
            "gratuitous ARP for the VIP",
            ether(
                BROADCAST,
                g_mac,
                0x0806,
                &arp(2, g_mac, vip, BROADCAST, vip),
            ),
        ),
        (
            "DHCP discover before the lease",
            udp(g_mac, ip("0.0.0.0"), 68, 67, b"discover"),
        ),
    ];
    let marker = udp(g_mac, g_ip, 5001, 5001, b"marker");
    check(&tap, &rx, marker, &spoofed, &valid);

    in_node(&node, |n| n.detach(&cfg.net_key(), &req.id)).expect("detach");
    let listed = node
        .ns
        .exec(&["nft", "list", "set", "bridge", "ciao_guard_v2", "addrs4"]);
    assert!(!listed.contains("tapg0"), "{listed}");
}

/// The IPv6 link-local address of `ns`'s eth0 once it left DAD (not tentative any more).
fn ready_link_local(ns: &Netns) -> Option<String> {
    let shown = ns.exec(&[
        "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
    ]);
    if shown.contains("tentative") {
        return None;
    }
    let cidr = shown
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)?;
    Some(cidr.split('/').next()?.to_string())
}

fn ping6(from: &Netns, to: &str) -> bool {
    from.try_exec(&["ping", "-6", "-c", "1", "-W", "1", &format!("{to}%eth0")])
        .status
        .success()
}

/// Security groups are enforced for IPv4 only: a filtered port's IPv6 is closed both ways by
/// its guard (except neighbour discovery and MLD), so link-local IPv6 cannot bypass its rules;
/// unfiltered neighbours keep theirs. On a node whose daemon never ran, the port's IPv4 is
/// closed to new ingress from its attach all the same.
#[test]
fn a_filtered_port_is_closed_from_its_attach_and_its_ipv6_except_neighbour_discovery() {
    require_root!();
    let node = ComputeNode::new();
    let plain = container(&node, "v6a");
    let other = container(&node, "v6c");
    let filtered = Netns::new("v6b");
    let mut conf = node.conf("1.0.0", "spoofnet", TENANT_A, SUBNET);
    conf["securityGroups"] = serde_json::json!(["web"]);
    node.cni("ADD", "v6b", &filtered.path().display().to_string(), &conf)
        .expect_ok("ADD of the filtered port");
    let start = std::time::Instant::now();
    let ready = |ns: &Netns| loop {
        if let Some(ll) = ready_link_local(ns) {
            return ll;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "DAD never ends");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (other_ll, filtered_ll) = (ready(&other), ready(&filtered));
    ready(&plain);
    let start = std::time::Instant::now();
    while !ping6(&plain, &other_ll) {
        assert!(start.elapsed() < WAIT * 6, "IPv6 between unfiltered ports");
    }

    assert!(
        !ping6(&plain, &filtered_ll),
        "echo to the filtered port over IPv6"
    );
    assert!(
        !ping6(&filtered, &other_ll),
        "echo from the filtered port over IPv6"
    );
    // Neighbour discovery went through: the plain port learned the filtered one's MAC.
    let neigh = plain.exec(&["ip", "-6", "neigh", "show", "dev", "eth0"]);
    let learned = neigh
        .lines()
        .any(|l| l.starts_with(&filtered_ll) && l.contains("lladdr"));
    assert!(learned, "neighbour discovery to the filtered port: {neigh}");
    // IPv4 is the groups' business: no node daemon ever ran here, so the attach made the
    // groups' table itself and the port waits in `pending4`, closed to new ingress; its own
    // egress and the replies pass.
    let (_, f_ip) = addr_of(&filtered);
    let pending = node
        .ns
        .exec(&["nft", "list", "set", "inet", "ciao_sg_v1", "pending4"]);
    assert!(pending.contains(&f_ip.to_string()), "{pending}");
    let (_, p_ip) = addr_of(&plain);
    assert!(
        filtered.ping(&p_ip.to_string(), 1),
        "the filtered port's own egress"
    );
    assert!(
        !plain.ping(&f_ip.to_string(), 1),
        "new ingress to a pending port"
    );

    let closed = || {
        node.ns
            .exec(&["nft", "list", "set", "bridge", "ciao_guard_v2", "closed6"])
    };
    let listed = closed();
    assert_eq!(
        listed.matches('"').count(),
        2,
        "one port, the filtered one: {listed}"
    );
    // A node upgraded from the first layout: reconcile deletes the old table, keeps the new.
    node.ns
        .exec(&["nft", "add", "table", "bridge", "ciao_guard_v1"]);
    in_node(&node, |n| n.reconcile().expect("reconcile"));
    let tables = node.ns.exec(&["nft", "list", "tables", "bridge"]);
    assert_eq!(tables.trim(), "table bridge ciao_guard_v2", "{tables}");
    node.cni("DEL", "v6b", &filtered.path().display().to_string(), &conf)
        .expect_ok("DEL");
    let listed = closed();
    assert!(
        !listed.contains('"'),
        "the port's element goes with it: {listed}"
    );
    let pending = node
        .ns
        .exec(&["nft", "list", "set", "inet", "ciao_sg_v1", "pending4"]);
    assert!(
        !pending.contains(&f_ip.to_string()),
        "its address is not left closed for the next workload: {pending}"
    );
}
