//! Reading objects back: whether a table exists, the tables of a family, a set's elements.

use super::attr::{Attrs, Writer};
use super::batch::Socket;
use super::objects::{
    Key, MsgType, DATA_VALUE, ELEM_KEY, ELEM_LIST_ELEMENTS, ELEM_LIST_SET, ELEM_LIST_TABLE,
    LIST_ELEM,
};
use super::Family;
use crate::error::Result;

const TABLE_NAME: u16 = 1;

/// True if the table exists.
pub fn table_exists(s: &mut Socket, family: Family, name: &str) -> Result<bool> {
    let mut w = Writer::new();
    w.str(TABLE_NAME, name);
    let what = format!("get table {} {name}", family.name());
    match s.get(MsgType::GetTable, family, &w.into_bytes(), &what) {
        Ok(_) => Ok(true),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The names of every table of `family`.
pub fn tables(s: &mut Socket, family: Family) -> Result<Vec<String>> {
    let what = format!("list tables {}", family.name());
    let replies = s.dump(MsgType::GetTable, family, &[], &what)?;
    Ok(replies
        .iter()
        .filter_map(|r| Attrs::new(&r.body).get(TABLE_NAME).map(|a| a.str()))
        .collect())
}

/// The keys of every element of a set (ENOENT if the table or set is missing).
pub fn set_elements(s: &mut Socket, family: Family, table: &str, set: &str) -> Result<Vec<Key>> {
    let mut w = Writer::new();
    w.str(ELEM_LIST_TABLE, table).str(ELEM_LIST_SET, set);
    let what = format!("list set {table} {set}");
    let replies = s.dump(MsgType::GetSetElem, family, &w.into_bytes(), &what)?;
    let mut keys = Vec::new();
    for r in replies {
        let Some(list) = Attrs::new(&r.body).get(ELEM_LIST_ELEMENTS) else {
            continue;
        };
        for elem in list.nested().filter(|a| a.kind == LIST_ELEM) {
            let value = elem
                .nested()
                .get(ELEM_KEY)
                .and_then(|k| k.nested().get(DATA_VALUE));
            if let Some(v) = value {
                keys.push(Key::from_bytes(v.value.to_vec()));
            }
        }
    }
    Ok(keys)
}
