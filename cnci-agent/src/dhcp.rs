//! A stateless DHCPv4 server for one tenant subnet.
//!
//! Upstream ciao runs a dnsmasq per tenant bridge whose hosts file maps every usable address
//! `a.b.c.d` of the subnet to the MAC `02:00:a:b:c:d` and ignores everybody else (reference §11).
//! The mapping is a pure function of the MAC, so no lease database is needed: the address is
//! computed from the MAC of each request and MACs outside that scheme get no answer at all.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::BorrowedFd;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use nix::sched::{setns, CloneFlags};
use socket2::{Domain, Protocol, Socket, Type};

/// What the server hands out on one tenant subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpSubnet {
    pub subnet: ipnet::Ipv4Net,
    pub gateway: std::net::Ipv4Addr,  // also the server identifier
    pub mtu: u16,                     // option 26
    pub dns: Vec<std::net::Ipv4Addr>, // option 6, omitted when empty
    pub lease_secs: u32,              // option 51 (+ renewal 58 = 1/2, rebinding 59 = 7/8)
}

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;
/// The fixed BOOTP header (236 bytes) plus the DHCP magic cookie.
const HEADER_LEN: usize = 240;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Replies are padded to the BOOTP minimum, which some old clients insist on.
const MIN_REPLY_LEN: usize = 300;

/// The address a MAC is entitled to on this subnet, or None (outside the scheme).
pub fn address_for(subnet: &DhcpSubnet, mac: [u8; 6]) -> Option<Ipv4Addr> {
    let [0x02, 0x00, a, b, c, d] = mac else {
        return None;
    };
    let ip = Ipv4Addr::new(a, b, c, d);
    let net = subnet.subnet;
    let usable =
        net.contains(&ip) && ip != net.network() && ip != net.broadcast() && ip != subnet.gateway;
    usable.then_some(ip)
}

/// The reply to one received datagram, or None to stay silent. Returns the encoded reply and
/// where to send it.
pub fn answer(subnet: &DhcpSubnet, request: &[u8]) -> Option<(Vec<u8>, std::net::SocketAddrV4)> {
    let msg = decode(request)?;
    if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
        return None;
    }
    let mac: [u8; 6] = msg.chaddr().try_into().ok()?;
    let addr = address_for(subnet, mac)?;
    let opts = msg.opts();

    let request_type = opts.msg_type()?;
    let (kind, yiaddr) = match request_type {
        MessageType::Discover => (MessageType::Offer, addr),
        MessageType::Request => {
            // A REQUEST naming another server is that server's business (the client chose it).
            if let Some(server) = opts.get(OptionCode::ServerIdentifier) {
                if *server != DhcpOption::ServerIdentifier(subnet.gateway) {
                    return None;
                }
            }
            let requested = match opts.get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(ip)) => *ip,
                _ => msg.ciaddr(),
            };
            if requested == addr {
                (MessageType::Ack, addr)
            } else {
                (MessageType::Nak, Ipv4Addr::UNSPECIFIED)
            }
        }
        MessageType::Inform => (MessageType::Ack, Ipv4Addr::UNSPECIFIED),
        _ => return None,
    };

    let ciaddr = if kind == MessageType::Ack {
        msg.ciaddr()
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let mut reply = Message::new_with_id(
        msg.xid(),
        ciaddr,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        msg.giaddr(),
        &mac,
    );
    reply
        .set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_flags(msg.flags());

    let ro = reply.opts_mut();
    ro.insert(DhcpOption::MessageType(kind));
    ro.insert(DhcpOption::ServerIdentifier(subnet.gateway));
    // RFC 6842: a client identifier is echoed so the client can match the reply.
    if let Some(id @ DhcpOption::ClientIdentifier(_)) = opts.get(OptionCode::ClientIdentifier) {
        ro.insert(id.clone());
    }
    if kind != MessageType::Nak {
        // RFC 2131 4.3.5: no lease times in the answer to an INFORM.
        if request_type != MessageType::Inform {
            let lease = u64::from(subnet.lease_secs);
            ro.insert(DhcpOption::AddressLeaseTime(subnet.lease_secs));
            ro.insert(DhcpOption::Renewal(u32::try_from(lease / 2).ok()?));
            ro.insert(DhcpOption::Rebinding(u32::try_from(lease * 7 / 8).ok()?));
        }
        ro.insert(DhcpOption::SubnetMask(subnet.subnet.netmask()));
        ro.insert(DhcpOption::Router(vec![subnet.gateway]));
        ro.insert(DhcpOption::BroadcastAddr(subnet.subnet.broadcast()));
        ro.insert(DhcpOption::InterfaceMtu(subnet.mtu));
        if !subnet.dns.is_empty() {
            ro.insert(DhcpOption::DomainNameServer(subnet.dns.clone()));
        }
    }

    let mut bytes = reply.to_vec().ok()?;
    if bytes.len() < MIN_REPLY_LEN {
        bytes.resize(MIN_REPLY_LEN, 0); // zeros after END are pad
    }
    Some((bytes, destination(&msg, kind)))
}

