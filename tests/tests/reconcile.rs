//! `ciao-node reconcile`: repairs what crashes, reboots and vanished workloads leave behind.

use testkit::{json, require_root, ComputeNode, Netns, TENANT_A};

#[test]
fn reconcile_repairs_tunnels_drops_vanished_workloads_and_strays() {
    require_root!();
    let node = ComputeNode::new();
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let with_ip = |ctr: &Netns, id: &str, ip: &str| {
        let mut c = conf.clone();
        c["runtimeConfig"] = json!({"ips": [ip]});
        node.cni("ADD", id, &ctr.path().display().to_string(), &c)
            .expect_ok("ADD")
    };
    let first = with_ip(&c1, "c1", "172.16.1.2");
    with_ip(&c2, "c2", "172.16.1.3");
    let bridge = first["interfaces"][0]["name"]
        .as_str()
        .expect("bridge")
        .to_string();
    let tunnel = node
        .ciao_links()
        .into_iter()
        .find(|l| l.starts_with("ct"))
        .expect("tunnel");

    // Damage: the tunnel is gone, c2's namespace vanished without a DEL, a stray link carries
    // this node's alias, another one the alias format from before node ids for a subnet this
    // node records, and an address is reserved by nobody.
    let shown: serde_json::Value =
        serde_json::from_str(&node.tool(&["show", "--json"])).expect("show --json");
    let tag = shown["agent_uuid"].as_str().expect("agent uuid")[..8].to_string();
    node.ns.exec(&["ip", "link", "del", &tunnel]);
    drop(c2);
    let net = format!("{TENANT_A}_172.16.1.0_24");
    for (name, alias) in [
        (
            "cvstray",
            format!("ciao:{tag}:vnic:gone_10.0.0.0_24:x:eth0"),
        ),
        ("cvold", format!("ciao:vnic:{net}:old:eth0")),
        // Not this node's: another node id, and the old format for a subnet not recorded here.
        ("cvother", format!("ciao:00000000:vnic:{net}:x:eth0")),
        ("cvlegacy", "ciao:vnic:gone_10.0.0.0_24:x:eth0".to_string()),
    ] {
        let peer = format!("{name}1");
        node.ns.exec(&[
            "ip", "link", "add", name, "type", "veth", "peer", "name", &peer,
        ]);
        node.ns.exec(&["ip", "link", "set", name, "alias", &alias]);
    }
    let ips_dir = node
        .state
        .path()
        .join(format!("ips/{TENANT_A}_172.16.1.0_24"));
    std::fs::write(ips_dir.join("172.16.1.200"), "ghost:eth0").expect("orphan reservation");

    let summary = node.tool(&["reconcile"]);
    assert!(summary.contains("c2:eth0"), "{summary}");
    assert!(summary.contains("cvstray"), "{summary}");
    assert!(summary.contains("cvold"), "{summary}");
    assert!(summary.contains("172.16.1.200"), "{summary}");

    let links = node.ciao_links();
    assert!(links.contains(&tunnel), "tunnel re-created: {links:?}");
    assert!(!links.contains(&"cvstray".to_string()), "{links:?}");
    assert!(!links.contains(&"cvold".to_string()), "{links:?}");
    for kept in ["cvother", "cvlegacy"] {
        assert!(
            links.contains(&kept.to_string()),
            "{kept} is not this node's: {links:?}"
        );
    }
    let detail = node.ns.exec(&["ip", "-d", "link", "show", &tunnel]);
    assert!(detail.contains(&format!("master {bridge}")), "{detail}");
    assert!(!ips_dir.join("172.16.1.200").exists());
    assert!(
        !ips_dir.join("172.16.1.3").exists(),
        "c2's address released"
    );
    assert!(ips_dir.join("172.16.1.2").exists(), "c1's address kept");

    let shown: serde_json::Value =
        serde_json::from_str(&node.tool(&["show", "--json"])).expect("show --json");
    let vnics = shown["nets"][0]["vnics"].as_array().expect("vnics");
    assert_eq!(vnics.len(), 1, "{shown}");
    assert_eq!(vnics[0]["id"]["owner"], "c1");

    // A second run finds nothing to do.
    let again = node.tool(&["reconcile"]);
    assert!(
        again.contains("removed vnics:    -") && again.contains("removed links:    -"),
        "{again}"
    );

    node.cni("DEL", "c1", "", &conf).expect_ok("DEL");
    assert_eq!(node.ciao_links(), ["cvother", "cvlegacy"]);
    for planted in ["cvother", "cvlegacy"] {
        node.ns.exec(&["ip", "link", "del", planted]);
    }
}
