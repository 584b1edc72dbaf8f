//! The QEMU hooks (`ciao-qemu-ifup`, `ciao-qemu-ifdown`) run as QEMU runs them — the tap name as
//! the only argument, the configuration in the environment or a per-interface file — on a tap
//! made beforehand (as QEMU makes it: down, on no bridge) in a simulated compute node. No QEMU
//! here: see `qemu.rs` for the real guest.

use std::process::{Command, Output, Stdio};

use testkit::{require_root, vm_hook, ComputeNode, TENANT_A};

const SUBNET: &str = "172.16.1.0/24";
const CNCI: &str = "3390740c-dce9-48d6-b83a-a717417072ce";

/// The environment a launcher gives QEMU for a VM with `ip` on this node.
fn env(node: &ComputeNode, ip: &str) -> Vec<(String, String)> {
    [
        ("CIAO_TENANT", TENANT_A),
        ("CIAO_SUBNET", SUBNET),
        ("CIAO_CNCI_UUID", CNCI),
        ("CIAO_CNCI_IP", node.cnci_ip.as_str()),
        ("CIAO_VM_IP", ip),
        ("CIAO_STATE_DIR", &node.state.path().display().to_string()),
        // No per-interface files here unless a test makes some.
        ("CIAO_VNIC_DIR", "/nonexistent/ciao-vnics"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs hook `name` with `args` in the node's namespace with exactly `env` (and PATH).
fn hook(node: &ComputeNode, name: &str, args: &[&str], env: &[(String, String)]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &node.ns.name])
        .arg(vm_hook(name))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("run hook")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        stderr(&out)
    );
}

/// A tap as QEMU leaves it for its ifup script: down, on no bridge.
fn qemu_tap(node: &ComputeNode, name: &str) {
    node.ns
        .exec(&["ip", "tuntap", "add", "dev", name, "mode", "tap"]);
}

fn link_line(node: &ComputeNode, name: &str) -> String {
    node.ns.exec(&["ip", "-d", "link", "show", name])
}

fn show(node: &ComputeNode) -> serde_json::Value {
    serde_json::from_str(&node.tool(&["show", "--json"])).expect("show --json")
}

