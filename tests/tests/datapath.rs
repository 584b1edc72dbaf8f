//! Workloads on one simulated compute node: they reach each other, tenants with the same subnet
//! stay isolated, the subnet's bridge and tunnel live exactly as long as its workloads, and
//! dockerd's FORWARD DROP policy does not break our bridges.

use serde_json::Value;
use testkit::{json, require_root, ComputeNode, Netns, TENANT_A, TENANT_B};

fn add(node: &ComputeNode, conf: &Value, id: &str, ctr: &Netns, ip: &str) -> Value {
    let mut c = conf.clone();
    c["runtimeConfig"] = json!({ "ips": [ip] });
    node.cni("ADD", id, &ctr.path().display().to_string(), &c)
        .expect_ok(&format!("ADD {id}"))
}

/// Counts, in `ctr`, frames arriving on eth0 from any of `macs` (nft netdev ingress counter).
fn install_counter(ctr: &Netns, macs: &[&str]) {
    let set = macs.join(", ");
    let rules = format!(
        "add table netdev watch; add chain netdev watch in {{ type filter hook ingress device eth0 priority 0; }}; add rule netdev watch in ether saddr {{ {set} }} counter"
    );
    ctr.exec(&["nft", &rules]);
}

fn counted(ctr: &Netns) -> u64 {
    let out = ctr.exec(&["nft", "list", "table", "netdev", "watch"]);
    out.split("packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {out}"))
}

#[test]
fn containers_of_one_subnet_ping_and_other_tenants_with_the_same_subnet_are_isolated() {
    require_root!();
    let node = ComputeNode::new();
    let conf_a = node.conf("1.1.0", "tenant-a", TENANT_A, "172.16.1.0/24");
    let conf_b = node.conf("1.1.0", "tenant-b", TENANT_B, "172.16.1.0/24");
    let (a1, a2, b1, b2) = (
        Netns::new("a1"),
        Netns::new("a2"),
        Netns::new("b1"),
        Netns::new("b2"),
    );
    add(&node, &conf_a, "a1", &a1, "172.16.1.2");
    // a2 gets an explicit MAC so that its frames can be told from b2's (same address).
    let mut a2_conf = conf_a.clone();
    a2_conf["runtimeConfig"] = json!({"ips": ["172.16.1.3"], "mac": "02:00:00:00:0a:03"});
    node.cni("ADD", "a2", &a2.path().display().to_string(), &a2_conf)
        .expect_ok("ADD a2");
    // Tenant B: the same subnet, one address identical to A's (.3), one only B has (.10).
    add(&node, &conf_b, "b1", &b1, "172.16.1.10");
    add(&node, &conf_b, "b2", &b2, "172.16.1.3");

    // Each tenant has its own bridge and tunnel with its own VNI.
    let links = node.ciao_links();
    assert_eq!(
        links.iter().filter(|l| l.starts_with("cb")).count(),
        2,
        "{links:?}"
    );
    assert_eq!(
        links.iter().filter(|l| l.starts_with("ct")).count(),
        2,
        "{links:?}"
    );
    let vnis: Vec<String> = node
        .ns
        .exec(&["ip", "-d", "-o", "link", "show", "type", "vxlan"])
        .lines()
        .filter_map(|l| l.split("vxlan id ").nth(1))
        .filter_map(|s| s.split_whitespace().next().map(String::from))
        .collect();
    assert_eq!(vnis.len(), 2);
    assert_ne!(vnis[0], vnis[1], "tenants must not share a VNI");

    // Count anything from A's MACs that reaches B's workloads, with IPv6 left on (DAD, MLD).
    let a_macs = ["02:00:ac:10:01:02", "02:00:00:00:0a:03"];
    install_counter(&b1, &a_macs);
    install_counter(&b2, &a_macs);
    // Control: the same counter in tenant A's own a2 does see a1's frames.
    install_counter(&a2, &a_macs[..1]);
    for ns in [&a1, &a2, &b1, &b2] {
        assert_eq!(
            ns.exec(&["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"])
                .trim(),
            "0"
        );
    }

    assert!(a1.ping("172.16.1.3", 5), "a1 -> a2");
    assert!(a2.ping("172.16.1.2", 5), "a2 -> a1");
    assert!(b1.ping("172.16.1.3", 5), "b1 -> b2");
    // a1 cannot reach an address that exists only in tenant B.
    assert!(!a1.ping("172.16.1.10", 3), "a1 must not reach b1");
    // Broadcast and IPv6 all-nodes multicast from A stay in A.
    let _ = a1.try_exec(&[
        "ping",
        "-b",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        "172.16.1.255",
    ]);
    let _ = a1.try_exec(&[
        "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "eth0", "ff02::1",
    ]);
    assert!(counted(&a2) > 0, "the counter works: a2 saw a1's frames");
    assert_eq!(counted(&b1), 0, "frames from tenant A reached b1");
    assert_eq!(counted(&b2), 0, "frames from tenant A reached b2");

    for (id, conf) in [
        ("a1", &conf_a),
        ("a2", &conf_a),
        ("b1", &conf_b),
        ("b2", &conf_b),
    ] {
        node.cni("DEL", id, "", conf).expect_ok("DEL");
    }
    assert!(node.ciao_links().is_empty());
}

