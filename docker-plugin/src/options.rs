//! `docker network create -o key=value` options and Docker's IPAM data, turned into the core's
//! [`SubnetConfig`]. Every value is checked here, at CreateNetwork, so a mistake is reported
//! when the user makes it and not at the first `docker run`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netcore::{AddrRange, Cnci, SubnetConfig, TunnelKind};
use serde_json::Value;
use uuid::Uuid;

use crate::error::PluginError;

/// Where Docker puts `-o` options in CreateNetwork.
pub const GENERIC: &str = "com.docker.network.generic";

/// The `-o` keys the driver understands.
pub const KEYS: &[&str] = &[
    "tenant",
    "cnci",
    "cnci.uuid",
    "cnci.ip",
    "tunnel.kind",
    "tunnel.id",
    "mtu",
    "underlay",
    "allowed_addresses",
    "security_groups",
];

fn bad(key: &str, message: impl std::fmt::Display) -> PluginError {
    PluginError::Invalid(format!("option -o {key}: {message}"))
}

fn parse<T: std::str::FromStr>(key: &str, value: &str, what: &str) -> Result<T, PluginError> {
    value
        .trim()
        .parse()
        .map_err(|_| bad(key, format!("{value:?} is not {what}")))
}

/// The generic options as strings; Docker sends them as strings, a JSON number is accepted too.
pub fn generic_options(
    options: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, String>, PluginError> {
    if options.get("com.docker.network.enable_ipv6") == Some(&Value::Bool(true)) {
        return Err(PluginError::Invalid(
            "ciao networks are IPv4 only: drop --ipv6".into(),
        ));
    }
    let mut out = BTreeMap::new();
    let Some(generic) = options.get(GENERIC) else {
        return Ok(out);
    };
    let Value::Object(map) = generic else {
        return Err(PluginError::Invalid(format!("{GENERIC} must be an object")));
    };
    for (key, value) in map {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(bad(key, format!("{other} is not a string"))),
        };
        out.insert(key.clone(), text);
    }
    Ok(out)
}

/// Refuses an option the driver does not know (a typo would otherwise be silently ignored).
pub fn check_keys(opts: &BTreeMap<String, String>) -> Result<(), PluginError> {
    match opts.keys().find(|k| !KEYS.contains(&k.as_str())) {
        Some(key) => Err(bad(
            key,
            format!("unknown option (known: {})", KEYS.join(", ")),
        )),
        None => Ok(()),
    }
}

/// `-o allowed_addresses=a,b`: extra source addresses (VRRP-style virtual IPs) the network's
/// endpoints may send from; exact host addresses of the subnet, never its gateway.
pub fn allowed_addresses(
    opts: &BTreeMap<String, String>,
    config: &SubnetConfig,
) -> Result<Vec<Ipv4Addr>, PluginError> {
    const KEY: &str = "allowed_addresses";
    let Some(text) = opts.get(KEY) else {
        return Ok(Vec::new());
    };
    let allowed = text
        .split([',', ' '])
        .filter(|a| !a.trim().is_empty())
        .map(|a| parse(KEY, a, "an IPv4 address"))
        .collect::<Result<Vec<Ipv4Addr>, _>>()?;
    netcore::ipam::check_allowed(config, &allowed).map_err(|e| match e {
        netcore::Error::Invalid { message, .. } => bad(KEY, message),
        other => other.into(),
    })?;
    Ok(allowed)
}

/// `-o security_groups=web,admin`: the security groups every endpoint of the network joins.
pub fn security_groups(opts: &BTreeMap<String, String>) -> Result<Vec<String>, PluginError> {
    const KEY: &str = "security_groups";
    let Some(text) = opts.get(KEY) else {
        return Ok(Vec::new());
    };
    netcore::secgroups::parse_list(text).map_err(|e| match e {
        netcore::Error::Invalid { message, .. } => bad(KEY, message),
        other => other.into(),
    })
}

