//! The compiler and the diff, pure: snapshot + ports → model → nft text.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use uuid::Uuid;

use super::*;

const T: Uuid = Uuid::from_u128(0xa);
const WEB: Uuid = Uuid::from_u128(0xb);
const ADMIN: Uuid = Uuid::from_u128(0xc);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, 0, last)
}

fn port(name: &str, last: u8, groups: &[&str]) -> Port {
    Port {
        tenant: T,
        bridge: "br0".into(),
        ifname: name.into(),
        ip: ip(last),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        zone: 7,
    }
}

fn tcp(direction: Direction, p: u16, remote: Remote) -> Rule {
    Rule {
        direction,
        ipv6: false,
        protocol: Protocol::Tcp,
        ports: Some((p, p)),
        icmp: None,
        remote,
    }
}

fn snap(admins: &[u8], rules22: bool) -> TenantGroups {
    let mut web = vec![tcp(Direction::Ingress, 80, Remote::Anywhere)];
    if rules22 {
        web.push(tcp(Direction::Ingress, 22, Remote::Group("admin".into())));
    }
    web.push(Rule {
        direction: Direction::Egress,
        ipv6: false,
        protocol: Protocol::Any,
        ports: None,
        icmp: None,
        remote: Remote::Anywhere,
    });
    TenantGroups {
        tenant: T,
        generation: 1,
        groups: vec![
            Group {
                name: "web".into(),
                uuid: Some(WEB),
                rules: web,
                members: vec![ip(2)],
            },
            Group {
                name: "admin".into(),
                uuid: Some(ADMIN),
                rules: vec![],
                members: admins.iter().map(|l| ip(*l)).collect(),
            },
        ],
    }
}

/// The nft text of a chain's rules.
fn texts(m: &Model, chain: &str) -> Vec<String> {
    m.chains[chain].iter().map(|l| l.text.clone()).collect()
}

fn model(ports: Vec<Port>, s: Option<TenantGroups>) -> Model {
    let ports = BTreeMap::from([(T, ports)]);
    let snaps = s.map(|s| BTreeMap::from([(T, s)])).unwrap_or_default();
    compile(&ports, &snaps)
}

#[test]
fn names_are_checked_like_the_controllers() {
    assert_eq!(
        parse_list("web, admin,web").expect("valid"),
        ["admin", "web"]
    );
    assert!(parse_list("").expect("empty").is_empty());
    for bad in ["we b", "a/b", "", &"x".repeat(65)] {
        assert!(check_names(&[bad]).is_err(), "{bad:?}");
    }
}

#[test]
fn a_group_rule_compiles_once_and_ports_jump_to_it() {
    let m = model(
        vec![port("v1", 2, &["web"]), port("v2", 3, &["admin"])],
        Some(snap(&[3], true)),
    );
    let gi = format!("gi_{}", WEB.simple());
    assert_eq!(
        texts(&m, &gi),
        [
            "tcp dport 80 accept".to_string(),
            format!("ip saddr @m_{} tcp dport 22 accept", ADMIN.simple()),
        ]
    );
    let (di, _) = compile::dispatch_names(Some(&[WEB.simple().to_string()]));
    assert_eq!(
        texts(&m, &di),
        [
            "ct state invalid drop".to_string(),
            "udp sport 67 udp dport 68 accept".into(),
            format!("jump {gi}"),
            "drop".into()
        ]
    );
    assert_eq!(m.ingress[&("br0".into(), ip(2))], di);
    assert_eq!(m.sets[&format!("m_{}", ADMIN.simple())], [ip(3)].into());
}

#[test]
fn a_membership_change_is_one_element() {
    let ports = vec![port("v1", 2, &["web"])];
    let old = model(ports.clone(), Some(snap(&[3], true)));
    let new = model(ports, Some(snap(&[3, 4], true)));
    let script = diff(&old, &new);
    assert_eq!(
        script,
        format!(
            "add element inet {TABLE} m_{} {{ 172.16.0.4 }}\n",
            ADMIN.simple()
        )
    );
}

#[test]
fn a_rule_change_rewrites_one_group_chain() {
    let ports = vec![port("v1", 2, &["web"]), port("v9", 9, &["web"])];
    let old = model(ports.clone(), Some(snap(&[3], true)));
    let new = model(ports, Some(snap(&[3], false)));
    let script = diff(&old, &new);
    let gi = format!("gi_{}", WEB.simple());
    assert_eq!(
        script,
        format!("flush chain inet {TABLE} {gi}\nadd rule inet {TABLE} {gi} tcp dport 80 accept\n")
    );
}

