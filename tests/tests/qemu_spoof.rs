//! Anti-spoofing against a real QEMU guest booted through `ciao-qemu-ifup` on the cluster
//! fixture: the guest's own kernel and busybox (`ciao.spoof=`, scripts/qemu-guest-spoof.sh)
//! send IPv4 from its neighbour's address, frames from the neighbour's MAC, gratuitous ARP
//! requests and replies claiming the neighbour's address, an unsolicited IPv6 neighbour
//! advertisement for the neighbour's link-local address, and a DHCP server reply (busybox
//! `udhcpd` answering a discover the test sends). Busybox cannot craft an IPv6 router
//! advertisement, so the guest sends none (tests/tests/antispoof.rs covers it with frames).
//!
//! The target and the neighbour are containers on the guest's node in its subnet, so the bridge
//! is all that lies between them. A capture on the tap (the guest's frames before the guard)
//! proves each kind was sent; captures in both containers prove none arrived, while the
//! guest's marker pings, sent last, did (the bridge keeps order). The target's ARP and IPv6
//! neighbour entries for the neighbour keep the neighbour's MAC. QEMU runs under TCG (see
//! testkit::qemu); without QEMU the test is skipped by name.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use testkit::cluster::{Cluster, Cn, Workload};
use testkit::frames::parse::{
    advertised_target, arp_sender, echo_request, ipv4, ipv6_src, src_mac, udp_ports,
};
use testkit::frames::{dhcp_discover, ether, ipv4_udp, link_local, mac, RawPort, BROADCAST};
use testkit::qemu::{image_or_skip, start_hooked, Guest, GuestImage, HookedVm};
use testkit::{require_root, TENANT_A};

const SUBNET: &str = "172.16.1.0/24";
const TARGET_IP: &str = "172.16.1.11";
const NEIGHBOUR_IP: &str = "172.16.1.12";
const VM_IP: &str = "172.16.1.32";
/// ciao's MAC of `VM_IP`: the CNCI's DHCP answers it with `VM_IP`.
const VM_MAC: &str = "02:00:ac:10:01:20";
const TAP: &str = "tapvms0";
/// The payload byte of the guest's marker pings.
const MARKER: u8 = 0xc5;
const GUEST_TIMEOUT: Duration = Duration::from_secs(150);

/// What the guest must send and nobody may receive.
const KINDS: [&str; 5] = [
    NEIGHBOUR_MAC,
    "ARP claiming the neighbour's IP",
    "IPv4 from the neighbour's IP",
    "DHCP server reply",
    "IPv6 NA for a foreign address",
];
const NEIGHBOUR_MAC: &str = "the neighbour's MAC";

/// The guest's and the neighbour's addresses.
struct Ids {
    guest_mac: [u8; 6],
    guest_ll: Ipv6Addr,
    n_mac: [u8; 6],
    n_ip: Ipv4Addr,
}

/// What a frame from the guest's port claims that is not the guest's own (empty: nothing).
fn spoofs(f: &[u8], id: &Ids) -> Vec<&'static str> {
    let mut out = Vec::new();
    match src_mac(f) {
        Some(m) if m == id.guest_mac => {}
        Some(m) if m == id.n_mac => out.push(NEIGHBOUR_MAC),
        _ => out.push("a foreign MAC"),
    }
    if let Some((_, sha, spa)) = arp_sender(f) {
        if spa == id.n_ip {
            out.push("ARP claiming the neighbour's IP");
        }
        if sha != id.guest_mac {
            out.push("ARP from a foreign MAC");
        }
    }
    if ipv4(f).is_some_and(|(src, ..)| src == id.n_ip) {
        out.push("IPv4 from the neighbour's IP");
    }
    if udp_ports(f).is_some_and(|(sport, _)| sport == 67) {
        out.push("DHCP server reply");
    }
    if advertised_target(f).is_some_and(|t| t != id.guest_ll) {
        out.push("IPv6 NA for a foreign address");
    }
    if ipv6_src(f).is_some_and(|s| s != id.guest_ll && !s.is_unspecified()) {
        out.push("IPv6 from a foreign address");
    }
    out
}

/// A frame from the guest's MAC claiming something not its own, however it got there.
fn is_guest_spoof(f: &[u8], id: &Ids) -> bool {
    src_mac(f) == Some(id.guest_mac) && !spoofs(f, id).is_empty()
}

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

