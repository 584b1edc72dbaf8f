//! The nfnetlink socket: atomic batches and dumps.
//!
//! A batch is `NFNL_MSG_BATCH_BEGIN`, the messages (each with `NLM_F_ACK` and its own sequence
//! number), `NFNL_MSG_BATCH_END`; the kernel applies all of it or none. It answers each message
//! with an ack or an error, but stops answering early on some failures, so a `GETGEN` request
//! follows the batch as a sentinel: its reply comes after everything the batch produced, and
//! reading stops there. An error is reported with the message it belongs to (by sequence).

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket as RawSocket, SocketAddr};

use super::objects::{Msg, MsgType};
use super::Family;
use crate::error::{Error, Result};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;
const HEADER: usize = 16;
/// Receive buffer: nfnetlink dumps come in skbs of up to 32 KiB and more.
const RECV_BUF: usize = 256 * 1024;

/// An nf_tables netlink socket, bound to the namespace it was opened in.
pub struct Socket {
    socket: RawSocket,
    seq: u32,
    buf: Vec<u8>,
}

/// One reply message: type and the bytes after `nfgenmsg`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: u16,
    pub body: Vec<u8>,
}

fn header(len: usize, kind: u16, flags: u16, seq: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&(len as u32).to_ne_bytes());
    h[4..6].copy_from_slice(&kind.to_ne_bytes());
    h[6..8].copy_from_slice(&flags.to_ne_bytes());
    h[8..12].copy_from_slice(&seq.to_ne_bytes());
    h
}

/// Appends one message: header, `nfgenmsg` (family, version 0, `res_id` big-endian), body.
fn push(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, body: &[u8]) {
    let len = HEADER + 4 + body.len();
    out.extend_from_slice(&header(len, kind, flags, seq));
    out.push(family);
    out.push(0);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(body);
}

/// Encodes a whole batch with sequence numbers from `first`; returns the bytes and the
/// sequence number of each message.
pub fn encode_batch(msgs: &[Msg], first: u32) -> (Vec<u8>, Vec<u32>) {
    let subsys = super::objects::SUBSYS;
    let mut out = Vec::new();
    let mut seq = first;
    push(&mut out, BATCH_BEGIN, NLM_F_REQUEST, seq, 0, subsys, &[]);
    let mut seqs = Vec::with_capacity(msgs.len());
    for m in msgs {
        seq = seq.wrapping_add(1);
        seqs.push(seq);
        let flags = NLM_F_REQUEST | NLM_F_ACK | m.flags;
        push(
            &mut out,
            m.kind.code(),
            flags,
            seq,
            m.family as u8,
            0,
            &m.body,
        );
    }
    seq = seq.wrapping_add(1);
    push(&mut out, BATCH_END, NLM_F_REQUEST, seq, 0, subsys, &[]);
    (out, seqs)
}

