//! The whole overlay end to end (issue 4): CNI-attached containers on two compute nodes, their
//! reports delivered through the scheduler to each tenant's CNCI agent on the network node, and
//! traffic through the hub. Real processes, real namespaces, real TLS.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netcore::{Cnci, Node, NodeConfig, SubnetConfig, VnicId, VnicKind, VnicRequest};
use netlink_packet_route::link::{GreIOFlags, InfoGre};
use ssntp::frame::{command, error, event, kind, role, Frame};
use ssntp::payloads::{AssignPublicIp, Payload, PublicIpCommand, ReleasePublicIp};
use testkit::cluster::{
    in_netns, ssntp_exchange, subnet_entry, Cluster, Cn, Tenant, Workload, EXT_IP, NN_IP,
};
use testkit::{require_root, TENANT_A, TENANT_B};

const S1: &str = "172.16.1.0/24";
const S2: &str = "172.16.2.0/24";
const S3: &str = "172.16.3.0/24";

fn container(c: &Cluster, cn: Cn, t: &Tenant, s: &str, ip: &str) -> Workload {
    c.container(cn, t, s, ip).expect("container")
}

/// A tenant's CNCI with a1 (.10 on CN1) and a2 (.11 on CN2) in subnet 1, the hub programmed
/// toward both nodes.
fn on_both_nodes(cluster: &mut Cluster, tenant: &str) -> (Tenant, Workload, Workload) {
    let t = cluster.add_tenant(tenant).expect("tenant");
    let w1 = container(cluster, Cn::Cn1, &t, S1, "172.16.1.10");
    let w2 = container(cluster, Cn::Cn2, &t, S1, "172.16.1.11");
    cluster
        .wait_programmed(&t, S1, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("hub programmed toward both nodes");
    (t, w1, w2)
}

/// Waits (up to 20 s) for a whole line (its newline arrived) containing `needle` in `log` past
/// byte `from`.
fn wait_complete_line(log: &Path, from: u64, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        let tail = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
        let complete = tail.rfind('\n').map_or("", |end| &tail[..end]);
        if complete.lines().any(|l| l.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?} in {} within 20 s:\n{tail}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Counts frames arriving on a workload's eth0 with an nft netdev ingress counter.
fn add_counter(w: &Workload, name: &str, filter: &str) {
    let rules = format!(
        "table netdev {name} {{\n chain c {{\n  type filter hook ingress device eth0 priority 0;\n  {filter} counter\n }}\n}}\n"
    );
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), rules).expect("write rules");
    w.exec(&["nft", "-f", file.path().to_str().expect("path")]);
}

fn counter(w: &Workload, name: &str) -> u64 {
    let out = w.exec(&["nft", "list", "table", "netdev", name]);
    out.split("packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("counter value")
}

/// FDB lines of a compute node's bridges that put `mac` on a tunnel device (`ct…`).
fn mac_on_tunnel(cluster: &Cluster, cn: Cn, mac: &str) -> Vec<String> {
    cluster
        .cn(cn)
        .ns
        .exec(&["bridge", "fdb", "show"])
        .lines()
        .filter(|l| l.starts_with(mac) && l.contains(" dev ct"))
        .map(str::to_string)
        .collect()
}

fn mac_of(ip: &str) -> String {
    let o: Vec<u8> = ip.split('.').map(|p| p.parse().expect("octet")).collect();
    format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

#[test]
fn same_subnet_across_nodes_through_the_hub_with_ipv6_on_and_a_stable_fdb() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let (ta, a1, a2) = on_both_nodes(&mut cluster, TENANT_A);
    let a3 = container(&cluster, Cn::Cn1, &ta, S1, "172.16.1.12");
    for w in [&a1, &a2, &a3] {
        let v6 = w.exec(&["sysctl", "-n", "net.ipv6.conf.eth0.disable_ipv6"]);
        assert_eq!(
            v6.trim(),
            "0",
            "IPv6 must stay on: DAD/MLD trigger reflection"
        );
    }
    // a1 -> a2 across the hub while a3 -> a1 stays local: the reflection black hole would show
    // as loss on both and as a1's MAC on CN1's tunnel port.
    let remote = std::thread::scope(|s| {
        let far = s.spawn(|| {
            a1.ns
                .try_exec(&["ping", "-c", "100", "-i", "0.02", "-W", "1", &a2.ip])
        });
        let near = s.spawn(|| {
            a3.ns
                .try_exec(&["ping", "-c", "100", "-i", "0.02", "-W", "1", &a1.ip])
        });
        let mut moved = Vec::new();
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            moved.extend(mac_on_tunnel(&cluster, Cn::Cn1, &mac_of(&a1.ip)));
            moved.extend(mac_on_tunnel(&cluster, Cn::Cn1, &mac_of(&a3.ip)));
            moved.extend(mac_on_tunnel(&cluster, Cn::Cn2, &mac_of(&a2.ip)));
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            moved.is_empty(),
            "local MACs learned on a tunnel port: {moved:?}"
        );
        let near = near.join().expect("near ping");
        assert!(
            String::from_utf8_lossy(&near.stdout).contains(" 0% packet loss"),
            "local ping: {}",
            String::from_utf8_lossy(&near.stdout)
        );
        far.join().expect("far ping")
    });
    let text = String::from_utf8_lossy(&remote.stdout);
    assert!(
        text.contains("100 received, 0% packet loss"),
        "a1 -> a2: {text}"
    );
    for (cn, ip) in [(Cn::Cn1, &a1.ip), (Cn::Cn1, &a3.ip), (Cn::Cn2, &a2.ip)] {
        let moved = mac_on_tunnel(&cluster, cn, &mac_of(ip));
        assert!(
            moved.is_empty(),
            "{ip}'s MAC moved to the tunnel: {moved:?}"
        );
    }
}