/// A container's own groups, its driver option `security_groups=web,admin` (`docker run
/// --network 'name=N,"driver-opt=security_groups=web,admin"'` or `docker network connect
/// --driver-opt security_groups=web,admin N C`), joined with the network's, as the CNI
/// plugin joins its config's and CNI_ARGS'.
pub fn endpoint_security_groups(
    network: &[String],
    options: Option<&serde_json::Map<String, Value>>,
) -> Result<Vec<String>, PluginError> {
    const KEY: &str = "security_groups";
    let bad = |message: String| {
        PluginError::Invalid(format!("driver option {KEY} of the endpoint: {message}"))
    };
    let mut names = network.to_vec();
    match options.and_then(|o| o.get(KEY)) {
        None => return Ok(names),
        Some(Value::String(text)) => {
            names.extend(netcore::secgroups::parse_list(text).map_err(|e| match e {
                netcore::Error::Invalid { message, .. } => bad(message),
                other => other.into(),
            })?)
        }
        Some(other) => return Err(bad(format!("{other} is not a string"))),
    }
    Ok(netcore::secgroups::check_names(&names)?)
}

/// Builds and validates the tenant subnet of a network.
pub fn subnet_config(
    opts: &BTreeMap<String, String>,
    subnet: Ipv4Net,
    sub_pool: Option<Ipv4Net>,
    gateway: Option<Ipv4Addr>,
) -> Result<SubnetConfig, PluginError> {
    check_keys(opts)?;
    let get = |k: &str| opts.get(k).map(String::as_str);
    let tenant: Uuid = match get("tenant") {
        Some(v) => parse("tenant", v, "a UUID")?,
        None => return Err(bad("tenant", "required: the tenant's UUID")),
    };
    // Without a CNCI the node asks the controller for it (controller mode).
    let cnci =
        match (get("cnci"), get("cnci.uuid"), get("cnci.ip")) {
            (Some(v), None, None) => {
                let (u, ip) = v
                    .split_once('@')
                    .ok_or_else(|| bad("cnci", format!("{v:?} is not <uuid>@<ipv4>")))?;
                Some(Cnci {
                    uuid: parse("cnci", u, "a UUID")?,
                    ip: parse("cnci", ip, "an IPv4 address")?,
                })
            }
            (None, Some(u), Some(ip)) => Some(Cnci {
                uuid: parse("cnci.uuid", u, "a UUID")?,
                ip: parse("cnci.ip", ip, "an IPv4 address")?,
            }),
            (None, None, None) => None,
            (Some(_), _, _) => {
                return Err(bad(
                    "cnci",
                    "give either cnci=<uuid>@<ip> or cnci.uuid and cnci.ip",
                ))
            }
            (None, _, _) => return Err(bad(
                "cnci",
                "give both cnci.uuid and cnci.ip (or cnci=<uuid>@<ip>, or no cnci at all to have \
                 the controller assign one)",
            )),
        };
    let tunnel_kind = match get("tunnel.kind") {
        None => TunnelKind::default(),
        Some(v) => serde_json::from_value(Value::String(v.trim().to_string())).map_err(|_| {
            bad(
                "tunnel.kind",
                format!("{v:?} is not vxlan, gretap or geneve"),
            )
        })?,
    };
    let tunnel_id = get("tunnel.id")
        .map(|v| parse::<u32>("tunnel.id", v, "an integer"))
        .transpose()?;
    let mtu = get("mtu")
        .map(|v| parse::<u32>("mtu", v, "an integer"))
        .transpose()?;
    let node_range = sub_pool.map(|r| AddrRange {
        // --ip-range may include the subnet's network and broadcast addresses; those never go out.
        start: std::cmp::max(r.network(), Ipv4Addr::from(u32::from(subnet.network()) + 1)),
        end: std::cmp::min(
            r.broadcast(),
            Ipv4Addr::from(u32::from(subnet.broadcast()).saturating_sub(1)),
        ),
    });
    let cfg = SubnetConfig {
        tenant,
        subnet,
        cnci,
        tunnel_kind,
        tunnel_id,
        node_range,
        gateway,
        mtu,
        underlay_device: get("underlay").map(str::to_string),
    };
    cfg.validate().map_err(|e| match e {
        netcore::Error::Invalid { field, message } => {
            let key = match field.as_str() {
                "gateway" => "--gateway".to_string(),
                "subnet" => "--subnet".to_string(),
                f if f.starts_with("range") => "--ip-range".to_string(),
                f => format!("-o {f}"),
            };
            PluginError::Invalid(format!("{key}: {message}"))
        }
        other => PluginError::Core(other),
    })?;
    Ok(cfg)
}

