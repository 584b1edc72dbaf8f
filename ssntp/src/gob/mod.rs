//! The subset of Go's `encoding/gob` that SSNTP needs, written by hand because no Rust crate
//! speaks gob: integers, byte strings, structs, arrays, slices and GobEncoder values, with
//! per-stream type definitions (reference/ssntp.md §2).
//!
//! Decoding is strict and bounded: every length is checked against the bytes actually present,
//! message size, type count and nesting depth are capped, and bad input is an error, never a
//! panic.

mod primitive;
mod value;
mod wiretype;

pub use primitive::{put_bytes, put_int, put_uint, Reader};
pub use value::{TypeTable, Value};
pub use wiretype::{encode_definition, Field, WireType, BYTES, INT, STRING, UINT};

/// Largest gob message accepted by default (the CONNECTED configuration is a few KiB).
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// Why a gob stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GobError {
    #[error("gob: truncated message")]
    Truncated,
    #[error("gob: corrupt data: {0}")]
    Corrupt(String),
    #[error("gob: unsupported {0}")]
    Unsupported(String),
    #[error("gob: message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: u64, limit: usize },
}

/// One message of a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A type definition (already recorded in the decoder's table).
    Definition(i64, WireType),
    /// A value of type `id`, with the definition it was decoded with.
    Value(i64, Value),
}

/// Splits the next message off `buf`: `Ok(None)` if more bytes are needed, otherwise the size
/// of its length prefix and of its body.
pub fn split_message(buf: &[u8], limit: usize) -> Result<Option<(usize, usize)>, GobError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let prefix = if first < 0x80 {
        1
    } else {
        1 + usize::from(first.wrapping_neg())
    };
    if prefix > 9 {
        return Err(GobError::Corrupt("bad message length prefix".into()));
    }
    if buf.len() < prefix {
        return Ok(None);
    }
    let size = Reader::new(&buf[..prefix]).uint()?;
    if size == 0 {
        return Err(GobError::Corrupt("empty message".into()));
    }
    if size > limit as u64 {
        return Err(GobError::TooLarge { size, limit });
    }
    Ok(Some((prefix, size as usize)))
}

/// Appends one message (length prefix + body).
pub fn put_message(out: &mut Vec<u8>, body: &[u8]) {
    put_uint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// The receiving side of one gob stream.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    types: TypeTable,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn types(&self) -> &TypeTable {
        &self.types
    }

    /// Decodes one message body (without its length prefix); the whole body must be consumed.
    pub fn decode(&mut self, body: &[u8]) -> Result<Message, GobError> {
        let mut r = Reader::new(body);
        let id = r.int()?;
        let message = if id < 0 {
            let id = id
                .checked_neg()
                .ok_or_else(|| GobError::Corrupt("type id".into()))?;
            let ty = wiretype::decode_definition(&mut r)?;
            self.types.define(id, ty.clone())?;
            Message::Definition(id, ty)
        } else {
            Message::Value(id, self.types.decode_top(id, &mut r)?)
        };
        if !r.is_empty() {
            return Err(GobError::Corrupt(format!(
                "{} stray bytes after a message",
                r.remaining()
            )));
        }
        Ok(message)
    }

    /// Decodes every message of a complete stream.
    pub fn decode_stream(&mut self, mut stream: &[u8]) -> Result<Vec<Message>, GobError> {
        let mut out = Vec::new();
        while !stream.is_empty() {
            let (prefix, size) =
                split_message(stream, DEFAULT_MAX_MESSAGE)?.ok_or(GobError::Truncated)?;
            let end = prefix + size;
            if stream.len() < end {
                return Err(GobError::Truncated);
            }
            out.push(self.decode(&stream[prefix..end])?);
            stream = &stream[end..];
        }
        Ok(out)
    }
}
