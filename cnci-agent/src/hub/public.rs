//! Public IPs and the node's own addresses (the fences requests are checked against).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;

use ipnet::{IpNet, Ipv4Net};
use netcore::netlink::Route;

use super::{bad, Hub, HubKernel};
use crate::error::{Error, Result};
use crate::ingress::IngressRecord;
use crate::names;
use crate::nft;
use crate::state::PublicIpRecord;
use crate::validate::Fences;

impl<K: HubKernel> Hub<K> {
    /// The network node's own addresses and ranges, read now from the kernel (see
    /// [`crate::validate`]); `public_ranges` come from the command line.
    pub fn fences(&mut self, public_ranges: &[Ipv4Net]) -> Result<Fences> {
        let addrs = match self.addrs_at_open.take() {
            Some(addrs) => addrs,
            None => self.underlay.addresses(None)?,
        };
        let v4 = |a: &netcore::netlink::Address| match a.net {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => None,
        };
        let own_addrs = addrs.iter().filter_map(v4).map(|n| n.addr()).collect();
        let mut external_nets = Vec::new();
        let mut external_peers = BTreeSet::new();
        if let Some(ext) = &self.agent.external_dev {
            if let Some(ext) = self.underlay.link_by_name(ext)? {
                external_nets = addrs
                    .iter()
                    .filter(|a| a.index == ext.index)
                    .filter_map(v4)
                    .map(|n| n.trunc())
                    .collect();
                for r in self.underlay.routes(ext.index)? {
                    if let Some(IpAddr::V4(gw)) = r.gateway {
                        external_peers.insert(gw);
                    }
                }
            }
        }
        Ok(Fences {
            own_addrs,
            underlay_nets: self.underlay_nets.clone(),
            external_nets,
            public_ranges: public_ranges.to_vec(),
            external_peers,
        })
    }

    /// Whether `ip` is routed on this node to another CNCI's uplink or to the node itself:
    /// then it is some other tenant's public IP or a local address. Returns the device.
    pub fn public_ip_in_use(&mut self, ip: Ipv4Addr) -> Result<Option<String>> {
        let lookup = match self.underlay.route_get(IpAddr::V4(ip)) {
            Ok(l) => l,
            Err(_) => return Ok(None), // unroutable: nobody uses it here
        };
        let Some(dev) = self.underlay.link_by_index(lookup.oif)? else {
            return Ok(None);
        };
        let mine = names::uplink_underlay(self.agent.uuid);
        let other_cnci = dev.name.starts_with("cu") && dev.name != mine;
        Ok((other_cnci || dev.name == "lo").then(|| format!("routed to {}", dev.name)))
    }

    /// Public IPs and the forward IP: a route to each through the uplink and a proxy-ARP
    /// entry on the external device in the underlay namespace, DNAT/SNAT and the forwards
    /// (see [`crate::ingress`]) in the tenant namespace, in one nft transaction. Addresses in
    /// neither are removed.
    pub fn apply_public_ips(
        &mut self,
        public: &BTreeMap<Ipv4Addr, PublicIpRecord>,
        ingress: Option<&IngressRecord>,
    ) -> Result<()> {
        let mut external: BTreeSet<Ipv4Addr> = public.keys().copied().collect();
        external.extend(ingress.and_then(|i| i.forward_ip));
        let uplink = self
            .underlay
            .link_by_name(&names::uplink_underlay(self.agent.uuid))?
            .ok_or_else(|| Error::Invalid("the uplink is missing".into()))?;
        let ext = match &self.agent.external_dev {
            Some(name) => self.underlay.link_by_name(name)?,
            None => None,
        };
        if ext.is_none() && !external.is_empty() {
            return Err(Error::Invalid(
                "no external device is configured (--external-dev): public IPs cannot be served"
                    .into(),
            ));
        }
        let (_, inner_ip) = self.uplink_addrs();
        let route = |ip: Ipv4Addr| -> Result<Route> {
            Ok(Route {
                dst: IpNet::V4(Ipv4Net::new(ip, 32).map_err(bad)?),
                gateway: Some(IpAddr::V4(inner_ip)),
                oif: uplink.index,
            })
        };
        // A route to an uplink this hub just made can only be one this call adds: the first
        // call after its creation skips the dump of every route of the node.
        let existing = if std::mem::take(&mut self.uplink_fresh) {
            Vec::new()
        } else {
            self.underlay.routes(uplink.index)?
        };
        for existing in existing {
            if let IpNet::V4(net) = existing.dst {
                if net.prefix_len() == 32 && !external.contains(&net.addr()) {
                    self.underlay.delete_route(&existing)?;
                    if let Some(ext) = &ext {
                        self.underlay
                            .delete_proxy_neighbour(ext.index, net.addr())?;
                    }
                }
            }
        }
        self.host.replace_table(
            Some(self.tenant_ns.as_fd()),
            names::TENANT_TABLE,
            &nft::tenant_rules(public, ingress),
        )?;
        if let Some(ext) = &ext {
            for ip in &external {
                self.underlay.add_route(&route(*ip)?)?;
                self.underlay.add_proxy_neighbour(ext.index, *ip)?;
            }
        }
        Ok(())
    }
}
