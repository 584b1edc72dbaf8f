use super::*;

fn req(direction: &str) -> RuleRequest {
    RuleRequest {
        direction: direction.to_owned(),
        ..RuleRequest::default()
    }
}

fn refused(r: &RuleRequest) -> String {
    r.check().expect_err("refused").to_string()
}

#[test]
fn a_bare_rule_is_any_ipv4_from_anywhere() {
    let (spec, group) = req("ingress").check().expect("valid");
    assert_eq!(spec.ethertype, Ethertype::Ipv4);
    assert_eq!(spec.protocol, Protocol::Any);
    assert_eq!(spec.remote, Remote::Anywhere);
    assert_eq!(group, None);
}

#[test]
fn ports_are_checked() {
    let tcp = |min, max| RuleRequest {
        protocol: Some("tcp".into()),
        port_min: min,
        port_max: max,
        ..req("ingress")
    };
    assert_eq!(
        tcp(Some(80), None).check().expect("80").0.ports,
        Some((80, 80))
    );
    assert!(refused(&tcp(Some(0), None)).contains("port_min 0 is not a port"));
    assert!(refused(&tcp(Some(1), Some(65536))).contains("port_max 65536"));
    assert!(refused(&tcp(Some(90), Some(80))).contains("above"));
    assert!(refused(&tcp(None, Some(80))).contains("needs port_min"));
    let icmp_port = RuleRequest {
        protocol: Some("icmp".into()),
        port_min: Some(1),
        ..req("ingress")
    };
    assert!(refused(&icmp_port).contains("tcp and udp only"));
}

#[test]
fn protocols_names_and_numbers() {
    for (text, p) in [
        ("6", Protocol::Tcp),
        ("132", Protocol::Number(132)),
        ("any", Protocol::Any),
    ] {
        assert_eq!(text.parse::<Protocol>(), Ok(p));
    }
    for bad in ["sctpx", "256", "-1", "TCP"] {
        assert!(bad.parse::<Protocol>().is_err(), "{bad}");
    }
}

#[test]
fn icmp_and_remotes_are_checked() {
    let icmp = RuleRequest {
        protocol: Some("icmp".into()),
        icmp_type: Some(8),
        icmp_code: Some(0),
        ..req("ingress")
    };
    assert_eq!(icmp.check().expect("echo").0.icmp_type, Some(8));
    let v6 = RuleRequest {
        ethertype: Some("IPv6".into()),
        ..icmp.clone()
    };
    assert!(refused(&v6).contains("icmpv6"));
    let big = RuleRequest {
        icmp_type: Some(256),
        ..icmp
    };
    assert!(refused(&big).contains("0-255"));
    let both = RuleRequest {
        remote_cidr: Some("10.0.0.0/8".into()),
        remote_group: Some("web".into()),
        ..req("ingress")
    };
    assert!(refused(&both).contains("not both"));
    let wrong_family = RuleRequest {
        remote_cidr: Some("fd00::/8".into()),
        ..req("egress")
    };
    assert!(refused(&wrong_family).contains("is not IPv4"));
    let host_bits = RuleRequest {
        remote_cidr: Some("10.0.0.1/8".into()),
        ..req("egress")
    };
    assert!(refused(&host_bits).contains("host bits"));
    assert!(refused(&req("sideways")).contains("direction"));
}

#[test]
fn ssh_block_ports() {
    let block = forward::SshBlock {
        cidr: "172.16.0.0/24".parse().expect("net"),
        base: 33000,
        size: 256,
    };
    assert_eq!(
        block.port_of("172.16.0.5".parse().expect("ip")),
        Some(33005)
    );
    assert_eq!(block.port_of("172.16.1.5".parse().expect("ip")), None);
    assert_eq!(block.last_port(), 33255);
    assert!(block.holds(33255) && !block.holds(33256));
}
