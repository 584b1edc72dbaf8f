//! nf_tables objects as netlink message bodies: table, chain, set, set elements, rule.
//!
//! Each `*_msg` function returns a [`Msg`] ready for a [`super::batch::Batch`]: the message type
//! (`NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*`), its flags and the body after `nfgenmsg`.

use super::attr::Writer;
use super::expr::{Expr, Verdict};
use super::Family;

/// `NFNL_SUBSYS_NFTABLES`.
pub const SUBSYS: u16 = 10;

/// `enum nf_tables_msg_types` (the ones used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    NewTable = 0,
    GetTable = 1,
    DelTable = 2,
    NewChain = 3,
    NewRule = 6,
    /// Without a handle: every rule of the chain (`nft flush chain`).
    DelRule = 8,
    NewSet = 9,
    DelSet = 11,
    NewSetElem = 12,
    GetSetElem = 13,
    DelSetElem = 14,
    GetGen = 16,
    /// Deletes and ignores ENOENT (Linux 6.3+).
    DestroySetElem = 30,
}

impl MsgType {
    pub fn code(self) -> u16 {
        (SUBSYS << 8) | self as u16
    }
}

/// One message of a batch, and what it is about (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub kind: MsgType,
    pub family: Family,
    /// Extra `NLM_F_*` flags (`NLM_F_CREATE`, `NLM_F_EXCL`...).
    pub flags: u16,
    pub body: Vec<u8>,
    pub what: String,
}

pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;

/// `NF_INET_*`/`NF_BR_*` hook numbers share values: 0 is prerouting, 1 input, 2 forward,
/// 3 output, 4 postrouting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Input = 1,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

/// A base chain's hook, priority, type and policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    pub hook: Hook,
    pub priority: i32,
    /// `filter`, `nat` or `route`.
    pub kind: &'static str,
    /// True for `policy accept`, false for `policy drop`.
    pub accept: bool,
}

/// A datatype of a set key (nft's `TYPE_*` numbers, which `nft list` uses to print keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ipv4Addr,
    Ipv6Addr,
    EtherAddr,
    IfName,
    InetService,
}

impl KeyType {
    fn code(self) -> u32 {
        match self {
            KeyType::Ipv4Addr => 7,
            KeyType::Ipv6Addr => 8,
            KeyType::EtherAddr => 9,
            KeyType::InetService => 13,
            KeyType::IfName => 41,
        }
    }

    /// The key's size in bytes (in a register, rounded up to 4).
    pub fn size(self) -> usize {
        match self {
            KeyType::Ipv4Addr => 4,
            KeyType::Ipv6Addr | KeyType::IfName => 16,
            KeyType::EtherAddr => 6,
            KeyType::InetService => 2,
        }
    }
}

/// A named set; a key of several types is a concatenation (`ifname . ether_addr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub key: Vec<KeyType>,
    /// `NFT_SET_*` flags (0 for a plain hash set).
    pub flags: u32,
    /// Unique within a batch: lets rules of the same batch refer to it.
    pub id: u32,
}

impl Set {
    /// The key length: each part padded to a 32-bit register boundary.
    pub fn key_len(&self) -> usize {
        self.key.iter().map(|k| k.size().next_multiple_of(4)).sum()
    }

    /// nft's user data (`NFTNL_UDATA_SET_KEYBYTEORDER`, a host-order u32): without it `nft
    /// list` prints an interface-name key byte-swapped. 1 is host order (strings), 2 network
    /// order, 0 a concatenation (each part carries its own).
    fn userdata(&self) -> Vec<u8> {
        let order: u32 = match self.key.as_slice() {
            [KeyType::IfName] => 1,
            [_] => 2,
            _ => 0,
        };
        let mut v = vec![0, 4];
        v.extend_from_slice(&order.to_ne_bytes());
        v
    }

    /// The concatenated type, 6 bits per part, as nft encodes it.
    fn key_type(&self) -> u32 {
        self.key.iter().fold(0, |acc, k| (acc << 6) | k.code())
    }
}