#[test]
fn a_tenants_subnets_are_routed_by_its_cnci() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let ta = cluster.add_tenant(TENANT_A).expect("tenant A");
    let a1 = container(&cluster, Cn::Cn1, &ta, S1, "172.16.1.10");
    let a3 = container(&cluster, Cn::Cn2, &ta, S2, "172.16.2.10");
    cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip()])
        .expect("s1");
    cluster
        .wait_programmed(&ta, S2, &[Cn::Cn2.ip()])
        .expect("s2");
    assert!(a1.ping(&a3.ip, 3), "S1 on CN1 -> S2 on CN2");
    assert!(a3.ping(&a1.ip, 3), "and back");
    let route = a1.exec(&["ip", "route", "get", &a3.ip]);
    assert!(
        route.contains("via 172.16.1.1"),
        "through the gateway: {route}"
    );
}

#[test]
fn tenants_with_identical_subnets_exchange_no_packet_even_with_forged_vnis() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let (_ta, a1, a2) = on_both_nodes(&mut cluster, TENANT_A);
    let (tb, b1, b2) = on_both_nodes(&mut cluster, TENANT_B);
    for w in [&a1, &a2, &b1, &b2] {
        add_counter(w, "echo", "icmp type echo-request");
        add_counter(w, "forged", "ether saddr 02:de:ad:be:ef:01");
    }
    assert!(a1.ping(&a2.ip, 20), "A internally");
    assert_eq!(
        (counter(&b1, "echo"), counter(&b2, "echo")),
        (0, 0),
        "A's pings reached B"
    );
    assert!(b1.ping(&b2.ip, 20), "B internally");
    assert_eq!(counter(&a1, "echo"), 0, "B's pings reached A");
    assert_eq!(counter(&a2, "echo"), 20, "A's own pings, counted");
    assert_eq!(counter(&b2, "echo"), 20, "B's own pings, counted");

    // a1 forges VXLAN with B's VNI toward the hub and both compute nodes.
    let vni_b = subnet_entry(&cluster.agent_show(&tb).expect("show B"), S1)["id"]
        .as_u64()
        .expect("B's VNI") as u32;
    let mut packet = vec![0x08, 0, 0, 0];
    packet.extend_from_slice(&(vni_b << 8).to_be_bytes());
    packet.extend_from_slice(&[0xff; 6]); // inner: broadcast
    packet.extend_from_slice(&[0x02, 0xde, 0xad, 0xbe, 0xef, 0x01]);
    packet.extend_from_slice(&[0x08, 0x06]);
    packet.extend_from_slice(&[0u8; 28]);
    let send_from = |ns: &Path, to: &str| {
        let pkt = packet.clone();
        let to = format!("{to}:4789");
        in_netns(ns, move || {
            let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
            for _ in 0..5 {
                let _ = sock.send_to(&pkt, &to);
            }
        });
    };
    for target in [NN_IP, Cn::Cn1.ip(), Cn::Cn2.ip()] {
        send_from(&a1.ns.path(), target);
    }
    std::thread::sleep(Duration::from_millis(500));
    for w in [&b1, &b2, &a1, &a2] {
        assert_eq!(
            counter(w, "forged"),
            0,
            "a forged frame got through to {}",
            w.ns.name
        );
    }
    // Control: the same frame from the underlay itself does reach B (the filter counts).
    send_from(&cluster.nn.path(), Cn::Cn2.ip());
    std::thread::sleep(Duration::from_millis(300));
    assert!(counter(&b2, "forged") > 0, "control frame not counted");
    assert_eq!(counter(&a2, "forged"), 0);
}

fn public_ip_command(t: &Tenant, public: &str, private: &str) -> PublicIpCommand {
    PublicIpCommand {
        concentrator_uuid: t.cnci.clone(),
        tenant_uuid: t.tenant.clone(),
        instance_uuid: "d6c5ee7b-5a1d-4f4b-8a4e-3f0c2b1a0e9d".into(),
        public_ip: public.into(),
        private_ip: private.into(),
        vnic_mac: mac_of(private),
    }
}

