//! The hub's base, built once and checked on every start: forwarding on both sides, the
//! uplink veth between the underlay and the tenant namespace with its transfer addresses and
//! the tenant's default route, and the underlay namespace's nft table.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};

use ipnet::{IpNet, Ipv4Net};
use netcore::netlink::{LinkChange, LinkKind, NewLink, Route, VethPeer};

use super::{alias, bad, Hub, HubKernel};
use crate::error::{Error, Result};
use crate::names;
use crate::nft;
use crate::state::AgentRecord;

/// The agent's elements in the node-wide underlay table.
pub(super) fn uplink_of(agent: &AgentRecord) -> nft::Uplink {
    nft::Uplink {
        uplink: names::uplink_underlay(agent.uuid),
        uplink_net: agent.uplink,
        external_dev: agent.external_dev.clone(),
    }
}

impl<K: HubKernel> Hub<K> {
    pub(super) fn uplink_addrs(&self) -> (Ipv4Addr, Ipv4Addr) {
        let base = u32::from(self.agent.uplink.network());
        (Ipv4Addr::from(base), Ipv4Addr::from(base + 1))
    }

    /// Forwarding on both sides, the uplink veth with its transfer addresses and the tenant's
    /// default route, and the underlay namespace's rules.
    pub fn ensure_base(&mut self) -> Result<()> {
        self.tenant.write_sysctl("ipv4/ip_forward", "1")?;
        self.underlay.write_sysctl("ipv4/ip_forward", "1")?;
        let (outer_ip, inner_ip) = self.uplink_addrs();
        let outer_name = names::uplink_underlay(self.agent.uuid);
        let inner = self.tenant.link_by_name(names::UPLINK_TENANT)?;
        let outer = match (self.underlay.link_by_name(&outer_name)?, inner) {
            (Some(outer), Some(_)) => outer,
            (stale, _) => {
                if let Some(half) = stale {
                    self.underlay.delete_link(half.index)?;
                }
                self.tenant.delete_link_by_name(names::UPLINK_TENANT)?;
                let fd = self.tenant_ns.as_fd();
                let mut spec = NewLink::new(
                    outer_name.clone(),
                    LinkKind::Veth(VethPeer {
                        name: names::UPLINK_TENANT.into(),
                        mac: None,
                        mtu: None,
                        netns: Some(fd.as_raw_fd()),
                        up: false,
                    }),
                );
                spec.up = false;
                let made = self.underlay.create_link(&spec)?;
                self.uplink_fresh = true;
                made
            }
        };
        // Before it goes up: with IPv6 every uplink would hold a link-local address and routes
        // in the shared underlay namespace, where each later link change walks them all.
        self.underlay.disable_ipv6(&outer_name)?;
        self.underlay.change_link(
            outer.index,
            &LinkChange {
                up: Some(true),
                alias: Some(alias(&self.agent, "uplink")),
                ..Default::default()
            },
        )?;
        let prefix = self.agent.uplink.prefix_len();
        self.underlay.add_address(
            outer.index,
            IpNet::V4(Ipv4Net::new(outer_ip, prefix).map_err(bad)?),
        )?;
        let inner = self
            .tenant
            .link_by_name(names::UPLINK_TENANT)?
            .ok_or_else(|| Error::Invalid("the uplink's tenant side vanished".into()))?;
        self.tenant.add_address(
            inner.index,
            IpNet::V4(Ipv4Net::new(inner_ip, prefix).map_err(bad)?),
        )?;
        self.tenant.set_up(inner.index, true)?;
        self.tenant.add_route(&Route {
            dst: "0.0.0.0/0".parse().map_err(bad)?,
            gateway: Some(IpAddr::V4(outer_ip)),
            oif: inner.index,
        })?;
        if let Some(ext) = &self.agent.external_dev {
            // Answer ARP for public IPs at once, not after the default random proxy delay of
            // up to 0.8 s that would lose the first packets to a newly assigned address.
            self.underlay
                .write_sysctl(&format!("ipv4/neigh/{ext}/proxy_delay"), "0")?;
        }
        // An older build's table of this CNCI alone (it held two of the hook's base chains)
        // goes in the same transaction.
        self.host.add_uplink(
            &uplink_of(&self.agent),
            &self.underlay_nets,
            &names::legacy_underlay_table(self.agent.uuid),
        )?;
        Ok(())
    }
}