/// Builds one key of a set: the parts, each zero-padded to 4 bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn new() -> Self {
        Self::default()
    }

    /// An interface name, zero-padded to `IFNAMSIZ` as `meta iifname` loads it.
    pub fn ifname(mut self, name: &str) -> Self {
        let mut part = [0u8; 16];
        let n = name.len().min(15);
        part[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.0.extend_from_slice(&part);
        self
    }

    /// Raw bytes of one part (network order), padded to 4.
    pub fn part(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

// NFTA_TABLE_*, NFTA_CHAIN_*, NFTA_HOOK_*, NFTA_SET_*, NFTA_SET_ELEM_*, NFTA_RULE_*.
const TABLE_NAME: u16 = 1;
const TABLE_FLAGS: u16 = 2;
const CHAIN_TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const CHAIN_HOOK: u16 = 4;
const CHAIN_POLICY: u16 = 5;
const CHAIN_TYPE: u16 = 7;
const HOOK_HOOKNUM: u16 = 1;
const HOOK_PRIORITY: u16 = 2;
const SET_TABLE: u16 = 1;
const SET_NAME: u16 = 2;
const SET_FLAGS: u16 = 3;
const SET_KEY_TYPE: u16 = 4;
const SET_KEY_LEN: u16 = 5;
const SET_ID: u16 = 10;
const SET_USERDATA: u16 = 13;
pub(super) const ELEM_LIST_TABLE: u16 = 1;
pub(super) const ELEM_LIST_SET: u16 = 2;
pub(super) const ELEM_LIST_ELEMENTS: u16 = 3;
pub(super) const LIST_ELEM: u16 = 1;
pub(super) const ELEM_KEY: u16 = 1;
const ELEM_DATA: u16 = 2;
const ELEM_FLAGS: u16 = 3;
/// `NFT_SET_ELEM_INTERVAL_END`.
const ELEM_INTERVAL_END: u32 = 1;
/// `NFT_SET_INTERVAL`: a set of ranges.
pub const SET_INTERVAL: u32 = 4;
pub(super) const DATA_VALUE: u16 = 1;
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_EXPRESSIONS: u16 = 4;

fn msg(kind: MsgType, family: Family, flags: u16, w: Writer, what: String) -> Msg {
    Msg {
        kind,
        family,
        flags,
        body: w.into_bytes(),
        what,
    }
}

/// Creates a table; with `exclusive`, EEXIST if it exists (else an existing one is kept).
pub fn new_table(family: Family, name: &str, exclusive: bool) -> Msg {
    let mut w = Writer::new();
    w.str(TABLE_NAME, name).be32(TABLE_FLAGS, 0);
    let excl = if exclusive { NLM_F_EXCL } else { 0 };
    let what = format!("create table {} {name}", family.name());
    msg(MsgType::NewTable, family, NLM_F_CREATE | excl, w, what)
}

/// Deletes a table with everything in it.
pub fn del_table(family: Family, name: &str) -> Msg {
    let mut w = Writer::new();
    w.str(TABLE_NAME, name);
    let what = format!("delete table {} {name}", family.name());
    msg(MsgType::DelTable, family, 0, w, what)
}

/// Creates a chain in `table`: a base chain if `base` is given, else a regular one.
pub fn new_chain(family: Family, table: &str, name: &str, base: Option<&BaseChain>) -> Msg {
    let mut w = Writer::new();
    w.str(CHAIN_TABLE, table).str(CHAIN_NAME, name);
    if let Some(b) = base {
        w.str(CHAIN_TYPE, b.kind)
            .be32(CHAIN_POLICY, u32::from(b.accept))
            .nest(CHAIN_HOOK, |w| {
                w.be32(HOOK_HOOKNUM, b.hook as u32)
                    .be32(HOOK_PRIORITY, b.priority as u32);
            });
    }
    let what = format!("create chain {table} {name}");
    msg(MsgType::NewChain, family, NLM_F_CREATE, w, what)
}

/// Creates a set in `table`.
pub fn new_set(family: Family, table: &str, set: &Set) -> Msg {
    let mut w = Writer::new();
    w.str(SET_TABLE, table)
        .str(SET_NAME, &set.name)
        .be32(SET_FLAGS, set.flags)
        .be32(SET_KEY_TYPE, set.key_type())
        .be32(SET_KEY_LEN, set.key_len() as u32)
        .be32(SET_ID, set.id)
        .bytes(SET_USERDATA, &set.userdata());
    let what = format!("create set {table} {}", set.name);
    msg(MsgType::NewSet, family, NLM_F_CREATE, w, what)
}

fn elements(kind: MsgType, family: Family, table: &str, set: &str, keys: &[Key]) -> Msg {
    let elems: Vec<(&Key, Option<&Verdict>)> = keys.iter().map(|k| (k, None)).collect();
    element_msg(kind, family, table, set, &elems)
}

/// One `NEWSETELEM`/`DELSETELEM`/`DESTROYSETELEM` message; a verdict is the element's data
/// (a verdict map's value).
fn element_msg(
    kind: MsgType,
    family: Family,
    table: &str,
    set: &str,
    elems: &[(&Key, Option<&Verdict>)],
) -> Msg {
    let mut w = Writer::new();
    w.str(ELEM_LIST_TABLE, table)
        .str(ELEM_LIST_SET, set)
        .nest(ELEM_LIST_ELEMENTS, |w| {
            for (key, data) in elems {
                w.nest(LIST_ELEM, |w| {
                    w.nest(ELEM_KEY, |w| {
                        w.bytes(DATA_VALUE, key.bytes());
                    });
                    if let Some(v) = data {
                        w.nest(ELEM_DATA, |w| v.encode(w));
                    }
                });
            }
        });
    let verb = match kind {
        MsgType::NewSetElem => "add",
        _ => "delete",
    };
    let what = format!("{verb} {} element(s) of set {table} {set}", elems.len());
    let flags = if kind == MsgType::NewSetElem {
        NLM_F_CREATE
    } else {
        0
    };
    msg(kind, family, flags, w, what)
}

/// Adds elements to a verdict map (`key : verdict`); an identical existing element is not an
/// error, one with another verdict is (EBUSY): delete it first in the same batch.
pub fn add_verdict_elements(
    family: Family,
    table: &str,
    map: &str,
    elems: &[(Key, Verdict)],
) -> Msg {
    let elems: Vec<(&Key, Option<&Verdict>)> = elems.iter().map(|(k, v)| (k, Some(v))).collect();
    element_msg(MsgType::NewSetElem, family, table, map, &elems)
}

/// Empties a set or map (`DELSETELEM` without an element list, as `nft flush set` sends it).
pub fn flush_set(family: Family, table: &str, set: &str) -> Msg {
    let mut w = Writer::new();
    w.str(ELEM_LIST_TABLE, table).str(ELEM_LIST_SET, set);
    let what = format!("flush set {table} {set}");
    msg(MsgType::DelSetElem, family, 0, w, what)
}

/// Adds elements to a set; an identical existing element is not an error.
pub fn add_elements(family: Family, table: &str, set: &str, keys: &[Key]) -> Msg {
    elements(MsgType::NewSetElem, family, table, set, keys)
}

/// Deletes elements; ENOENT if one is missing (the whole batch then fails).
pub fn del_elements(family: Family, table: &str, set: &str, keys: &[Key]) -> Msg {
    elements(MsgType::DelSetElem, family, table, set, keys)
}

/// Deletes elements, ignoring missing ones (`NFT_MSG_DESTROYSETELEM`, Linux 6.3+).
pub fn destroy_elements(family: Family, table: &str, set: &str, keys: &[Key]) -> Msg {
    elements(MsgType::DestroySetElem, family, table, set, keys)
}

/// Deletes a set (EBUSY while a rule outside this batch's deletions still uses it).
pub fn del_set(family: Family, table: &str, name: &str) -> Msg {
    let mut w = Writer::new();
    w.str(SET_TABLE, table).str(SET_NAME, name);
    let what = format!("delete set {table} {name}");
    msg(MsgType::DelSet, family, 0, w, what)
}

/// Adds the elements of an interval set: each `(key, end)` opens a range, or with `end` closes
/// the one before (exclusive bound), as nft sends `{ 192.0.2.0/24 }`.
pub fn add_interval_elements(family: Family, table: &str, set: &str, elems: &[(Key, bool)]) -> Msg {
    let mut w = Writer::new();
    w.str(ELEM_LIST_TABLE, table)
        .str(ELEM_LIST_SET, set)
        .nest(ELEM_LIST_ELEMENTS, |w| {
            for (key, end) in elems {
                w.nest(LIST_ELEM, |w| {
                    if *end {
                        w.be32(ELEM_FLAGS, ELEM_INTERVAL_END);
                    }
                    w.nest(ELEM_KEY, |w| {
                        w.bytes(DATA_VALUE, key.bytes());
                    });
                });
            }
        });
    let what = format!("add {} interval bound(s) to set {table} {set}", elems.len());
    msg(MsgType::NewSetElem, family, NLM_F_CREATE, w, what)
}

/// Deletes every rule of a chain (`nft flush chain`).
pub fn flush_chain(family: Family, table: &str, chain: &str) -> Msg {
    let mut w = Writer::new();
    w.str(RULE_TABLE, table).str(RULE_CHAIN, chain);
    let what = format!("flush chain {table} {chain}");
    msg(MsgType::DelRule, family, 0, w, what)
}

/// Appends a rule to a chain.
pub fn new_rule(family: Family, table: &str, chain: &str, exprs: &[Expr]) -> Msg {
    let mut w = Writer::new();
    w.str(RULE_TABLE, table)
        .str(RULE_CHAIN, chain)
        .nest(RULE_EXPRESSIONS, |w| {
            for e in exprs {
                w.nest(LIST_ELEM, |w| e.encode(w));
            }
        });
    let what = format!("add rule to {table} {chain}");
    msg(MsgType::NewRule, family, NLM_F_CREATE | 0x800, w, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `set macs { type ifname . ether_addr; }` in table `t`, as `nft --debug=mnl` prints it
    /// (without nft's user data).
    #[test]
    fn a_concatenated_set_is_encoded_as_nft_does() {
        let set = Set {
            name: "macs".into(),
            key: vec![KeyType::IfName, KeyType::EtherAddr],
            flags: 0,
            id: 1,
        };
        let m = new_set(Family::Bridge, "t", &set);
        assert_eq!(m.kind.code(), 2569);
        let want: Vec<u8> = [
            &[6, 0, 1, 0, b't', 0, 0, 0][..],
            &[9, 0, 2, 0],
            b"macs\0\0\0\0",
            &[8, 0, 3, 0, 0, 0, 0, 0],
            &[8, 0, 4, 0, 0, 0, 0x0a, 0x49],
            &[8, 0, 5, 0, 0, 0, 0, 0x18],
            &[8, 0, 10, 0, 0, 0, 0, 1],
            &[10, 0, 13, 0, 0, 4, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(m.body, want);
    }

    /// `set ports { type ifname; }`: nft's user data says the key is in host order.
    #[test]
    fn an_ifname_set_carries_its_byte_order() {
        let set = Set {
            name: "ports".into(),
            key: vec![KeyType::IfName],
            flags: 0,
            id: 1,
        };
        let m = new_set(Family::Bridge, "t", &set);
        assert!(
            m.body.ends_with(&[10, 0, 13, 0, 0, 4, 1, 0, 0, 0, 0, 0]),
            "{:?}",
            m.body
        );
    }

    /// `chain pre { type filter hook prerouting priority -200; policy accept; }`.
    #[test]
    fn a_base_chain_is_encoded_as_nft_does() {
        let base = BaseChain {
            hook: Hook::Prerouting,
            priority: -200,
            kind: "filter",
            accept: true,
        };
        let m = new_chain(Family::Bridge, "t", "pre", Some(&base));
        assert_eq!(m.kind.code(), 2563);
        let want: Vec<u8> = [
            &[6, 0, 1, 0, b't', 0, 0, 0][..],
            &[8, 0, 3, 0],
            b"pre\0",
            &[11, 0, 7, 0],
            b"filter\0\0",
            &[8, 0, 5, 0, 0, 0, 0, 1],
            &[
                20, 0, 4, 0x80, 8, 0, 1, 0, 0, 0, 0, 0, 8, 0, 2, 0, 0xff, 0xff, 0xff, 0x38,
            ],
        ]
        .concat();
        assert_eq!(m.body, want);
    }

    /// `add element bridge ciao_guard_v2 macs { "veth1" . 02:00:0a:00:00:02 }`.
    #[test]
    fn a_concatenated_element_is_encoded_as_nft_does() {
        let key = Key::new().ifname("veth1").part(&[2, 0, 0x0a, 0, 0, 2]);
        let m = add_elements(Family::Bridge, "ciao_guard_v2", "macs", &[key]);
        assert_eq!(m.kind.code(), 2572);
        let mut value = b"veth1".to_vec();
        value.resize(16, 0);
        value.extend_from_slice(&[2, 0, 0x0a, 0, 0, 2, 0, 0]);
        let mut want: Vec<u8> = [
            &[18, 0, 1, 0][..],
            b"ciao_guard_v2\0\0\0",
            &[9, 0, 2, 0],
            b"macs\0\0\0\0",
            &[40, 0, 3, 0x80, 36, 0, 1, 0x80, 32, 0, 1, 0x80, 28, 0, 1, 0],
        ]
        .concat();
        want.extend_from_slice(&value);
        assert_eq!(m.body, want);
    }
}
