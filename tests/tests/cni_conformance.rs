//! CNI conformance: the built plugin executed exactly as runtimes do (env + stdin), for every
//! supported spec version, including the error paths.

use serde_json::Value;
use testkit::{cni_call, json, plugin, require_root, ComputeNode, Netns, TENANT_A};

const VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

#[test]
fn version_reports_every_supported_version() {
    // VERSION needs no root and no namespace.
    for v in VERSIONS {
        let out = cni_call(
            &plugin(),
            None,
            "VERSION",
            "",
            "dummy",
            "dummy",
            &json!({"cniVersion": v}),
            &[],
        );
        let reply = out.expect_ok("VERSION");
        assert_eq!(reply["cniVersion"], v);
        let supported: Vec<&str> = reply["supportedVersions"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for must in VERSIONS {
            assert!(supported.contains(&must), "{supported:?}");
        }
    }
}

#[test]
fn add_check_status_gc_del_for_every_version() {
    require_root!();
    for version in VERSIONS {
        let node = ComputeNode::new();
        let ctr = Netns::new("ctr");
        let conf = node.conf(version, "blue", TENANT_A, "172.16.1.0/24");
        let path = ctr.path().display().to_string();

        let result = node.cni("ADD", "c1", &path, &conf).expect_ok("ADD");
        assert_eq!(result["cniVersion"], version);
        let ifaces = result["interfaces"].as_array().expect("interfaces");
        assert_eq!(ifaces.len(), 3, "{result}");
        assert_eq!(ifaces[2]["name"], "eth0");
        assert_eq!(ifaces[2]["sandbox"], path.as_str());
        let ip = &result["ips"][0];
        assert_eq!(ip["interface"], 2);
        assert_eq!(ip["gateway"], "172.16.1.1");
        let address = ip["address"].as_str().expect("address");
        assert!(
            address.starts_with("172.16.1.") && address.ends_with("/24"),
            "{address}"
        );
        // The MAC follows ciao's scheme, 02:00 + the IPv4 address.
        let host: Vec<u8> = address
            .trim_end_matches("/24")
            .split('.')
            .map(|o| o.parse().expect("octet"))
            .collect();
        let expected_mac = format!(
            "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
            host[0], host[1], host[2], host[3]
        );
        assert_eq!(ifaces[2]["mac"], expected_mac.as_str());
        assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
        assert!(result["dns"].is_object());
        if version == "0.4.0" {
            assert_eq!(ip["version"], "4", "0.4.0 results carry the IP version");
        } else {
            assert!(ip.get("version").is_none());
        }
        if version == "1.1.0" {
            assert_eq!(ifaces[2]["mtu"], 1450, "1.1.0 results carry the MTU");
        }
        // The interface really is there with that address.
        let shown = ctr.exec(&["ip", "-o", "addr", "show", "dev", "eth0"]);
        assert!(shown.contains(address), "{shown}");

        // CHECK against the cached result passes, against a wrong one fails.
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = result.clone();
        node.cni("CHECK", "c1", &path, &with_prev)
            .expect_ok("CHECK");
        let mut wrong = with_prev.clone();
        wrong["prevResult"]["ips"][0]["address"] = json!("172.16.1.250/24");
        let out = node.cni("CHECK", "c1", &path, &wrong);
        assert!(!out.ok && out.code() == Some(102), "{}", out.stdout);
        // CHECK notices the interface vanishing from the container.
        ctr.exec(&["ip", "link", "set", "eth0", "name", "eth9"]);
        let out = node.cni("CHECK", "c1", &path, &with_prev);
        assert!(!out.ok, "CHECK must fail when eth0 is gone: {}", out.stdout);
        ctr.exec(&["ip", "link", "set", "eth9", "name", "eth0"]);

        // STATUS and GC exist from 1.1.0 on.
        let status = node.cni("STATUS", "", "", &conf);
        let gc_keep = {
            let mut c = conf.clone();
            c["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
            node.cni("GC", "", "", &c)
        };
        if version == "1.1.0" {
            assert!(status.ok && status.stdout.is_empty(), "{}", status.stdout);
            assert!(gc_keep.ok, "{}", gc_keep.stdout);
            assert_eq!(node.ciao_links().len(), 3, "GC kept the valid attachment");
        } else {
            assert_eq!(status.code(), Some(1), "{}", status.stdout);
            assert_eq!(gc_keep.code(), Some(1), "{}", gc_keep.stdout);
        }

        // DEL, twice, with prevResult as runtimes send it.
        let out = node.cni("DEL", "c1", &path, &with_prev);
        assert!(out.ok && out.stdout.is_empty(), "{}", out.stdout);
        node.cni("DEL", "c1", &path, &with_prev)
            .expect_ok("second DEL");
        node.assert_clean();
        assert!(!ctr.links().contains(&"eth0".to_string()));
        assert_eq!(node.report_events(), ["tenant_added", "tenant_removed"]);
    }
}

#[test]
fn gc_removes_attachments_not_listed() {
    require_root!();
    let node = ComputeNode::new();
    let a = Netns::new("ctr");
    let b = Netns::new("ctr");
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    node.cni("ADD", "ca", &a.path().display().to_string(), &conf)
        .expect_ok("ADD a");
    node.cni("ADD", "cb", &b.path().display().to_string(), &conf)
        .expect_ok("ADD b");
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "cb", "ifname": "eth0"}]);
    node.cni("GC", "", "", &gc).expect_ok("GC");
    assert!(!a.links().contains(&"eth0".to_string()), "a collected");
    assert!(b.links().contains(&"eth0".to_string()), "b kept");
    gc["cni.dev/valid-attachments"] = json!([]);
    node.cni("GC", "", "", &gc).expect_ok("GC all");
    node.assert_clean();
}

