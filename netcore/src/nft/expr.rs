//! Rule expressions, as the kernel's `nft_expr_ops` take them (`NFTA_EXPR_NAME` and a nested
//! `NFTA_EXPR_DATA`). Generic on purpose: the same layer serves filter, ct and NAT rules.

use super::attr::Writer;

/// Registers: `NFT_REG_VERDICT` and the four 16-byte data registers. A concatenation loads
/// its parts into consecutive registers (a 16-byte interface name fills one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Verdict = 0,
    R1 = 1,
    R2 = 2,
    R3 = 3,
    R4 = 4,
}

/// `enum nft_meta_keys` (the ones we use; any other can be given by number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    Protocol,
    /// The packet's family (`NFPROTO_*`), what an inet table's `ip` matches depend on.
    NfProto,
    L4Proto,
    IifName,
    OifName,
    Mark,
    Other(u32),
}

impl MetaKey {
    fn code(self) -> u32 {
        match self {
            MetaKey::Protocol => 2,
            MetaKey::Mark => 3,
            MetaKey::IifName => 6,
            MetaKey::OifName => 7,
            MetaKey::NfProto => 15,
            MetaKey::L4Proto => 16,
            MetaKey::Other(n) => n,
        }
    }
}

/// `enum nft_payload_bases`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Link = 0,
    Network = 1,
    Transport = 2,
}

/// `enum nft_cmp_ops`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
    Lt = 2,
    Lte = 3,
    Gt = 4,
    Gte = 5,
}

/// A verdict: `NF_DROP`, `NF_ACCEPT`, or one of nftables' own (negative codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Accept,
    Continue,
    Return,
    Jump(String),
    Goto(String),
}

impl Verdict {
    fn code(&self) -> i32 {
        match self {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
            Verdict::Continue => -1,
            Verdict::Jump(_) => -3,
            Verdict::Goto(_) => -4,
            Verdict::Return => -5,
        }
    }
}

impl Verdict {
    /// Writes `NFTA_DATA_VERDICT` (the content of an `NFTA_*_DATA`: an immediate's, or a
    /// verdict map element's).
    pub fn encode(&self, w: &mut Writer) {
        w.nest(DATA_VERDICT, |w| {
            w.be32(VERDICT_CODE, self.code() as u32);
            if let Verdict::Jump(chain) | Verdict::Goto(chain) = self {
                w.str(VERDICT_CHAIN, chain);
            }
        });
    }
}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Loads packet metadata into `dreg`.
    Meta { key: MetaKey, dreg: Reg },
    /// Loads conntrack data (`enum nft_ct_keys`: 0 is the state bits) into `dreg`.
    Ct { key: u32, dreg: Reg },
    /// Loads `len` bytes at `offset` from the start of a header into `dreg`.
    Payload {
        base: Base,
        offset: u32,
        len: u32,
        dreg: Reg,
    },
    /// Compares `sreg` with `data`; the rule stops here unless it holds.
    Cmp { sreg: Reg, op: CmpOp, data: Vec<u8> },
    /// `sreg & mask ^ xor` into `dreg`, over `mask.len()` bytes.
    Bitwise {
        sreg: Reg,
        dreg: Reg,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// Looks the key starting at `sreg` up in a named set; `invert` matches when it is absent.
    Lookup {
        set: String,
        sreg: Reg,
        invert: bool,
    },
    /// A verdict (into the verdict register).
    Verdict(Verdict),
    /// Immediate data into a data register.
    Immediate { dreg: Reg, data: Vec<u8> },
    /// Any other expression, already encoded: name and `NFTA_EXPR_DATA` payload (ct, nat,
    /// masq, counter...).
    Raw { name: String, data: Vec<u8> },
}

// NFTA_EXPR_*
const EXPR_NAME: u16 = 1;
const EXPR_DATA: u16 = 2;
// NFTA_DATA_* and NFTA_VERDICT_*
const DATA_VALUE: u16 = 1;
const DATA_VERDICT: u16 = 2;
const VERDICT_CODE: u16 = 1;
const VERDICT_CHAIN: u16 = 2;

impl Expr {
    /// The expression's kernel name.
    pub fn name(&self) -> &str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Ct { .. } => "ct",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Lookup { .. } => "lookup",
            Expr::Verdict(_) | Expr::Immediate { .. } => "immediate",
            Expr::Raw { name, .. } => name,
        }
    }

    /// Writes `NFTA_EXPR_NAME` and `NFTA_EXPR_DATA` (the content of one `NFTA_LIST_ELEM`).
    pub fn encode(&self, w: &mut Writer) {
        w.str(EXPR_NAME, self.name());
        if let Expr::Raw { data, .. } = self {
            w.nest(EXPR_DATA, |w| {
                w.raw(data);
            });
            return;
        }
        w.nest(EXPR_DATA, |w| self.encode_data(w));
    }

    fn encode_data(&self, w: &mut Writer) {
        match self {
            Expr::Meta { key, dreg } => {
                w.be32(2, key.code()).be32(1, *dreg as u32);
            }
            Expr::Ct { key, dreg } => {
                w.be32(2, *key).be32(1, *dreg as u32);
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                w.be32(1, *dreg as u32)
                    .be32(2, *base as u32)
                    .be32(3, *offset)
                    .be32(4, *len);
            }
            Expr::Cmp { sreg, op, data } => {
                w.be32(1, *sreg as u32).be32(2, *op as u32).nest(3, |w| {
                    w.bytes(DATA_VALUE, data);
                });
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                w.be32(1, *sreg as u32)
                    .be32(2, *dreg as u32)
                    .be32(3, mask.len() as u32)
                    .nest(4, |w| {
                        w.bytes(DATA_VALUE, mask);
                    })
                    .nest(5, |w| {
                        w.bytes(DATA_VALUE, xor);
                    });
            }
            Expr::Lookup { set, sreg, invert } => {
                w.be32(2, *sreg as u32).str(1, set);
                if *invert {
                    w.be32(5, 1);
                }
            }
            Expr::Verdict(v) => {
                w.be32(1, Reg::Verdict as u32).nest(2, |w| v.encode(w));
            }
            Expr::Immediate { dreg, data } => {
                w.be32(1, *dreg as u32).nest(2, |w| {
                    w.bytes(DATA_VALUE, data);
                });
            }
            Expr::Raw { .. } => {}
        }
    }
}