/// Parses `a.b.c.d/len` (Docker's IPAM form) or a bare address.
pub fn parse_addr(text: &str) -> Result<Ipv4Addr, PluginError> {
    let bare = text.split('/').next().unwrap_or(text);
    bare.parse()
        .map_err(|_| PluginError::Invalid(format!("{text:?} is not an IPv4 address")))
}

/// Parses a tenant subnet: IPv4, no host bits, /30 or larger.
pub fn parse_subnet(what: &str, text: &str) -> Result<Ipv4Net, PluginError> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| PluginError::Invalid(format!("{what} {text:?} is not an IPv4 CIDR")))?;
    if net != net.trunc() {
        return Err(PluginError::Invalid(format!(
            "{what} {net} has host bits set (did you mean {}?)",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Parses `02:00:0a:00:00:05`.
pub fn parse_mac(text: &str) -> Result<[u8; 6], PluginError> {
    let parts: Vec<&str> = text.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(PluginError::Invalid(format!(
            "{text:?} is not a MAC address"
        )));
    }
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16)
            .map_err(|_| PluginError::Invalid(format!("{text:?} is not a MAC address")))?;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const T: &str = "2491851d-dce9-48d6-b83a-a717417072ce";
    const C: &str = "3390740c-dce9-48d6-b83a-a717417072ce@10.99.0.3";

    #[test]
    fn good_options_make_a_config() {
        let subnet: Ipv4Net = "172.16.1.0/24".parse().expect("net");
        let cfg = subnet_config(
            &opts(&[
                ("tenant", T),
                ("cnci", C),
                ("tunnel.id", "77"),
                ("mtu", "1400"),
            ]),
            subnet,
            Some("172.16.1.0/25".parse().expect("net")),
            None,
        )
        .expect("valid");
        assert_eq!(cfg.tunnel_id, Some(77));
        let range = cfg.node_range.expect("range");
        assert_eq!(range.start, Ipv4Addr::new(172, 16, 1, 1));
        assert_eq!(range.end, Ipv4Addr::new(172, 16, 1, 127));
        let split = subnet_config(
            &opts(&[
                ("tenant", T),
                ("cnci.uuid", "3390740c-dce9-48d6-b83a-a717417072ce"),
                ("cnci.ip", "10.99.0.3"),
            ]),
            subnet,
            None,
            None,
        )
        .expect("split cnci");
        assert_eq!(split.cnci, cfg.cnci);
    }

    #[test]
    fn a_network_without_cnci_is_left_to_the_controller() {
        let subnet: Ipv4Net = "172.16.1.0/24".parse().expect("net");
        let cfg =
            subnet_config(&opts(&[("tenant", T)]), subnet, None, None).expect("controller mode");
        assert_eq!(cfg.cnci, None);
        assert_eq!(cfg.tunnel_id, None);
        cfg.validate().expect("valid");
    }

    #[test]
    fn an_endpoints_groups_join_the_networks() {
        let network = vec!["web".to_string()];
        let options = |v: Value| {
            serde_json::json!({ "security_groups": v })
                .as_object()
                .cloned()
        };
        let both = endpoint_security_groups(&network, options("admin,web".into()).as_ref())
            .expect("valid");
        assert_eq!(both, ["admin", "web"]);
        let docker_own = serde_json::json!({"com.docker.network.endpoint.exposedports": []});
        let plain = endpoint_security_groups(&network, docker_own.as_object()).expect("none");
        assert_eq!(plain, ["web"]);
        assert_eq!(
            endpoint_security_groups(&network, None).expect("no options"),
            ["web"]
        );
        for bad in [Value::from("x y"), Value::from(7)] {
            let err = endpoint_security_groups(&network, options(bad).as_ref())
                .expect_err("refused")
                .to_string();
            assert!(err.contains("driver option security_groups"), "{err}");
        }
    }

    #[test]
    fn security_groups_are_checked_names() {
        let names = security_groups(&opts(&[("security_groups", "web,admin")])).expect("valid");
        assert_eq!(names, ["admin", "web"]);
        assert!(security_groups(&opts(&[])).expect("none").is_empty());
        let err = security_groups(&opts(&[("security_groups", "web,x y")]))
            .expect_err("bad name")
            .to_string();
        assert!(err.contains("-o security_groups"), "{err}");
    }

    #[test]
    fn each_bad_option_is_named() {
        let subnet: Ipv4Net = "172.16.1.0/24".parse().expect("net");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("cnci", C)], "-o tenant"),
            (&[("tenant", "nope"), ("cnci", C)], "-o tenant"),
            (
                &[
                    ("tenant", T),
                    ("cnci.uuid", "3390740c-dce9-48d6-b83a-a717417072ce"),
                ],
                "-o cnci",
            ),
            (&[("tenant", T), ("tunnel.id", "7")], "-o tunnel.id"),
            (&[("tenant", T), ("cnci", "x@10.0.0.1")], "-o cnci"),
            (
                &[("tenant", T), ("cnci", C), ("tunnel.kind", "ipip")],
                "-o tunnel.kind",
            ),
            (
                &[("tenant", T), ("cnci", C), ("tunnel.id", "0")],
                "-o tunnel.id",
            ),
            (&[("tenant", T), ("cnci", C), ("mtu", "9")], "-o mtu"),
            (&[("tenant", T), ("cnci", C), ("vni", "4")], "-o vni"),
        ];
        for (pairs, want) in cases {
            let err = subnet_config(&opts(pairs), subnet, None, None)
                .expect_err("invalid")
                .to_string();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
        let err = subnet_config(
            &opts(&[("tenant", T), ("cnci", C)]),
            subnet,
            None,
            Some(Ipv4Addr::new(172, 16, 1, 255)),
        )
        .expect_err("gateway");
        assert!(err.to_string().contains("--gateway"), "{err}");
    }

    #[test]
    fn allowed_addresses_are_exact_hosts_of_the_subnet() {
        let o = opts(&[
            ("tenant", T),
            ("cnci", C),
            ("allowed_addresses", "10.77.0.40,10.77.0.41"),
        ]);
        let cfg =
            subnet_config(&o, "10.77.0.0/24".parse().expect("net"), None, None).expect("config");
        assert_eq!(allowed_addresses(&o, &cfg).expect("allowed").len(), 2);
        for bad in ["10.77.0.1", "10.77.0.0/28", "10.78.0.5", "0.0.0.0"] {
            let o = opts(&[("tenant", T), ("cnci", C), ("allowed_addresses", bad)]);
            let err = allowed_addresses(&o, &cfg).expect_err(bad).to_string();
            assert!(err.contains("option -o allowed_addresses"), "{bad}: {err}");
        }
    }

    #[test]
    fn addresses_and_macs_parse() {
        assert_eq!(
            parse_addr("10.0.0.5/24").expect("cidr"),
            Ipv4Addr::new(10, 0, 0, 5)
        );
        assert!(parse_addr("x").is_err());
        assert_eq!(
            parse_mac("02:00:00:00:00:50").expect("mac"),
            [2, 0, 0, 0, 0, 0x50]
        );
        assert!(parse_mac("02:00:00:00:00").is_err());
        assert!(parse_subnet("--subnet", "10.0.0.1/24").is_err());
    }
}
