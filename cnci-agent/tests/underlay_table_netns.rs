//! The node-wide underlay table against the real `nft` in a private namespace: CNCIs that
//! start at the same instant make one table (no duplicated rules), each adds and removes only
//! its own elements, and an ensure of a table in use leaves its elements (and the reflection
//! set) alone. Needs root (skips otherwise).

use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;

use cnci_agent::nft::{self, Uplink};

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn fresh_ns() -> Option<(Ns, OwnedFd)> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: underlay_table_netns: needs root for a network namespace");
        return None;
    }
    let name = format!("ciao-ult-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip netns add {name}");
    let fd = std::fs::File::open(format!("/run/netns/{name}"))
        .expect("open netns")
        .into();
    Some((Ns(name), fd))
}

fn uplink(i: u32) -> Uplink {
    Uplink {
        uplink: format!("cu{i:012x}"),
        uplink_net: format!("100.64.{}.{}/31", i / 128, (i % 128) * 2)
            .parse()
            .expect("net"),
        external_dev: i.is_multiple_of(2).then(|| "ext0".to_string()),
    }
}

fn in_ns(ns: &Ns, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .args(args)
        .output()
        .expect("ip netns exec");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn listing(ns: &Ns) -> String {
    let (name, _) = nft::underlay_table();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "list", "table", "ip", &name])
        .output()
        .expect("nft list");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cncis_share_one_table_and_each_removes_exactly_its_elements() {
    let Some((ns, fd)) = fresh_ns() else { return };
    let nets = ["10.250.0.0/24".parse().expect("net")];
    // Eight CNCIs starting at once: exactly one of them creates the table.
    std::thread::scope(|s| {
        for i in 0..8 {
            let fd = fd.as_fd();
            s.spawn(move || {
                nft::add_uplink(Some(fd), &uplink(i), &nets, "ciao_cnci_legacy").expect("add")
            });
        }
    });
    let text = listing(&ns);
    assert_eq!(text.matches("iifname @uplinks drop").count(), 1, "{text}");
    assert_eq!(text.matches("masquerade").count(), 1, "{text}");
    for i in 0..8 {
        assert!(text.contains(&uplink(i).uplink), "{i} missing: {text}");
    }
    assert!(text.contains("10.250.0.0/24"), "{text}");

    // A CNCI restarting ensures again: nothing is replaced, nothing is duplicated, and the
    // table of its own that an earlier build made goes.
    assert!(!nft::ensure_underlay_table(Some(fd.as_fd())).expect("ensure"));
    in_ns(&ns, &["nft", "add", "table", "ip", "ciao_cnci_legacy"]);
    nft::add_uplink(Some(fd.as_fd()), &uplink(0), &nets, "ciao_cnci_legacy").expect("again");
    assert_eq!(listing(&ns), text, "an ensure of a table in use changed it");
    let tables = in_ns(&ns, &["nft", "list", "tables", "ip"]);
    assert!(!tables.contains("ciao_cnci_legacy"), "{tables}");

    // One CNCI goes: only its elements go; removing twice is harmless.
    nft::remove_uplink(Some(fd.as_fd()), &uplink(2)).expect("remove");
    nft::remove_uplink(Some(fd.as_fd()), &uplink(2)).expect("remove again");
    let after = listing(&ns);
    assert!(!after.contains(&uplink(2).uplink), "{after}");
    assert!(
        !after.contains(&uplink(2).uplink_net.to_string()),
        "{after}"
    );
    for i in [0, 1, 3, 4, 5, 6, 7] {
        assert!(after.contains(&uplink(i).uplink), "{i} lost: {after}");
    }
    assert!(after.contains(&format!("{} . \"ext0\"", uplink(4).uplink_net)));
}