#[test]
fn each_bridge_of_a_filtered_port_gets_its_recorded_zone() {
    let m = model(vec![port("v1", 2, &["web"])], None);
    assert_eq!(m.zones["br0"], 7);
    assert_ne!(compile::zone_of("br0"), 0);
    assert_ne!(compile::zone_of("br0"), compile::zone_of("br1"));
    let script = rebuild(&m);
    assert!(script.contains(&format!("add element inet {TABLE} zones {{ \"br0\" : ")));
}

#[test]
fn without_a_snapshot_a_port_drops_new_ingress_and_keeps_egress() {
    let m = model(vec![port("v1", 2, &["web"])], None);
    assert_eq!(
        m.chains["di_wait"].last().map(|l| l.text.as_str()),
        Some("drop")
    );
    assert_eq!(
        m.chains["de_wait"].last().map(|l| l.text.as_str()),
        Some("accept")
    );
    assert!(m.sets.is_empty());
}

#[test]
fn an_unknown_group_allows_nothing() {
    let m = model(vec![port("v1", 2, &["nope"])], Some(snap(&[], true)));
    let gi = format!("gi_{}_nope", T.simple());
    assert!(m.chains[&gi].is_empty());
    let (di, _) = compile::dispatch_names(Some(&[format!("{}_nope", T.simple())]));
    assert_eq!(m.chains[&di].last().map(|l| l.text.as_str()), Some("drop"));
}

#[test]
fn ports_in_the_same_groups_share_one_dispatch_chain() {
    let m = model(
        vec![
            port("v1", 2, &["web"]),
            port("v2", 3, &["web"]),
            port("v3", 4, &["admin", "web"]),
        ],
        Some(snap(&[3], true)),
    );
    let web = m.ingress[&("br0".into(), ip(2))].clone();
    assert_eq!(m.ingress[&("br0".into(), ip(3))], web);
    assert_ne!(m.ingress[&("br0".into(), ip(4))], web);
    let dispatch = m.chains.keys().filter(|c| c.starts_with("di_")).count();
    assert_eq!(dispatch, 2, "{:?}", m.chains.keys());
}

#[test]
fn a_detached_port_takes_its_entries_and_its_last_dispatch_chain_along() {
    let s = snap(&[3], true);
    let two = model(
        vec![port("v1", 2, &["web"]), port("v2", 3, &["web"])],
        Some(s.clone()),
    );
    let one = model(vec![port("v1", 2, &["web"])], Some(s.clone()));
    let script = diff(&two, &one);
    assert!(script.contains("delete element inet ciao_sg_v1 ingress4 { \"br0\" . 172.16.0.3 }"));
    assert!(!script.contains("chain"), "{script}");
    assert_eq!(diff(&one, &one), "");
    let (di, _) = compile::dispatch_names(Some(&[WEB.simple().to_string()]));
    let none = model(vec![], Some(s));
    assert!(diff(&one, &none).contains(&format!("delete chain inet ciao_sg_v1 {di}")));
}

#[test]
fn a_rebuild_names_the_table_and_its_base_chains() {
    let m = model(vec![port("v1", 2, &["web"])], Some(snap(&[3], true)));
    let s = rebuild(&m);
    assert!(s.starts_with("add table inet ciao_sg_v1\ndelete table inet ciao_sg_v1\n"));
    assert!(s.contains("oifname . ip daddr vmap @ingress4"));
    let (di, _) = compile::dispatch_names(Some(&[WEB.simple().to_string()]));
    assert!(s.contains(&format!(
        "add element inet ciao_sg_v1 ingress4 {{ \"br0\" . 172.16.0.2 : jump {di} }}"
    )));
}

/// Runs `f` on a thread in a fresh network namespace (`nft` children inherit it); `None`
/// (and a skip line) without root.
fn in_scratch_netns(test: &str, f: impl FnOnce(&mut crate::nft::Socket) + Send) -> Option<()> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                    eprintln!("skipped: {test}: cannot create a network namespace (not root)");
                    return None;
                }
                let mut s = crate::nft::Socket::open().expect("nfnetlink socket");
                f(&mut s);
                Some(())
            })
            .join()
            .expect("test thread")
    })
}

/// `nft list <what>` in the calling thread's namespace.
fn nft_list(what: &[&str]) -> String {
    let args: Vec<&str> = std::iter::once("list")
        .chain(what.iter().copied())
        .collect();
    crate::nft::cli(&args)
}

