//! Decoding gob values of any type defined on the stream into a small dynamic value, so that
//! fields are matched by name (as Go does) whatever ids and field subsets the peer chose.

use std::collections::HashMap;

use super::primitive::Reader;
use super::wiretype::{WireType, BOOL, BYTES, FLOAT, INT, STRING, UINT};
use super::GobError;

/// A decoded gob value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bytes(Vec<u8>),
    /// Fields present on the wire, by name (absent fields are zero).
    Struct(Vec<(String, Value)>),
    Array(Vec<Value>),
    Slice(Vec<Value>),
    /// The bytes of a GobEncoder/BinaryMarshaler value (e.g. `time.Time`).
    Encoded(Vec<u8>),
}

impl Value {
    /// A struct field by name.
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Most user types one stream may define (SSNTP needs 7).
const MAX_TYPES: usize = 64;
/// Deepest nesting accepted; gob types can be recursive, values must not be endless.
const MAX_DEPTH: usize = 16;

/// The types a peer defined on one stream.
#[derive(Debug, Default, Clone)]
pub struct TypeTable {
    types: HashMap<i64, WireType>,
}

impl TypeTable {
    /// Records a definition; ids below 65 are gob's own, and an id is defined once per stream.
    pub fn define(&mut self, id: i64, ty: WireType) -> Result<(), GobError> {
        if id < 65 {
            return Err(GobError::Corrupt(format!(
                "definition of reserved type id {id}"
            )));
        }
        if self.types.len() >= MAX_TYPES {
            return Err(GobError::Corrupt("too many type definitions".into()));
        }
        if self.types.insert(id, ty).is_some() {
            return Err(GobError::Corrupt(format!("type id {id} defined twice")));
        }
        Ok(())
    }

    pub fn get(&self, id: i64) -> Option<&WireType> {
        self.types.get(&id)
    }

    /// Decodes a top-level value of type `id`.
    pub fn decode_top(&self, id: i64, r: &mut Reader<'_>) -> Result<Value, GobError> {
        let singleton = match self.types.get(&id) {
            Some(WireType::Struct { .. }) => false,
            Some(_) => true,
            None if (BOOL..=STRING).contains(&id) => true,
            None => {
                return Err(GobError::Corrupt(format!(
                    "value of undefined type id {id}"
                )))
            }
        };
        // Non-struct values are sent as a singleton field 0.
        if singleton && r.uint()? != 0 {
            return Err(GobError::Corrupt("top-level value without field 0".into()));
        }
        self.decode(id, r, 0)
    }

    fn decode(&self, id: i64, r: &mut Reader<'_>, depth: usize) -> Result<Value, GobError> {
        if depth > MAX_DEPTH {
            return Err(GobError::Corrupt("values nested too deeply".into()));
        }
        match id {
            BOOL => return Ok(Value::Bool(r.uint()? != 0)),
            INT => return Ok(Value::Int(r.int()?)),
            UINT => return Ok(Value::Uint(r.uint()?)),
            FLOAT => return Ok(Value::Float(f64::from_bits(r.uint()?.swap_bytes()))),
            BYTES | STRING => return Ok(Value::Bytes(r.bytes()?.to_vec())),
            _ => {}
        }
        let ty = self
            .types
            .get(&id)
            .ok_or_else(|| GobError::Unsupported(format!("type id {id}")))?;
        match ty {
            WireType::Struct { fields, .. } => {
                let mut out = Vec::new();
                let mut field: i64 = -1;
                loop {
                    let delta = r.uint()?;
                    if delta == 0 {
                        return Ok(Value::Struct(out));
                    }
                    field = i64::try_from(delta)
                        .ok()
                        .and_then(|d| field.checked_add(d))
                        .ok_or_else(|| GobError::Corrupt("field delta overflow".into()))?;
                    let f = usize::try_from(field)
                        .ok()
                        .and_then(|i| fields.get(i))
                        .ok_or_else(|| {
                            GobError::Corrupt(format!("field {field} not in the type"))
                        })?;
                    out.push((f.name.clone(), self.decode(f.id, r, depth + 1)?));
                }
            }
            WireType::Array { elem, len, .. } => {
                let n = r.count()?;
                if i64::try_from(n).ok() != Some(*len) {
                    return Err(GobError::Corrupt(format!("array of {n}, type says {len}")));
                }
                (0..n)
                    .map(|_| self.decode(*elem, r, depth + 1))
                    .collect::<Result<_, _>>()
                    .map(Value::Array)
            }
            WireType::Slice { elem, .. } => {
                let n = r.count()?;
                (0..n)
                    .map(|_| self.decode(*elem, r, depth + 1))
                    .collect::<Result<_, _>>()
                    .map(Value::Slice)
            }
            WireType::Encoded { .. } => Ok(Value::Encoded(r.bytes()?.to_vec())),
        }
    }
}
