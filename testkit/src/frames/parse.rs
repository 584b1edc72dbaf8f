//! Reading captured frames back: the few fields that say who a frame claims to be from. Each
//! returns `None` for a frame too short or of another kind (no VLAN tags, no IPv4 options
//! beyond what IHL says, no IPv6 extension headers).

use std::net::{Ipv4Addr, Ipv6Addr};

fn bytes<const N: usize>(f: &[u8], at: usize) -> Option<[u8; N]> {
    f.get(at..at + N)?.try_into().ok()
}

fn ethertype(f: &[u8]) -> Option<u16> {
    bytes::<2>(f, 12).map(u16::from_be_bytes)
}

/// The Ethernet source MAC.
pub fn src_mac(f: &[u8]) -> Option<[u8; 6]> {
    bytes(f, 6)
}

/// An ARP packet's opcode, sender MAC and sender IPv4 address.
pub fn arp_sender(f: &[u8]) -> Option<(u16, [u8; 6], Ipv4Addr)> {
    if ethertype(f)? != 0x0806 {
        return None;
    }
    let op = u16::from_be_bytes(bytes(f, 20)?);
    Some((op, bytes(f, 22)?, Ipv4Addr::from(bytes::<4>(f, 28)?)))
}

/// An IPv4 packet's source, destination, protocol and payload.
pub fn ipv4(f: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, &[u8])> {
    if ethertype(f)? != 0x0800 {
        return None;
    }
    let ihl = usize::from(f.get(14)? & 0x0f) * 4;
    let src = Ipv4Addr::from(bytes::<4>(f, 26)?);
    let dst = Ipv4Addr::from(bytes::<4>(f, 30)?);
    Some((src, dst, *f.get(23)?, f.get(14 + ihl..)?))
}

/// A UDP-over-IPv4 packet's source and destination ports.
pub fn udp_ports(f: &[u8]) -> Option<(u16, u16)> {
    let (_, _, proto, l4) = ipv4(f)?;
    if proto != 17 {
        return None;
    }
    Some((
        u16::from_be_bytes(bytes(l4, 0)?),
        u16::from_be_bytes(bytes(l4, 2)?),
    ))
}

/// An ICMP echo request's source, destination and last payload byte (what `ping -p` fills in).
pub fn echo_request(f: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8)> {
    let (src, dst, proto, l4) = ipv4(f)?;
    if proto != 1 || *l4.first()? != 8 || l4.len() <= 8 {
        return None;
    }
    Some((src, dst, *l4.last()?))
}

/// An IPv6 packet's source address.
pub fn ipv6_src(f: &[u8]) -> Option<Ipv6Addr> {
    if ethertype(f)? != 0x86dd {
        return None;
    }
    Some(Ipv6Addr::from(bytes::<16>(f, 22)?))
}

/// A neighbour advertisement's target address.
pub fn advertised_target(f: &[u8]) -> Option<Ipv6Addr> {
    ipv6_src(f)?;
    if *f.get(20)? != 58 || *f.get(54)? != 136 {
        return None;
    }
    Some(Ipv6Addr::from(bytes::<16>(f, 62)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{arp, ether, ipv4_udp, ipv6_icmp, link_local, neighbour_advert, BROADCAST};

    #[test]
    fn fields_read_back_from_built_frames() {
        let m = [2, 0, 0, 0, 0, 1];
        let a: Ipv4Addr = "10.0.0.1".parse().expect("ip");
        let b: Ipv4Addr = "10.0.0.2".parse().expect("ip");
        let f = ether(BROADCAST, m, 0x0806, &arp(2, m, a, BROADCAST, b));
        assert_eq!(src_mac(&f), Some(m));
        assert_eq!(arp_sender(&f), Some((2, m, a)));
        assert_eq!(ipv4(&f), None);
        let f = ether(BROADCAST, m, 0x0800, &ipv4_udp(a, b, 67, 68, b"x"));
        assert_eq!(udp_ports(&f), Some((67, 68)));
        assert_eq!(ipv4(&f).map(|(s, d, p, _)| (s, d, p)), Some((a, b, 17)));
        let ll = link_local(m);
        let f = ether(
            BROADCAST,
            m,
            0x86dd,
            &ipv6_icmp(ll, "ff02::1".parse().expect("ip"), &neighbour_advert(ll)),
        );
        assert_eq!(ipv6_src(&f), Some(ll));
        assert_eq!(advertised_target(&f), Some(ll));
        assert_eq!(advertised_target(&f[..60]), None);
    }
}