fn mac_of(w: &Workload) -> [u8; 6] {
    mac(w.exec(&["cat", "/sys/class/net/eth0/address"]).trim())
}

/// An `AF_PACKET` capture of what arrives on `ifname` in the namespace at `ns`.
fn capture(ns: &std::path::Path, ifname: &str) -> RawPort {
    let port = RawPort::packet(ns, ifname).expect("capture");
    port.ignore_outgoing().expect("ignore outgoing");
    port
}

/// True when the guest's marker ping to `dst` is `f`.
fn is_marker(f: &[u8], dst: &str) -> bool {
    echo_request(f) == Some((ip4(VM_IP), ip4(dst), MARKER))
}

/// The target's neighbour entries for the neighbour (IPv4, IPv6 link-local).
fn neighbour_entries(target: &Workload, n_ll: &str) -> String {
    target.exec(&["ip", "neigh", "show", NEIGHBOUR_IP, "dev", "eth0"])
        + &target.exec(&["ip", "-6", "neigh", "show", n_ll, "dev", "eth0"])
}

/// Sends DHCP discovers from the target until the guest's udhcpd has answered one.
fn trigger_dhcp_server(guest: &mut Guest, target: &Workload) {
    let tx = RawPort::packet(&target.ns.path(), "eth0").expect("raw socket");
    let t_mac = mac_of(target);
    let bootp = dhcp_discover(0x5eed, [2, 0, 0, 0xbe, 0xbe, 0xef]);
    let discover = ipv4_udp(ip4("0.0.0.0"), ip4("255.255.255.255"), 68, 67, &bootp);
    let deadline = Instant::now() + GUEST_TIMEOUT;
    loop {
        tx.send(&ether(BROADCAST, t_mac, 0x0800, &discover))
            .expect("send discover");
        if guest
            .wait_line("spoof offered", Duration::from_secs(2))
            .is_ok()
        {
            return;
        }
        let serial = guest.serial_text();
        assert!(
            Instant::now() < deadline && !serial.contains("spoof no discover"),
            "the guest's udhcpd never answered\n{serial}"
        );
    }
}

/// Waits for QEMU to create the tap (before the guest boots) and captures what the guest sends.
fn tap_capture(c: &Cluster) -> RawPort {
    let deadline = Instant::now() + GUEST_TIMEOUT;
    while !c.cn1.ns.links().contains(&TAP.to_string()) {
        assert!(Instant::now() < deadline, "QEMU made no {TAP}");
        std::thread::sleep(Duration::from_millis(10));
    }
    capture(&c.cn1.ns.path(), TAP)
}

/// Drives the guest through its attack; returns what the tap, the target and the neighbour saw
/// up to the guest's markers.
fn run_guest(
    image: &GuestImage,
    c: &Cluster,
    target: &Workload,
    neighbour: &Workload,
) -> [Vec<Vec<u8>>; 3] {
    let at_target = capture(&target.ns.path(), "eth0");
    let at_neighbour = capture(&neighbour.ns.path(), "eth0");
    let append = format!(
        "ciao.ping={TARGET_IP} ciao.spoof={NEIGHBOUR_IP},{},{TARGET_IP}",
        neighbour
            .exec(&["cat", "/sys/class/net/eth0/address"])
            .trim()
    );
    let vm = HookedVm {
        subnet: SUBNET,
        ip: VM_IP,
        mac: VM_MAC,
        tap: TAP,
        append: &append,
    };
    let mut guest = start_hooked(image, &c.cn1, &target.tenant, &vm).expect("start qemu");
    let at_tap = tap_capture(c);
    let until = |port: RawPort, dst: &'static str| {
        move || {
            port.recv_until(GUEST_TIMEOUT, |f| is_marker(f, dst))
                .expect("the guest's marker arrives")
        }
    };
    std::thread::scope(|s| {
        let tap = s.spawn(until(at_tap, NEIGHBOUR_IP));
        let tgt = s.spawn(until(at_target, TARGET_IP));
        let nbr = s.spawn(until(at_neighbour, NEIGHBOUR_IP));
        let (dhcp, _) = guest
            .wait_line("CIAO-GUEST dhcp", GUEST_TIMEOUT)
            .expect("the guest tries DHCP");
        assert!(dhcp.contains(&format!("dhcp ok ip={VM_IP}/24")), "{dhcp}");
        guest
            .wait_line("spoof dhcpd up", GUEST_TIMEOUT)
            .expect("the guest starts spoofing");
        trigger_dhcp_server(&mut guest, target);
        guest
            .wait_line("spoof done", GUEST_TIMEOUT)
            .expect("the guest finishes");
        let serial = guest.serial_text();
        for ip in [TARGET_IP, NEIGHBOUR_IP] {
            assert!(
                serial.contains(&format!("spoof marker ok {ip}")),
                "the guest's own ping to {ip} is answered:\n{serial}"
            );
        }
        let status = guest
            .wait_exit(Duration::from_secs(60))
            .expect("qemu exits after the guest's poweroff");
        assert!(status.success(), "qemu: {status}\n{}", guest.qemu_text());
        [
            tap.join().expect("tap capture"),
            tgt.join().expect("target capture"),
            nbr.join().expect("neighbour capture"),
        ]
    })
}