#[test]
fn outbound_nat_and_public_ips_assigned_and_released() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let ta = cluster.add_tenant(TENANT_A).expect("tenant A");
    let a1 = container(&cluster, Cn::Cn1, &ta, S1, "172.16.1.10");
    cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip()])
        .expect("s1");
    assert!(a1.ping(EXT_IP, 3), "outbound NAT");
    const PUBLIC: &str = "203.0.113.10";
    assert!(
        !cluster.ext.ping(PUBLIC, 1),
        "public IP answers before assignment"
    );

    let controller = cluster.certs.controller();
    let cmd = public_ip_command(&ta, PUBLIC, &a1.ip);
    let assign = Frame::new(
        kind::COMMAND,
        command::ASSIGN_PUBLIC_IP,
        uuid::Uuid::new_v4(),
        AssignPublicIp(cmd.clone()).to_yaml(),
    );
    let reply = ssntp_exchange(
        &cluster,
        &controller,
        uuid::Uuid::new_v4(),
        role::CONTROLLER,
        vec![assign],
        |f| f.kind != kind::EVENT || f.operand != event::NODE_CONNECTED,
    )
    .expect("a reply to AssignPublicIP");
    assert_eq!(
        (reply.kind, reply.operand),
        (kind::EVENT, event::PUBLIC_IP_ASSIGNED)
    );
    assert!(String::from_utf8_lossy(&reply.payload).contains(PUBLIC));
    assert!(
        cluster.ext.ping(PUBLIC, 3),
        "the outside reaches a1 at its public IP"
    );

    // A second public IP for the same workload, and garbage, are refused in SSNTP's own form.
    let mut dup = public_ip_command(&ta, "203.0.113.11", &a1.ip);
    let mut bad = dup.clone();
    bad.public_ip = "not-an-ip".into();
    for (cmd, reason) in [(&mut dup, "assign_failure"), (&mut bad, "invalid_data")] {
        let f = Frame::new(
            kind::COMMAND,
            command::ASSIGN_PUBLIC_IP,
            uuid::Uuid::new_v4(),
            AssignPublicIp(cmd.clone()).to_yaml(),
        );
        let reply = ssntp_exchange(
            &cluster,
            &controller,
            uuid::Uuid::new_v4(),
            role::CONTROLLER,
            vec![f],
            |f| {
                f.kind == kind::ERROR || f.kind == kind::EVENT && f.operand != event::NODE_CONNECTED
            },
        )
        .expect("a reply");
        assert_eq!(
            (reply.kind, reply.operand),
            (kind::ERROR, error::ASSIGN_PUBLIC_IP_FAILURE)
        );
        assert!(String::from_utf8_lossy(&reply.payload).contains(reason));
    }
    assert!(
        cluster.ext.ping(PUBLIC, 1),
        "a refused command changed nothing"
    );

    let release = Frame::new(
        kind::COMMAND,
        command::RELEASE_PUBLIC_IP,
        uuid::Uuid::new_v4(),
        ReleasePublicIp(cmd).to_yaml(),
    );
    let reply = ssntp_exchange(
        &cluster,
        &controller,
        uuid::Uuid::new_v4(),
        role::CONTROLLER,
        vec![release],
        |f| f.kind != kind::EVENT || f.operand != event::NODE_CONNECTED,
    )
    .expect("a reply to ReleasePublicIP");
    assert_eq!(
        (reply.kind, reply.operand),
        (kind::EVENT, event::PUBLIC_IP_UNASSIGNED)
    );
    assert!(
        !cluster.ext.ping(PUBLIC, 2),
        "still reachable after release"
    );
    assert!(a1.ping(EXT_IP, 2), "outbound NAT after release");
    let show = cluster.agent_show(&ta).expect("show");
    assert_eq!(show["public_ips"], serde_json::json!([]));
}

