//! The Docker plugin with a real dockerd (20.10, Debian's docker.io) in a simulated compute
//! node: network lifecycle, connect/disconnect, tenant isolation, sharing a subnet with the CNI
//! plugin, kill -9 of the plugin and a dockerd restart, and bad input on the raw protocol.

use std::sync::Mutex;

use testkit::docker::{
    crash_plugin_bin, snapshot, tenant_network_args, unavailable, Dockerd, PluginDaemon, CNCI,
    IMAGE,
};
use testkit::{json, skip, ComputeNode, Netns, TENANT_A, TENANT_B};

/// One dockerd at a time: each is heavy, and the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn guard() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

macro_rules! require_docker {
    ($name:expr) => {
        if let Some(why) = unavailable() {
            skip($name, &why);
            return;
        }
    };
}

fn create_network(
    d: &Dockerd,
    p: &PluginDaemon,
    cn: &ComputeNode,
    tenant: &str,
    name: &str,
    extra: &[&str],
) {
    let args = tenant_network_args(&p.name, tenant, CNCI, &cn.cnci_ip, extra, name);
    d.docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

fn run(d: &Dockerd, name: &str, network: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name, "--network", network];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, "sleep", "600"]);
    d.docker(&args);
}

/// Asserts the node has no link, address reservation or plugin record left.
fn assert_no_trace(cn: &ComputeNode, when: &str) {
    cn.assert_clean();
    let left = plugin_records(cn);
    assert!(left.is_empty(), "{when}: plugin records left: {left:?}");
}

/// The docker plugin's records left in the node state (pools, networks, endpoints).
fn plugin_records(cn: &ComputeNode) -> Vec<String> {
    cn.state_entries()
        .into_iter()
        .filter(|e| e.starts_with("docker/"))
        .collect()
}

