//! The stream torch ≤ 1.5 wrote (and later torch with `_use_new_zipfile_serialization=False`):
//! five pickles back to back (a magic number, the protocol version, the writer's sys_info, the
//! object graph, the sorted list of storage keys), then each storage in that order as an 8-byte
//! little-endian element count and its raw bytes.

use super::object::{Dtype, Obj, Pickle, Value};
use super::pickle;
use std::collections::HashMap;

/// 0x1950a86a20f9469cfc6c, little-endian, as pickle's LONG1 writes it.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// Does this start like a legacy stream? PROTO, an optional FRAME, then LONG1 of the magic.
pub fn is_legacy(bytes: &[u8]) -> bool {
    let long1 = |at: usize| {
        bytes.get(at..at + 2) == Some(&[0x8a, 10][..]) && bytes.get(at + 2..at + 12) == Some(&MAGIC)
    };
    bytes.first() == Some(&0x80) && (long1(2) || (bytes.get(2) == Some(&0x95) && long1(11)))
}

/// Each storage's bytes by key.
pub type Storages<'a> = HashMap<String, &'a [u8]>;

pub fn open(bytes: &[u8]) -> Result<(Pickle, Storages<'_>), String> {
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Pickle, String> {
        let p = pickle::load(&bytes[pos..]).map_err(|e| format!("{what}: {e}"))?;
        pos += p.end;
        Ok(p)
    };
    // Each pickle may build objects up to a floor however short it is (see `pickle`), so the
    // first three are dropped once checked: only two are ever held at once.
    let magic = next("the magic number")?;
    if !matches!(&magic.root, Value::BigInt(b) if **b == MAGIC) {
        return Err("no torch magic number at the start".into());
    }
    drop(magic);
    let version = next("the protocol version")?;
    if !matches!(version.root, Value::Int(PROTOCOL_VERSION)) {
        return Err(format!(
            "legacy protocol version is {}, not {PROTOCOL_VERSION}",
            version.describe(&version.root)
        ));
    }
    drop(version);
    let info = next("sys_info")?;
    if let Some(Obj::Dict(d)) = info.obj(&info.root) {
        let little = d.iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Bool(b)) if &**k == "little_endian" => Some(*b),
            _ => None,
        });
        if little == Some(false) {
            return Err(
                "written on a big-endian machine; only little-endian files are read".into(),
            );
        }
    }
    drop(info);
    let graph = next("the object pickle")?;
    let keys = next("the storage key list")?;
    let keys: Vec<&str> = match keys.obj(&keys.root) {
        Some(Obj::List(l)) => l
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(&**s),
                _ => Err("a storage key that is not a string".to_string()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("the storage key list is not a list".into()),
    };
    // The element size of each storage comes from its type in the object pickle.
    let dtypes: HashMap<&str, Dtype> = graph
        .objs
        .iter()
        .filter_map(|o| match o {
            Obj::Storage(s) => Some((s.key.as_str(), s.dtype)),
            _ => None,
        })
        .collect();
    let mut rest = &bytes[pos..];
    let mut storages = Storages::new();
    for key in keys {
        let dtype = dtypes
            .get(key)
            .ok_or_else(|| format!("storage {key:?} is listed but no tensor uses it"))?;
        let Some((count, after)) = rest.split_first_chunk::<8>() else {
            return Err(format!("the file ends before storage {key:?} (truncated?)"));
        };
        let count = u64::from_le_bytes(*count);
        let len = count
            .checked_mul(dtype.size() as u64)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= after.len())
            .ok_or_else(|| {
                format!(
                    "storage {key:?} claims {count} {} elements, more than the {} bytes left \
                     in the file (truncated?)",
                    dtype.name(),
                    after.len()
                )
            })?;
        if storages.insert(key.to_string(), &after[..len]).is_some() {
            return Err(format!("storage {key:?} is listed twice"));
        }
        rest = &after[len..];
    }
    Ok((graph, storages))
}