#[test]
fn a_vm_like_tap_client_gets_its_address_from_the_cnci_dhcp() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let ta = cluster.add_tenant(TENANT_A).expect("tenant A");
    let a2 = container(&cluster, Cn::Cn2, &ta, S1, "172.16.1.11");
    // The "guest": a namespace whose eth0 (MAC 02:00:ac:10:01:20) is wired to a port named like
    // a QEMU tap on CN1, attached through the core's tap path as the QEMU hook will do.
    let guest = testkit::Netns::new("guest");
    let tap = format!("tap{}", std::process::id() % 100000);
    let cn1 = &cluster.cn1;
    cn1.ns.exec(&[
        "ip", "link", "add", &tap, "type", "veth", "peer", "name", "g0",
    ]);
    cn1.ns
        .exec(&["ip", "link", "set", "g0", "netns", &guest.name]);
    guest.exec(&["ip", "link", "set", "g0", "name", "eth0"]);
    guest.exec(&[
        "ip",
        "link",
        "set",
        "eth0",
        "address",
        "02:00:ac:10:01:20",
        "up",
    ]);
    let cfg = SubnetConfig::new(
        ta.tenant.parse().expect("tenant"),
        S1.parse().expect("subnet"),
        Cnci {
            uuid: ta.cnci.parse().expect("cnci"),
            ip: NN_IP.parse().expect("ip"),
        },
    );
    let req = VnicRequest {
        id: VnicId {
            owner: "vm-dhcp".into(),
            ifname: tap.clone(),
        },
        kind: VnicKind::Tap {
            name: tap.clone(),
            uid: None,
            gid: None,
        },
        ip: Some("172.16.1.32".parse().expect("ip")),
        mac: None,
        default_route: false,
        allowed: Vec::new(),
        security_groups: Vec::new(),
    };
    let state = cn1.state.path().to_path_buf();
    in_netns(&cn1.ns.path(), || {
        let mut node = Node::open(&NodeConfig { state_dir: state }).expect("node");
        node.attach(&cfg, &req).expect("attach the tap");
    });
    let net_key = netcore::ids::net_key(cfg.tenant, cfg.subnet);
    cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("CN1 registered by the tap attach");
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("udhcpc.sh");
    let lease = dir.path().join("lease");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nip addr add $ip/$mask dev $interface\nip route add default via $router\necho \"$ip $mask $router $mtu\" > {}\n",
            lease.display()
        ),
    )
    .expect("script");
    Command::new("chmod")
        .args(["+x"])
        .arg(&script)
        .status()
        .expect("chmod");
    let out = guest.try_exec(&[
        "busybox",
        "udhcpc",
        "-i",
        "eth0",
        "-n",
        "-q",
        "-f",
        "-t",
        "5",
        "-T",
        "1",
        "-O",
        "mtu",
        "-s",
        script.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "udhcpc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = std::fs::read_to_string(&lease).expect("lease written");
    assert_eq!(got.trim(), "172.16.1.32 24 172.16.1.1 1450");
    assert!(
        guest.ping(&a2.ip, 3),
        "the guest reaches a container on CN2"
    );
    in_netns(&cn1.ns.path(), || {
        let mut node = Node::open(&NodeConfig {
            state_dir: cn1.state.path().to_path_buf(),
        })
        .expect("node");
        node.detach(&net_key, &req.id).expect("detach");
    });
}

#[test]
fn the_last_container_of_a_subnet_leaving_a_node_takes_its_tunnel_end_off_the_hub() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let ta = cluster.add_tenant(TENANT_A).expect("tenant A");
    let a1 = container(&cluster, Cn::Cn1, &ta, S1, "172.16.1.10");
    let a4 = container(&cluster, Cn::Cn1, &ta, S1, "172.16.1.12");
    let mut a2 = container(&cluster, Cn::Cn2, &ta, S1, "172.16.1.11");
    cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("both");
    assert!(a1.ping(&a2.ip, 2));
    a2.remove().expect_ok("DEL a2");
    assert!(
        cluster.cn2.ciao_links().is_empty(),
        "CN2 keeps links: {:?}",
        cluster.cn2.ciao_links()
    );
    cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip()])
        .expect("CN2 off the flood list");
    assert!(a1.ping(&a4.ip, 3), "CN1 local");
    assert!(a1.ping("172.16.1.1", 3), "CN1 to its gateway at the hub");
}

#[test]
fn the_agent_restarts_without_disturbing_flows_and_repeated_registrations_change_nothing() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let (ta, a1, a2) = on_both_nodes(&mut cluster, TENANT_A);
    let tenant_ns = cluster.tenant_ns(&ta);
    let links_before = tenant_ns.exec(&["ip", "-o", "link", "show"]);
    let fdb = |ns: &testkit::Netns| {
        let mut l: Vec<String> = ns
            .exec(&["bridge", "fdb", "show"])
            .lines()
            .filter(|l| l.starts_with("00:00:00:00:00:00"))
            .map(str::to_string)
            .collect();
        l.sort();
        l
    };
    let flood_before = fdb(&tenant_ns);
    // Leftovers no record wants: a bridge of an unknown subnet with a port, and an unattached
    // device named like a tunnel. The restart's reconcile removes exactly these.
    tenant_ns.exec(&["ip", "link", "add", "sbac10090024", "type", "bridge"]);
    tenant_ns.exec(&[
        "ip",
        "link",
        "add",
        "th00000000beef",
        "type",
        "veth",
        "peer",
        "name",
        "p1",
    ]);
    tenant_ns.exec(&[
        "ip",
        "link",
        "set",
        "th00000000beef",
        "master",
        "sbac10090024",
    ]);
    tenant_ns.exec(&[
        "ip",
        "link",
        "add",
        "vh00000000beef",
        "type",
        "veth",
        "peer",
        "name",
        "p2",
    ]);

    let pings = std::thread::scope(|s| {
        let flow = s.spawn(|| {
            a1.ns
                .try_exec(&["ping", "-c", "80", "-i", "0.05", "-W", "1", &a2.ip])
        });
        std::thread::sleep(Duration::from_millis(500));
        cluster.kill_agent(&ta);
        std::thread::sleep(Duration::from_millis(500));
        cluster.restart_agent(&ta).expect("restart");
        flow.join().expect("ping")
    });
    let text = String::from_utf8_lossy(&pings.stdout);
    let received: u32 = text
        .split(" received")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("ping summary");
    assert!(
        received >= 60,
        "a flow lost more than a second across the restart: {text}"
    );
    assert_eq!(
        tenant_ns.exec(&["ip", "-o", "link", "show"]),
        links_before,
        "links recreated"
    );
    assert_eq!(fdb(&tenant_ns), flood_before);

    // CN1's registration again, re-delivered for real: its daemon restarts and re-announces
    // (TenantAdded, then TenantSync). Nothing changes.
    let cnci_log = cluster.log(&ta.cnci);
    let from = std::fs::metadata(&cnci_log).map(|m| m.len()).unwrap_or(0);
    cluster.kill_daemon(Cn::Cn1);
    cluster.start_daemon(Cn::Cn1).expect("cn1 daemon restarts");
    wait_complete_line(&cnci_log, from, "tenant_sync from agent");
    assert_eq!(tenant_ns.exec(&["ip", "-o", "link", "show"]), links_before);
    assert_eq!(fdb(&tenant_ns), flood_before);
    assert!(a1.ping(&a2.ip, 2));
}

