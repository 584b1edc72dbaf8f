//! Security groups per Docker container, with a real dockerd on a compute node of the
//! controller-mode cluster: a container names its groups as a driver option of its network
//! (`--network 'name=N,"driver-opt=security_groups=web,admin"'`), the node enforces them (new
//! groups allow all egress), and a container on the same network without groups stays
//! unfiltered. A bad group name refuses the container and leaves no endpoint behind.

use std::path::PathBuf;

use testkit::cluster::{Cluster, Cn};
use testkit::docker::{controlled_network_args, unavailable, Dockerd, PluginDaemon, IMAGE};
use testkit::tcp::{tag_at, TagListener};
use testkit::wait;
use testkit::{skip, TENANT_A};

/// The network namespace of a running container.
fn netns_of(d: &Dockerd, container: &str) -> PathBuf {
    let pid = d.docker(&["inspect", "-f", "{{.State.Pid}}", container]);
    PathBuf::from(format!("/proc/{}/ns/net", pid.trim()))
}

/// The node's VNIC records.
fn vnics(state: &std::path::Path) -> Vec<netcore::state::VnicRecord> {
    let state = netcore::state::StateDir::open(state).expect("state dir");
    let locked = state.lock().expect("lock");
    let mut out = Vec::new();
    for net in locked.nets().expect("nets") {
        out.extend(locked.vnics(&net.key).expect("vnics"));
    }
    out
}

/// The security groups the node recorded for the VNIC with address `ip`.
fn recorded_groups(state: &std::path::Path, ip: &str) -> Option<Vec<String>> {
    vnics(state)
        .into_iter()
        .find(|v| v.ip.to_string() == ip)
        .map(|v| v.security_groups)
}

#[test]
fn a_containers_driver_option_puts_it_in_security_groups_the_node_enforces() {
    if let Some(why) = unavailable() {
        skip("docker_groups", &why);
        return;
    }
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_A);
    let cn1 = cluster.cn(Cn::Cn1);
    let d = Dockerd::start(cn1);
    let p = PluginDaemon::start(cn1);
    let create = controlled_network_args(&p.name, &t.tenant, "tnet");
    d.docker(&create.iter().map(String::as_str).collect::<Vec<_>>());
    // Go's CSV quoting keeps the comma of the group list inside the driver option.
    let grouped = "name=tnet,\"driver-opt=security_groups=web,admin\"";
    d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        grouped,
        IMAGE,
        "sleep",
        "600",
    ]);
    d.docker(&[
        "run",
        "-d",
        "--name",
        "plain",
        "--network",
        "tnet",
        IMAGE,
        "sleep",
        "600",
    ]);
    let web_ip = d.ip_of("web", "tnet").trim().to_string();
    let plain_ip = d.ip_of("plain", "tnet").trim().to_string();
    let state = cn1.state.path();
    assert_eq!(
        recorded_groups(state, &web_ip),
        Some(vec!["admin".to_string(), "web".to_string()])
    );
    assert_eq!(recorded_groups(state, &plain_ip), Some(Vec::new()));

    cluster.wait_cnci_ready(&mut t).expect("CNCI ready");
    for (group, port) in [("web", "80"), ("admin", "81")] {
        cluster.ciao_net_ok(&["group", "create", "--tenant", &t.tenant, group]);
        let tcp_in = [
            "--direction",
            "ingress",
            "--protocol",
            "tcp",
            "--port",
            port,
        ];
        cluster.add_rule(&t.tenant, group, &tcp_in);
    }
    let web_ns = netns_of(&d, "web");
    let plain_ns = netns_of(&d, "plain");
    let _listeners = [80, 81, 82].map(|port| {
        let tag: &'static str = match port {
            80 => "80",
            81 => "81",
            _ => "82",
        };
        TagListener::start(web_ns.clone(), port, tag)
    });
    let _plain_listener = TagListener::start(plain_ns.clone(), 82, "plain");
    let seen = |port| tag_at(&plain_ns, None, &web_ip, port);
    wait::equal(
        "web's groups open 80 and 81 and nothing else",
        &(Some("80".into()), Some("81".into()), None),
        || (seen(80), seen(81), seen(82)),
    );
    assert_eq!(
        tag_at(&web_ns, None, &plain_ip, 82).as_deref(),
        Some("plain"),
        "a container naming no group stays open"
    );

    // A bad name: the container is refused and no endpoint is left.
    let bad = "name=tnet,driver-opt=security_groups=x y";
    let run_bad = [
        "run",
        "-d",
        "--name",
        "bad",
        "--network",
        bad,
        IMAGE,
        "sleep",
        "600",
    ];
    let (ok, _, err) = d.try_docker(&run_bad);
    assert!(!ok, "a bad group name must refuse the container");
    assert!(err.contains("driver option security_groups"), "{err}");
    let endpoints = d.docker(&["network", "inspect", "-f", "{{len .Containers}}", "tnet"]);
    assert_eq!(endpoints.trim(), "2", "only web and plain");
    assert_eq!(
        vnics(state).len(),
        2,
        "no VNIC left by the refused container"
    );
    d.try_docker(&["rm", "-f", "bad"]);
    d.docker(&["rm", "-f", "web", "plain"]);
    d.docker(&["network", "rm", "tnet"]);
}
