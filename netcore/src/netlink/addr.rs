//! Interface addresses.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::Netlink;
use crate::error::{Error, Result};

/// An address as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub net: IpNet,
}

fn family(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

impl Netlink {
    /// Adds an address to a link; an identical existing address is not an error.
    pub fn add_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(&net.addr());
        msg.header.prefix_len = net.prefix_len();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(net.addr()));
        msg.attributes.push(AddressAttribute::Address(net.addr()));
        match self.ack(
            &format!("add address {net} to link #{index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.is_exists() => Ok(()),
            other => other,
        }
    }

    /// Removes an address from a link; a missing address is not an error.
    pub fn delete_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(&net.addr());
        msg.header.prefix_len = net.prefix_len();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(net.addr()));
        match self.ack(
            &format!("delete address {net} from link #{index}"),
            RouteNetlinkMessage::DelAddress(msg),
            0,
        ) {
            Err(e) if e.is_not_found() || e.errno() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            other => other,
        }
    }

    /// Lists the addresses of one link (or of all links with `None`).
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<Address>> {
        let replies = self.dump(
            "list addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        )?;
        let mut out = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewAddress(m) = reply else {
                continue;
            };
            if index.is_some_and(|i| i != m.header.index) {
                continue;
            }
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = addr.or_else(|| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(ip) = addr {
                let net = IpNet::new(ip, m.header.prefix_len)
                    .map_err(|e| Error::Internal(format!("kernel address {ip}: {e}")))?;
                out.push(Address {
                    index: m.header.index,
                    net,
                });
            }
        }
        Ok(out)
    }
}