#[test]
fn a_subnet_attached_while_its_cnci_agent_is_down_reaches_it_when_it_returns() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let ta = cluster.add_tenant(TENANT_A).expect("tenant A");
    cluster.kill_agent(&ta);
    let a1 = container(&cluster, Cn::Cn1, &ta, S1, "172.16.1.10");
    let a2 = container(&cluster, Cn::Cn2, &ta, S1, "172.16.1.11");
    for cn in Cn::ALL {
        cluster
            .wait_reports_delivered(cn, Duration::from_secs(10))
            .expect("delivered to the scheduler");
    }
    cluster.restart_agent(&ta).expect("agent restarts");
    cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("held by the scheduler, delivered on connect");
    assert!(a1.ping(&a2.ip, 3));
}

#[test]
fn the_scheduler_restarts_the_agent_reregisters_and_attaches_made_meanwhile_arrive() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let ta = cluster.add_tenant(TENANT_A).expect("tenant A");
    let a1 = container(&cluster, Cn::Cn1, &ta, S1, "172.16.1.10");
    cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip()])
        .expect("s1");
    cluster.kill_scheduler();
    let a5 = container(&cluster, Cn::Cn2, &ta, S3, "172.16.3.10");
    std::thread::sleep(Duration::from_secs(1));
    cluster.restart_scheduler().expect("scheduler restarts");
    // A controller connected now sees the agent announce itself again.
    let cnci = ta.cnci.clone();
    let announced = ssntp_exchange(
        &cluster,
        &cluster.certs.controller(),
        uuid::Uuid::new_v4(),
        role::CONTROLLER,
        vec![],
        move |f| {
            f.kind == kind::EVENT
                && f.operand == event::CONCENTRATOR_INSTANCE_ADDED
                && String::from_utf8_lossy(&f.payload).contains(&cnci)
        },
    );
    assert!(
        announced.is_some(),
        "no ConcentratorInstanceAdded after the scheduler restart"
    );
    cluster
        .wait_connected(&ta, Duration::from_secs(15))
        .expect("agent reconnected");
    cluster
        .wait_programmed(&ta, S3, &[Cn::Cn2.ip()])
        .expect("the attach made during the outage arrived");
    assert!(a1.ping(&a5.ip, 3), "routed to the new subnet");
}

#[test]
fn a_df_packet_of_exactly_the_workload_mtu_crosses_the_hub_and_one_byte_more_fails() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let (_ta, a1, a2) = on_both_nodes(&mut cluster, TENANT_A);
    let mtu = a1.exec(&["cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu.trim(), "1450");
    // 1450 = 20 IP + 8 ICMP + 1422 payload.
    let fits = a1.ns.try_exec(&[
        "ping", "-M", "do", "-s", "1422", "-c", "3", "-W", "1", &a2.ip,
    ]);
    assert!(
        fits.status.success(),
        "{}",
        String::from_utf8_lossy(&fits.stdout)
    );
    let over = a1.ns.try_exec(&[
        "ping", "-M", "do", "-s", "1423", "-c", "1", "-W", "1", &a2.ip,
    ]);
    assert!(!over.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&over.stdout),
        String::from_utf8_lossy(&over.stderr)
    );
    assert!(
        text.contains("message too long") || text.contains("mtu=1450"),
        "{text}"
    );
}

/// GRE tap and Geneve hubs: one point-to-point device per (subnet, CN) in the tenant namespace.
/// This machine's kernel has neither: here they say so by name; the kernel lane runs them.
#[test]
fn point_to_point_hubs_over_gretap() {
    require_root!();
    point_to_point_hubs_over("gretap", &GRETAP_PROBE);
}

#[test]
fn point_to_point_hubs_over_geneve() {
    require_root!();
    point_to_point_hubs_over("geneve", &GENEVE_PROBE);
}

/// Two containers on different CNs of one subnet over a `kind` tunnel ping across the hub;
/// skips by name if `ip link add p0 <probe>` shows that the kernel lacks `kind`.
fn point_to_point_hubs_over(kind: &str, probe: &[&str]) {
    if kernel_lacks(&format!("point_to_point_hubs_over_{kind}"), kind, probe) {
        return;
    }
    let mut cluster = Cluster::new().expect("cluster");
    let ta = cluster.add_tenant(TENANT_A).expect("tenant A");
    let extra = serde_json::json!({"tunnel": {"kind": kind}});
    let a1 = cluster
        .container_with(Cn::Cn1, &ta, S1, "172.16.1.10", extra.clone())
        .expect("a1");
    let a2 = cluster
        .container_with(Cn::Cn2, &ta, S1, "172.16.1.11", extra)
        .expect("a2");
    let entry = cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("one device per CN");
    assert_eq!(entry["kind"], kind);
    assert!(a1.ping(&a2.ip, 3), "{kind}: across the hub");
}

