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

fn fresh_ns(test: &str) -> Option<(Ns, OwnedFd)> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: {test}: needs root for a network namespace");
        return None;
    }
    let name = format!("ciao-ult{}-{}", test.len(), std::process::id());
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
    table_listing(ns, &name)
}

fn table_listing(ns: &Ns, name: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "list", "table", "ip", name])
        .output()
        .expect("nft list");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cncis_share_one_table_and_each_removes_exactly_its_elements() {
    let Some((ns, fd)) = fresh_ns("cncis_share_one_table") else {
        return;
    };
    let nets = ["10.250.0.0/24".parse().expect("net")];
    // CNCI 0's own table of a build before the node-wide one.
    in_ns(&ns, &["nft", "add", "table", "ip", "ciao_cnci_legacy"]);
    // Eight CNCIs starting at once: exactly one table is made, and CNCI 0's old one goes.
    std::thread::scope(|s| {
        for i in 0..8 {
            let fd = fd.as_fd();
            let legacy = if i == 0 {
                "ciao_cnci_legacy"
            } else {
                "ciao_cnci_none"
            };
            s.spawn(move || nft::add_uplink(Some(fd), &uplink(i), &nets, legacy).expect("add"));
        }
    });
    let tables = in_ns(&ns, &["nft", "list", "tables", "ip"]);
    assert!(!tables.contains("ciao_cnci_legacy"), "{tables}");
    let text = listing(&ns);
    assert_eq!(text.matches("iifname @uplinks drop").count(), 1, "{text}");
    assert_eq!(text.matches("masquerade").count(), 1, "{text}");
    for i in 0..8 {
        assert!(text.contains(&uplink(i).uplink), "{i} missing: {text}");
    }
    assert!(text.contains("10.250.0.0/24"), "{text}");

    // A CNCI restarting ensures again: nothing is replaced, nothing is duplicated.
    assert!(!nft::ensure_underlay_table(Some(fd.as_fd())).expect("ensure"));
    nft::add_uplink(Some(fd.as_fd()), &uplink(0), &nets, "ciao_cnci_legacy").expect("again");
    assert_eq!(listing(&ns), text, "an ensure of a table in use changed it");

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
    assert!(after.contains(&format!("{} . \"ext0\"", uplink(4).tenant_side())));

    // The table deleted behind this process's back (which remembers that it exists): the
    // next CNCI's transaction fails, and the retry after a fresh listing makes it again.
    let (name, _) = nft::underlay_table();
    in_ns(&ns, &["nft", "delete", "table", "ip", &name]);
    nft::add_uplink(Some(fd.as_fd()), &uplink(9), &nets, "ciao_cnci_none").expect("remade");
    let remade = listing(&ns);
    assert!(remade.contains(&uplink(9).uplink), "{remade}");
    assert_eq!(
        remade.matches("iifname @uplinks drop").count(),
        1,
        "{remade}"
    );
}

/// Whether `uplink`'s interface is in the `uplinks` set of `table` (so guarded by it).
fn guarded_by(ns: &Ns, table: &str, i: u32) -> bool {
    table_listing(ns, table).contains(&format!("\"{}\"", uplink(i).uplink))
}

#[test]
fn an_upgrade_moves_each_uplink_out_of_the_earlier_table_which_goes_with_the_last() {
    let Some((ns, fd)) = fresh_ns("an_upgrade_moves_each_uplink") else {
        return;
    };
    // The table of the build before this one (masq keyed on the uplink's /31), with four
    // CNCIs' elements.
    let earlier = nft::EARLIER[0];
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/earlier_underlay_table.nft"
    );
    in_ns(&ns, &["nft", "-f", file]);
    let mut elements = String::new();
    for i in 0..4 {
        let old = uplink(i).remove_earlier_script(earlier);
        elements.extend(
            old.lines()
                .filter(|l| l.starts_with("add"))
                .map(|l| format!("{l}\n")),
        );
    }
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(elements.as_bytes())?;
            c.wait()
        })
        .expect("nft");
    assert!(status.success(), "earlier elements: {elements}");
    assert!((0..4).all(|i| guarded_by(&ns, earlier, i)));

    // CNCIs 0 and 1 restart with this build: each moves to the current table in one
    // transaction; 2 and 3 (not restarted yet) stay guarded by the earlier table.
    let nets = ["10.250.0.0/24".parse().expect("net")];
    let (current, _) = nft::underlay_table();
    for i in [0, 1] {
        nft::add_uplink(Some(fd.as_fd()), &uplink(i), &nets, "ciao_cnci_none").expect("add");
    }
    let old = table_listing(&ns, earlier);
    for i in [0, 1] {
        assert!(guarded_by(&ns, &current, i), "{i} not in {current}");
        assert!(!old.contains(&uplink(i).uplink), "{i} stale in {old}");
        assert!(!old.contains(&uplink(i).uplink_net.to_string()), "{old}");
    }
    assert!(
        guarded_by(&ns, earlier, 2) && guarded_by(&ns, earlier, 3),
        "{old}"
    );
    assert!(
        old.contains(&format!("{} . \"ext0\"", uplink(2).uplink_net)),
        "{old}"
    );

    // CNCI 2 is destroyed without restarting: its elements leave the earlier table.
    nft::remove_uplink(Some(fd.as_fd()), &uplink(2)).expect("remove");
    let old = table_listing(&ns, earlier);
    assert!(!old.contains(&uplink(2).uplink), "{old}");
    assert!(guarded_by(&ns, earlier, 3), "{old}");

    // The last one moves: the earlier table guards nothing and goes.
    nft::add_uplink(Some(fd.as_fd()), &uplink(3), &nets, "ciao_cnci_none").expect("add");
    let tables = in_ns(&ns, &["nft", "list", "tables", "ip"]);
    assert!(!tables.contains(earlier), "{tables}");
    assert!((0..4)
        .filter(|i| *i != 2)
        .all(|i| guarded_by(&ns, &current, i)));
}