#[test]
fn ifup_attaches_qemus_tap_and_ifdown_of_the_last_vnic_removes_the_subnet() {
    require_root!();
    let node = ComputeNode::new();
    qemu_tap(&node, "tapvm0");
    qemu_tap(&node, "tapvm1");
    ok(
        hook(
            &node,
            "ciao-qemu-ifup",
            &["tapvm0"],
            &env(&node, "172.16.1.32"),
        ),
        "ifup tapvm0",
    );

    let view = show(&node);
    let net = &view["nets"][0]["net"];
    let bridge = net["bridge"].as_str().expect("bridge").to_string();
    let tunnel = net["tunnel"].as_str().expect("tunnel").to_string();
    let vnic = &view["nets"][0]["vnics"][0];
    assert_eq!(vnic["host_ifname"], "tapvm0");
    assert_eq!(vnic["ip"], "172.16.1.32");
    assert_eq!(
        vnic["mac"], "02:00:ac:10:01:20",
        "the guest's MAC, from its IP"
    );
    assert_eq!(vnic["id"]["owner"], "qemu-tapvm0");
    assert_eq!(vnic["created_tap"], false, "QEMU's tap, not ours");

    let tap = link_line(&node, "tapvm0");
    assert!(tap.contains(&format!("master {bridge}")), "{tap}");
    assert!(tap.contains("mtu 1450"), "{tap}");
    assert!(tap.contains(",UP"), "up: {tap}");
    let tun = link_line(&node, &tunnel);
    assert!(tun.contains("vxlan id"), "{tun}");
    assert!(tun.contains(&format!("master {bridge}")), "{tun}");
    assert_eq!(node.report_events(), ["tenant_added"]);
    let report = &node.reports()[0];
    assert_eq!(report["tenant_uuid"], TENANT_A);
    assert_eq!(report["tenant_subnet"], SUBNET);
    assert_eq!(report["concentrator_uuid"], CNCI);

    // A second VM of the subnet only adds a port.
    let mut env1 = env(&node, "172.16.1.33");
    env1.push(("CIAO_VM_ID".into(), "vm-two".into()));
    ok(
        hook(&node, "ciao-qemu-ifup", &["tapvm1"], &env1),
        "ifup tapvm1",
    );
    assert_eq!(node.report_events(), ["tenant_added"]);
    assert!(link_line(&node, "tapvm1").contains(&format!("master {bridge}")));

    ok(
        hook(
            &node,
            "ciao-qemu-ifdown",
            &["tapvm0"],
            &env(&node, "172.16.1.32"),
        ),
        "ifdown tapvm0",
    );
    assert!(!link_line(&node, "tapvm0").contains("master"), "unplugged");
    assert!(node.ns.links().contains(&bridge), "tapvm1 still uses it");
    assert_eq!(node.report_events(), ["tenant_added"]);

    ok(
        hook(&node, "ciao-qemu-ifdown", &["tapvm1"], &env1),
        "ifdown tapvm1",
    );
    let links = node.ns.links();
    assert!(
        !links.contains(&bridge) && !links.contains(&tunnel),
        "{links:?}"
    );
    // QEMU's taps stay (QEMU removes them when it exits), unlabelled and on no bridge.
    for t in ["tapvm0", "tapvm1"] {
        let line = link_line(&node, t);
        assert!(
            !line.contains("master") && !line.contains("alias"),
            "{line}"
        );
    }
    node.assert_clean();
    assert_eq!(node.report_events(), ["tenant_added", "tenant_removed"]);

    // Twice is fine, and so is a tap that never was attached.
    ok(
        hook(&node, "ciao-qemu-ifdown", &["tapvm1"], &env1),
        "ifdown twice",
    );
    ok(
        hook(&node, "ciao-qemu-ifdown", &["tapnever"], &env1),
        "ifdown of a stranger",
    );
    assert_eq!(node.report_events(), ["tenant_added", "tenant_removed"]);
}

#[test]
fn bad_configuration_is_refused_in_one_line_naming_it_and_nothing_is_attached() {
    require_root!();
    let node = ComputeNode::new();
    qemu_tap(&node, "tapbad0");
    let base = env(&node, "172.16.1.40");
    let mut cases: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for var in [
        "CIAO_TENANT",
        "CIAO_CNCI_UUID",
        "CIAO_CNCI_IP",
        "CIAO_VM_IP",
    ] {
        let e = base.iter().filter(|(k, _)| k != var).cloned().collect();
        cases.push((var.to_string(), e));
    }
    for (var, value) in [
        ("CIAO_TENANT", "nope"),
        ("CIAO_SUBNET", "172.16.1.7/24"),
        ("CIAO_CNCI_IP", "10.250.0"),
        ("CIAO_VM_IP", "172.16.2.40"),
        ("CIAO_VM_MAC", "52:54:00:12:34:56"),
        ("CIAO_TUNNEL_KIND", "ipip"),
        ("CIAO_TUNNEL_ID", "0"),
        ("CIAO_MTU", "99999"),
        ("CIAO_STATE_DIR", "relative"),
    ] {
        let mut e: Vec<(String, String)> = base.iter().filter(|(k, _)| k != var).cloned().collect();
        e.push((var.to_string(), value.to_string()));
        cases.push((var.to_string(), e));
    }
    for (var, e) in cases {
        let out = hook(&node, "ciao-qemu-ifup", &["tapbad0"], &e);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert_eq!(err.lines().count(), 1, "{var}: one line: {err:?}");
        assert!(
            err.starts_with(&format!("ciao-qemu-ifup: tapbad0: {var}")),
            "{var}: {err}"
        );
    }
    // No CIAO_SUBNET (the controller's subnet) and no `ciao-node run` here: exit 2 saying so.
    let e: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| k != "CIAO_SUBNET")
        .cloned()
        .collect();
    let out = hook(&node, "ciao-qemu-ifup", &["tapbad0"], &e);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ciao-node run is not running (no "), "{err}");
    let line = link_line(&node, "tapbad0");
    assert!(!line.contains("master"), "{line}");
    node.assert_clean();
    assert!(node.report_events().is_empty());

    // Usage: exactly one argument.
    for args in [&[][..], &["a", "b"][..], &["bad/name"][..]] {
        let out = hook(&node, "ciao-qemu-ifup", args, &base);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }

    // A malformed per-interface file is named, with its field.
    let dir = tempfile::tempdir().expect("vnic dir");
    let file = dir.path().join("tapbad0.json");
    std::fs::write(&file, r#"{"tenant":"x","mtu":"big"}"#).expect("write");
    let mut e = base.clone();
    e.retain(|(k, _)| k != "CIAO_VNIC_DIR");
    e.push(("CIAO_VNIC_DIR".into(), dir.path().display().to_string()));
    let out = hook(&node, "ciao-qemu-ifup", &["tapbad0"], &e);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&file.display().to_string()) && err.contains("mtu"),
        "{err}"
    );
    node.assert_clean();
}