#[test]
fn a_guest_cannot_spoof_its_neighbour_and_its_own_traffic_flows() {
    require_root!();
    let test = "qemu_spoof::a_guest_cannot_spoof_its_neighbour_and_its_own_traffic_flows";
    let Some(image) = image_or_skip(test) else {
        return;
    };
    let mut c = Cluster::new().expect("cluster");
    let a = c.add_tenant(TENANT_A).expect("tenant A");
    let target = c
        .container(Cn::Cn1, &a, SUBNET, TARGET_IP)
        .expect("target on CN1");
    let neighbour = c
        .container(Cn::Cn1, &a, SUBNET, NEIGHBOUR_IP)
        .expect("neighbour on CN1");
    let n_mac = mac_of(&neighbour);
    let n_ll = link_local(n_mac).to_string();
    // The target knows the neighbour (IPv4 and link-local) in a state a forged claim would
    // overwrite: STALE, past the ARP lock time (no ping here: the host may lack one).
    let n_mac_text = neighbour.exec(&["cat", "/sys/class/net/eth0/address"]);
    for (family, addr) in [("-4", NEIGHBOUR_IP), ("-6", n_ll.as_str())] {
        target.exec(&[
            "ip",
            family,
            "neigh",
            "replace",
            addr,
            "lladdr",
            n_mac_text.trim(),
            "dev",
            "eth0",
            "nud",
            "stale",
        ]);
    }
    let before = neighbour_entries(&target, &n_ll);

    let [at_tap, at_target, at_neighbour] = run_guest(&image, &c, &target, &neighbour);
    let id = Ids {
        guest_mac: mac(VM_MAC),
        guest_ll: link_local(mac(VM_MAC)),
        n_mac,
        n_ip: ip4(NEIGHBOUR_IP),
    };
    let sent: Vec<&Vec<u8>> = at_tap
        .iter()
        .filter(|f| !spoofs(f, &id).is_empty())
        .collect();
    let kinds: BTreeSet<&str> = sent.iter().flat_map(|f| spoofs(f, &id)).collect();
    for kind in KINDS {
        assert!(kinds.contains(kind), "the guest sent no {kind}: {kinds:?}");
    }
    eprintln!(
        "the guest sent {} spoofed frames of {} ({kinds:?}); the target got {} frames, the neighbour {}",
        sent.len(),
        at_tap.len(),
        at_target.len(),
        at_neighbour.len()
    );
    let leaked: Vec<String> = [("target", &at_target), ("neighbour", &at_neighbour)]
        .iter()
        .flat_map(|(who, seen)| seen.iter().map(move |f| (who, f)))
        .filter(|(_, f)| sent.contains(f) || is_guest_spoof(f, &id))
        .map(|(who, f)| format!("{who}: {:?}", spoofs(f, &id)))
        .collect();
    let after = neighbour_entries(&target, &n_ll);
    assert!(
        leaked.is_empty(),
        "{} spoofed frames arrived: {leaked:?}\nthe target's entries for the neighbour: before \
         {before:?}, after {after:?}",
        leaked.len()
    );
    assert_eq!(
        after.matches(n_mac_text.trim()).count(),
        2,
        "the target's entries for the neighbour keep its MAC: before {before:?}, after {after:?}"
    );
    assert!(!after.contains(VM_MAC), "{after}");
}
