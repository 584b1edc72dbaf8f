//! Containers whose CNI config names only the tenant (no `subnet`, no address): the controller
//! gives the tenant a subnet and each node its range, through `ciao-node run`.

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use super::{Cluster, Cn, Tenant, Workload};
use crate::{cni_call, plugin, CniOutput, Netns};

impl Cluster {
    /// The network configuration of `t` on `cn` with no subnet, plus `extra` keys.
    pub fn auto_conf(&self, cn: Cn, t: &Tenant, extra: Value) -> Value {
        let mut conf = json!({
            "cniVersion": "1.1.0",
            "name": format!("t{}-auto", &t.tenant[..8.min(t.tenant.len())]),
            "type": "ciao",
            "tenant": t.tenant,
            "stateDir": self.cn(cn).state.path(),
            "defaultRoute": true,
        });
        if let (Some(conf), Some(extra)) = (conf.as_object_mut(), extra.as_object()) {
            conf.extend(extra.clone());
        }
        conf
    }

    /// CNI ADD of `conf` in a new namespace on `cn`; the namespace and the outcome.
    pub fn add_in_new_ns(&self, cn: Cn, conf: &Value) -> (Netns, CniOutput) {
        let ns = Netns::new("ctr");
        let node = self.cn(cn);
        let out = cni_call(
            &plugin(),
            Some(&node.ns.name),
            "ADD",
            &ns.name,
            &ns.path().display().to_string(),
            "eth0",
            conf,
            &[],
        );
        (ns, out)
    }

    /// A container of `t` on `cn` whose config names no subnet: its address and subnet come
    /// from the ADD result.
    pub fn auto_container(&self, cn: Cn, t: &Tenant) -> Result<Workload> {
        let conf = self.auto_conf(cn, t, json!({}));
        let (ns, out) = self.add_in_new_ns(cn, &conf);
        if !out.ok {
            bail!(
                "CNI ADD (no subnet) on {} failed: {} {}",
                cn.name(),
                out.stdout,
                out.stderr
            );
        }
        let cidr = out.json["ips"][0]["address"]
            .as_str()
            .ok_or_else(|| anyhow!("no address in {}", out.json))?;
        let (ip, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| anyhow!("{cidr} is not a CIDR"))?;
        let ip: std::net::Ipv4Addr = ip.parse()?;
        let prefix: u32 = prefix.parse()?;
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        let network = std::net::Ipv4Addr::from(u32::from(ip) & mask);
        Ok(Workload {
            ns,
            ip: ip.to_string(),
            cn,
            tenant: t.clone(),
            subnet: format!("{network}/{prefix}"),
            conf,
            result: out.json,
            node_ns: self.cn(cn).ns.name.clone(),
            removed: false,
        })
    }
}