#[test]
fn a_per_interface_file_configures_its_tap() {
    require_root!();
    let node = ComputeNode::new();
    qemu_tap(&node, "tapfile0");
    let dir = tempfile::tempdir().expect("vnic dir");
    let conf = serde_json::json!({
        "tenant": TENANT_A,
        "subnet": "172.16.5.0/24",
        "cnci": {"uuid": CNCI, "ip": node.cnci_ip},
        "ip": "172.16.5.9",
        "mac": "02:00:ac:10:05:09",
        "vmId": "vm-from-file",
        "tunnel": {"kind": "vxlan", "id": 5005},
        "stateDir": node.state.path(),
    });
    std::fs::write(dir.path().join("tapfile0.json"), conf.to_string()).expect("write");
    // Only the directory comes from the environment.
    let e = vec![(
        "CIAO_VNIC_DIR".to_string(),
        dir.path().display().to_string(),
    )];
    ok(hook(&node, "ciao-qemu-ifup", &["tapfile0"], &e), "ifup");
    let view = show(&node);
    assert_eq!(view["nets"][0]["net"]["tunnel_id"], 5005);
    assert_eq!(view["nets"][0]["vnics"][0]["id"]["owner"], "vm-from-file");
    ok(hook(&node, "ciao-qemu-ifdown", &["tapfile0"], &e), "ifdown");
    node.assert_clean();
    assert_eq!(node.report_events(), ["tenant_added", "tenant_removed"]);
}