/// Where a reply goes (RFC 2131 4.1). A client without an address that did not ask for
/// broadcast would rather get a unicast to its MAC, but that needs a raw socket; a broadcast
/// reaches it as well.
fn destination(msg: &Message, kind: MessageType) -> SocketAddrV4 {
    if msg.giaddr() != Ipv4Addr::UNSPECIFIED {
        SocketAddrV4::new(msg.giaddr(), SERVER_PORT)
    } else if kind != MessageType::Nak
        && msg.ciaddr() != Ipv4Addr::UNSPECIFIED
        && !msg.flags().broadcast()
    {
        SocketAddrV4::new(msg.ciaddr(), CLIENT_PORT)
    } else {
        // A NAK is always broadcast: the client's ciaddr may be exactly what is wrong.
        SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
    }
}

/// Decodes a request, refusing what dhcproto would panic on.
///
/// dhcproto 0.15 `debug_assert`s on, or subtracts from, the lengths of a few options (rapid
/// commit, client FQDN, client network interface, bulk lease query) while decoding, so a
/// hostile client could crash a debug build; those lengths are checked here first. It also
/// does not check the magic cookie.
fn decode(request: &[u8]) -> Option<Message> {
    if request.len() < HEADER_LEN || request[HEADER_LEN - 4..HEADER_LEN] != MAGIC {
        return None;
    }
    if !option_lengths_ok(&request[HEADER_LEN..]) {
        return None;
    }
    Message::decode(&mut Decoder::new(request)).ok()
}

/// Whether the options dhcproto decodes with unchecked length assumptions have lengths it
/// survives. Like dhcproto, adjacent options of one code are joined first (RFC 3396).
fn option_lengths_ok(mut opts: &[u8]) -> bool {
    let ok = |run: Option<(u8, usize)>| match run {
        Some((80, len)) => len == 0,
        Some((81, len)) => len >= 3,
        Some((94, len)) => len == 3,
        Some((151, len)) => len >= 1,
        Some((152..=155, len)) => len == 4,
        _ => true,
    };
    let mut run: Option<(u8, usize)> = None;
    loop {
        match opts {
            [0, rest @ ..] => {
                // a pad ends a run
                if !ok(run.take()) {
                    return false;
                }
                opts = rest;
            }
            [code, len, rest @ ..] if *code != 255 => {
                let len = usize::from(*len);
                let Some(rest) = rest.get(len..) else { break };
                opts = rest;
                run = match run {
                    Some((c, total)) if c == *code => Some((c, total + len)),
                    previous if !ok(previous) => return false,
                    _ => Some((*code, len)),
                };
            }
            _ => break, // end, truncated or exhausted
        }
    }
    ok(run)
}

/// Opens the server's UDP socket (0.0.0.0:67, SO_BINDTODEVICE=ifname, SO_REUSEADDR, SO_BROADCAST,
/// non-blocking) inside the network namespace `netns` (an open fd of /run/netns/NAME). Never call
/// setns on the calling thread: do it on a short-lived std::thread that enters the namespace,
/// creates the socket and returns it (a socket stays in the namespace it was created in).
pub fn bind_socket(
    netns: std::os::fd::BorrowedFd<'_>,
    ifname: &str,
) -> std::io::Result<std::net::UdpSocket> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| open_in(netns, ifname))
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("DHCP socket thread panicked")))
    })
}

/// Runs on a thread of its own: the namespace switch dies with it.
fn open_in(netns: BorrowedFd<'_>, ifname: &str) -> io::Result<UdpSocket> {
    setns(netns, CloneFlags::CLONE_NEWNET)?;
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    // Several tenant bridges share port 67 in one namespace; the device keeps them apart.
    socket.bind_device(Some(ifname.as_bytes()))?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT).into())?;
    Ok(socket.into())
}