#[test]
fn network_lifecycle_connect_disconnect_and_rm_leaves_nothing() {
    require_docker!("docker::network_lifecycle");
    let _g = guard();
    let cn = ComputeNode::new();
    let d = Dockerd::start(&cn);
    let p = PluginDaemon::start(&cn);
    // A bad option is refused at create time, naming it, and leaves no pool behind.
    let args = tenant_network_args(
        &p.name,
        TENANT_A,
        CNCI,
        &cn.cnci_ip,
        &["--subnet", "172.16.1.0/24", "-o", "tunnel.id=x"],
        "bad",
    );
    let (ok, _, err) = d.try_docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && err.contains("-o tunnel.id"), "bad option: {err}");
    assert!(
        plugin_records(&cn).is_empty(),
        "records left: {:?}",
        plugin_records(&cn)
    );
    create_network(
        &d,
        &p,
        &cn,
        TENANT_A,
        "tn",
        &[
            "--subnet",
            "172.16.1.0/24",
            "--gateway",
            "172.16.1.1",
            "--ip-range",
            "172.16.1.128/25",
        ],
    );
    run(&d, "c1", "tn", &[]);
    run(
        &d,
        "c2",
        "tn",
        &["--ip", "172.16.1.50", "--mac-address", "02:00:00:00:00:50"],
    );
    let ip1 = d.ip_of("c1", "tn");
    assert!(
        ip1.starts_with("172.16.1.")
            && ip1
                .rsplit('.')
                .next()
                .unwrap_or("0")
                .parse::<u8>()
                .unwrap_or(0)
                >= 128,
        "--ip-range: {ip1}"
    );
    assert_eq!(d.ip_of("c2", "tn"), "172.16.1.50", "--ip");
    let mac2 = d.docker(&["exec", "c2", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(mac2, "02:00:00:00:00:50", "--mac-address");
    // Without --mac-address the MAC is ciao's, derived from the address.
    let mac1 = d.docker(&["exec", "c1", "cat", "/sys/class/net/eth0/address"]);
    assert!(mac1.starts_with("02:00:ac:10:01:"), "derived MAC {mac1}");
    let route = d.docker(&["exec", "c1", "ip", "route"]);
    assert!(route.contains("default via 172.16.1.1"), "routes: {route}");
    assert!(
        d.ping("c1", "172.16.1.50") && d.ping("c2", &ip1),
        "c1 <-> c2"
    );
    // No docker_gwbridge: the default route is ours.
    assert!(!cn.ns.links().iter().any(|l| l == "docker_gwbridge"));

    // connect / disconnect a container that lives on Docker's default bridge.
    d.docker(&["run", "-d", "--name", "c0", IMAGE, "sleep", "600"]);
    d.docker(&["network", "connect", "--ip", "172.16.1.200", "tn", "c0"]);
    assert!(
        d.ping("c0", "172.16.1.50"),
        "connected container reaches c2"
    );
    assert!(
        d.ping("c2", "172.16.1.200"),
        "c2 reaches the connected container"
    );
    d.docker(&["network", "disconnect", "tn", "c0"]);
    let links = d.docker(&["exec", "c0", "ip", "-o", "link"]);
    assert!(
        !links.contains("eth1"),
        "eth1 left after disconnect: {links}"
    );
    assert!(
        !d.ping("c0", "172.16.1.50"),
        "disconnected but still reaching"
    );

    d.docker(&["rm", "-f", "c0", "c1", "c2"]);
    d.docker(&["network", "rm", "tn"]);
    let handoffs: Vec<String> = cn
        .ns
        .links()
        .into_iter()
        .filter(|l| l.starts_with("cd"))
        .collect();
    assert!(handoffs.is_empty(), "veth ends left: {handoffs:?}");
    assert_no_trace(&cn, "after the test");
    let events = cn.report_events();
    assert_eq!(events, ["tenant_added", "tenant_removed"], "reports");
}

#[test]
fn two_tenants_with_the_same_subnet_are_isolated() {
    require_docker!("docker::two_tenants");
    let _g = guard();
    let cn = ComputeNode::new();
    let d = Dockerd::start(&cn);
    let p = PluginDaemon::start(&cn);
    for (tenant, net) in [(TENANT_A, "ta"), (TENANT_B, "tb")] {
        create_network(&d, &p, &cn, tenant, net, &["--subnet", "10.9.0.0/24"]);
    }
    run(&d, "a1", "ta", &["--ip", "10.9.0.10"]);
    run(&d, "a2", "ta", &["--ip", "10.9.0.11"]);
    run(&d, "b1", "tb", &["--ip", "10.9.0.10"]);
    run(&d, "b2", "tb", &["--ip", "10.9.0.12"]);
    assert!(d.ping("a1", "10.9.0.11"), "a1 -> a2");
    assert!(d.ping("b1", "10.9.0.12"), "b1 -> b2");
    assert!(!d.ping("a1", "10.9.0.12"), "tenant A reached B's 10.9.0.12");
    assert!(!d.ping("b1", "10.9.0.11"), "tenant B reached A's 10.9.0.11");
    d.docker(&["rm", "-f", "a1", "a2", "b1", "b2"]);
    d.docker(&["network", "rm", "ta", "tb"]);
    cn.assert_clean();
}

/// Controller mode: a network created with only the tenant (no `-o cnci`) gets its containers
/// attached at once, reaching each other on the node; the subnet awaits its CNCI (no tunnel, no
/// report) and leaves nothing behind.
#[test]
fn a_network_without_cnci_works_on_the_node_at_once_and_awaits_its_cnci() {
    require_docker!("docker::without_cnci");
    let _g = guard();
    let cn = ComputeNode::new();
    let d = Dockerd::start(&cn);
    let p = PluginDaemon::start(&cn);
    let tenant = format!("tenant={TENANT_A}");
    d.docker(&[
        "network",
        "create",
        "-d",
        &p.name,
        "--ipam-driver",
        &p.name,
        "-o",
        &tenant,
        "--subnet",
        "10.9.0.0/24",
        "ctl",
    ]);
    run(&d, "c1", "ctl", &["--ip", "10.9.0.10"]);
    run(&d, "c2", "ctl", &["--ip", "10.9.0.11"]);
    assert!(
        d.ping("c1", "10.9.0.11"),
        "same-node neighbour without a CNCI"
    );
    let view: serde_json::Value =
        serde_json::from_str(&cn.tool(&["show", "--json"])).expect("show --json");
    assert!(
        view["nets"][0]["awaits_cnci"]["since"].is_string(),
        "{view}"
    );
    assert!(
        cn.report_events().is_empty(),
        "no TenantAdded without a CNCI"
    );
    d.docker(&["rm", "-f", "c1", "c2"]);
    d.docker(&["network", "rm", "ctl"]);
    assert!(cn.report_events().is_empty());
    assert_no_trace(&cn, "after rm");
}

#[test]
fn docker_and_cni_containers_share_a_tenant_subnet() {
    require_docker!("docker::docker_and_cni");
    let _g = guard();
    let cn = ComputeNode::new();
    let d = Dockerd::start(&cn);
    let p = PluginDaemon::start(&cn);
    create_network(&d, &p, &cn, TENANT_A, "tn", &["--subnet", "172.16.2.0/24"]);
    run(&d, "c1", "tn", &[]);
    let docker_ip = d.ip_of("c1", "tn");

    let ctr = Netns::new("cnictr");
    let conf = cn.conf("1.1.0", "blue", TENANT_A, "172.16.2.0/24");
    let out = cn
        .cni("ADD", &ctr.name, &ctr.path().display().to_string(), &conf)
        .expect_ok("CNI ADD");
    let cni_ip = out["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string();
    assert_ne!(cni_ip, docker_ip, "one address space: no duplicate");
    assert_eq!(
        cn.ciao_links()
            .iter()
            .filter(|l| l.starts_with("cb"))
            .count(),
        1,
        "one bridge for both: {:?}",
        cn.ciao_links()
    );
    assert!(d.ping("c1", &cni_ip), "docker -> CNI container");
    assert!(ctr.ping(&docker_ip, 2), "CNI container -> docker");
    // A second Docker container gets neither address.
    run(&d, "c2", "tn", &[]);
    let second = d.ip_of("c2", "tn");
    assert!(second != cni_ip && second != docker_ip, "{second}");

    cn.cni("DEL", &ctr.name, &ctr.path().display().to_string(), &conf)
        .expect_ok("CNI DEL");
    d.docker(&["rm", "-f", "c1", "c2"]);
    d.docker(&["network", "rm", "tn"]);
    cn.assert_clean();
}

#[test]
fn plugin_kill9_and_dockerd_restart_keep_networks_and_endpoints() {
    require_docker!("docker::restarts");
    let _g = guard();
    let cn = ComputeNode::new();
    let mut d = Dockerd::start(&cn);
    let mut p = PluginDaemon::start(&cn);
    create_network(&d, &p, &cn, TENANT_A, "tn", &["--subnet", "172.16.3.0/24"]);
    run(&d, "c1", "tn", &["--restart=always"]);
    run(&d, "c2", "tn", &["--restart=always"]);
    let (ip1, ip2) = (d.ip_of("c1", "tn"), d.ip_of("c2", "tn"));

    p.kill9_and_restart();
    assert!(
        d.ping("c1", &ip2) && d.ping("c2", &ip1),
        "connectivity after kill -9"
    );
    run(&d, "c3", "tn", &[]);
    let ip3 = d.ip_of("c3", "tn");
    assert!(d.ping("c3", &ip1), "new container after plugin restart");
    let vnics_before = cn
        .state_entries()
        .iter()
        .filter(|e| e.starts_with("vnics/"))
        .count();
    d.docker(&["rm", "-f", "c3"]);
    let vnics_after = cn
        .state_entries()
        .iter()
        .filter(|e| e.starts_with("vnics/"))
        .count();
    assert_eq!(
        vnics_after + 1,
        vnics_before,
        "docker rm detached c3 ({ip3})"
    );

    // dockerd restart: never replays CreateNetwork or RequestPool.
    d.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline
        && d.docker(&["ps", "-q", "--filter", "status=running"])
            .lines()
            .count()
            < 2
    {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let (ip1, ip2) = (d.ip_of("c1", "tn"), d.ip_of("c2", "tn"));
    assert!(
        d.ping("c1", &ip2) && d.ping("c2", &ip1),
        "connectivity after dockerd restart:\n{}",
        p.log_text()
    );
    run(&d, "c4", "tn", &[]);
    assert!(d.ping("c4", &ip1), "new container after dockerd restart");
    d.docker(&["rm", "-f", "c1", "c2", "c4"]);
    d.docker(&["network", "rm", "tn"]);
    assert_no_trace(&cn, "after the test");
}

#[test]
fn bad_input_gets_err_and_leaves_state_unchanged() {
    if !testkit::is_root() {
        skip("docker::bad_input", "needs root (network namespaces)");
        return;
    }
    let cn = ComputeNode::new();
    let p = PluginDaemon::start(&cn);
    let ok = |path: &str, body: &str| {
        let (status, reply) = p.call(path, body);
        assert_eq!(status, 200, "{path}");
        assert!(reply.get("Err").is_none(), "{path} {body}: {reply}");
        reply
    };
    // The protocol's empty-bodied calls.
    let act = ok("/Plugin.Activate", "");
    assert_eq!(act["Implements"], json!(["NetworkDriver", "IpamDriver"]));
    ok("/NetworkDriver.GetCapabilities", "");
    // A working network to aim bad requests at.
    let pool = ok(
        "/IpamDriver.RequestPool",
        r#"{"AddressSpace":"ciao-local","Pool":"10.77.0.0/24","SubPool":"","Options":{},"V6":false}"#,
    );
    let pool_id = pool["PoolID"].as_str().expect("PoolID").to_string();
    ok(
        "/IpamDriver.RequestAddress",
        &format!(
            r#"{{"PoolID":"{pool_id}","Address":"","Options":{{"RequestAddressType":"com.docker.network.gateway"}}}}"#
        ),
    );
    let nid = "a".repeat(64);
    let create = format!(
        r#"{{"NetworkID":"{nid}","Options":{{"com.docker.network.generic":{{"tenant":"{TENANT_A}","cnci":"{CNCI}@{}"}}}},"IPv4Data":[{{"AddressSpace":"ciao-local","Gateway":"10.77.0.1/24","Pool":"10.77.0.0/24"}}],"IPv6Data":[]}}"#,
        cn.cnci_ip
    );
    ok("/NetworkDriver.CreateNetwork", &create);
    let addr = ok(
        "/IpamDriver.RequestAddress",
        &format!(r#"{{"PoolID":"{pool_id}","Address":"10.77.0.9","Options":null}}"#),
    );
    assert_eq!(addr["Address"], "10.77.0.9/24");

    let before = snapshot(cn.state.path());
    let eid = "e".repeat(64);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "/NetworkDriver.CreateNetwork",
            "{\"NetworkID\": ".into(),
            "malformed",
        ),
        ("/NetworkDriver.CreateEndpoint", "[1,2]".into(), "malformed"),
        (
            "/NetworkDriver.CreateEndpoint",
            format!(r#"{{"NetworkID":"{nid}"}}"#),
            "EndpointID",
        ),
        (
            "/NetworkDriver.Join",
            format!(r#"{{"NetworkID":"{nid}","EndpointID":"{eid}"}}"#),
            "SandboxKey",
        ),
        ("/IpamDriver.RequestAddress", "{}".into(), "PoolID"),
        (
            "/NetworkDriver.CreateEndpoint",
            format!(
                r#"{{"NetworkID":"{}","EndpointID":"{eid}","Interface":{{"Address":"10.77.0.9/24"}}}}"#,
                "b".repeat(64)
            ),
            "unknown network",
        ),
        (
            "/NetworkDriver.Join",
            format!(r#"{{"NetworkID":"{nid}","EndpointID":"{eid}","SandboxKey":"/x"}}"#),
            "unknown endpoint",
        ),
        (
            "/NetworkDriver.EndpointOperInfo",
            format!(r#"{{"NetworkID":"{nid}","EndpointID":"{eid}"}}"#),
            "unknown endpoint",
        ),
        (
            "/IpamDriver.RequestPool",
            r#"{"Pool":"10.78.0.0/24","SubPool":"10.79.0.0/25","V6":false}"#.into(),
            "outside",
        ),
        (
            "/IpamDriver.RequestPool",
            r#"{"Pool":"10.78.0.1/24"}"#.into(),
            "host bits",
        ),
        (
            "/IpamDriver.RequestPool",
            r#"{"Pool":"","V6":false}"#.into(),
            "--subnet",
        ),
        (
            "/IpamDriver.RequestPool",
            r#"{"Pool":"10.78.0.0/24","V6":true}"#.into(),
            "IPv4",
        ),
        (
            "/IpamDriver.RequestAddress",
            format!(r#"{{"PoolID":"{pool_id}","Address":"10.77.0.9","Options":null}}"#),
            "in use",
        ),
        (
            "/IpamDriver.RequestAddress",
            format!(r#"{{"PoolID":"{pool_id}","Address":"10.80.0.9","Options":null}}"#),
            "outside",
        ),
        (
            "/IpamDriver.RequestAddress",
            r#"{"PoolID":"nope","Address":"","Options":null}"#.into(),
            "unknown pool",
        ),
        (
            "/IpamDriver.RequestAddress",
            r#"{"PoolID":"../../etc","Address":"","Options":null}"#.into(),
            "not a valid id",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            create.clone(),
            "already exists",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            create
                .replace(&nid, &"c".repeat(64))
                .replace("\"tenant\"", "\"tenantx\""),
            "-o tenantx",
        ),
    ];
    for (path, body, want) in &cases {
        let (status, reply) = p.call(path, body);
        assert_eq!(status, 200, "{path} {body}");
        let err = reply["Err"]
            .as_str()
            .unwrap_or_else(|| panic!("{path} {body}: no Err in {reply}"));
        assert!(err.contains(want), "{path} {body}: {err:?} lacks {want:?}");
        assert_eq!(
            snapshot(cn.state.path()),
            before,
            "{path} {body} changed the state"
        );
    }
    let (status, _) = p.call("/NetworkDriver.Frobnicate", "{}");
    assert_eq!(status, 404, "unknown call");
    let (status, _) = p.call("/nope", "");
    assert_eq!(status, 404, "unknown path");

    // Deletes are idempotent; releasing everything leaves nothing.
    for _ in 0..2 {
        ok(
            "/NetworkDriver.Leave",
            &format!(r#"{{"NetworkID":"{nid}","EndpointID":"{eid}"}}"#),
        );
        ok(
            "/NetworkDriver.DeleteEndpoint",
            &format!(r#"{{"NetworkID":"{nid}","EndpointID":"{eid}"}}"#),
        );
    }
    ok(
        "/IpamDriver.ReleaseAddress",
        &format!(r#"{{"PoolID":"{pool_id}","Address":"10.77.0.9"}}"#),
    );
    ok(
        "/IpamDriver.ReleaseAddress",
        &format!(r#"{{"PoolID":"{pool_id}","Address":"10.77.0.1"}}"#),
    );
    ok(
        "/IpamDriver.ReleasePool",
        &format!(r#"{{"PoolID":"{pool_id}"}}"#),
    );
    ok(
        "/NetworkDriver.DeleteNetwork",
        &format!(r#"{{"NetworkID":"{nid}"}}"#),
    );
    ok(
        "/NetworkDriver.DeleteNetwork",
        &format!(r#"{{"NetworkID":"{nid}"}}"#),
    );
    assert_no_trace(&cn, "after the test");
}

#[test]
fn docker_container_on_cn1_talks_to_a_cni_container_on_cn2_through_the_hub() {
    use testkit::cluster::{Cluster, Cn, NN_IP};
    require_docker!("docker::cluster");
    if testkit::try_cnci_agent_tool().is_none() {
        skip("docker::cluster", "ciao-cnci-agent does not build");
        return;
    }
    let _g = guard();
    let mut cluster = Cluster::new().expect("cluster");
    let t = cluster.add_tenant(TENANT_A).expect("tenant with its CNCI");
    let cn1 = cluster.cn(Cn::Cn1);
    // dockerd and the plugin run in CN1's namespace, as on a real compute node.
    let d = Dockerd::start(cn1);
    let p = PluginDaemon::start(cn1);
    let subnet = "172.16.1.0/24";
    let args = tenant_network_args(
        &p.name,
        &t.tenant,
        &t.cnci,
        NN_IP,
        &["--subnet", subnet],
        "tn",
    );
    d.docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run(&d, "c1", "tn", &["--ip", "172.16.1.10"]);
    let w = cluster
        .container(Cn::Cn2, &t, subnet, "172.16.1.12")
        .expect("CNI container on CN2");
    cluster
        .wait_programmed(&t, subnet, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("the hub links both nodes");
    assert!(d.ping("c1", "172.16.1.12"), "docker on CN1 -> CNI on CN2");
    assert!(w.ping("172.16.1.10", 2), "CNI on CN2 -> docker on CN1");
    d.docker(&["rm", "-f", "c1"]);
    d.docker(&["network", "rm", "tn"]);
    cluster
        .wait_programmed(&t, subnet, &[Cn::Cn2.ip()])
        .expect("CN1 left the hub");
    drop(w);
}

#[test]
fn a_plugin_killed_at_each_step_of_create_endpoint_recovers_on_restart() {
    if !testkit::is_root() {
        skip("docker::crash", "needs root (network namespaces)");
        return;
    }
    for step in 1..=netcore::ATTACH_STEPS {
        let cn = ComputeNode::new();
        let step_text = step.to_string();
        let mut p = PluginDaemon::start_with(
            &cn,
            crash_plugin_bin(),
            &[("CIAO_CRASH_AFTER_STEP", &step_text)],
        );
        let ok = |p: &PluginDaemon, path: &str, body: &str| {
            let (status, reply) = p.call(path, body);
            assert!(
                status == 200 && reply.get("Err").is_none(),
                "step {step}: {path} {body}: {status} {reply}"
            );
            reply
        };
        let pool = ok(
            &p,
            "/IpamDriver.RequestPool",
            r#"{"AddressSpace":"ciao-local","Pool":"10.77.0.0/24","SubPool":"","Options":{},"V6":false}"#,
        );
        let pool_id = pool["PoolID"].as_str().expect("PoolID").to_string();
        ok(
            &p,
            "/IpamDriver.RequestAddress",
            &format!(
                r#"{{"PoolID":"{pool_id}","Address":"","Options":{{"RequestAddressType":"com.docker.network.gateway"}}}}"#
            ),
        );
        let nid = "a".repeat(64);
        ok(
            &p,
            "/NetworkDriver.CreateNetwork",
            &format!(
                r#"{{"NetworkID":"{nid}","Options":{{"com.docker.network.generic":{{"tenant":"{TENANT_A}","cnci":"{CNCI}@{}"}}}},"IPv4Data":[{{"AddressSpace":"ciao-local","Gateway":"10.77.0.1/24","Pool":"10.77.0.0/24"}}],"IPv6Data":[]}}"#,
                cn.cnci_ip
            ),
        );
        ok(
            &p,
            "/IpamDriver.RequestAddress",
            &format!(r#"{{"PoolID":"{pool_id}","Address":"10.77.0.9","Options":null}}"#),
        );
        let eid = "e".repeat(64);
        let ep = format!(r#"{{"NetworkID":"{nid}","EndpointID":"{eid}"}}"#);
        let create = format!(
            r#"{{"NetworkID":"{nid}","EndpointID":"{eid}","Interface":{{"Address":"10.77.0.9/24","AddressIPv6":"","MacAddress":""}},"Options":{{}}}}"#
        );
        let (status, _) = p.call("/NetworkDriver.CreateEndpoint", &create);
        assert_eq!(
            status, 0,
            "step {step}: the plugin must die mid-CreateEndpoint"
        );
        assert!(p.exited(), "step {step}: plugin still running");
        p.env.clear();
        p.kill9_and_restart();
        if step % 2 == 0 {
            // dockerd retries the broken call: it works now, and the endpoint is usable.
            ok(&p, "/NetworkDriver.CreateEndpoint", &create);
            let join = ok(
                &p,
                "/NetworkDriver.Join",
                &format!(r#"{{"NetworkID":"{nid}","EndpointID":"{eid}","SandboxKey":"/x"}}"#),
            );
            let veth = join["InterfaceName"]["SrcName"].as_str().expect("SrcName");
            assert!(
                cn.ns.links().iter().any(|l| l == veth),
                "step {step}: {veth}"
            );
            ok(&p, "/NetworkDriver.Leave", &ep);
            ok(&p, "/NetworkDriver.DeleteEndpoint", &ep);
        }
        // dockerd's clean-up after a failed (or a deleted) endpoint.
        ok(
            &p,
            "/IpamDriver.ReleaseAddress",
            &format!(r#"{{"PoolID":"{pool_id}","Address":"10.77.0.9"}}"#),
        );
        ok(
            &p,
            "/IpamDriver.ReleasePool",
            &format!(r#"{{"PoolID":"{pool_id}"}}"#),
        );
        ok(
            &p,
            "/NetworkDriver.DeleteNetwork",
            &format!(r#"{{"NetworkID":"{nid}"}}"#),
        );
        assert_no_trace(&cn, &format!("step {step}"));
        let strays: Vec<String> = cn
            .ns
            .links()
            .into_iter()
            .filter(|l| l.starts_with("c"))
            .collect();
        assert!(strays.is_empty(), "step {step}: links left: {strays:?}");
    }
}