#[test]
fn a_missing_tap_or_another_kind_of_link_is_an_error_and_nothing_is_left() {
    require_root!();
    let node = ComputeNode::new();
    let out = hook(
        &node,
        "ciao-qemu-ifup",
        &["tapgone0"],
        &env(&node, "172.16.1.50"),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tap tapgone0 does not exist"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        !node.ns.links().contains(&"tapgone0".to_string()),
        "the hook must not create QEMU's tap"
    );
    node.assert_clean();
    assert!(node.report_events().is_empty());

    // ul1 (the underlay's far end) is a veth.
    let out = hook(
        &node,
        "ciao-qemu-ifup",
        &["ul1"],
        &env(&node, "172.16.1.50"),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ul1 is not a tap device"), "{err}");
    node.assert_clean();
}

#[test]
fn after_a_killed_qemu_reconcile_or_the_next_ifup_cleans_up() {
    require_root!();
    let node = ComputeNode::new();
    qemu_tap(&node, "tapkill0");
    let e = env(&node, "172.16.1.60");
    ok(hook(&node, "ciao-qemu-ifup", &["tapkill0"], &e), "ifup");
    // QEMU killed with SIGKILL: no downscript, and the tap vanishes with QEMU's fd.
    node.ns.exec(&["ip", "link", "delete", "tapkill0"]);
    let summary = node.tool(&["reconcile"]);
    assert!(summary.contains("qemu-tapkill0"), "{summary}");
    node.assert_clean();
    assert_eq!(node.report_events(), ["tenant_added", "tenant_removed"]);
    // ifdown afterwards (or on the vanished tap) still succeeds.
    ok(hook(&node, "ciao-qemu-ifdown", &["tapkill0"], &e), "ifdown");

    // Without a reconcile in between, the next QEMU that reuses the tap name finds the stale
    // record and replaces it.
    qemu_tap(&node, "tapkill0");
    ok(hook(&node, "ciao-qemu-ifup", &["tapkill0"], &e), "ifup 2");
    node.ns.exec(&["ip", "link", "delete", "tapkill0"]);
    qemu_tap(&node, "tapkill0");
    let out = hook(&node, "ciao-qemu-ifup", &["tapkill0"], &e);
    assert!(out.status.success(), "ifup 3: {}", stderr(&out));
    assert!(
        stderr(&out).contains("left by a QEMU killed"),
        "{}",
        stderr(&out)
    );
    let view = show(&node);
    assert_eq!(view["nets"][0]["vnics"].as_array().map(Vec::len), Some(1));
    assert!(link_line(&node, "tapkill0").contains("master"));
    ok(
        hook(&node, "ciao-qemu-ifdown", &["tapkill0"], &e),
        "ifdown 3",
    );
    node.assert_clean();
}

/// Controller mode: a VM whose configuration names no CNCI gets its tap on the subnet's bridge at
/// once, with no tunnel and no report until the controller assigns the CNCI; without a tenant
/// it is still refused (exit 2).
#[test]
fn ifup_without_a_cnci_attaches_the_tap_and_the_subnet_awaits_its_cnci() {
    require_root!();
    let node = ComputeNode::new();
    qemu_tap(&node, "tapvm0");
    let mut vars = env(&node, "172.16.1.32");
    vars.retain(|(k, _)| !k.starts_with("CIAO_CNCI_"));
    ok(
        hook(&node, "ciao-qemu-ifup", &["tapvm0"], &vars),
        "ifup without cnci",
    );
    let view = show(&node);
    let net = &view["nets"][0];
    let bridge = net["net"]["bridge"].as_str().expect("bridge").to_string();
    let tunnel = net["net"]["tunnel"].as_str().expect("tunnel").to_string();
    assert!(net["awaits_cnci"]["since"].is_string(), "{view}");
    assert!(link_line(&node, "tapvm0").contains(&format!("master {bridge}")));
    assert!(link_line(&node, "tapvm0").contains("mtu 1450"));
    assert!(!node.ns.links().contains(&tunnel), "no tunnel yet");
    assert!(
        node.report_events().is_empty(),
        "no TenantAdded without a CNCI"
    );

    let mut no_tenant = vars.clone();
    no_tenant.retain(|(k, _)| k != "CIAO_TENANT");
    qemu_tap(&node, "tapvm1");
    let out = hook(&node, "ciao-qemu-ifup", &["tapvm1"], &no_tenant);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("CIAO_TENANT is missing"),
        "{}",
        stderr(&out)
    );
    assert!(!link_line(&node, "tapvm1").contains("master"));

    ok(
        hook(&node, "ciao-qemu-ifdown", &["tapvm0"], &vars),
        "ifdown",
    );
    assert!(!node.ns.links().contains(&bridge));
    assert!(
        node.report_events().is_empty(),
        "nothing to withdraw at any CNCI"
    );
    node.assert_clean();
}