/// Serves until the socket fails; errors in single packets are skipped.
pub async fn serve(socket: tokio::net::UdpSocket, subnet: DhcpSubnet) {
    // Larger than any DHCP message a client may send (RFC 2131 option 57 caps at 65535).
    let mut buf = vec![0u8; 65536];
    loop {
        let len = match socket.recv_from(&mut buf).await {
            Ok((len, _)) => len,
            Err(e) if transient(&e) => continue,
            Err(e) => {
                tracing::error!("dhcp on {}: receive failed, stopping: {e}", subnet.subnet);
                return;
            }
        };
        let Some(request) = buf.get(..len) else {
            continue;
        };
        let answered = tracing::debug_span!("dhcp_request", len).in_scope(|| {
            let answered = answer(&subnet, request);
            if let Some((_, dest)) = &answered {
                tracing::debug!("answering to {dest}");
            }
            answered
        });
        if let Some((reply, dest)) = answered {
            // A lost reply is retransmitted by the client; nothing to do about it here.
            let _ = socket.send_to(&reply, dest).await;
        }
    }
}

/// Errors of one datagram (for example ICMP errors reported on the socket), not of the socket.
fn transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        Interrupted
            | WouldBlock
            | ConnectionRefused
            | ConnectionReset
            | HostUnreachable
            | NetworkUnreachable
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::Flags;

    const MAC: [u8; 6] = [0x02, 0x00, 172, 16, 1, 5];
    const ADDR: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 5);
    const GW: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);

    fn subnet() -> DhcpSubnet {
        DhcpSubnet {
            subnet: "172.16.1.0/24".parse().expect("subnet"),
            gateway: GW,
            mtu: 1450,
            dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
            lease_secs: 3600,
        }
    }

    fn request(kind: MessageType, mac: [u8; 6], edit: impl FnOnce(&mut Message)) -> Vec<u8> {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut msg = Message::new_with_id(0x1234_5678, z, z, z, z, &mac);
        msg.opts_mut().insert(DhcpOption::MessageType(kind));
        edit(&mut msg);
        msg.to_vec().expect("encode request")
    }

    fn reply_to(subnet: &DhcpSubnet, req: &[u8]) -> (Message, SocketAddrV4) {
        let (bytes, dest) = answer(subnet, req).expect("an answer");
        assert!(bytes.len() >= MIN_REPLY_LEN);
        (Message::from_bytes(&bytes).expect("decode reply"), dest)
    }

    fn opt(msg: &Message, code: OptionCode) -> Option<&DhcpOption> {
        msg.opts().get(code)
    }

    fn broadcast() -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
    }

    #[test]
    fn address_follows_the_mac_scheme() {
        let s = subnet();
        assert_eq!(address_for(&s, MAC), Some(ADDR));
        assert_eq!(
            address_for(&s, [2, 0, 172, 16, 1, 254]),
            Some(Ipv4Addr::new(172, 16, 1, 254))
        );
        assert_eq!(address_for(&s, [0x52, 0x54, 0, 0x12, 0x34, 0x56]), None);
        assert_eq!(address_for(&s, [0x02, 0x01, 172, 16, 1, 5]), None);
        assert_eq!(address_for(&s, [2, 0, 172, 16, 1, 0]), None, "network");
        assert_eq!(address_for(&s, [2, 0, 172, 16, 1, 255]), None, "broadcast");
        assert_eq!(address_for(&s, [2, 0, 172, 16, 1, 1]), None, "gateway");
        assert_eq!(address_for(&s, [2, 0, 172, 16, 2, 5]), None, "other subnet");
    }

    #[test]
    fn discover_gets_offer_with_all_options() {
        let s = subnet();
        let (offer, dest) = reply_to(&s, &request(MessageType::Discover, MAC, |_| {}));
        assert_eq!(dest, broadcast());
        assert_eq!(offer.opcode(), Opcode::BootReply);
        assert_eq!(offer.htype(), HType::Eth);
        assert_eq!(offer.xid(), 0x1234_5678);
        assert_eq!(offer.chaddr(), &MAC[..]);
        assert_eq!(offer.yiaddr(), ADDR);
        assert_eq!(offer.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        let expect = [
            DhcpOption::ServerIdentifier(GW),
            DhcpOption::AddressLeaseTime(3600),
            DhcpOption::Renewal(1800),
            DhcpOption::Rebinding(3150),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::Router(vec![GW]),
            DhcpOption::BroadcastAddr(Ipv4Addr::new(172, 16, 1, 255)),
            DhcpOption::InterfaceMtu(1450),
            DhcpOption::DomainNameServer(vec![Ipv4Addr::new(192, 0, 2, 53)]),
        ];
        for o in expect {
            assert_eq!(opt(&offer, OptionCode::from(&o)), Some(&o));
        }
    }

    #[test]
    fn dns_omitted_when_empty() {
        let s = DhcpSubnet {
            dns: vec![],
            ..subnet()
        };
        let (offer, _) = reply_to(&s, &request(MessageType::Discover, MAC, |_| {}));
        assert_eq!(opt(&offer, OptionCode::DomainNameServer), None);
        assert!(opt(&offer, OptionCode::Router).is_some());
    }

    #[test]
    fn request_for_own_address_is_acked() {
        let s = subnet();
        let req = request(MessageType::Request, MAC, |m| {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(ADDR));
            m.opts_mut().insert(DhcpOption::ServerIdentifier(GW));
            m.opts_mut()
                .insert(DhcpOption::ClientIdentifier(vec![1, 2, 0, 172, 16, 1, 5]));
        });
        let (ack, dest) = reply_to(&s, &req);
        assert_eq!(dest, broadcast());
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr(), ADDR);
        assert_eq!(
            opt(&ack, OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1450))
        );
        assert_eq!(
            opt(&ack, OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![1, 2, 0, 172, 16, 1, 5]))
        );
    }

    #[test]
    fn renewal_by_ciaddr_is_acked_by_unicast() {
        let s = subnet();
        let req = request(MessageType::Request, MAC, |m| {
            m.set_ciaddr(ADDR);
        });
        let (ack, dest) = reply_to(&s, &req);
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.ciaddr(), ADDR);
        assert_eq!(dest, SocketAddrV4::new(ADDR, 68));

        let req = request(MessageType::Request, MAC, |m| {
            m.set_ciaddr(ADDR)
                .set_flags(Flags::default().set_broadcast());
        });
        let (ack, dest) = reply_to(&s, &req);
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert!(ack.flags().broadcast());
        assert_eq!(dest, broadcast());
    }

    #[test]
    fn relayed_request_goes_back_to_the_relay() {
        let relay = Ipv4Addr::new(10, 0, 0, 1);
        let req = request(MessageType::Discover, MAC, |m| {
            m.set_giaddr(relay);
        });
        let (offer, dest) = reply_to(&subnet(), &req);
        assert_eq!(offer.giaddr(), relay);
        assert_eq!(dest, SocketAddrV4::new(relay, 67));
    }

    #[test]
    fn request_for_wrong_address_is_naked() {
        let s = subnet();
        for edit in [
            |m: &mut Message| {
                m.opts_mut()
                    .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(172, 16, 1, 9)));
            },
            |m: &mut Message| {
                m.set_ciaddr(Ipv4Addr::new(172, 16, 1, 9));
            },
            |m: &mut Message| {
                m.opts_mut()
                    .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 1, 1, 5)));
                m.opts_mut().insert(DhcpOption::ServerIdentifier(GW));
            },
        ] {
            let (nak, dest) = reply_to(&s, &request(MessageType::Request, MAC, edit));
            assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
            assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
            assert_eq!(
                opt(&nak, OptionCode::ServerIdentifier),
                Some(&DhcpOption::ServerIdentifier(GW))
            );
            assert_eq!(opt(&nak, OptionCode::AddressLeaseTime), None);
            assert_eq!(opt(&nak, OptionCode::Router), None);
            assert_eq!(dest, broadcast(), "a NAK is broadcast");
        }
    }

    #[test]
    fn request_to_another_server_is_ignored() {
        let req = request(MessageType::Request, MAC, |m| {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(ADDR));
            m.opts_mut()
                .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(172, 16, 1, 2)));
        });
        assert_eq!(answer(&subnet(), &req), None);
    }

    #[test]
    fn inform_is_acked_without_address_or_lease() {
        let req = request(MessageType::Inform, MAC, |m| {
            m.set_ciaddr(ADDR);
        });
        let (ack, dest) = reply_to(&subnet(), &req);
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(ack.ciaddr(), ADDR);
        assert_eq!(dest, SocketAddrV4::new(ADDR, 68));
        assert_eq!(opt(&ack, OptionCode::AddressLeaseTime), None);
        assert_eq!(opt(&ack, OptionCode::Renewal), None);
        assert_eq!(
            opt(&ack, OptionCode::Router),
            Some(&DhcpOption::Router(vec![GW]))
        );
        assert_eq!(
            opt(&ack, OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1450))
        );
    }

    #[test]
    fn release_decline_and_others_get_no_answer() {
        for kind in [
            MessageType::Release,
            MessageType::Decline,
            MessageType::Offer,
            MessageType::Ack,
        ] {
            assert_eq!(
                answer(&subnet(), &request(kind, MAC, |_| {})),
                None,
                "{kind:?}"
            );
        }
        // no message type at all (plain BOOTP)
        let mut bootp = request(MessageType::Discover, MAC, |_| {});
        bootp.truncate(HEADER_LEN);
        bootp.push(255);
        assert_eq!(answer(&subnet(), &bootp), None);
    }

    #[test]
    fn macs_outside_the_scheme_get_no_answer() {
        let s = subnet();
        for mac in [
            [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            [2, 0, 172, 16, 1, 0],
            [2, 0, 172, 16, 1, 255],
            [2, 0, 172, 16, 1, 1],
            [2, 0, 10, 0, 0, 5],
        ] {
            for kind in [
                MessageType::Discover,
                MessageType::Request,
                MessageType::Inform,
            ] {
                let req = request(kind, mac, |m| {
                    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ADDR));
                });
                assert_eq!(answer(&s, &req), None, "{mac:02x?} {kind:?}");
            }
        }
    }

    #[test]
    fn wrong_header_gets_no_answer() {
        let s = subnet();
        let good = request(MessageType::Discover, MAC, |_| {});
        assert!(answer(&s, &good).is_some());
        let mut bad_op = good.clone();
        bad_op[0] = 2; // BOOTREPLY
        let mut bad_htype = good.clone();
        bad_htype[1] = 6;
        let mut bad_hlen = good.clone();
        bad_hlen[2] = 16;
        let mut huge_hlen = good.clone();
        huge_hlen[2] = 200; // dhcproto's chaddr() would slice out of bounds
        let mut bad_magic = good.clone();
        bad_magic[236] = 0;
        for req in [bad_op, bad_htype, bad_hlen, huge_hlen, bad_magic] {
            assert_eq!(answer(&s, &req), None);
        }
    }

    #[test]
    fn garbage_gets_no_answer() {
        let s = subnet();
        assert_eq!(answer(&s, &[]), None);
        assert_eq!(answer(&s, b"hello"), None);
        assert_eq!(answer(&s, &[0xff; 600]), None);
        let good = request(MessageType::Discover, MAC, |_| {});
        for len in 0..good.len() {
            // truncations either fail or still parse; they must not panic
            let _ = answer(&s, &good[..len]);
        }
    }

    /// Options whose lengths dhcproto decodes with `debug_assert`s or unchecked subtraction.
    #[test]
    fn hostile_option_lengths_do_not_panic() {
        let s = subnet();
        let header = &request(MessageType::Discover, MAC, |_| {})[..HEADER_LEN];
        for code in [80u8, 81, 82, 94, 121, 151, 152, 153, 154, 155, 156, 157] {
            for len in 0..8u8 {
                for copies in 1..=2 {
                    let mut req = header.to_vec();
                    req.extend([53, 1, 1]);
                    for _ in 0..copies {
                        req.extend([code, len]);
                        req.extend((0..len).map(|i| i.wrapping_mul(37)));
                    }
                    req.push(255);
                    let _ = answer(&s, &req);
                }
            }
        }
        // a good option split in two (RFC 3396) is still accepted
        let mut req = header.to_vec();
        req.extend([53, 1, 1, 94, 2, 1, 2, 94, 1, 3, 255]);
        assert!(answer(&s, &req).is_some());
        assert!(!option_lengths_ok(&[94, 2, 1, 2, 94, 2, 3, 4, 255]));
        assert!(!option_lengths_ok(&[80, 1, 0]));
        assert!(option_lengths_ok(&[80, 0, 0, 80, 0]));
    }

    /// Random options after a valid header: whatever dhcproto makes of them, no panic.
    #[test]
    fn random_options_do_not_panic() {
        let s = subnet();
        let header = &request(MessageType::Discover, MAC, |_| {})[..HEADER_LEN];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut req = header.to_vec();
            req.extend([53, 1, (next() % 9) as u8]);
            let n = (next() % 64) as usize;
            for _ in 0..n {
                let r = next();
                // mostly small lengths, so the options line up
                let byte = if r % 3 == 0 {
                    (r >> 8) as u8 % 8
                } else {
                    (r >> 8) as u8
                };
                req.push(byte);
            }
            let _ = answer(&s, &req);
        }
    }
}
