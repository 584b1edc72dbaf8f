use super::*;

fn n(s: &str) -> Ipv4Net {
    s.parse().expect("network")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}

/// The demo cluster's network node: underlay 10.250.0.3/24, ext0 203.0.113.1/24, public
/// addresses 203.0.113.8/29, the external gateway 203.0.113.254.
fn node() -> Fences {
    Fences {
        own_addrs: [ip("10.250.0.3"), ip("203.0.113.1"), ip("100.64.0.0")].into(),
        underlay_nets: vec![n("10.250.0.0/24")],
        external_nets: vec![n("203.0.113.0/24")],
        public_ranges: vec![n("203.0.113.8/29")],
        external_peers: [ip("203.0.113.254")].into(),
    }
}

#[test]
fn flood_targets_are_unicast_addresses_of_other_hosts_only() {
    let f = node();
    for bad in [
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "127.0.0.1",
        "224.0.0.1",
        "239.1.1.1",
        "240.0.0.1",
        "169.254.1.1",
        "10.250.0.3",
        "10.250.0.255",
        "10.250.0.0",
        "203.0.113.100",
        "203.0.113.1",
        "100.64.0.1",
        "100.127.255.254",
    ] {
        assert!(flood_target(ip(bad), &f).is_err(), "{bad} accepted");
    }
    for good in ["10.250.0.11", "10.250.0.12", "192.168.7.9"] {
        assert_eq!(flood_target(ip(good), &f), Ok(()), "{good}");
    }
}

#[test]
fn reserved_node_and_overlapping_subnets_are_refused() {
    let f = node();
    let existing = [n("172.16.1.0/24")];
    for bad in [
        "203.0.113.0/24",
        "203.0.113.0/25",
        "203.0.0.0/16",
        "100.64.0.0/10",
        "100.100.0.0/24",
        "10.250.0.0/24",
        "10.0.0.0/8",
        "127.0.0.0/8",
        "0.0.0.0/0",
        "0.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/24",
        "240.0.0.0/24",
        "172.16.1.0/25",
        "172.16.0.0/16",
        "172.16.9.0/31",
        "172.0.0.0/7",
    ] {
        assert!(
            tenant_subnet(n(bad), &f, existing).is_err(),
            "{bad} accepted"
        );
    }
    for good in [
        "172.16.1.0/24",
        "172.16.2.0/24",
        "172.16.9.0/30",
        "11.0.0.0/8",
    ] {
        assert_eq!(tenant_subnet(n(good), &f, existing), Ok(()), "{good}");
    }
}

#[test]
fn public_ips_come_from_the_configured_range_and_no_one_elses() {
    let f = node();
    let cns: BTreeSet<Ipv4Addr> = [ip("10.250.0.11")].into();
    for bad in [
        "203.0.113.8",
        "203.0.113.15",
        "203.0.113.100",
        "203.0.113.1",
        "10.250.0.11",
        "0.0.0.0",
        "255.255.255.255",
        "127.0.0.1",
    ] {
        assert!(public_ip(ip(bad), &f, &cns).is_err(), "{bad} accepted");
    }
    assert_eq!(public_ip(ip("203.0.113.10"), &f, &cns), Ok(()));
    let mut wide = node();
    wide.public_ranges = vec![n("203.0.113.0/24")];
    for bad in ["203.0.113.1", "203.0.113.254"] {
        assert!(public_ip(ip(bad), &wide, &cns).is_err(), "{bad} accepted");
    }
    let none = Fences::default();
    let err = public_ip(ip("203.0.113.10"), &none, &cns).expect_err("no range");
    assert!(err.contains("--public-range"), "{err}");
}

#[test]
fn private_ips_are_hosts_of_the_tenants_subnets() {
    let subnets = [n("172.16.1.0/24")];
    for bad in [
        "172.16.1.0",
        "172.16.1.1",
        "172.16.1.255",
        "172.16.2.10",
        "127.0.0.1",
    ] {
        assert!(private_ip(ip(bad), subnets).is_err(), "{bad} accepted");
    }
    assert_eq!(private_ip(ip("172.16.1.10"), subnets), Ok(()));
}

#[test]
fn public_ranges_stay_clear_of_reserved_and_underlay_networks() {
    let f = node();
    for bad in ["100.64.0.0/24", "127.0.0.0/8", "10.250.0.0/28", "0.0.0.0/0"] {
        assert!(public_range(n(bad), &f).is_err(), "{bad} accepted");
    }
    assert_eq!(public_range(n("203.0.113.8/29"), &f), Ok(()));
}