/// `meta <key>` into `dreg`.
pub fn meta(key: MetaKey, dreg: Reg) -> Expr {
    Expr::Meta { key, dreg }
}

/// A header field into `dreg`.
pub fn payload(base: Base, offset: u32, len: u32, dreg: Reg) -> Expr {
    Expr::Payload {
        base,
        offset,
        len,
        dreg,
    }
}

/// `sreg == data` (register 1).
pub fn eq(data: &[u8]) -> Expr {
    Expr::Cmp {
        sreg: Reg::R1,
        op: CmpOp::Eq,
        data: data.to_vec(),
    }
}

/// `sreg != data` (register 1).
pub fn neq(data: &[u8]) -> Expr {
    Expr::Cmp {
        sreg: Reg::R1,
        op: CmpOp::Neq,
        data: data.to_vec(),
    }
}

/// `sreg <op> data` (register 1).
pub fn cmp(op: CmpOp, data: &[u8]) -> Expr {
    Expr::Cmp {
        sreg: Reg::R1,
        op,
        data: data.to_vec(),
    }
}

/// Key from register 1 in `set` (`@set`), or not in it (`!= @set`).
pub fn lookup(set: &str, invert: bool) -> Expr {
    Expr::Lookup {
        set: set.to_string(),
        sreg: Reg::R1,
        invert,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(e: &Expr) -> Vec<u8> {
        let mut w = Writer::new();
        e.encode(&mut w);
        w.into_bytes()
    }

    /// `[ lookup reg 1 set macs 0x1 ]` as `nft --debug=mnl` writes it, minus nft's set id.
    #[test]
    fn an_inverted_lookup_is_encoded_as_nft_does() {
        let bytes = encoded(&lookup("macs", true));
        let want: Vec<u8> = [
            &[11, 0, 1, 0][..],
            b"lookup\0\0",
            &[32, 0, 2, 0x80],
            &[8, 0, 2, 0, 0, 0, 0, 1],
            &[9, 0, 1, 0],
            b"macs\0\0\0\0",
            &[8, 0, 5, 0, 0, 0, 0, 1],
        ]
        .concat();
        assert_eq!(bytes, want);
    }

    /// `[ immediate reg 0 jump -> g ]` and `[ cmp eq reg 1 0x00000608 ]` from nft.
    #[test]
    fn jump_and_cmp_are_encoded_as_nft_does() {
        let jump = encoded(&Expr::Verdict(Verdict::Jump("g".into())));
        let tail = [
            36, 0, 2, 0x80, 8, 0, 1, 0, 0, 0, 0, 0, 24, 0, 2, 0x80, 20, 0, 2, 0x80, 8, 0, 1, 0,
            0xff, 0xff, 0xff, 0xfd, 6, 0, 2, 0, b'g', 0, 0, 0,
        ];
        assert!(jump.ends_with(&tail), "{jump:02x?}");
        let cmp = encoded(&eq(&[8, 6]));
        let tail = [
            32, 0, 2, 0x80, 8, 0, 1, 0, 0, 0, 0, 1, 8, 0, 2, 0, 0, 0, 0, 0, 12, 0, 3, 0x80, 6, 0,
            1, 0, 8, 6, 0, 0,
        ];
        assert!(cmp.ends_with(&tail), "{cmp:02x?}");
    }

    /// `[ payload load 6b @ link header + 6 => reg 2 ]` from nft.
    #[test]
    fn payload_is_encoded_as_nft_does() {
        let bytes = encoded(&payload(Base::Link, 6, 6, Reg::R2));
        let tail = [
            36, 0, 2, 0x80, 8, 0, 1, 0, 0, 0, 0, 2, 8, 0, 2, 0, 0, 0, 0, 0, 8, 0, 3, 0, 0, 0, 0, 6,
            8, 0, 4, 0, 0, 0, 0, 6,
        ];
        assert_eq!(
            &bytes[..12],
            &[12, 0, 1, 0, b'p', b'a', b'y', b'l', b'o', b'a', b'd', 0]
        );
        assert!(bytes.ends_with(&tail), "{bytes:02x?}");
    }
}
