//! `ciao-node show` is read-only: against an absent, an empty or a recorded state directory it
//! prints what is there and leaves every byte, mode and timestamp as it was; a recorded VNIC
//! whose port the kernel no longer has is marked missing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use netcore::config::{Cnci, SubnetConfig, VnicId, VnicKind};
use netcore::state::{NetRecord, StateDir, VnicRecord};
use uuid::Uuid;

/// Every path under `root` with what a write would change (size, mode, mtime, ctime).
fn tree(root: &Path) -> BTreeMap<PathBuf, (u64, u32, i64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        out.insert(
            p.clone(),
            (m.len(), m.mode(), m.mtime(), m.mtime_nsec(), m.ctime_nsec()),
        );
        if m.is_dir() {
            for e in std::fs::read_dir(&p).expect("list").flatten() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// Runs `ciao-node --state-dir <dir> <args>`; stdout on success.
fn ciao_node(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ciao-node"))
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .env_remove("CIAO_STATE_DIR")
        .output()
        .expect("run ciao-node");
    assert!(
        out.status.success(),
        "ciao-node {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every read-only command of `ciao-node`.
const READ_ONLY: [&[&str]; 4] = [&["show"], &["show", "--json"], &["--help"], &["--version"]];

#[test]
fn read_only_commands_leave_an_absent_or_empty_state_directory_as_it_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let absent = tmp.path().join("absent");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    for dir in [&absent, &empty] {
        let before = tree(tmp.path());
        for args in READ_ONLY {
            ciao_node(dir, args);
            assert_eq!(
                tree(tmp.path()),
                before,
                "ciao-node {args:?} on {dir:?} wrote"
            );
        }
        assert!(ciao_node(dir, &["show"]).contains("nothing is attached"));
        let json: serde_json::Value =
            serde_json::from_str(&ciao_node(dir, &["show", "--json"])).expect("json");
        assert_eq!(json["nets"], serde_json::json!([]));
        assert_eq!(json["agent_uuid"], serde_json::Value::Null);
    }
    assert!(!absent.exists());
}

#[test]
fn show_marks_a_recorded_port_the_kernel_no_longer_has_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(tmp.path()).expect("state dir");
    let cnci = Cnci {
        uuid: Uuid::from_u128(2),
        ip: Ipv4Addr::new(192, 0, 2, 9),
    };
    let config = SubnetConfig::new(
        Uuid::from_u128(1),
        "172.16.1.0/24".parse().expect("subnet"),
        cnci,
    );
    {
        let locked = state.lock().expect("lock");
        let uuid = locked.node_identity().expect("identity").uuid;
        locked
            .write_net(&NetRecord {
                key: "n1".into(),
                config,
                bridge: "cb-gone-0".into(),
                tunnel: "ct-gone-0".into(),
                tunnel_id: 7,
                underlay: "ul0".into(),
                local_ip: Ipv4Addr::new(192, 0, 2, 1),
                mtu: 1450,
                generation: Uuid::from_u128(3),
                added_queued: true,
                controlled: false,
                awaiting_cnci_since: None,
                refused: None,
                ct_zone: 0,
            })
            .expect("net");
        for (owner, port) in [("gone", "cv-gone-0"), ("here", "lo")] {
            locked
                .write_vnic(&VnicRecord {
                    net: "n1".into(),
                    id: VnicId {
                        owner: owner.into(),
                        ifname: "eth0".into(),
                    },
                    kind: VnicKind::Veth {
                        netns: "/run/netns/none".into(),
                        ifname: "eth0".into(),
                    },
                    host_ifname: port.into(),
                    ip: Ipv4Addr::new(172, 16, 1, 2),
                    mac: "02:00:ac:10:01:02".into(),
                    mtu: 1450,
                    created_tap: false,
                    allowed: Vec::new(),
                    security_groups: Vec::new(),
                })
                .expect("vnic");
        }
        assert_ne!(uuid, Uuid::nil());
    }
    let before = tree(tmp.path());
    let text = ciao_node(tmp.path(), &["show"]);
    assert!(text.contains("port cv-gone-0 (missing)"), "{text}");
    assert!(text.contains("port lo\n"), "{text}");
    assert!(text.contains("bridge cb-gone-0 (missing)"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&ciao_node(tmp.path(), &["show", "--json"])).expect("json");
    let vnics = json["nets"][0]["vnics"].as_array().expect("vnics");
    let port_of = |owner: &str| {
        vnics
            .iter()
            .find(|v| v["id"]["owner"] == owner)
            .map(|v| v["port"].clone())
    };
    assert_eq!(port_of("gone"), Some(serde_json::json!("missing")));
    assert_eq!(port_of("here"), Some(serde_json::json!("present")));
    assert_eq!(tree(tmp.path()), before, "show wrote");
}

#[test]
fn show_says_since_when_a_subnet_awaits_its_cnci() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(tmp.path()).expect("state dir");
    let config =
        SubnetConfig::controlled(Uuid::from_u128(1), "172.16.1.0/24".parse().expect("subnet"));
    // 2026-12-02T11:00:00Z
    let since = 1_796_209_200;
    {
        let locked = state.lock().expect("lock");
        locked.node_identity().expect("identity");
        locked
            .write_net(&NetRecord {
                key: "n1".into(),
                config,
                bridge: "cb-wait-0".into(),
                tunnel: "ct-wait-0".into(),
                tunnel_id: 0,
                underlay: String::new(),
                local_ip: Ipv4Addr::UNSPECIFIED,
                mtu: 1450,
                generation: Uuid::from_u128(3),
                added_queued: false,
                controlled: true,
                awaiting_cnci_since: Some(since),
                refused: None,
                ct_zone: 0,
            })
            .expect("net");
    }
    let before = tree(tmp.path());
    let text = ciao_node(tmp.path(), &["show"]);
    assert!(
        text.contains("no tunnel: awaits CNCI since 2026-12-02T11:00:00Z ("),
        "{text}"
    );
    assert!(!text.contains("ct-wait-0"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&ciao_node(tmp.path(), &["show", "--json"])).expect("json");
    let wait = &json["nets"][0]["awaits_cnci"];
    assert_eq!(wait["since"], "2026-12-02T11:00:00Z", "{json}");
    assert_eq!(wait["since_unix"], since, "{json}");
    assert!(wait["waited_s"].as_u64().expect("seconds") > 0, "{json}");
    assert_eq!(json["nets"][0]["net"]["awaiting_cnci_since"], since);
    assert_eq!(tree(tmp.path()), before, "show wrote");
}

#[test]
fn show_says_why_the_controller_refused_a_subnet() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(tmp.path()).expect("state dir");
    let config =
        SubnetConfig::controlled(Uuid::from_u128(1), "10.1.2.0/24".parse().expect("subnet"));
    let why = "subnet 10.1.2.0/24 overlaps the tenant's subnet 10.1.0.0/16";
    {
        let locked = state.lock().expect("lock");
        locked.node_identity().expect("identity");
        locked
            .write_net(&NetRecord {
                key: "n1".into(),
                config,
                bridge: "cb-ref-0".into(),
                tunnel: "ct-ref-0".into(),
                tunnel_id: 0,
                underlay: String::new(),
                local_ip: Ipv4Addr::UNSPECIFIED,
                mtu: 1450,
                generation: Uuid::from_u128(3),
                added_queued: false,
                controlled: true,
                awaiting_cnci_since: None,
                // 2026-12-02T11:00:00Z
                refused: Some(netcore::state::Refusal {
                    reason: why.into(),
                    since: 1_796_209_200,
                }),
                ct_zone: 0,
            })
            .expect("net");
    }
    let text = ciao_node(tmp.path(), &["show"]);
    assert!(
        text.contains(&format!(
            "no tunnel: refused by the controller: {why} (since 2026-12-02T11:00:00Z)"
        )),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ciao_node(tmp.path(), &["show", "--json"])).expect("json");
    let net = &json["nets"][0];
    assert_eq!(net["refused"]["reason"], why, "{json}");
    assert_eq!(net["refused"]["since"], "2026-12-02T11:00:00Z", "{json}");
    assert!(net["awaits_cnci"].is_null(), "{json}");
}
