//! A small synchronous rtnetlink client over `netlink-packet-route`.
//!
//! Synchronous on purpose: the CNI plugin and the QEMU hooks are short-lived processes where a
//! runtime costs start-up time, and daemons call it from a blocking thread. The socket stays bound
//! to the network namespace it was opened in, so one handle per namespace is all we need.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::{Error, Result};

/// Receive buffer size; a link dump with many bridge ports needs a big one.
const RECV_BUF: usize = 64 * 1024;

/// An rtnetlink socket in one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
    /// The namespace the socket was opened in, if not the opening thread's own: sysctls and taps
    /// of this handle are made there too.
    netns: Option<OwnedFd>,
    /// The nf_tables socket of the same namespace, opened on first use (anti-spoofing).
    nft: Option<crate::nft::Socket>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| Error::io("open netlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| Error::io("bind netlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::io("connect netlink socket", e))?;
        // Extended acks give the kernel's own message ("Unknown device type") on failure.
        let _ = socket.set_ext_ack(true);
        Ok(Self {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUF],
            netns: None,
            nft: None,
        })
    }

    /// Opens a socket inside the network namespace `ns` without moving the caller.
    ///
    /// The socket is created on a short-lived thread that enters the namespace, so the calling
    /// thread (possibly a tokio worker) never changes namespace.
    pub fn open_in(ns: BorrowedFd<'_>) -> Result<Self> {
        let mut nl = crate::netns::run_in(ns, Self::open)?;
        nl.netns = Some(
            ns.try_clone_to_owned()
                .map_err(|e| Error::io("duplicate netns fd", e))?,
        );
        Ok(nl)
    }

    /// The namespace this handle was opened in with [`Netlink::open_in`], if any.
    pub fn netns_fd(&self) -> Option<BorrowedFd<'_>> {
        self.netns.as_ref().map(|ns| ns.as_fd())
    }

    /// Runs `f` in this handle's namespace: here if it is the opening thread's, else on a
    /// short-lived thread that enters it.
    pub(crate) fn run_here<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        match &self.netns {
            Some(ns) => crate::netns::run_in(ns.as_fd(), f),
            None => f(),
        }
    }

    /// The nf_tables socket of this handle's namespace, opened there on first use.
    pub fn nft(&mut self) -> Result<&mut crate::nft::Socket> {
        if self.nft.is_none() {
            self.nft = Some(self.run_here(crate::nft::Socket::open)?);
        }
        self.nft
            .as_mut()
            .ok_or_else(|| Error::Internal("nf_tables socket".into()))
    }

    /// The raw socket fd, for diagnostics.
    pub fn raw_fd(&self) -> i32 {
        self.socket.as_raw_fd()
    }

    /// Sends one request and waits for its ACK.
    pub fn ack(&mut self, what: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.exchange(what, msg, flags | NLM_F_ACK).map(|_| ())
    }

    /// Sends one request, waits for its ACK and returns what came before it (echoes).
    pub fn exchange_ack(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(what, msg, flags | NLM_F_ACK)
    }

    /// Sends a GET request for one object and returns the reply.
    pub fn get(&mut self, what: &str, msg: RouteNetlinkMessage) -> Result<RouteNetlinkMessage> {
        self.exchange(what, msg, 0)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Internal(format!("{what}: empty netlink reply")))
    }

    /// Sends a dump request and collects every reply.
    pub fn dump(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(what, msg, NLM_F_DUMP)
    }

    fn exchange(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket
            .send(&out, 0)
            .map_err(|e| Error::io(format!("{what}: netlink send"), e))?;

        let expect_ack = flags & NLM_F_ACK != 0;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        loop {
            let n = self
                .socket
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|e| Error::io(format!("{what}: netlink recv"), e))?;
            let mut offset = 0;
            while offset < n {
                let bytes = &self.buf[offset..n];
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                    .map_err(|e| Error::Internal(format!("{what}: bad netlink reply: {e}")))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(Error::Internal(format!(
                        "{what}: zero-length netlink reply"
                    )));
                }
                offset += len.next_multiple_of(4);
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(err) => {
                        return match err.code {
                            None => Ok(replies),
                            Some(code) => Err(Error::Netlink {
                                op: what.to_string(),
                                errno: -code.get(),
                            }),
                        }
                    }
                    NetlinkPayload::InnerMessage(inner) => {
                        replies.push(inner);
                        if !dump && !expect_ack {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
