//! The nft layer and the guard table against the real kernel, in a scratch network namespace
//! (a thread that unshares one; it vanishes with the thread). Needs root.

use std::net::Ipv4Addr;

use crate::antispoof::{self, PortGuard};
use crate::nft::{dump, Family, Socket};

/// Runs `f` on a thread in a fresh network namespace; `None` (and a skip line) without root.
fn in_scratch_netns(test: &str, f: impl FnOnce(&mut Socket) + Send) -> Option<()> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                    eprintln!("skipped: {test}: cannot create a network namespace (not root)");
                    return None;
                }
                let mut s = Socket::open().expect("nfnetlink socket");
                f(&mut s);
                Some(())
            })
            .join()
            .expect("test thread")
    })
}

/// `nft list table bridge <TABLE>` in the calling thread's namespace (a child inherits it).
fn nft_list() -> String {
    super::cli(&["list", "table", "bridge", antispoof::TABLE])
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

#[test]
fn the_guard_table_loads_once_and_holds_exactly_the_live_ports() {
    in_scratch_netns("guard table", |s| {
        assert!(!dump::table_exists(s, Family::Bridge, antispoof::TABLE).expect("get"));
        let a = PortGuard::new("ciao-a", [2, 0, 10, 0, 0, 2], [ip("10.0.0.2")]);
        let b = PortGuard::new(
            "ciao-b",
            [2, 0, 10, 0, 0, 3],
            [ip("10.0.0.3"), ip("10.0.0.50")],
        );
        antispoof::guard(s, &a).expect("guard a");
        antispoof::guard(s, &b).expect("guard b");
        // A second creator loses with EEXIST and keeps the table as it is.
        let again = s
            .commit(&antispoof::ruleset())
            .expect_err("exclusive create");
        assert_eq!(again.errno(), Some(libc::EEXIST), "{again}");
        antispoof::ensure_table(s).expect("ensure");
        let listed = nft_list();
        assert!(listed.contains("\"ciao-b\" . 10.0.0.50"), "{listed}");
        assert!(
            listed.contains("\"ciao-a\" . 02:00:0a:00:00:02"),
            "{listed}"
        );
        assert!(listed.contains("elements = { \"ciao-a\",\n"), "{listed}");
        assert!(listed.contains("\"ciao-a\" . fe80::aff:fe00:2"), "{listed}");
        assert_eq!(listed.matches("jump guard\n").count(), 1, "{listed}");

        antispoof::unguard(s, "ciao-a").expect("unguard");
        antispoof::unguard(s, "ciao-a").expect("unguard twice");
        let now = antispoof::list(s).expect("list");
        assert_eq!(now.len(), 1, "{now:?}");
        assert_eq!(now.get("ciao-b"), Some(&Some(b.clone())));
        let listed = nft_list();
        assert!(!listed.contains("ciao-a"), "{listed}");
    });
}

#[test]
fn reattaching_a_name_replaces_its_elements() {
    in_scratch_netns("guard replace", |s| {
        let old = PortGuard::new(
            "tap7",
            [2, 0, 10, 0, 0, 7],
            [ip("10.0.0.7"), ip("10.0.0.70")],
        );
        let new = PortGuard::new("tap7", [2, 0, 10, 0, 0, 8], [ip("10.0.0.8")]);
        antispoof::guard(s, &old).expect("guard old");
        antispoof::guard(s, &old).expect("guard old again");
        antispoof::guard(s, &new).expect("guard new");
        let now = antispoof::list(s).expect("list");
        assert_eq!(
            now.into_iter().collect::<Vec<_>>(),
            vec![("tap7".to_string(), Some(new))]
        );
    });
}

#[test]
fn a_failing_batch_names_its_message_and_changes_nothing() {
    in_scratch_netns("batch error", |s| {
        antispoof::ensure_table(s).expect("table");
        let good = crate::nft::objects::add_elements(
            Family::Bridge,
            antispoof::TABLE,
            "ports",
            &[crate::nft::objects::Key::new().ifname("x1")],
        );
        let bad = crate::nft::objects::add_elements(
            Family::Bridge,
            antispoof::TABLE,
            "nosuchset",
            &[crate::nft::objects::Key::new().ifname("x1")],
        );
        let err = s.commit(&[good, bad]).expect_err("must fail");
        assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
        assert!(err.to_string().contains("nosuchset"), "{err}");
        assert!(antispoof::list(s).expect("list").is_empty());
        // The socket is usable after the error.
        assert!(dump::table_exists(s, Family::Bridge, antispoof::TABLE).expect("get"));
    });
}

#[test]
fn old_versions_of_the_table_are_removed() {
    in_scratch_netns("old tables", |s| {
        let old = crate::nft::objects::new_table(Family::Bridge, "ciao_guard_v0", true);
        s.commit(&[old]).expect("old table");
        antispoof::ensure_table(s).expect("table");
        let removed = antispoof::remove_old_tables(s).expect("remove");
        assert_eq!(removed, vec!["ciao_guard_v0".to_string()]);
        let tables = dump::tables(s, Family::Bridge).expect("tables");
        assert_eq!(tables, vec![antispoof::TABLE.to_string()]);
    });
}

/// Kernels before 6.3 (Debian 12's 6.1) lack `NFT_MSG_DESTROYSETELEM`: removals then delete
/// exactly the elements a port has. Both paths must leave the same sets.
#[test]
fn without_destroy_a_port_s_elements_are_deleted_exactly() {
    in_scratch_netns("guard exact deletes", |s| {
        antispoof::delete_exactly_from_now_on();
        let old = PortGuard::new(
            "tap9",
            [2, 0, 10, 0, 0, 9],
            [ip("10.0.0.9"), ip("10.0.0.90")],
        );
        let new = PortGuard::new("tap9", [2, 0, 10, 0, 0, 10], [ip("10.0.0.9")]);
        let other = PortGuard::new("tap8", [2, 0, 10, 0, 0, 8], [ip("10.0.0.8")]);
        antispoof::guard(s, &other).expect("guard other");
        antispoof::guard(s, &old).expect("guard old");
        antispoof::guard(s, &old).expect("guard old again");
        antispoof::guard(s, &new).expect("guard new");
        let now = antispoof::list(s).expect("list");
        assert_eq!(now.get("tap9"), Some(&Some(new.clone())), "{now:?}");
        antispoof::unguard(s, "tap9").expect("unguard");
        antispoof::unguard(s, "tap9").expect("unguard twice");
        antispoof::unguard(s, "never-there").expect("unguard a stranger");
        let now = antispoof::list(s).expect("list");
        assert_eq!(
            now.into_iter().collect::<Vec<_>>(),
            vec![("tap8".to_string(), Some(other))]
        );
        assert!(!nft_list().contains("tap9"));
    });
}

/// Not a check: how long the kernel takes to commit one element added, deleted, or both in
/// one batch, from this process (no `nft`), in an otherwise empty namespace. Run by hand:
/// `cargo test -p netcore --release element_commit_timings -- --ignored --nocapture`.
#[test]
#[ignore]
fn element_commit_timings() {
    use crate::nft::objects::{self, Key, KeyType, Set};
    use std::time::{Duration, Instant};
    in_scratch_netns("element commit timings", |s| {
        let set = Set {
            name: "m".into(),
            key: vec![KeyType::Ipv4Addr],
            flags: 0,
            id: 1,
        };
        let f = Family::Inet;
        let shape = std::env::var("PROBE_NFT").unwrap_or_default();
        if shape.is_empty() {
            s.commit(&[
                objects::new_table(f, "probe", false),
                objects::new_set(f, "probe", &set),
            ])
            .expect("table");
        } else {
            crate::secgroups::run(&shape).expect("nft");
        }
        let key = |i: u8| Key::new().part(&[10, 250, 0, i]);
        let mut took: [Vec<Duration>; 3] = Default::default();
        let mut time = |i: usize, msgs: &[objects::Msg]| {
            let at = Instant::now();
            s.commit(msgs).expect("commit");
            took[i].push(at.elapsed());
        };
        for _ in 0..40 {
            time(0, &[objects::add_elements(f, "probe", "m", &[key(1)])]);
            time(1, &[objects::del_elements(f, "probe", "m", &[key(1)])]);
            time(0, &[objects::add_elements(f, "probe", "m", &[key(2)])]);
            let both = [
                objects::del_elements(f, "probe", "m", &[key(2)]),
                objects::add_elements(f, "probe", "m", &[key(3)]),
            ];
            time(2, &both);
            time(1, &[objects::del_elements(f, "probe", "m", &[key(3)])]);
        }
        for (what, mut t) in ["add", "delete", "delete+add"].into_iter().zip(took) {
            t.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            eprintln!(
                "{what}: n {} min {:.3} ms p50 {:.3} ms max {:.3} ms",
                t.len(),
                ms(t[0]),
                ms(t[t.len() / 2]),
                ms(t[t.len() - 1])
            );
        }
    });
}
