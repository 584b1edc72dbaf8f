//! The ARP nudge: when a controller-mode subnet's tunnel comes up on this node, the ARP that
//! its workloads (and their remote neighbours) sent before it existed was lost, and Linux asks
//! again only after `retrans_time` (1 s). The nudge answers those waiting entries at once:
//!
//! - a gratuitous ARP for every local workload (sender = its address and MAC): a remote workload
//!   whose entry for it is INCOMPLETE takes the address and sends what it queued;
//! - for container workloads (we know their namespace), an ARP request on the workload's behalf
//!   for every INCOMPLETE or FAILED entry of its interface in the subnet: the remote's reply goes
//!   to the workload, which resolves the entry and sends its queued packets. A VM's table is the
//!   guest's, not ours to read, and a Docker hand-off's namespace is not recorded: GARP only.
//!
//! Frames leave through the subnet's bridge from an `AF_PACKET` socket in the node's namespace:
//! a bridge learns source addresses only on frames that enter through a port, never on its own
//! transmissions, so the workload's MAC stays on the workload's port. Best effort: every failure
//! is returned in [`Nudged::failures`], none stops the rest.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use ipnet::Ipv4Net;
use uuid::Uuid;

use crate::config::VnicKind;
use crate::error::{Error, Result};
use crate::ids;
use crate::netlink::Netlink;
use crate::netns;
use crate::state::{StateDir, VnicRecord};

/// Delays between the rounds of [`nudge_repeatedly`] (about 0.8 s in all). The hub programs
/// this node only when it has read the TenantAdded sent just before, and nothing tells the node
/// when that happened, so one round may come too early.
pub const ROUND_DELAYS: [Duration; 5] = [
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
];

const BROADCAST: [u8; 6] = [0xff; 6];
const ETH_P_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;

/// What one or more rounds did.
#[derive(Debug, Default)]
pub struct Nudged {
    /// Gratuitous ARPs sent (one per local workload and round).
    pub garps: usize,
    /// ARP requests sent on a container's behalf, with the address asked for.
    pub requests: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// What failed; the rest went on.
    pub failures: Vec<Error>,
}

impl Nudged {
    fn add(&mut self, other: Nudged) {
        self.garps += other.garps;
        self.requests.extend(other.requests);
        self.failures.extend(other.failures);
    }
}

