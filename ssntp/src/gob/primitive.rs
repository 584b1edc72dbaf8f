//! gob's primitive encodings: unsigned and signed integers, byte strings (reference/ssntp.md §2.1).

use super::GobError;

/// Appends `v` as a gob uint: one byte below 0x80, else a negated byte count and big-endian bytes.
pub fn put_uint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let n = bytes.len() - skip;
    out.push((n as u8).wrapping_neg());
    out.extend_from_slice(&bytes[skip..]);
}

/// Appends `v` as a gob int (zig-zag into a uint).
pub fn put_int(out: &mut Vec<u8>, v: i64) {
    let u = if v < 0 {
        ((!v as u64) << 1) | 1
    } else {
        (v as u64) << 1
    };
    put_uint(out, u);
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A bounds-checked cursor over one message body. Every read fails cleanly on truncation.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn byte(&mut self) -> Result<u8, GobError> {
        let b = *self.buf.get(self.pos).ok_or(GobError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads a gob uint.
    pub fn uint(&mut self) -> Result<u64, GobError> {
        let first = self.byte()?;
        if first < 0x80 {
            return Ok(u64::from(first));
        }
        let n = usize::from(first.wrapping_neg());
        if n == 0 || n > 8 {
            return Err(GobError::Corrupt(format!("uint with {n} bytes")));
        }
        let bytes = self.take(n)?;
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Reads a gob int.
    pub fn int(&mut self) -> Result<i64, GobError> {
        let u = self.uint()?;
        Ok(if u & 1 == 1 {
            !((u >> 1) as i64)
        } else {
            (u >> 1) as i64
        })
    }

    /// Reads `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], GobError> {
        if n > self.remaining() {
            return Err(GobError::Truncated);
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads a length-prefixed byte string; the length is checked against what is left, so a
    /// hostile length never allocates.
    pub fn bytes(&mut self) -> Result<&'a [u8], GobError> {
        let n = self.uint()?;
        let n = usize::try_from(n).map_err(|_| GobError::Truncated)?;
        self.take(n)
    }

    /// Reads an element count that must fit in what is left (each element takes at least a byte).
    pub fn count(&mut self) -> Result<usize, GobError> {
        let n = self.uint()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(GobError::Corrupt(format!("count {n} exceeds the message"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples_from_the_reference() {
        let mut out = Vec::new();
        put_uint(&mut out, 277);
        assert_eq!(out, [0xFE, 0x01, 0x15]);
        out.clear();
        put_uint(&mut out, 0xA9);
        assert_eq!(out, [0xFF, 0xA9]);
        for (v, want) in [
            (65i64, [0xFF, 0x82]),
            (-65, [0xFF, 0x81]),
            (66, [0xFF, 0x84]),
            (-66, [0xFF, 0x83]),
        ] {
            out.clear();
            put_int(&mut out, v);
            assert_eq!(out, want, "{v}");
        }
    }

    proptest! {
        #[test]
        fn uint_and_int_round_trip(u in any::<u64>(), i in any::<i64>()) {
            let mut out = Vec::new();
            put_uint(&mut out, u);
            put_int(&mut out, i);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.uint().expect("uint"), u);
            prop_assert_eq!(r.int().expect("int"), i);
            prop_assert!(r.is_empty());
        }
    }
}