#[test]
fn del_succeeds_when_the_netns_is_gone_and_with_empty_cni_netns() {
    require_root!();
    let node = ComputeNode::new();
    let conf = node.conf("1.0.0", "blue", TENANT_A, "172.16.1.0/24");
    let ctr = Netns::new("ctr");
    let path = ctr.path().display().to_string();
    node.cni("ADD", "c1", &path, &conf).expect_ok("ADD");
    drop(ctr); // the container's namespace disappears, as with ctr's DEL
    node.cni("DEL", "c1", "", &conf)
        .expect_ok("DEL with empty CNI_NETNS");
    node.cni("DEL", "c1", &path, &conf)
        .expect_ok("DEL with a vanished netns path");
    node.assert_clean();
    // DEL of something never added succeeds too.
    node.cni("DEL", "never", "", &conf)
        .expect_ok("DEL of unknown container");
}

#[test]
fn add_of_an_existing_interface_fails_and_leaves_nothing() {
    require_root!();
    let node = ComputeNode::new();
    let ctr = Netns::new("ctr");
    ctr.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    let out = node.cni("ADD", "c1", &ctr.path().display().to_string(), &conf);
    assert!(!out.ok, "ADD must fail");
    assert_eq!(out.code(), Some(100), "{}", out.stdout);
    assert!(
        out.json["msg"].as_str().expect("msg").contains("eth0"),
        "{}",
        out.stdout
    );
    node.assert_clean();
    assert!(node.reports().is_empty(), "no report for a failed ADD");
    // The user's interface is untouched.
    assert!(ctr.links().contains(&"eth0".to_string()));
}

#[test]
fn add_twice_for_the_same_container_is_rejected() {
    require_root!();
    let node = ComputeNode::new();
    let ctr = Netns::new("ctr");
    let path = ctr.path().display().to_string();
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    node.cni("ADD", "c1", &path, &conf).expect_ok("ADD");
    let out = node.cni("ADD", "c1", &path, &conf);
    assert!(!out.ok, "second ADD must fail: {}", out.stdout);
    node.cni("DEL", "c1", &path, &conf).expect_ok("DEL");
    node.assert_clean();
}