/// The table's maps, sets and chains in name order (creation order differs after diffs).
fn blocks(listing: &str) -> Vec<String> {
    let mut b: Vec<String> = listing
        .trim()
        .split("\n\n")
        .map(|b| {
            b.trim_end_matches(|c: char| c == '}' || c.is_whitespace())
                .to_string()
        })
        .map(|b| {
            b.trim_start_matches("table inet ciao_sg_v1 {")
                .trim()
                .to_string()
        })
        .collect();
    b.sort();
    b
}

#[test]
fn the_applier_diffs_into_the_kernel_and_ends_where_a_rebuild_would() {
    in_scratch_netns("security-group applier", |s| {
        mark_pending(s, "br0", ip(7)).expect("no table yet is fine");
        let mut applier = Applier::default();
        applier
            .apply(Model::default())
            .expect("nothing to do, no table");
        let web1 = port("v1", 2, &["web"]);
        let steps = [
            model(vec![web1.clone()], None),
            model(vec![web1.clone()], Some(snap(&[3], true))),
            model(vec![web1.clone()], Some(snap(&[3, 4], true))),
            model(
                vec![web1.clone(), port("v2", 3, &["admin"])],
                Some(snap(&[3, 4], false)),
            ),
            model(
                vec![port("v2", 3, &["admin", "web"])],
                Some(snap(&[3], false)),
            ),
        ];
        for (i, step) in steps.iter().enumerate() {
            applier
                .apply(step.clone())
                .unwrap_or_else(|e| panic!("step {i}: {e}"));
            if i == 0 {
                // A filtered port's address waits in the pending set until the maps have it.
                mark_pending(s, "br0", ip(9)).expect("pending");
                let pending = nft_list(&["set", "inet", TABLE, PENDING]);
                assert!(pending.contains("\"br0\" . 172.16.0.9"), "{pending}");
            }
        }
        let pending = nft_list(&["set", "inet", TABLE, PENDING]);
        assert!(
            !pending.contains("172.16.0.9"),
            "flushed once ports joined: {pending}"
        );
        let diffed = blocks(&nft_list(&["table", "inet", TABLE]));
        run(&rebuild(steps.last().expect("last"))).expect("rebuild");
        assert_eq!(diffed, blocks(&nft_list(&["table", "inet", TABLE])));
    });
}

#[test]
fn only_element_changes_go_by_netlink() {
    let ports = vec![port("v1", 2, &["web"])];
    let old = model(ports.clone(), Some(snap(&[3], true)));
    let joined = model(ports.clone(), Some(snap(&[3, 4], true)));
    let msgs = elements::batch(&old, &joined).expect("elements only");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].kind, crate::nft::objects::MsgType::NewSetElem);
    let left = elements::batch(&joined, &old).expect("elements only");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].kind, crate::nft::objects::MsgType::DelSetElem);
    // A rule change: the group chain flushed and refilled.
    let msgs = elements::batch(&old, &model(ports, Some(snap(&[3], false)))).expect("rules");
    let whats: Vec<&str> = msgs.iter().map(|m| m.what.as_str()).collect();
    let gi = format!("gi_{}", WEB.simple());
    assert_eq!(
        whats,
        [
            format!("flush chain ciao_sg_v1 {gi}"),
            format!("add rule to ciao_sg_v1 {gi}")
        ]
    );
    // A new port in the same groups: its map entries; in other groups: a new dispatch chain,
    // so `nft`.
    let two = vec![port("v1", 2, &["web"]), port("v2", 3, &["web"])];
    let msgs = elements::batch(&old, &model(two, Some(snap(&[3], true)))).expect("entries");
    let whats: Vec<&str> = msgs.iter().map(|m| m.what.as_str()).collect();
    assert_eq!(
        whats,
        [
            "add 1 element(s) of set ciao_sg_v1 ingress4",
            "flush set ciao_sg_v1 pending4",
            "add 1 element(s) of set ciao_sg_v1 egress4",
        ]
    );
    let other = vec![port("v1", 2, &["web"]), port("v2", 3, &["admin"])];
    assert!(elements::batch(&old, &model(other, Some(snap(&[3], true)))).is_none());
    // A port's new address: its map entries move and the pending set is emptied.
    let moved = model(vec![port("v1", 5, &["web"])], Some(snap(&[3], true)));
    let msgs = elements::batch(&old, &moved).expect("elements only");
    let whats: Vec<&str> = msgs.iter().map(|m| m.what.as_str()).collect();
    assert_eq!(
        whats,
        [
            "delete 1 element(s) of set ciao_sg_v1 ingress4",
            "add 1 element(s) of set ciao_sg_v1 ingress4",
            "flush set ciao_sg_v1 pending4",
            "delete 1 element(s) of set ciao_sg_v1 egress4",
            "add 1 element(s) of set ciao_sg_v1 egress4",
        ]
    );
}