impl Socket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let mut socket =
            RawSocket::new(NETLINK_NETFILTER).map_err(|e| Error::io("open nfnetlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| Error::io("bind nfnetlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::io("connect nfnetlink socket", e))?;
        // Acks of failed messages then carry only the header, not the whole request.
        let _ = socket.set_cap_ack(true);
        Ok(Self {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    fn next_seq(&mut self, n: u32) -> u32 {
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(n);
        first
    }

    fn send(&mut self, bytes: &[u8], what: &str) -> Result<()> {
        self.socket
            .send(bytes, 0)
            .map_err(|e| Error::io(format!("{what}: nfnetlink send"), e))?;
        Ok(())
    }

    /// Applies `msgs` as one transaction: all or nothing. The first failing message's error
    /// is returned, named after that message.
    pub fn commit(&mut self, msgs: &[Msg]) -> Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let first = self.next_seq(msgs.len() as u32 + 2);
        let (bytes, seqs) = encode_batch(msgs, first);
        self.send(&bytes, "nf_tables batch")?;
        let sentinel = self.next_seq(1);
        let mut probe = Vec::new();
        push(
            &mut probe,
            MsgType::GetGen.code(),
            NLM_F_REQUEST,
            sentinel,
            0,
            0,
            &[],
        );
        self.send(&probe, "nf_tables batch")?;
        let mut errors: Vec<(u32, i32)> = Vec::new();
        self.read(|seq, reply| {
            if let Err(errno) = reply {
                errors.push((seq, errno));
            }
            seq == sentinel
        })?;
        errors.sort_unstable();
        match errors.into_iter().find(|(seq, _)| *seq != sentinel) {
            None => Ok(()),
            Some((seq, errno)) => {
                let what = seqs
                    .iter()
                    .position(|s| *s == seq)
                    .map_or("nf_tables batch", |i| msgs[i].what.as_str());
                Err(Error::Netlink {
                    op: what.to_string(),
                    errno,
                })
            }
        }
    }

    /// A dump (`NLM_F_DUMP`) request; returns every reply message.
    pub fn dump(
        &mut self,
        kind: MsgType,
        family: Family,
        body: &[u8],
        what: &str,
    ) -> Result<Vec<Reply>> {
        self.request(kind, family, NLM_F_DUMP, body, what)
    }

    /// A request for one object; returns its reply.
    pub fn get(
        &mut self,
        kind: MsgType,
        family: Family,
        body: &[u8],
        what: &str,
    ) -> Result<Vec<Reply>> {
        self.request(kind, family, NLM_F_ACK, body, what)
    }

    fn request(
        &mut self,
        kind: MsgType,
        family: Family,
        flags: u16,
        body: &[u8],
        what: &str,
    ) -> Result<Vec<Reply>> {
        let seq = self.next_seq(1);
        let mut out = Vec::new();
        push(
            &mut out,
            kind.code(),
            NLM_F_REQUEST | flags,
            seq,
            family as u8,
            0,
            body,
        );
        self.send(&out, what)?;
        let mut replies = Vec::new();
        let mut failed = None;
        self.read(|_, reply| match reply {
            Ok(Some(r)) => {
                replies.push(r);
                false
            }
            // NLMSG_DONE or the final ack.
            Ok(None) => true,
            Err(errno) => {
                failed = Some(errno);
                true
            }
        })?;
        match failed {
            Some(errno) => Err(Error::Netlink {
                op: what.to_string(),
                errno,
            }),
            None => Ok(replies),
        }
    }

    /// Reads messages until `done` says so (every message on this socket answers a request of
    /// ours, and each request is read to its end before the next). `done` gets each message of ours: `Ok(Some)` for
    /// data, `Ok(None)` for an ack or NLMSG_DONE, `Err(errno)` for an error.
    fn read(
        &mut self,
        mut done: impl FnMut(u32, std::result::Result<Option<Reply>, i32>) -> bool,
    ) -> Result<()> {
        loop {
            let n = self
                .socket
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|e| Error::io("nfnetlink recv", e))?;
            for (seq, reply) in parse(&self.buf[..n])? {
                if done(seq, reply) {
                    return Ok(());
                }
            }
        }
    }
}

type Parsed = Vec<(u32, std::result::Result<Option<Reply>, i32>)>;

/// Splits a datagram into messages.
fn parse(mut buf: &[u8]) -> Result<Parsed> {
    let mut out = Vec::new();
    while buf.len() >= HEADER {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < HEADER || len > buf.len() {
            return Err(Error::Internal(format!(
                "bad nfnetlink message length {len}"
            )));
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let payload = &buf[HEADER..len];
        let item = match kind {
            NLMSG_ERROR => {
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(-libc::EPROTO);
                if code == 0 {
                    Ok(None)
                } else {
                    Err(-code)
                }
            }
            NLMSG_DONE => Ok(None),
            _ => Ok(Some(Reply {
                kind,
                body: payload.get(4..).unwrap_or_default().to_vec(),
            })),
        };
        out.push((seq, item));
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::objects::new_table;

    /// The framing of `nft --debug=mnl`: BATCH_BEGIN with res_id 10, the message with family 7,
    /// BATCH_END.
    #[test]
    fn a_batch_is_framed_as_nft_frames_it() {
        let (bytes, seqs) = encode_batch(&[new_table(Family::Bridge, "t", true)], 7);
        assert_eq!(seqs, vec![8]);
        assert_eq!(&bytes[..4], &20u32.to_ne_bytes());
        assert_eq!(&bytes[4..6], &0x10u16.to_ne_bytes());
        assert_eq!(&bytes[16..20], &[0, 0, 0, 10]);
        assert_eq!(&bytes[24..26], &2560u16.to_ne_bytes());
        assert_eq!(&bytes[36..40], &[7, 0, 0, 0]);
        let end = &bytes[bytes.len() - 20..];
        assert_eq!(&end[4..6], &0x11u16.to_ne_bytes());
        assert_eq!(&end[8..12], &9u32.to_ne_bytes());
    }

    #[test]
    fn errors_and_acks_are_told_apart() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&header(36, NLMSG_ERROR, 0, 5));
        buf.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        buf.extend_from_slice(&[0; 16]);
        buf.extend_from_slice(&header(36, NLMSG_ERROR, 0, 6));
        buf.extend_from_slice(&0i32.to_ne_bytes());
        buf.extend_from_slice(&[0; 16]);
        let parsed = parse(&buf).expect("parse");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, 5);
        assert!(matches!(parsed[0].1, Err(e) if e == libc::ENOENT));
        assert!(matches!(parsed[1].1, Ok(None)));
    }
}