/// True (and `test` says `skipped: ... kernel lacks <kind>`) if `ip link add p0 <probe>` fails
/// in a fresh namespace: this machine's kernel lacks `kind`; the kernel lane runs the test.
fn kernel_lacks(test: &str, kind: &str, probe: &[&str]) -> bool {
    let ns = testkit::Netns::new("probe");
    let mut args = vec!["ip", "link", "add", "p0"];
    args.extend_from_slice(probe);
    let made = ns.try_exec(&args);
    if made.status.success() {
        return false;
    }
    testkit::skip(
        test,
        &format!(
            "kernel lacks {kind} ({})",
            String::from_utf8_lossy(&made.stderr).trim()
        ),
    );
    true
}

const GRETAP_PROBE: [&str; 8] = [
    "type", "gretap", "remote", "10.9.9.1", "local", "10.9.9.2", "key", "7",
];

const GENEVE_PROBE: [&str; 6] = ["type", "geneve", "id", "7", "remote", "10.9.9.1"];

/// a1 on CN1 and a2 on CN2 in subnet 1 of tenant A over a `kind` tunnel, the hub programmed
/// toward both nodes.
fn on_both_nodes_over(cluster: &mut Cluster, kind: &str) -> (Tenant, Workload, Workload) {
    tenant_on_both_nodes_over(cluster, TENANT_A, kind)
}

/// [`on_both_nodes_over`] for `tenant`.
fn tenant_on_both_nodes_over(
    cluster: &mut Cluster,
    tenant: &str,
    kind: &str,
) -> (Tenant, Workload, Workload) {
    let ta = cluster.add_tenant(tenant).expect("tenant");
    let extra = serde_json::json!({"tunnel": {"kind": kind}});
    let a1 = cluster
        .container_with(Cn::Cn1, &ta, S1, "172.16.1.10", extra.clone())
        .expect("a1");
    let a2 = cluster
        .container_with(Cn::Cn2, &ta, S1, "172.16.1.11", extra)
        .expect("a2");
    cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("hub programmed toward both nodes");
    (ta, a1, a2)
}

/// The workload MTU is the underlay's (1500) minus the `kind`'s overhead; a DF ping of exactly
/// that size crosses the hub, one byte more fails with "message too long".
fn df_packet_of_the_workload_mtu_over(kind: &str, overhead: u32) {
    let mut cluster = Cluster::new().expect("cluster");
    let (_ta, a1, a2) = on_both_nodes_over(&mut cluster, kind);
    let mtu: u32 = a1
        .exec(&["cat", "/sys/class/net/eth0/mtu"])
        .trim()
        .parse()
        .expect("eth0 mtu");
    assert_eq!(mtu, 1500 - overhead, "{kind}");
    let fits = (mtu - 28).to_string(); // 20 IP + 8 ICMP
    let over = (mtu - 27).to_string();
    let ok = a1.ns.try_exec(&[
        "ping", "-M", "do", "-s", &fits, "-c", "3", "-W", "1", &a2.ip,
    ]);
    assert!(
        ok.status.success(),
        "{kind}: {}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let too_big = a1.ns.try_exec(&[
        "ping", "-M", "do", "-s", &over, "-c", "1", "-W", "1", &a2.ip,
    ]);
    assert!(!too_big.status.success(), "{kind}: one byte over the MTU");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&too_big.stdout),
        String::from_utf8_lossy(&too_big.stderr)
    );
    assert!(
        text.contains("message too long") || text.contains(&format!("mtu={mtu}")),
        "{kind}: {text}"
    );
}

#[test]
fn a_df_packet_of_exactly_the_workload_mtu_crosses_a_gretap_hub_and_one_byte_more_fails() {
    require_root!();
    let test =
        "a_df_packet_of_exactly_the_workload_mtu_crosses_a_gretap_hub_and_one_byte_more_fails";
    if !kernel_lacks(test, "gretap", &GRETAP_PROBE) {
        df_packet_of_the_workload_mtu_over("gretap", 42);
    }
}

#[test]
fn a_df_packet_of_exactly_the_workload_mtu_crosses_a_geneve_hub_and_one_byte_more_fails() {
    require_root!();
    let test =
        "a_df_packet_of_exactly_the_workload_mtu_crosses_a_geneve_hub_and_one_byte_more_fails";
    if !kernel_lacks(test, "geneve", &GENEVE_PROBE) {
        df_packet_of_the_workload_mtu_over("geneve", 50);
    }
}

