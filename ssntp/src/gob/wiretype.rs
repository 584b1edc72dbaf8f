//! gob type definitions (`wireType`, reference/ssntp.md §2.3): the model, its encoding as Go
//! writes it, and a strict decoder.

use super::primitive::{put_bytes, put_int, Reader};
use super::GobError;

/// Built-in type ids of gob.
pub const BOOL: i64 = 1;
pub const INT: i64 = 2;
pub const UINT: i64 = 3;
pub const FLOAT: i64 = 4;
pub const BYTES: i64 = 5;
pub const STRING: i64 = 6;

/// One field of a struct type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub id: i64,
}

/// The kinds of user type SSNTP uses (maps and interfaces are refused when defined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireType {
    Struct {
        name: String,
        fields: Vec<Field>,
    },
    Array {
        name: String,
        elem: i64,
        len: i64,
    },
    Slice {
        name: String,
        elem: i64,
    },
    /// A type with its own binary encoding (GobEncoder, BinaryMarshaler, TextMarshaler):
    /// on the wire a byte string, e.g. `time.Time`.
    Encoded {
        name: String,
    },
}

impl WireType {
    pub fn name(&self) -> &str {
        match self {
            WireType::Struct { name, .. }
            | WireType::Array { name, .. }
            | WireType::Slice { name, .. }
            | WireType::Encoded { name } => name,
        }
    }
}

fn common_type(out: &mut Vec<u8>, name: &str, id: i64) {
    // CommonType{Name string (0), Id int (1)}
    out.push(1);
    put_bytes(out, name.as_bytes());
    out.push(1);
    put_int(out, id);
    out.push(0);
}

/// Appends the body of a definition message for type `id` (without the length prefix).
pub fn encode_definition(out: &mut Vec<u8>, id: i64, ty: &WireType) {
    put_int(out, -id);
    match ty {
        WireType::Array { name, elem, len } => {
            out.push(1); // wireType field 0: ArrayT
            out.push(1); // arrayType field 0: CommonType
            common_type(out, name, id);
            out.push(1);
            put_int(out, *elem);
            out.push(1);
            put_int(out, *len);
            out.push(0);
        }
        WireType::Slice { name, elem } => {
            out.push(2); // field 1: SliceT
            out.push(1);
            common_type(out, name, id);
            out.push(1);
            put_int(out, *elem);
            out.push(0);
        }
        WireType::Struct { name, fields } => {
            out.push(3); // field 2: StructT
            out.push(1);
            common_type(out, name, id);
            out.push(1);
            super::primitive::put_uint(out, fields.len() as u64);
            for f in fields {
                out.push(1);
                put_bytes(out, f.name.as_bytes());
                out.push(1);
                put_int(out, f.id);
                out.push(0);
            }
            out.push(0);
        }
        WireType::Encoded { name } => {
            out.push(5); // field 4: GobEncoderT
            out.push(1);
            common_type(out, name, id);
            out.push(0);
        }
    }
    out.push(0); // end of wireType
}

/// Longest type or field name accepted.
const MAX_NAME: usize = 256;

fn name(r: &mut Reader<'_>) -> Result<String, GobError> {
    let b = r.bytes()?;
    if b.len() > MAX_NAME {
        return Err(GobError::Corrupt("type name too long".into()));
    }
    String::from_utf8(b.to_vec()).map_err(|_| GobError::Corrupt("type name is not UTF-8".into()))
}

/// Reads a struct's fields by number with `each(field, reader)` until its end marker.
fn fields(
    r: &mut Reader<'_>,
    mut each: impl FnMut(i64, &mut Reader<'_>) -> Result<(), GobError>,
) -> Result<(), GobError> {
    let mut field: i64 = -1;
    loop {
        let delta = r.uint()?;
        if delta == 0 {
            return Ok(());
        }
        field = i64::try_from(delta)
            .ok()
            .and_then(|d| field.checked_add(d))
            .ok_or_else(|| GobError::Corrupt("field delta overflow".into()))?;
        each(field, r)?;
    }
}

fn common(r: &mut Reader<'_>) -> Result<(String, i64), GobError> {
    let mut out = (String::new(), 0);
    fields(r, |f, r| {
        match f {
            0 => out.0 = name(r)?,
            1 => out.1 = r.int()?,
            _ => return Err(GobError::Corrupt(format!("CommonType field {f}"))),
        }
        Ok(())
    })?;
    Ok(out)
}

/// Longest struct accepted (SSNTP's have at most 9 fields).
const MAX_FIELDS: usize = 64;

/// Decodes a definition body (after the negative id) into a type.
pub fn decode_definition(r: &mut Reader<'_>) -> Result<WireType, GobError> {
    let mut result: Option<WireType> = None;
    fields(r, |which, r| {
        let ty = match which {
            0 | 1 => {
                let (mut nm, mut elem, mut len) = (String::new(), 0, -1);
                fields(r, |f, r| {
                    match f {
                        0 => nm = common(r)?.0,
                        1 => elem = r.int()?,
                        2 if which == 0 => len = r.int()?,
                        _ => return Err(GobError::Corrupt(format!("array/slice field {f}"))),
                    }
                    Ok(())
                })?;
                if which == 0 {
                    if !(0..=1 << 20).contains(&len) {
                        return Err(GobError::Corrupt(format!("array length {len}")));
                    }
                    WireType::Array {
                        name: nm,
                        elem,
                        len,
                    }
                } else {
                    WireType::Slice { name: nm, elem }
                }
            }
            2 => {
                let mut nm = String::new();
                let mut list = Vec::new();
                fields(r, |f, r| {
                    match f {
                        0 => nm = common(r)?.0,
                        1 => {
                            let n = r.count()?;
                            if n > MAX_FIELDS {
                                return Err(GobError::Corrupt(format!("struct with {n} fields")));
                            }
                            for _ in 0..n {
                                let mut field = Field {
                                    name: String::new(),
                                    id: 0,
                                };
                                fields(r, |g, r| {
                                    match g {
                                        0 => field.name = name(r)?,
                                        1 => field.id = r.int()?,
                                        _ => {
                                            return Err(GobError::Corrupt(format!(
                                                "fieldType field {g}"
                                            )))
                                        }
                                    }
                                    Ok(())
                                })?;
                                list.push(field);
                            }
                        }
                        _ => return Err(GobError::Corrupt(format!("structType field {f}"))),
                    }
                    Ok(())
                })?;
                WireType::Struct {
                    name: nm,
                    fields: list,
                }
            }
            3 => return Err(GobError::Unsupported("map types".into())),
            4..=6 => {
                let mut nm = String::new();
                fields(r, |f, r| {
                    match f {
                        0 => nm = common(r)?.0,
                        _ => return Err(GobError::Corrupt(format!("encoder type field {f}"))),
                    }
                    Ok(())
                })?;
                WireType::Encoded { name: nm }
            }
            other => return Err(GobError::Corrupt(format!("wireType field {other}"))),
        };
        if result.replace(ty).is_some() {
            return Err(GobError::Corrupt("wireType with two kinds".into()));
        }
        Ok(())
    })?;
    result.ok_or_else(|| GobError::Corrupt("empty wireType".into()))
}
