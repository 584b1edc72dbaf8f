//! Netlink attributes (`struct nlattr`): a writer that nests, and a reader over a buffer.
//!
//! Lengths and types are in host order, as netlink wants; nf_tables puts every integer value in
//! network order, so the writer's integer helpers are big-endian.

/// `NLA_F_NESTED`: set on every nested attribute, as nft does.
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

/// Builds a message body attribute by attribute.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far (every attribute padded to 4 bytes).
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Appends raw bytes (a fixed header such as `nfgenmsg`).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// One attribute with `value` as its payload.
    pub fn bytes(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
        self
    }

    /// A NUL-terminated string attribute.
    pub fn str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.bytes(kind, &v)
    }

    /// A 32-bit attribute in network order.
    pub fn be32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    /// A nested attribute whose content `f` writes.
    pub fn nest(&mut self, kind: u16, f: impl FnOnce(&mut Writer)) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        let mut inner = Writer {
            buf: std::mem::take(&mut self.buf),
        };
        f(&mut inner);
        self.buf = inner.buf;
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.buf[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// One attribute read back: its type (flags removed) and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub kind: u16,
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The attributes nested in this one.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.value)
    }

    /// A big-endian 32-bit value; `None` if the payload is not 4 bytes.
    pub fn be32(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.value.try_into().ok()?))
    }

    /// A string without its trailing NULs.
    pub fn str(&self) -> String {
        let end = self
            .value
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.value.len());
        String::from_utf8_lossy(&self.value[..end]).into_owned()
    }
}

/// Iterates over the attributes of a buffer; stops at the first malformed one.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }

    /// The first attribute of type `kind`.
    pub fn get(mut self, kind: u16) -> Option<Attr<'a>> {
        self.find(|a| a.kind == kind)
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Attr<'a>;

    fn next(&mut self) -> Option<Attr<'a>> {
        let header = self.rest.get(..4)?;
        let len = u16::from_ne_bytes([header[0], header[1]]) as usize;
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        if len < 4 {
            self.rest = &[];
            return None;
        }
        let value = self.rest.get(4..len)?;
        self.rest = self.rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some(Attr { kind, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_round_trip_with_padding() {
        let mut w = Writer::new();
        w.str(1, "t").nest(4, |w| {
            w.be32(1, 0).be32(2, (-200i32) as u32);
        });
        let bytes = w.into_bytes();
        // "t\0" padded to 8 bytes, then a 20-byte nest as nft writes a chain's hook.
        assert_eq!(&bytes[..8], &[6, 0, 1, 0, b't', 0, 0, 0]);
        assert_eq!(&bytes[8..12], &[20, 0, 4, 0x80]);
        assert_eq!(&bytes[24..28], &[0xff, 0xff, 0xff, 0x38]);
        let attrs: Vec<_> = Attrs::new(&bytes).collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].str(), "t");
        assert_eq!(attrs[1].kind, 4);
        let inner: Vec<_> = attrs[1].nested().collect();
        assert_eq!(inner[1].be32(), Some(0xffff_ff38));
    }

    #[test]
    fn a_truncated_buffer_ends_the_iteration() {
        assert_eq!(Attrs::new(&[8, 0, 1, 0, 1]).count(), 0);
        assert_eq!(Attrs::new(&[2, 0]).count(), 0);
    }
}
