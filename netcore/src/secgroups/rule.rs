//! One rule of a regular chain, built once as nft text (for `nft -f`) and as the expressions
//! nft sends for that text (for a rule change by netlink), so that both load the same rule:
//! the equivalence is checked by listing both in the kernel (tests).

use crate::nft::expr::{self, Base, CmpOp, Expr, MetaKey, Reg, Verdict};

/// A rule: its nft text and its netlink expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub exprs: Vec<Expr>,
}

/// The direction's address field: `ip saddr` (offset 12) or `ip daddr` (16).
#[derive(Debug, Clone, Copy)]
pub(super) enum Addr {
    Saddr,
    Daddr,
}

const NFPROTO_IPV4: u8 = 2;
pub(super) const ICMP: u8 = 1;
pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;

/// Matches added in order, then a verdict.
#[derive(Debug, Default)]
pub(super) struct Build {
    parts: Vec<String>,
    exprs: Vec<Expr>,
    /// nft checks `meta nfproto ipv4` once per rule (an inet table's `ip` and `icmp`).
    ipv4: bool,
}

impl Build {
    pub fn new() -> Self {
        Self::default()
    }

    fn text(mut self, text: String) -> Self {
        self.parts.push(text);
        self
    }

    fn ipv4(mut self) -> Self {
        if !self.ipv4 {
            self.ipv4 = true;
            self.exprs.push(expr::meta(MetaKey::NfProto, Reg::R1));
            self.exprs.push(expr::eq(&[NFPROTO_IPV4]));
        }
        self
    }

    fn l4(mut self, proto: u8) -> Self {
        self.exprs.push(expr::meta(MetaKey::L4Proto, Reg::R1));
        self.exprs.push(expr::eq(&[proto]));
        self
    }

    fn transport(mut self, offset: u32, len: u32) -> Self {
        let load = expr::payload(Base::Transport, offset, len, Reg::R1);
        self.exprs.push(load);
        self
    }

    fn push(mut self, e: Expr) -> Self {
        self.exprs.push(e);
        self
    }

    /// `ip saddr @set` / `ip daddr @set`.
    pub fn ip_in(self, addr: Addr, set: &str) -> Self {
        let (field, offset) = match addr {
            Addr::Saddr => ("saddr", 12),
            Addr::Daddr => ("daddr", 16),
        };
        self.text(format!("ip {field} @{set}"))
            .ipv4()
            .push(expr::payload(Base::Network, offset, 4, Reg::R1))
            .push(expr::lookup(set, false))
    }

    /// `meta l4proto <name>`.
    pub fn l4proto(self, name: &str, proto: u8) -> Self {
        self.text(format!("meta l4proto {name}")).l4(proto)
    }

    /// `tcp dport 80` or `udp dport 1000-2000` (`proto` is TCP or UDP).
    pub fn dport(self, proto: u8, lo: u16, hi: u16) -> Self {
        let name = if proto == TCP { "tcp" } else { "udp" };
        let b = self.l4(proto).transport(2, 2);
        if lo == hi {
            b.text(format!("{name} dport {lo}"))
                .push(expr::eq(&lo.to_be_bytes()))
        } else {
            b.text(format!("{name} dport {lo}-{hi}"))
                .push(expr::cmp(CmpOp::Gte, &lo.to_be_bytes()))
                .push(expr::cmp(CmpOp::Lte, &hi.to_be_bytes()))
        }
    }

    /// `icmp type T` and optionally `icmp code C` (nft loads both bytes at once).
    pub fn icmp(self, kind: u8, code: Option<u8>) -> Self {
        let b = self.ipv4().l4(ICMP);
        match code {
            None => b
                .text(format!("icmp type {kind}"))
                .transport(0, 1)
                .push(expr::eq(&[kind])),
            Some(c) => b
                .text(format!("icmp type {kind} icmp code {c}"))
                .transport(0, 2)
                .push(expr::eq(&[kind, c])),
        }
    }

    /// `ct state invalid`.
    pub fn ct_invalid(self) -> Self {
        self.text("ct state invalid".into())
            .push(Expr::Ct {
                key: 0,
                dreg: Reg::R1,
            })
            .push(Expr::Bitwise {
                sreg: Reg::R1,
                dreg: Reg::R1,
                mask: 1u32.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            })
            .push(expr::neq(&[0; 4]))
    }

    /// `udp sport 67 udp dport 68`: a DHCP answer (nft loads both ports at once).
    pub fn dhcp_answer(self) -> Self {
        self.text("udp sport 67 udp dport 68".into())
            .l4(UDP)
            .transport(0, 4)
            .push(expr::eq(&[0, 67, 0, 68]))
    }

    /// Ends the rule.
    pub fn verdict(mut self, v: Verdict) -> Line {
        self.parts.push(match &v {
            Verdict::Accept => "accept".into(),
            Verdict::Drop => "drop".into(),
            Verdict::Continue => "continue".into(),
            Verdict::Return => "return".into(),
            Verdict::Jump(c) => format!("jump {c}"),
            Verdict::Goto(c) => format!("goto {c}"),
        });
        self.exprs.push(Expr::Verdict(v));
        Line {
            text: self.parts.join(" "),
            exprs: self.exprs,
        }
    }
}