/// `nft delete element` of one member, behind the applier's back.
fn nft_delete_member(set: &str, member: Ipv4Addr) {
    let member = format!("{{ {member} }}");
    crate::nft::cli(&["delete", "element", "inet", TABLE, set, &member]);
}

#[test]
fn element_changes_by_netlink_end_where_a_rebuild_would() {
    in_scratch_netns("security-group elements by netlink", |s| {
        let mut applier = Applier::default();
        let ports = |v2: u8| vec![port("v1", 2, &["web"]), port("v2", v2, &["admin"])];
        let first = model(ports(3), Some(snap(&[3], true)));
        assert_eq!(applier.apply(first).expect("load"), Applied::Script);
        mark_pending(s, "br0", ip(9)).expect("pending");
        let steps = [
            model(ports(3), Some(snap(&[3, 4, 5], true))),
            model(ports(3), Some(snap(&[5], true))),
            // v2's new address: its map entries move, the pending set empties.
            model(ports(6), Some(snap(&[5], true))),
        ];
        for (i, step) in steps.iter().enumerate() {
            let how = applier
                .apply(step.clone())
                .unwrap_or_else(|e| panic!("step {i}: {e}"));
            assert_eq!(how, Applied::Elements, "step {i}");
        }
        let listed = nft_list(&["table", "inet", TABLE]);
        let (di, _) = compile::dispatch_names(Some(&[ADMIN.simple().to_string()]));
        assert!(
            listed.contains(&format!("\"br0\" . 172.16.0.6 : jump {di}")),
            "{listed}"
        );
        assert!(!listed.contains("172.16.0.9"), "pending flushed: {listed}");
        let diffed = blocks(&listed);
        run(&rebuild(&steps[2])).expect("rebuild");
        assert_eq!(diffed, blocks(&nft_list(&["table", "inet", TABLE])));

        // A table that is not what the applier loaded: the exact delete fails, and the
        // applier rebuilds the table whole instead.
        let admins = format!("m_{}", ADMIN.simple());
        nft_delete_member(&admins, ip(5));
        let last = model(ports(6), Some(snap(&[7], true)));
        assert_eq!(
            applier.apply(last.clone()).expect("rebuilt"),
            Applied::Script
        );
        let listed = nft_list(&["set", "inet", TABLE, &admins]);
        assert!(
            listed.contains("172.16.0.7") && !listed.contains("172.16.0.5"),
            "{listed}"
        );
    });
}

/// Not a check: the applier's member join and leave on a small table, timed. Run by hand:
/// `cargo test -p netcore --release member_change_timings -- --ignored --nocapture`.
#[test]
#[ignore]
fn member_change_timings() {
    use std::time::{Duration, Instant};
    in_scratch_netns("member change timings", |_| {
        let mut applier = Applier::default();
        let ports = vec![port("v1", 2, &["web"]), port("v2", 3, &["admin"])];
        let joined = model(ports.clone(), Some(snap(&[3, 4], true)));
        let left = model(ports, Some(snap(&[3], true)));
        applier.apply(left.clone()).expect("load");
        let mut took: [Vec<Duration>; 2] = Default::default();
        for _ in 0..20 {
            for (i, m) in [&joined, &left].into_iter().enumerate() {
                let at = Instant::now();
                assert_eq!(applier.apply(m.clone()).expect("apply"), Applied::Elements);
                took[i].push(at.elapsed());
            }
        }
        for (what, mut t) in ["join", "leave"].into_iter().zip(took) {
            t.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            eprintln!(
                "{what}: min {:.3} ms p50 {:.3} ms max {:.3} ms",
                ms(t[0]),
                ms(t[t.len() / 2]),
                ms(t[t.len() - 1])
            );
        }
    });
}