#[test]
fn bad_input_gets_the_right_code_and_changes_nothing() {
    require_root!();
    let node = ComputeNode::new();
    let ctr = Netns::new("ctr");
    let path = ctr.path().display().to_string();
    let good = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    let mut cases: Vec<(&str, Value, u64, &str)> = Vec::new();
    let mut with =
        |what: &'static str, key: &str, value: Value, code: u64, needle: &'static str| {
            let mut c = good.clone();
            c[key] = value;
            cases.push((what, c, code, needle));
        };
    with(
        "unknown cniVersion",
        "cniVersion",
        json!("0.9.9"),
        1,
        "0.9.9",
    );
    with("unknown key", "colour", json!("red"), 7, "colour");
    with("bad subnet", "subnet", json!("172.16.1.0/33"), 7, "subnet");
    with("host bits", "subnet", json!("172.16.1.7/24"), 7, "subnet");
    with("bad tenant", "tenant", json!(42), 7, "tenant");
    with(
        "bad tunnel kind",
        "tunnel",
        json!({"kind": "ipip"}),
        7,
        "tunnel.kind",
    );
    with(
        "vni too big",
        "tunnel",
        json!({"kind": "vxlan", "id": 16777216}),
        7,
        "tunnel.id",
    );
    with(
        "gateway outside",
        "gateway",
        json!("10.0.0.1"),
        7,
        "gateway",
    );
    with(
        "static ip outside",
        "runtimeConfig",
        json!({"ips": ["10.9.9.9/24"]}),
        7,
        "ip",
    );
    with(
        "bad mac",
        "runtimeConfig",
        json!({"mac": "zz:00"}),
        7,
        "runtimeConfig.mac",
    );
    with(
        "unknown underlay",
        "underlay",
        json!("nosuch0"),
        7,
        "underlay",
    );
    for (what, conf, code, needle) in cases {
        let out = node.cni("ADD", "c1", &path, &conf);
        assert!(!out.ok, "{what}: must fail");
        assert_eq!(out.code(), Some(code), "{what}: {}", out.stdout);
        let msg = out.json["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
        node.assert_clean();
    }

    // Malformed JSON: code 6, with the error JSON on stdout.
    let out = cni_call(
        &plugin(),
        Some(&node.ns.name),
        "ADD",
        "c1",
        &path,
        "eth0",
        &json!(null),
        &[],
    );
    assert_eq!(out.code(), Some(7), "null config: {}", out.stdout);
    let raw = std::process::Command::new("ip")
        .args(["netns", "exec", &node.ns.name])
        .arg(plugin())
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "c1")
        .env("CNI_NETNS", &path)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"{\"cniVersion\": \"1.1.0\", ")?;
            child.wait_with_output()
        })
        .expect("run plugin");
    assert!(!raw.status.success());
    let err: Value = serde_json::from_slice(&raw.stdout).expect("error JSON on stdout");
    assert_eq!(err["code"], 6, "{err}");

    // Missing environment: code 4 naming the variable.
    for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
        let out = cni_call(
            &plugin(),
            Some(&node.ns.name),
            "ADD",
            "c1",
            &path,
            "eth0",
            &good,
            &[(var, "")],
        );
        assert_eq!(out.code(), Some(4), "{var}: {}", out.stdout);
        assert!(out.stdout.contains(var), "{var}: {}", out.stdout);
    }
    let out = cni_call(
        &plugin(),
        Some(&node.ns.name),
        "",
        "c1",
        &path,
        "eth0",
        &good,
        &[],
    );
    assert_eq!(out.code(), Some(4), "no CNI_COMMAND: {}", out.stdout);
    let out = cni_call(
        &plugin(),
        Some(&node.ns.name),
        "FROB",
        "c1",
        &path,
        "eth0",
        &good,
        &[],
    );
    assert_eq!(out.code(), Some(4), "unknown command: {}", out.stdout);
    let out = cni_call(
        &plugin(),
        Some(&node.ns.name),
        "ADD",
        "c/1",
        &path,
        "eth0",
        &good,
        &[],
    );
    assert_eq!(out.code(), Some(4), "bad container id: {}", out.stdout);
    let out = cni_call(
        &plugin(),
        Some(&node.ns.name),
        "ADD",
        "c1",
        "/run/netns/nope-nope",
        "eth0",
        &good,
        &[],
    );
    assert_eq!(out.code(), Some(3), "missing netns: {}", out.stdout);
    let out = cni_call(
        &plugin(),
        Some(&node.ns.name),
        "ADD",
        "c1",
        &path,
        "eth0",
        &good,
        &[("CNI_ARGS", "FOO=1")],
    );
    assert_eq!(out.code(), Some(2), "unknown CNI_ARGS: {}", out.stdout);
    node.assert_clean();
    assert!(node.reports().is_empty());
}