/// The last container of the subnet leaving CN2 removes CN2's tunnel end and bridge, and the
/// hub's device toward CN2; CN1 keeps working through the hub.
fn last_cn_teardown_over(kind: &str) {
    let mut cluster = Cluster::new().expect("cluster");
    let (ta, a1, mut a2) = on_both_nodes_over(&mut cluster, kind);
    assert!(a1.ping(&a2.ip, 2), "{kind}: across the hub");
    a2.remove().expect_ok("DEL a2");
    assert!(
        cluster.cn2.ciao_links().is_empty(),
        "{kind}: CN2 keeps links: {:?}",
        cluster.cn2.ciao_links()
    );
    let entry = cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip()])
        .expect("CN2 off the hub");
    assert_eq!(entry["kind"], kind);
    // The hub's side in the kernel: its devices of `kind` name CN1's address only.
    let hub = cluster.tenant_ns(&ta);
    let deadline = Instant::now() + Duration::from_secs(20);
    let devices = loop {
        let devices = hub.exec(&["ip", "-o", "-d", "link", "show", "type", kind]);
        let toward_cn2 = devices.contains(&format!("remote {}", Cn::Cn2.ip()));
        if !toward_cn2 || Instant::now() > deadline {
            break devices;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !devices.contains(&format!("remote {}", Cn::Cn2.ip())),
        "{kind}: the hub keeps a device toward CN2: {devices}"
    );
    assert!(
        devices.contains(&format!("remote {}", Cn::Cn1.ip())),
        "{kind}: the hub lost its device toward CN1: {devices}"
    );
    assert!(
        a1.ping("172.16.1.1", 3),
        "{kind}: CN1 to its gateway at the hub"
    );
}

#[test]
fn the_last_container_leaving_a_node_takes_its_gretap_end_off_both_sides() {
    require_root!();
    let test = "the_last_container_leaving_a_node_takes_its_gretap_end_off_both_sides";
    if !kernel_lacks(test, "gretap", &GRETAP_PROBE) {
        last_cn_teardown_over("gretap");
    }
}

#[test]
fn the_last_container_leaving_a_node_takes_its_geneve_end_off_both_sides() {
    require_root!();
    let test = "the_last_container_leaving_a_node_takes_its_geneve_end_off_both_sides";
    if !kernel_lacks(test, "geneve", &GENEVE_PROBE) {
        last_cn_teardown_over("geneve");
    }
}

/// Two tenants with the same subnet and the same addresses over `kind` tunnels: each pings
/// inside itself, and not one echo request reaches the other tenant's workloads.
fn two_tenants_exchange_no_packet_over(kind: &str) {
    let mut cluster = Cluster::new().expect("cluster");
    let (_ta, a1, a2) = tenant_on_both_nodes_over(&mut cluster, TENANT_A, kind);
    let (_tb, b1, b2) = tenant_on_both_nodes_over(&mut cluster, TENANT_B, kind);
    for w in [&a1, &a2, &b1, &b2] {
        add_counter(w, "echo", "icmp type echo-request");
    }
    assert!(a1.ping(&a2.ip, 10), "{kind}: A internally");
    assert!(b1.ping(&b2.ip, 10), "{kind}: B internally");
    assert_eq!(
        [&a1, &a2, &b1, &b2].map(|w| counter(w, "echo")),
        [0, 10, 0, 10],
        "{kind}: echo requests seen by a1, a2, b1, b2"
    );
}

#[test]
fn tenants_with_identical_subnets_exchange_no_packet_over_gretap() {
    require_root!();
    let test = "tenants_with_identical_subnets_exchange_no_packet_over_gretap";
    if !kernel_lacks(test, "gretap", &GRETAP_PROBE) {
        two_tenants_exchange_no_packet_over("gretap");
    }
}

#[test]
fn tenants_with_identical_subnets_exchange_no_packet_over_geneve() {
    require_root!();
    let test = "tenants_with_identical_subnets_exchange_no_packet_over_geneve";
    if !kernel_lacks(test, "geneve", &GENEVE_PROBE) {
        two_tenants_exchange_no_packet_over("geneve");
    }
}

/// The tenant's agent killed and restarted while a1 pings a2 across a `kind` hub: the
/// kernel datapath carries the flow throughout, and the restart recreates no link.
fn agent_restart_keeps_flows_over(kind: &str) {
    let mut cluster = Cluster::new().expect("cluster");
    let (ta, a1, a2) = on_both_nodes_over(&mut cluster, kind);
    let tenant_ns = cluster.tenant_ns(&ta);
    let links_before = tenant_ns.exec(&["ip", "-o", "link", "show"]);
    let (pings, overlapped) = std::thread::scope(|s| {
        let flow = s.spawn(|| {
            a1.ns
                .try_exec(&["ping", "-c", "100", "-i", "0.1", "-W", "1", &a2.ip])
        });
        cluster.kill_agent(&ta);
        cluster.restart_agent(&ta).expect("restart");
        // The restart must fall inside the flow for the check to mean anything.
        let overlapped = !flow.is_finished();
        (flow.join().expect("ping"), overlapped)
    });
    let text = String::from_utf8_lossy(&pings.stdout);
    assert!(
        overlapped,
        "{kind}: the flow ended before the restart: {text}"
    );
    let received: u32 = text
        .split(" received")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("ping summary");
    assert!(
        received >= 90,
        "{kind}: the flow lost packets across the restart: {text}"
    );
    assert_eq!(
        tenant_ns.exec(&["ip", "-o", "link", "show"]),
        links_before,
        "{kind}: links recreated"
    );
    assert!(a1.ping(&a2.ip, 2), "{kind}: after the restart");
}

