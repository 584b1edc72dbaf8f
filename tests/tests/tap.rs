//! The core's tap attach (what the QEMU hooks will use), driven through the library inside a
//! simulated compute node's namespace.

use std::os::fd::AsFd;
use std::path::PathBuf;

use netcore::{Cnci, Node, NodeConfig, SubnetConfig, VnicId, VnicKind, VnicRequest};
use testkit::{require_root, ComputeNode, TENANT_A};

fn subnet(node: &ComputeNode) -> SubnetConfig {
    SubnetConfig::new(
        TENANT_A.parse().expect("uuid"),
        "172.16.7.0/24".parse().expect("subnet"),
        Cnci {
            uuid: "3390740c-dce9-48d6-b83a-a717417072ce"
                .parse()
                .expect("uuid"),
            ip: node.cnci_ip.parse().expect("ip"),
        },
    )
}

/// Runs `f` with a `Node` opened inside the compute node's namespace (on a dedicated thread, so
/// the test's own thread never changes namespace; taps are created in the caller's namespace).
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

fn tap_request(name: &str, ip: &str) -> VnicRequest {
    VnicRequest {
        id: VnicId {
            owner: format!("vm-{name}"),
            ifname: name.into(),
        },
        kind: VnicKind::Tap {
            name: name.into(),
            uid: Some(4242),
            gid: None,
        },
        ip: Some(ip.parse().expect("ip")),
        mac: None,
        default_route: false,
        allowed: Vec::new(),
        security_groups: Vec::new(),
    }
}

#[test]
fn a_tap_created_by_the_core_joins_the_bridge_and_goes_with_the_detach() {
    require_root!();
    let node = ComputeNode::new();
    let cfg = subnet(&node);
    let req = tap_request("tapvm1", "172.16.7.20");
    let att = in_node(&node, |n| n.attach(&cfg, &req)).expect("attach tap");
    assert!(att.first_instance);
    assert_eq!(att.vnic.mac, "02:00:ac:10:07:14", "ciao's MAC from the IP");
    assert!(att.vnic.created_tap);
    let shown = node.ns.exec(&["ip", "-d", "link", "show", "tapvm1"]);
    assert!(shown.contains(&format!("master {}", att.bridge)), "{shown}");
    assert!(shown.contains("mtu 1450"), "{shown}");
    assert!(
        shown.contains("alias ciao:") && shown.contains(":vnic:"),
        "{shown}"
    );
    assert_eq!(
        node.ns.exec(&["cat", "/sys/class/net/tapvm1/owner"]).trim(),
        "4242"
    );
    assert_eq!(node.report_events(), ["tenant_added"]);

    in_node(&node, |n| n.detach(&cfg.net_key(), &req.id)).expect("detach");
    assert!(
        !node.ns.links().contains(&"tapvm1".to_string()),
        "our tap is removed"
    );
    node.assert_clean();
    assert_eq!(node.report_events(), ["tenant_added", "tenant_removed"]);
}

#[test]
fn a_tap_made_by_qemu_is_attached_and_only_unplugged_on_detach() {
    require_root!();
    let node = ComputeNode::new();
    // QEMU creates its tap itself (down, unattached) before running the ifup script.
    node.ns
        .exec(&["ip", "tuntap", "add", "dev", "tapq0", "mode", "tap"]);
    let cfg = subnet(&node);
    let req = tap_request("tapq0", "172.16.7.21");
    let att = in_node(&node, |n| n.attach(&cfg, &req)).expect("attach");
    assert!(!att.vnic.created_tap);
    let shown = node.ns.exec(&["ip", "link", "show", "tapq0"]);
    assert!(shown.contains(&format!("master {}", att.bridge)), "{shown}");
    // Attaching a tap that is already on a bridge is refused.
    let mut other = tap_request("tapq0", "172.16.7.22");
    other.id.owner = "vm-other".into();
    let again = in_node(&node, |n| n.attach(&cfg, &other));
    let err = again.expect_err("a tap on a bridge cannot be attached twice");
    assert!(
        err.to_string().contains("already attached to a bridge"),
        "{err}"
    );

    in_node(&node, |n| n.detach(&cfg.net_key(), &req.id)).expect("detach");
    in_node(&node, |n| n.detach(&cfg.net_key(), &req.id)).expect("detach twice");
    let shown = node.ns.exec(&["ip", "-d", "link", "show", "tapq0"]);
    assert!(!shown.contains("master"), "unplugged: {shown}");
    assert!(!shown.contains("alias"), "our label removed: {shown}");
    node.assert_clean();
}
