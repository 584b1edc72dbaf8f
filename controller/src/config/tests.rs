use std::net::Ipv4Addr;

use super::*;

const CERTS: &str = "[scheduler]\ncert = \"/etc/ciao/cert.pem\"\nca = \"/etc/ciao/ca.pem\"\n";

fn refused(text: &str) -> String {
    ControllerConfig::from_toml(text)
        .expect_err(text)
        .to_string()
}

#[test]
fn only_the_certificates_are_needed_and_every_default_is_documented() {
    let config = ControllerConfig::from_toml(CERTS).expect("minimal config");
    assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert_eq!(config.default_tunnel_kind, TunnelKind::Vxlan);
    assert!(config.public_pools.is_empty());
    assert_eq!(config.scheduler.address, DEFAULT_SCHEDULER_ADDRESS);
    assert_eq!(config.scheduler.server_name, None);
    assert_eq!(config.scheduler.cert, PathBuf::from("/etc/ciao/cert.pem"));
    assert_eq!(config.scheduler.ca, PathBuf::from("/etc/ciao/ca.pem"));
}

#[test]
fn every_key_is_read() {
    let text = r#"
        state_dir = "/srv/ctl"
        default_tunnel_kind = "geneve"
        public_pools = ["203.0.113.0/30", "198.51.100.10-198.51.100.11"]
        [scheduler]
        address = "[::1]:18888"
        server_name = "sched.example"
        cert = "c.pem"
        ca = "ca.pem"
    "#;
    let config = ControllerConfig::from_toml(text).expect("full config");
    assert_eq!(config.state_dir, PathBuf::from("/srv/ctl"));
    assert_eq!(config.default_tunnel_kind, TunnelKind::Geneve);
    let pools: Vec<_> = config.public_pools.iter().map(|p| p.to_string()).collect();
    assert_eq!(pools, ["203.0.113.0/30", "198.51.100.10-198.51.100.11"]);
    assert!(config.public_pools[1].contains(Ipv4Addr::new(198, 51, 100, 11)));
    assert_eq!(config.scheduler.address, "[::1]:18888");
    assert_eq!(
        config.scheduler.server_name.as_deref(),
        Some("sched.example")
    );
}

#[test]
fn missing_certificates_are_named() {
    assert!(refused("").contains("config key scheduler:"));
    let no_ca = "[scheduler]\ncert = \"c.pem\"\n";
    assert!(refused(no_ca).contains("config key scheduler.ca: missing"));
    let no_cert = "[scheduler]\nca = \"ca.pem\"\n";
    assert!(refused(no_cert).contains("config key scheduler.cert: missing"));
    let empty = "[scheduler]\ncert = \"\"\nca = \"ca.pem\"\n";
    assert!(refused(empty).contains("config key scheduler.cert: is empty"));
}

#[test]
fn a_pool_that_is_not_a_cidr_or_range_is_named() {
    for bad in [
        "\"10.0.0.0/33\"",
        "\"10.0.0.1/24\"",
        "\"x\"",
        "\"10.0.0.9-10.0.0.1\"",
    ] {
        let text = format!("public_pools = [\"192.0.2.0/28\", {bad}]\n{CERTS}");
        let err = refused(&text);
        assert!(err.contains("config key public_pools[1]:"), "{err}");
        assert!(err.contains("is not a pool"), "{err}");
    }
}

#[test]
fn overlapping_pools_are_named() {
    let text = format!("public_pools = [\"10.0.0.0/24\", \"10.0.0.200-10.0.1.5\"]\n{CERTS}");
    let err = refused(&text);
    assert!(err.contains("config key public_pools[1]:"), "{err}");
    assert!(
        err.contains("overlaps public_pools[0] (10.0.0.0/24)"),
        "{err}"
    );
}

#[test]
fn an_unknown_tunnel_kind_is_named() {
    let err = refused(&format!("default_tunnel_kind = \"gre\"\n{CERTS}"));
    assert!(err.contains("config key default_tunnel_kind:"), "{err}");
    assert!(err.contains("\"gre\""), "{err}");
}

#[test]
fn a_relative_state_dir_is_named() {
    let err = refused(&format!("state_dir = \"var/ctl\"\n{CERTS}"));
    assert!(err.contains("config key state_dir:"), "{err}");
}

#[test]
fn a_bad_scheduler_address_is_named() {
    for bad in [
        "sched",
        ":8888",
        "sched:0",
        "sched:99999",
        "sched:http",
        "::1:8888",
    ] {
        let text = format!("[scheduler]\naddress = \"{bad}\"\ncert = \"c\"\nca = \"a\"\n");
        let err = refused(&text);
        assert!(
            err.contains("config key scheduler.address:"),
            "{bad}: {err}"
        );
    }
    let text = "[scheduler]\nserver_name = \"\"\ncert = \"c\"\nca = \"a\"\n";
    assert!(refused(text).contains("config key scheduler.server_name"));
}

#[test]
fn unknown_keys_and_wrong_types_are_named() {
    let err = refused(&format!("public_pool = []\n{CERTS}"));
    assert!(err.contains("public_pool"), "{err}");
    let err = refused("[scheduler]\ncert = \"c\"\nca = \"a\"\nport = 1\n");
    assert!(err.contains("port"), "{err}");
    let err = refused(&format!("state_dir = 5\n{CERTS}"));
    assert!(err.contains("state_dir"), "{err}");
    let err = refused(&format!("public_pools = \"10.0.0.0/24\"\n{CERTS}"));
    assert!(err.contains("public_pools"), "{err}");
}

#[test]
fn a_missing_file_is_named() {
    let err = ControllerConfig::load(Path::new("/nonexistent/ciao-controller.toml"))
        .expect_err("missing file");
    assert!(err
        .to_string()
        .contains("/nonexistent/ciao-controller.toml"));
}

#[test]
fn tenant_subnets_default_and_bad_values_are_named() {
    let config = ControllerConfig::from_toml(CERTS).expect("minimal config");
    assert_eq!(config.tenant_subnets, TenantSubnets::default());
    let with = |body: &str| format!("[tenant_subnets]\n{body}\n{CERTS}");
    let ok = ControllerConfig::from_toml(&with("range = \"10.8.0.0/16\"\nprefix = 26"))
        .expect("custom range");
    assert_eq!(ok.tenant_subnets.range.to_string(), "10.8.0.0/16");
    assert_eq!(ok.tenant_subnets.node_slice_prefix, 27);
    for (body, key) in [
        ("range = \"nope\"", "tenant_subnets.range:"),
        ("range = \"127.0.0.0/8\"", "tenant_subnets.range:"),
        ("range = \"10.0.0.0/25\"", "tenant_subnets.prefix:"),
        ("prefix = 28", "tenant_subnets.node_slice_prefix:"),
        (
            "node_slice_prefix = 32",
            "tenant_subnets.node_slice_prefix:",
        ),
    ] {
        let err = refused(&with(body));
        assert!(err.contains(&format!("config key {key}")), "{body}: {err}");
    }
}