#[test]
fn the_agent_restarts_without_disturbing_flows_over_gretap() {
    require_root!();
    let test = "the_agent_restarts_without_disturbing_flows_over_gretap";
    if !kernel_lacks(test, "gretap", &GRETAP_PROBE) {
        agent_restart_keeps_flows_over("gretap");
    }
}

#[test]
fn the_agent_restarts_without_disturbing_flows_over_geneve() {
    require_root!();
    let test = "the_agent_restarts_without_disturbing_flows_over_geneve";
    if !kernel_lacks(test, "geneve", &GENEVE_PROBE) {
        agent_restart_keeps_flows_over("geneve");
    }
}

/// Interop with ciao's Go CNCI: with `tunnel.id` = ciao's `subnet_key`, the GRE tap our CN makes
/// toward the CNCI has what ciao's libsnnet (`gre.go`: vishvananda/netlink `Gretap{IKey, OKey,
/// Local, Remote, PMtuDisc: 1}`, which sets GRE_KEY in both flag words) gives its own end:
/// local and remote underlay addresses, ikey = okey = the key, KEY and nothing else in both
/// directions, path MTU discovery on.
#[test]
fn gretap_on_the_cn_is_keyed_as_ciaos_cnci_expects() {
    require_root!();
    if kernel_lacks(
        "gretap_on_the_cn_is_keyed_as_ciaos_cnci_expects",
        "gretap",
        &GRETAP_PROBE,
    ) {
        return;
    }
    // ciao's subnet_key of 172.16.1.0/24: the network address as a little-endian u32.
    let key = u32::from_le_bytes([172, 16, 1, 0]);
    assert_eq!(key, 69804);
    let mut cluster = Cluster::new().expect("cluster");
    let ta = cluster.add_tenant(TENANT_A).expect("tenant A");
    let extra = serde_json::json!({"tunnel": {"kind": "gretap", "id": key}});
    let _a1 = cluster
        .container_with(Cn::Cn1, &ta, S1, "172.16.1.10", extra)
        .expect("a1");
    cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip()])
        .expect("CN1 registered");
    let links = in_netns(&cluster.cn1.ns.path(), || {
        netcore::netlink::Netlink::open()
            .expect("netlink")
            .links()
            .expect("links")
    });
    let grets: Vec<_> = links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("gretap") && l.name != "gretap0")
        .collect();
    assert_eq!(grets.len(), 1, "one GRE tap toward the CNCI: {links:?}");
    let Some(netcore::netlink::InfoData::GreTap(info)) = &grets[0].data else {
        panic!("no gretap data: {:?}", grets[0])
    };
    let cn1: std::net::Ipv4Addr = Cn::Cn1.ip().parse().expect("CN1 address");
    let cnci: std::net::Ipv4Addr = NN_IP.parse().expect("CNCI address");
    for want in [
        InfoGre::Local(cn1),
        InfoGre::Remote(cnci),
        InfoGre::IKey(key),
        InfoGre::OKey(key),
        InfoGre::IFlags(GreIOFlags::Key),
        InfoGre::OFlags(GreIOFlags::Key),
        InfoGre::PathMTUDiscovery(true),
    ] {
        assert!(info.contains(&want), "{want:?} missing in {info:?}");
    }
}

/// Two tenants whose subnets were configured with the same VNI: the network node can host it
/// once per underlay address. The second CNCI refuses the registration and stays healthy.
#[test]
fn a_vni_taken_on_the_network_node_is_refused_without_harming_either_tenant() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let ta = cluster.add_tenant(TENANT_A).expect("tenant A");
    let tb = cluster.add_tenant(TENANT_B).expect("tenant B");
    let same = serde_json::json!({"tunnel": {"kind": "vxlan", "id": 4242}});
    let a1 = cluster
        .container_with(Cn::Cn1, &ta, S1, "172.16.1.10", same.clone())
        .expect("a1");
    cluster
        .wait_programmed(&ta, S1, &[Cn::Cn1.ip()])
        .expect("A");
    let _b2 = cluster
        .container_with(Cn::Cn2, &tb, S1, "172.16.1.11", same)
        .expect("b2 attaches on its node");
    cluster
        .wait_reports_delivered(Cn::Cn2, Duration::from_secs(10))
        .expect("delivered");
    std::thread::sleep(Duration::from_millis(500));
    let show = cluster.agent_show(&tb).expect("show B");
    assert!(
        subnet_entry(&show, S1).is_null(),
        "B recorded an unprogrammable subnet: {show}"
    );
    let b3 = container(&cluster, Cn::Cn2, &tb, S2, "172.16.2.10");
    cluster
        .wait_programmed(&tb, S2, &[Cn::Cn2.ip()])
        .expect("B's other subnet");
    assert!(b3.ping("172.16.2.1", 2), "B's CNCI serves its other subnet");
    cluster.restart_agent(&tb).expect("B restarts cleanly");
    assert!(a1.ping("172.16.1.1", 2), "A untouched");
}