#[test]
fn static_ip_and_mac_from_podman_args_and_runtime_config() {
    require_root!();
    let node = ComputeNode::new();
    let conf = node.conf("1.0.0", "blue", TENANT_A, "172.16.1.0/24");
    // podman: CNI_ARGS IP= and MAC=.
    let a = Netns::new("ctr");
    let out = cni_call(
        &plugin(),
        Some(&node.ns.name),
        "ADD",
        "pa",
        &a.path().display().to_string(),
        "eth0",
        &conf,
        &[(
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=pa;MAC=02:00:00:00:00:51;IP=172.16.1.50",
        )],
    )
    .expect_ok("ADD with CNI_ARGS");
    assert_eq!(out["ips"][0]["address"], "172.16.1.50/24");
    assert_eq!(out["interfaces"][2]["mac"], "02:00:00:00:00:51");
    // After `podman network reload`: bare, duplicated runtimeConfig.ips.
    let b = Netns::new("ctr");
    let mut reload = conf.clone();
    reload["runtimeConfig"] =
        json!({"ips": ["172.16.1.60", "172.16.1.60"], "mac": "02:00:00:00:00:61"});
    let out = node
        .cni("ADD", "pb", &b.path().display().to_string(), &reload)
        .expect_ok("ADD with runtimeConfig");
    assert_eq!(out["ips"][0]["address"], "172.16.1.60/24");
    assert_eq!(out["interfaces"][2]["mac"], "02:00:00:00:00:61");
    // The same address for another container is refused.
    let c = Netns::new("ctr");
    let out = node.cni("ADD", "pc", &c.path().display().to_string(), &reload);
    assert!(!out.ok && out.code() == Some(100), "{}", out.stdout);
    assert!(out.stdout.contains("in use"), "{}", out.stdout);
    for id in ["pa", "pb", "pc"] {
        node.cni("DEL", id, "", &conf).expect_ok("DEL");
    }
    node.assert_clean();
}

#[test]
fn chained_add_appends_to_prev_result() {
    require_root!();
    let node = ComputeNode::new();
    let ctr = Netns::new("ctr");
    let mut conf = node.conf("1.0.0", "blue", TENANT_A, "172.16.1.0/24");
    conf["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "lo0", "sandbox": ctr.path()}],
        "ips": [{"address": "192.0.2.10/32", "interface": 0}],
        "routes": [],
        "dns": {"nameservers": ["192.0.2.53"]}
    });
    let out = node
        .cni("ADD", "c1", &ctr.path().display().to_string(), &conf)
        .expect_ok("chained ADD");
    assert_eq!(out["interfaces"].as_array().expect("list").len(), 4);
    assert_eq!(out["ips"][0]["address"], "192.0.2.10/32");
    assert_eq!(
        out["ips"][1]["interface"], 3,
        "our IP points at our renumbered interface"
    );
    assert_eq!(out["dns"]["nameservers"][0], "192.0.2.53");
    node.cni("DEL", "c1", "", &conf).expect_ok("DEL");
}