#[test]
fn the_enforcer_persists_first_and_sends_member_changes_alone() {
    in_scratch_netns("security-group enforcer", |_| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = Enforcer::new(dir.path());
        let ports = BTreeMap::from([(T, vec![port("v1", 2, &["web"])])]);
        let with = |admins: &[u8], rules22: bool, generation: u64| TenantGroups {
            generation,
            ..snap(admins, rules22)
        };
        e.record(with(&[3], true, 1)).expect("record");
        assert_eq!(e.apply(&ports).expect("load"), Applied::Script);
        e.record(with(&[3, 4], true, 2)).expect("record");
        // Persisted before it is applied.
        assert_eq!(load_snapshots(dir.path()).expect("read")[&T].generation, 2);
        assert_eq!(e.apply(&ports).expect("join"), Applied::Elements);
        let admins = format!("m_{}", ADMIN.simple());
        let listed = nft_list(&["set", "inet", TABLE, &admins]);
        assert!(listed.contains("172.16.0.4"), "{listed}");
        assert_eq!(e.apply(&ports).expect("again"), Applied::Unchanged);
        e.record(with(&[4], false, 3)).expect("record");
        assert_eq!(e.apply(&ports).expect("rule change"), Applied::Rules);
        e.record(with(&[5], false, 4)).expect("record");
        assert_eq!(e.apply(&ports).expect("leave"), Applied::Elements);
        let diffed = blocks(&nft_list(&["table", "inet", TABLE]));
        let want = model(ports[&T].clone(), Some(with(&[5], false, 4)));
        assert_eq!(e.applier().loaded(), Some(&want));
        run(&rebuild(&want)).expect("rebuild");
        assert_eq!(diffed, blocks(&nft_list(&["table", "inet", TABLE])));
        // A new daemon reads the snapshots back from disk.
        let mut again = Enforcer::new(dir.path());
        assert_eq!(again.apply(&ports).expect("restart"), Applied::Script);
        assert_eq!(again.applier().loaded(), Some(&want));
    });
}

/// `snap` plus ingress tcp/`p` from `cidr` in `web` (one rule per port).
fn with_cidr_rules(mut s: TenantGroups, cidr: &str, ports: &[u16]) -> TenantGroups {
    let net: ipnet::IpNet = cidr.parse().expect("cidr");
    for p in ports {
        s.groups[0]
            .rules
            .push(tcp(Direction::Ingress, *p, Remote::Cidr(net)));
    }
    s
}

#[test]
fn rules_naming_one_cidr_share_one_interval_set() {
    let ports = vec![port("v1", 2, &["web"]), port("v2", 3, &["admin"])];
    let s = with_cidr_rules(snap(&[3], true), "10.1.2.3/16", &[443, 8443]);
    let m = model(ports.clone(), Some(s.clone()));
    let net: ipnet::Ipv4Net = "10.1.0.0/16".parse().expect("net");
    assert_eq!(
        m.cidrs,
        BTreeMap::from([("c_0a010000_16".to_string(), net)])
    );
    let gi = format!("gi_{}", WEB.simple());
    assert!(texts(&m, &gi).contains(&"ip saddr @c_0a010000_16 tcp dport 8443 accept".to_string()));
    let built = rebuild(&m);
    assert_eq!(built.matches("add set inet ciao_sg_v1 c_").count(), 1);
    assert!(built.contains("add element inet ciao_sg_v1 c_0a010000_16 { 10.1.0.0/16 }"));
    // The last rule naming it gone: the set goes after the chain no longer uses it.
    let none = model(ports, Some(snap(&[3], true)));
    let script = diff(&m, &none);
    assert!(
        script.ends_with("delete set inet ciao_sg_v1 c_0a010000_16\n"),
        "{script}"
    );
    let msgs = elements::batch(&m, &none).expect("rules and a CIDR set: netlink");
    let last = msgs.last().map(|m| m.what.as_str());
    assert_eq!(last, Some("delete set ciao_sg_v1 c_0a010000_16"));
}

/// `snap` with every kind of rule compile emits in `web`: tcp/udp single and range, icmp with
/// and without code, bare protocols, by number, remote CIDRs and groups, both directions.
fn rich(admins: &[u8], variant: u16) -> TenantGroups {
    let mut s = with_cidr_rules(snap(admins, true), "10.1.0.0/16", &[443, 8443 + variant]);
    let net = |c: &str| Remote::Cidr(c.parse().expect("cidr"));
    let rule = |direction, protocol, ports, icmp, remote| Rule {
        direction,
        ipv6: false,
        protocol,
        ports,
        icmp,
        remote,
    };
    use Direction::{Egress as E, Ingress as I};
    let more = [
        rule(
            I,
            Protocol::Udp,
            Some((1000, 2000 + variant)),
            None,
            Remote::Anywhere,
        ),
        rule(I, Protocol::Tcp, None, None, net("192.0.2.0/24")),
        rule(
            I,
            Protocol::Icmp,
            None,
            Some((8, None)),
            Remote::Group("admin".into()),
        ),
        rule(
            I,
            Protocol::Icmp,
            None,
            Some((3, Some(4))),
            Remote::Anywhere,
        ),
        rule(I, Protocol::Icmp, None, None, net("0.0.0.0/0")),
        rule(E, Protocol::Number(47), None, None, net("203.0.113.7/32")),
        rule(E, Protocol::Udp, None, None, Remote::Anywhere),
        rule(
            E,
            Protocol::Udp,
            Some((53, 53)),
            None,
            net(&format!("10.{variant}.0.0/24")),
        ),
    ];
    s.groups[0].rules.extend(more);
    s
}

