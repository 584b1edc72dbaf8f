//! Networks that name no subnet: `docker network create --ipam-opt tenant=T` (Docker passes
//! `-o` options to the network driver only, never to the IPAM driver, so the tenant must come
//! as an IPAM option). RequestPool then asks `ciao-node run` for the tenant's subnet and this
//! node's range, through the node's cache first (see [`netcore::auto_subnet`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use ipnet::Ipv4Net;
use netcore::auto_subnet;
use netcore::AddrRange;
use uuid::Uuid;

use crate::error::PluginError;

/// The `--ipam-opt` keys the IPAM driver understands.
pub const IPAM_KEYS: &[&str] = &["tenant", "subnet-wait-seconds"];
/// The longest wait accepted: the wait must stay well under the server's request timeout
/// (`--request-timeout-secs`). Other calls are answered meanwhile (the wait holds no record).
const MAX_WAIT_SECONDS: f64 = 25.0;

/// The checked `--ipam-opt` options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IpamOpts {
    pub tenant: Option<Uuid>,
    pub wait: Option<Duration>,
}

/// Parses `--ipam-opt`; an unknown key or a bad value is refused, naming it.
pub fn ipam_opts(opts: Option<&BTreeMap<String, String>>) -> Result<IpamOpts, PluginError> {
    let mut out = IpamOpts {
        tenant: None,
        wait: None,
    };
    for (key, value) in opts.into_iter().flatten() {
        let bad = |what: &str| PluginError::Invalid(format!("--ipam-opt {key}: {value:?} {what}"));
        match key.as_str() {
            "tenant" => out.tenant = Some(value.trim().parse().map_err(|_| bad("is not a UUID"))?),
            "subnet-wait-seconds" => {
                let s: f64 = value.trim().parse().map_err(|_| bad("is not a number"))?;
                if !(s > 0.0 && s <= MAX_WAIT_SECONDS) {
                    return Err(bad(&format!("is not in (0, {MAX_WAIT_SECONDS}]")));
                }
                out.wait = Some(Duration::from_secs_f64(s));
            }
            _ => {
                return Err(PluginError::Invalid(format!(
                    "unknown --ipam-opt {key}: the ciao IPAM driver takes only {} (network \
                     options go in -o)",
                    IPAM_KEYS.join(" and ")
                )))
            }
        }
    }
    Ok(out)
}

/// The refusal of a RequestPool with neither `--subnet` nor `--ipam-opt tenant`.
pub fn no_subnet() -> PluginError {
    PluginError::Invalid(
        "the ciao IPAM driver needs the tenant subnet or the tenant: Docker does not pass -o \
         options to IPAM drivers, so give --subnet (e.g. --subnet 172.16.1.0/24) or \
         --ipam-opt tenant=<tenant uuid> to have the controller choose the subnet"
            .into(),
    )
}

/// What RequestPool records for an automatic subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoPool {
    pub subnet: Ipv4Net,
    /// The smallest CIDR covering the range: the controller's slice.
    pub slice: Ipv4Net,
    pub range: AddrRange,
}

/// The tenant's subnet and this node's range: the cache, else `ciao-node run` within `wait`.
pub fn resolve(state_dir: &Path, tenant: Uuid, wait: Duration) -> Result<AutoPool, PluginError> {
    let got = auto_subnet::resolve(state_dir, tenant, wait)
        .map_err(|e| PluginError::Invalid(format!("automatic subnet of tenant {tenant}: {e}")))?;
    let range = AddrRange {
        start: got.range_start,
        end: got.range_end,
    };
    if u32::from(range.start) > u32::from(range.end)
        || !got.subnet.contains(&range.start)
        || !got.subnet.contains(&range.end)
    {
        return Err(PluginError::Invalid(format!(
            "automatic subnet of tenant {tenant}: range {}..{} is not inside {}",
            range.start, range.end, got.subnet
        )));
    }
    Ok(AutoPool {
        subnet: got.subnet.trunc(),
        slice: covering(range.start, range.end),
        range,
    })
}

/// The smallest CIDR that holds both `start` and `end`.
pub fn covering(start: Ipv4Addr, end: Ipv4Addr) -> Ipv4Net {
    let common = (u32::from(start) ^ u32::from(end)).leading_zeros();
    let prefix = u8::try_from(common).unwrap_or(32);
    Ipv4Net::new(start, prefix)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| Ipv4Net::from(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_covering_cidr_of_a_slice_range_is_the_slice() {
        let c = |a, b| covering(ip(a), ip(b)).to_string();
        assert_eq!(c("172.16.0.2", "172.16.0.31"), "172.16.0.0/27");
        assert_eq!(c("172.16.0.32", "172.16.0.63"), "172.16.0.32/27");
        assert_eq!(c("172.16.0.224", "172.16.0.254"), "172.16.0.224/27");
        assert_eq!(c("10.0.0.5", "10.0.0.5"), "10.0.0.5/32");
    }

    #[test]
    fn ipam_options_are_checked_by_name() {
        let o = |pairs: &[(&str, &str)]| {
            let m: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            ipam_opts(Some(&m))
        };
        let t = "2491851d-dce9-48d6-b83a-a717417072ce";
        let got = o(&[("tenant", t), ("subnet-wait-seconds", "2.5")]).expect("good");
        assert_eq!(got.tenant, Some(t.parse().expect("uuid")));
        assert_eq!(got.wait, Some(Duration::from_millis(2500)));
        let err = |pairs| o(pairs).expect_err("bad").to_string();
        assert!(err(&[("tenant", "x")]).starts_with("--ipam-opt tenant: \"x\""));
        assert!(err(&[("subnet-wait-seconds", "0")]).contains("not in (0, 25]"));
        assert!(err(&[("subnet-wait-seconds", "60")]).contains("not in (0, 25]"));
        assert!(err(&[("color", "red")]).starts_with("unknown --ipam-opt color"));
        assert_eq!(ipam_opts(None).expect("none").tenant, None);
    }
}