#[test]
fn bridge_and_tunnel_live_from_the_first_add_to_the_last_del() {
    require_root!();
    let node = ComputeNode::new();
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    assert!(node.ciao_links().is_empty());

    let first = add(&node, &conf, "c1", &c1, "172.16.1.2");
    let bridge = first["interfaces"][0]["name"]
        .as_str()
        .expect("bridge")
        .to_string();
    let links = node.ciao_links();
    assert!(links.contains(&bridge), "{links:?}");
    let tunnel = links
        .iter()
        .find(|l| l.starts_with("ct"))
        .expect("tunnel")
        .clone();
    let detail = node.ns.exec(&["ip", "-d", "link", "show", &tunnel]);
    assert!(
        detail.contains(&format!("remote {}", node.cnci_ip)),
        "{detail}"
    );
    assert!(detail.contains(&format!("local {}", node.ip)), "{detail}");
    assert!(detail.contains("dstport 4789"), "{detail}");
    assert!(
        detail.contains("mtu 1450"),
        "underlay 1500 - VXLAN 50: {detail}"
    );
    assert!(detail.contains(&format!("master {bridge}")), "{detail}");
    let reports = node.reports();
    assert_eq!(reports.len(), 1, "first ADD queues TenantAdded");
    let added = &reports[0];
    assert_eq!(added["event"], "tenant_added");
    assert_eq!(added["tenant_uuid"], TENANT_A);
    assert_eq!(added["tenant_subnet"], "172.16.1.0/24");
    assert_eq!(added["agent_ip"], node.ip.as_str());
    assert_eq!(added["concentrator_ip"], node.cnci_ip.as_str());
    assert_eq!(
        added["concentrator_uuid"],
        "3390740c-dce9-48d6-b83a-a717417072ce"
    );
    assert_eq!(added["subnet_key"], 69804, "ciao's LE32 subnet key");
    assert_eq!(added["tunnel_kind"], "vxlan");
    let vni = detail
        .split("vxlan id ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<u64>().ok())
        .expect("vni");
    assert_eq!(added["tunnel_id"], vni);

    add(&node, &conf, "c2", &c2, "172.16.1.3");
    assert_eq!(node.reports().len(), 1, "the second vnic reports nothing");
    // The node's own ports are pure L2: no IPv6 of the node inside a tenant network.
    for link in node.ciao_links() {
        let path = format!("/proc/sys/net/ipv6/conf/{link}/disable_ipv6");
        assert_eq!(node.ns.exec(&["cat", &path]).trim(), "1", "{link}");
    }
    assert!(c1.ping("172.16.1.3", 2));

    node.cni("DEL", "c1", "", &conf).expect_ok("DEL c1");
    let links = node.ciao_links();
    assert!(
        links.contains(&bridge) && links.contains(&tunnel),
        "still in use: {links:?}"
    );
    assert_eq!(node.reports().len(), 1);

    node.cni("DEL", "c2", "", &conf).expect_ok("DEL c2");
    assert!(node.ciao_links().is_empty(), "{:?}", node.ciao_links());
    let reports = node.reports();
    assert_eq!(reports.len(), 2);
    let removed = &reports[1];
    assert_eq!(removed["event"], "tenant_removed");
    for key in [
        "agent_uuid",
        "agent_ip",
        "tenant_uuid",
        "tenant_subnet",
        "concentrator_uuid",
        "concentrator_ip",
        "subnet_key",
        "tunnel_kind",
        "tunnel_id",
    ] {
        assert_eq!(removed[key], added[key], "{key}");
    }
}

#[test]
fn mtu_follows_the_underlay_and_the_override() {
    require_root!();
    let node = ComputeNode::with_underlay_mtu(9000);
    let ctr = Netns::new("ctr");
    let conf = node.conf("1.1.0", "jumbo", TENANT_A, "172.16.1.0/24");
    let out = add(&node, &conf, "c1", &ctr, "172.16.1.2");
    assert_eq!(out["interfaces"][2]["mtu"], 8950);
    assert!(ctr
        .exec(&["ip", "link", "show", "eth0"])
        .contains("mtu 8950"));
    node.cni("DEL", "c1", "", &conf).expect_ok("DEL");

    let mut fixed = conf.clone();
    fixed["mtu"] = json!(1400);
    let out = add(&node, &fixed, "c2", &ctr, "172.16.1.2");
    assert_eq!(out["interfaces"][2]["mtu"], 1400);
    for l in node.ciao_links() {
        let shown = node.ns.exec(&["ip", "link", "show", &l]);
        assert!(
            shown.contains("mtu 1400"),
            "every device gets the MTU: {shown}"
        );
    }
    node.cni("DEL", "c2", "", &fixed).expect_ok("DEL");
}

#[test]
fn tunnel_id_collisions_are_rejected_and_overrides_work() {
    require_root!();
    let node = ComputeNode::new();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let mut a = node.conf("1.1.0", "a", TENANT_A, "172.16.1.0/24");
    a["tunnel"] = json!({"kind": "vxlan", "id": 4242});
    let mut b = node.conf("1.1.0", "b", TENANT_B, "172.16.9.0/24");
    b["tunnel"] = json!({"kind": "vxlan", "id": 4242});
    add(&node, &a, "c1", &c1, "172.16.1.2");
    assert!(node
        .ns
        .exec(&["ip", "-d", "link", "show", "type", "vxlan"])
        .contains("id 4242"));
    let out = node.cni("ADD", "c2", &c2.path().display().to_string(), &b);
    assert_eq!(out.code(), Some(100), "{}", out.stdout);
    assert!(out.stdout.contains("4242"), "{}", out.stdout);
    assert_eq!(
        node.ciao_links().len(),
        3,
        "the failed ADD left nothing of tenant B"
    );
    node.cni("DEL", "c1", "", &a).expect_ok("DEL");
    assert!(node.ciao_links().is_empty());
}

#[test]
fn docker_forward_drop_policy_does_not_break_our_bridges() {
    require_root!();
    let node = ComputeNode::new();
    // dockerd's ruleset, as iptables-nft builds it (reference/docker-plugin-protocol.md §6).
    node.ns.exec(&["iptables", "-P", "FORWARD", "DROP"]);
    node.ns.exec(&["iptables", "-N", "DOCKER-USER"]);
    node.ns
        .exec(&["iptables", "-A", "DOCKER-USER", "-j", "RETURN"]);
    node.ns
        .exec(&["iptables", "-I", "FORWARD", "-j", "DOCKER-USER"]);
    assert_eq!(
        node.ns
            .exec(&["cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"])
            .trim(),
        "1",
        "bridged frames pass the FORWARD hook"
    );
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let first = add(&node, &conf, "c1", &c1, "172.16.1.2");
    add(&node, &conf, "c2", &c2, "172.16.1.3");
    let bridge = first["interfaces"][0]["name"]
        .as_str()
        .expect("bridge")
        .to_string();
    let rules = node.ns.exec(&["iptables", "-S", "DOCKER-USER"]);
    assert!(rules.contains(&bridge), "{rules}");
    assert!(
        c1.ping("172.16.1.3", 3),
        "ping through a bridge under FORWARD DROP"
    );

    // Control: without our rule the same ping dies, so the rule is what makes it work.
    let handle_line = node
        .ns
        .exec(&["nft", "-a", "list", "chain", "ip", "filter", "DOCKER-USER"]);
    let handle = handle_line
        .lines()
        .find(|l| l.contains(&bridge))
        .and_then(|l| l.split("# handle ").nth(1))
        .map(|h| h.trim().to_string())
        .expect("rule handle");
    node.ns.exec(&[
        "nft",
        "delete",
        "rule",
        "ip",
        "filter",
        "DOCKER-USER",
        "handle",
        &handle,
    ]);
    assert!(
        !c1.ping("172.16.1.3", 2),
        "FORWARD DROP must bite without the rule"
    );

    node.cni("DEL", "c1", "", &conf).expect_ok("DEL c1");
    node.cni("DEL", "c2", "", &conf).expect_ok("DEL c2");
    // The last DEL removed our rules (none left naming the bridge).
    assert!(!node
        .ns
        .exec(&["iptables", "-S", "DOCKER-USER"])
        .contains(&bridge));
}