/// The table listed (sorted blocks), then the same model rebuilt by `nft -f` and listed.
fn listed_and_rebuilt(m: &Model) -> (Vec<String>, Vec<String>) {
    let applied = blocks(&nft_list(&["table", "inet", TABLE]));
    run(&rebuild(m)).expect("rebuild");
    (applied, blocks(&nft_list(&["table", "inet", TABLE])))
}

#[test]
fn rule_changes_by_netlink_end_where_a_rebuild_would() {
    in_scratch_netns("security-group rules by netlink", |_| {
        let mut applier = Applier::default();
        let ports = |v1: &[&str]| vec![port("v1", 2, v1), port("v2", 3, &["admin"])];
        let first = model(ports(&["web"]), Some(rich(&[3], 0)));
        assert_eq!(applier.apply(first).expect("load"), Applied::Script);
        let steps = [
            // Ranges and a CIDR changed: a new CIDR set, the old one gone.
            model(ports(&["web"]), Some(rich(&[3], 1))),
            // Rules and a member at once.
            model(ports(&["web"]), Some(rich(&[3, 4], 2))),
            // A port's groups: a new dispatch chain (made by `nft`).
            model(ports(&["admin", "web"]), Some(rich(&[3, 4], 2))),
            // Back to the plain snapshot: CIDR sets dropped.
            model(ports(&["admin", "web"]), Some(snap(&[3, 4], false))),
        ];
        for (i, step) in steps.iter().enumerate() {
            let how = applier
                .apply(step.clone())
                .unwrap_or_else(|e| panic!("step {i}: {e}"));
            let expected = if i == 2 {
                Applied::Script
            } else {
                Applied::Rules
            };
            assert_eq!(how, expected, "step {i}");
            let (applied, rebuilt) = listed_and_rebuilt(step);
            assert_eq!(applied, rebuilt, "step {i}");
        }
        let listed = nft_list(&["table", "inet", TABLE]);
        assert!(!listed.contains("set c_"), "{listed}");

        // The table gone behind the applier's back: the batch fails and it rebuilds whole.
        crate::nft::cli(&["delete", "table", "inet", TABLE]);
        let last = model(ports(&["web"]), Some(rich(&[3], 0)));
        assert_eq!(
            applier.apply(last.clone()).expect("rebuilt"),
            Applied::Script
        );
        let (applied, rebuilt) = listed_and_rebuilt(&last);
        assert_eq!(applied, rebuilt);
    });
}

#[test]
fn the_enforcer_sends_rule_changes_without_the_dispatch_chains() {
    in_scratch_netns("security-group enforcer rule changes", |_| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = Enforcer::new(dir.path());
        let ports = BTreeMap::from([(T, vec![port("v1", 2, &["web"]), port("v2", 3, &["admin"])])]);
        let steps = [
            (rich(&[3], 0), Applied::Script),
            (rich(&[3], 1), Applied::Rules),
            (rich(&[3, 4], 2), Applied::Rules),
            (rich(&[4], 2), Applied::Elements),
            (snap(&[4], false), Applied::Rules),
            (rich(&[4], 3), Applied::Rules),
        ];
        for (i, (s, want)) in steps.into_iter().enumerate() {
            let generation = i as u64 + 1;
            let s = TenantGroups { generation, ..s };
            e.record(s.clone()).expect("record");
            assert_eq!(e.apply(&ports).expect("apply"), want, "step {i}");
            let m = model(ports[&T].clone(), Some(s));
            assert_eq!(e.applier().loaded(), Some(&m), "step {i}");
            let (applied, rebuilt) = listed_and_rebuilt(&m);
            assert_eq!(applied, rebuilt, "step {i}");
        }
    });
}