/// An ARP request frame (Ethernet header included) from `sender`, broadcast, asking for
/// `target`; a gratuitous ARP when `target` is the sender's own address.
pub fn arp_request(sender_mac: [u8; 6], sender_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&sender_mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    f[22..28].copy_from_slice(&sender_mac);
    f[28..32].copy_from_slice(&sender_ip.octets());
    // f[32..38]: target hardware address unknown (zero).
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// A send-only packet socket (protocol 0: it receives nothing).
struct PacketSocket(OwnedFd);

impl PacketSocket {
    fn open() -> Result<Self> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Error::io(
                "open an AF_PACKET socket",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends one whole Ethernet frame out of the device `ifindex`.
    fn send(&self, ifindex: u32, frame: &[u8; 42]) -> Result<()> {
        let mut sll_addr = [0u8; 8];
        sll_addr[..6].copy_from_slice(&frame[..6]);
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: ETH_P_ARP.to_be(),
            sll_ifindex: i32::try_from(ifindex)
                .map_err(|_| Error::Internal(format!("ifindex {ifindex}")))?,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 6,
            sll_addr,
        };
        // SAFETY: the buffer and the address are valid for the lengths given, for the call.
        let sent = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(Error::io(
                "send an ARP frame",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

/// The subnet's bridge and its workloads, read under the shared node lock (released on return).
fn subnet_ports(
    state: &StateDir,
    tenant: Uuid,
    subnet: Ipv4Net,
) -> Result<(String, Vec<VnicRecord>)> {
    let key = ids::net_key(tenant, subnet.trunc());
    let reader = state.read()?;
    let net = reader
        .nets()?
        .into_iter()
        .find(|n| n.key == key)
        .ok_or_else(|| {
            Error::Internal(format!(
                "subnet {subnet} of tenant {tenant} is not on this node"
            ))
        })?;
    Ok((net.bridge, reader.vnics(&key)?))
}

/// The unresolved neighbours in `subnet` of a container's interface, read in its namespace.
fn waiting_in(vnic: &VnicRecord, subnet: Ipv4Net) -> Result<Vec<Ipv4Addr>> {
    let VnicKind::Veth {
        netns: path,
        ifname,
    } = &vnic.kind
    else {
        return Ok(Vec::new());
    };
    let ns = netns::open(path)?;
    let mut inside = Netlink::open_in(std::os::fd::AsFd::as_fd(&ns))?;
    let Some(link) = inside.link_by_name(ifname)? else {
        return Ok(Vec::new());
    };
    Ok(inside
        .neighbours(link.index)?
        .into_iter()
        .filter(|n| n.unresolved() && subnet.contains(&n.ip) && n.ip != vnic.ip)
        .map(|n| n.ip)
        .collect())
}

/// One round for the subnet `(tenant, subnet)` of the node whose state is `state`: a GARP for
/// every workload, a request for every unresolved entry of every container. Run it in the
/// node's network namespace, without the node lock held.
pub fn nudge(state: &StateDir, tenant: Uuid, subnet: Ipv4Net) -> Result<Nudged> {
    let (bridge_name, vnics) = subnet_ports(state, tenant, subnet)?;
    let mut nl = Netlink::open()?;
    let bridge = nl
        .link_by_name(&bridge_name)?
        .ok_or_else(|| Error::Internal(format!("bridge {bridge_name} is missing")))?;
    let socket = PacketSocket::open()?;
    let mut done = Nudged::default();
    for vnic in &vnics {
        let Some(mac) = ids::parse_mac(&vnic.mac) else {
            done.failures.push(Error::Internal(format!(
                "{}: unreadable MAC {:?}",
                vnic.id.key(),
                vnic.mac
            )));
            continue;
        };
        match socket.send(bridge.index, &arp_request(mac, vnic.ip, vnic.ip)) {
            Ok(()) => done.garps += 1,
            Err(e) => done.failures.push(e),
        }
        let waiting = match waiting_in(vnic, subnet) {
            Ok(waiting) => waiting,
            Err(e) => {
                done.failures.push(e);
                continue;
            }
        };
        for target in waiting {
            match socket.send(bridge.index, &arp_request(mac, vnic.ip, target)) {
                Ok(()) => done.requests.push((vnic.ip, target)),
                Err(e) => done.failures.push(e),
            }
        }
    }
    Ok(done)
}

/// [`nudge`] now and again after each of [`ROUND_DELAYS`]; a round that fails as a whole is
/// recorded and the next one still runs. Blocks for the whole schedule: run it on its own
/// thread.
pub fn nudge_repeatedly(state: &StateDir, tenant: Uuid, subnet: Ipv4Net) -> Nudged {
    let mut all = Nudged::default();
    let round = |all: &mut Nudged| match nudge(state, tenant, subnet) {
        Ok(done) => all.add(done),
        Err(e) => all.failures.push(e),
    };
    round(&mut all);
    for delay in ROUND_DELAYS {
        std::thread::sleep(delay);
        round(&mut all);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_frame_is_an_ethernet_broadcast_arp_request() {
        let mac = [0x02, 0, 0xac, 0x10, 0x01, 0x0b];
        let f = arp_request(
            mac,
            Ipv4Addr::new(172, 16, 1, 11),
            Ipv4Addr::new(172, 16, 1, 10),
        );
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..22], &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[172, 16, 1, 11]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[172, 16, 1, 10]);
    }

    #[test]
    fn a_gratuitous_arp_asks_for_its_own_address() {
        let ip = Ipv4Addr::new(10, 6, 0, 2);
        let f = arp_request(ids::mac_from_ip(ip), ip, ip);
        assert_eq!(&f[28..32], &f[38..42]);
    }

    #[test]
    fn an_unknown_subnet_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("dir");
        let state = StateDir::open(dir.path()).expect("state");
        let err = nudge(
            &state,
            Uuid::from_u128(1),
            "10.6.0.0/24".parse().expect("net"),
        )
        .expect_err("nothing recorded");
        assert!(err.to_string().contains("not on this node"), "{err}");
    }
}
