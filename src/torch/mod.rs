//! PyTorch checkpoints (`torch.save` files), read without Python and without running anything
//! in them, natively and in the browser.
//!
//! Both containers torch has written are read: the zip archive of torch ≥ 1.6 and the legacy
//! pickle stream before it. The object graph inside is read by an allow-list pickle machine
//! (`pickle`); the weights are then found the way `tools/convert_checkpoint.py` finds them (a
//! state dict, a dict holding one, or ddim's training list whose last entry is the EMA) and
//! named the way it names them.
//!
//! Why not a crate: candle's reader takes a path and reads only the zip container;
//! burn's `pytorch-reader` takes a path, reads lazily from the file, and addresses nested
//! weights only by a top-level dict key, so ddim's `[model, optimizer, epoch, step, ema]` list
//! is out of reach. The browser has bytes, not paths, and ddim's own checkpoints are lists.

mod archive;
mod legacy;
mod object;
mod pickle;

use crate::error::{Error, Result};
use crate::safetensors::TensorFile;
use crate::tensor::Tensor;
use archive::Archive;
use object::{Dtype, Obj, Pickle, TensorRef, Value};
use std::collections::{HashMap, HashSet};

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Does this look like a torch.save file (a zip archive or a legacy stream)?
pub fn is_checkpoint(bytes: &[u8]) -> bool {
    bytes.starts_with(ZIP_MAGIC) || legacy::is_legacy(bytes)
}

/// Where each storage's bytes are.
enum Storages<'a> {
    /// The archive, and the members already found and checked (many tensors may view one).
    Zip(Archive<'a>, HashMap<String, &'a [u8]>),
    Legacy(legacy::Storages<'a>),
}

impl<'a> Storages<'a> {
    fn get(&mut self, key: &str) -> Result<&'a [u8], String> {
        match self {
            Storages::Zip(a, seen) => match seen.get(key) {
                Some(b) => Ok(b),
                None => {
                    let b = a.storage(key)?;
                    seen.insert(key.to_string(), b);
                    Ok(b)
                }
            },
            Storages::Legacy(m) => m
                .get(key)
                .copied()
                .ok_or_else(|| format!("storage {key:?} is not in the file")),
        }
    }
}

/// The weights in a checkpoint, widened to f32 in file order, under the official names.
/// `entry` picks an item of a list checkpoint (negative counts from the end); without it a
/// training checkpoint gives its EMA weights (the last item), as the official sampler does.
pub fn parse(bytes: &[u8], name: &str, entry: Option<i64>) -> Result<TensorFile> {
    read(bytes, entry).map_err(|why| Error::Checkpoint {
        path: name.to_string(),
        why,
    })
}

fn read(bytes: &[u8], entry: Option<i64>) -> Result<TensorFile, String> {
    let (pickle, mut storages) = if bytes.starts_with(ZIP_MAGIC) {
        let (p, a) = Archive::open(bytes)?;
        (p, Storages::Zip(a, HashMap::new()))
    } else if legacy::is_legacy(bytes) {
        let (p, m) = legacy::open(bytes)?;
        (p, Storages::Legacy(m))
    } else {
        return Err(
            "neither a zip archive (torch ≥ 1.6) nor a legacy torch stream (torch ≤ 1.5)".into(),
        );
    };
    let dict = select(&pickle, entry)?;
    let mut out = TensorFile::default();
    let mut seen = HashSet::new();
    // Views may repeat a storage's elements (tied weights, a tensor under two names), but a
    // file cannot ask for more f32s than it has bytes: tiny views of one big storage, named a
    // million times, would otherwise fill any memory.
    let mut budget = bytes.len();
    for (key, value) in dict {
        // Counters and other non-tensors sit beside the weights in some state dicts.
        let (Value::Str(key), Some(Obj::Tensor(t))) = (key, pickle.obj(value)) else {
            continue;
        };
        let name = official_name(key);
        if !seen.insert(name.clone()) {
            return Err(format!("two entries map to the same name {name:?}"));
        }
        let (tensor, dtype) = materialise(t, &mut storages, &mut budget)
            .map_err(|e| format!("tensor {key:?}: {e}"))?;
        out.dtypes.push(dtype.to_string());
        out.tensors.push((name, tensor));
    }
    Ok(out)
}

/// As `tools/convert_checkpoint.py` `normalise_names`: no DataParallel `module.` prefix, and
/// `down.N.downsample.op.` (one conversion script's spelling) becomes `.conv.`.
fn official_name(key: &str) -> String {
    let name = key.strip_prefix("module.").unwrap_or(key);
    let parts: Vec<&str> = name.splitn(5, '.').collect();
    match parts[..] {
        ["down", n, "downsample", "op", rest]
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("down.{n}.downsample.conv.{rest}")
        }
        _ => name.to_string(),
    }
}

fn entries<'p>(p: &'p Pickle, v: &Value) -> Option<&'p [(Value, Value)]> {
    match p.obj(v) {
        Some(Obj::Dict(d)) => Some(d),
        _ => None,
    }
}

/// A non-empty dict of names, at least one of them a tensor.
fn state_dict<'p>(p: &'p Pickle, v: &Value) -> Option<&'p [(Value, Value)]> {
    entries(p, v).filter(|d| {
        !d.is_empty()
            && d.iter().all(|(k, _)| matches!(k, Value::Str(_)))
            && d.iter()
                .any(|(_, v)| matches!(p.obj(v), Some(Obj::Tensor(_))))
    })
}

/// The weights inside whatever torch.save wrote, as `convert_checkpoint.py`
/// `select_state_dict` finds them.
fn select(p: &Pickle, entry: Option<i64>) -> Result<&[(Value, Value)], String> {
    let items = match p.obj(&p.root) {
        Some(Obj::List(l) | Obj::Tuple(l)) => l,
        _ => {
            if let Some(i) = entry {
                return Err(format!(
                    "entry {i} was asked for, but the checkpoint is {}, not a list",
                    p.describe(&p.root)
                ));
            }
            if let Some(d) = entries(p, &p.root) {
                for key in ["state_dict", "model", "ema", "model_state_dict"] {
                    let found = d.iter().rev().find_map(|(k, v)| match k {
                        Value::Str(k) if &**k == key => state_dict(p, v),
                        _ => None,
                    });
                    if let Some(sd) = found {
                        return Ok(sd);
                    }
                }
            }
            return state_dict(p, &p.root).ok_or_else(|| {
                format!(
                    "no state dict in a checkpoint that is {}",
                    p.describe(&p.root)
                )
            });
        }
    };
    let n = items.len() as i64;
    let pick = |i: i64| {
        let at = if i < 0 { n + i } else { i };
        let v = usize::try_from(at)
            .ok()
            .and_then(|at| items.get(at))
            .ok_or_else(|| {
                format!("entry {i} is out of range: the checkpoint is a list of {n} items")
            })?;
        state_dict(p, v).ok_or_else(|| format!("entry {i} is {}, not a state dict", p.describe(v)))
    };
    match entry {
        Some(i) => pick(i),
        // A training checkpoint [model, optimizer, epoch, step, ema]: the EMA, else the model.
        None if n >= 5 && pick(-1).is_ok() => pick(-1),
        None if n == 0 => Err("the checkpoint is an empty list".into()),
        None => pick(0).map_err(|e| format!("{e} (a list checkpoint holds its weights first)")),
    }
}

fn float_name(d: Dtype) -> Option<&'static str> {
    match d {
        Dtype::F32 => Some("F32"),
        Dtype::F16 => Some("F16"),
        Dtype::BF16 => Some("BF16"),
        Dtype::F64 => Some("F64"),
        _ => None,
    }
}

fn decode(d: Dtype, b: &[u8]) -> f32 {
    match d {
        Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        Dtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
        Dtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        _ => f64::from_le_bytes(b[..8].try_into().unwrap()) as f32,
    }
}

/// Read a tensor's elements out of its storage, in row-major order, once its view is known
/// to lie inside the storage's bytes; also its dtype's safetensors name.
fn materialise(
    t: &TensorRef,
    storages: &mut Storages<'_>,
    budget: &mut usize,
) -> Result<(Tensor, &'static str), String> {
    let st = &t.storage;
    let Some(dtype) = float_name(st.dtype) else {
        return Err(format!(
            "holds {} values; only float tensors are weights",
            st.dtype.name()
        ));
    };
    let size = st.dtype.size();
    let raw = storages.get(&st.key)?;
    if st.numel.checked_mul(size as u64) != Some(raw.len() as u64) {
        return Err(format!(
            "storage {:?} declares {} {} elements but holds {} bytes",
            st.key,
            st.numel,
            st.dtype.name(),
            raw.len()
        ));
    }
    let numel = t.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &s)| {
            a.checked_add(d.saturating_sub(1).checked_mul(s)?)
        });
    let geometry = || {
        format!(
            "size {:?}, stride {:?} and offset {} do not fit its storage of {} elements",
            t.shape, t.stride, t.offset, st.numel
        )
    };
    let numel = numel.ok_or_else(geometry)?;
    // No more elements than the storage holds: a broadcast view could otherwise ask for an
    // allocation of any size from a few bytes.
    if numel > 0 && (numel > st.numel || last.is_none_or(|l| l >= st.numel)) {
        return Err(geometry());
    }
    let shape = t
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| geometry()))
        .collect::<Result<Vec<usize>, String>>()?;
    if numel == 0 {
        let data = Vec::new();
        return Ok((Tensor { shape, data }, dtype));
    }
    // Every count below is now at most the storage's length. A dimension of size 1 never
    // steps, so its stride (which nothing bounded) is taken as 0.
    let stride: Vec<usize> = (t.stride.iter().zip(&shape))
        .map(|(&s, &d)| if d == 1 { 0 } else { s as usize })
        .collect();
    let (numel, offset) = (numel as usize, t.offset as usize);
    *budget = budget.checked_sub(numel).ok_or(
        "the tensors so far ask for more elements than the file has bytes (one storage viewed \
         over and over?)",
    )?;
    let contiguous = (0..shape.len())
        .all(|i| shape[i] == 1 || stride[i] == shape[i + 1..].iter().product::<usize>());
    let data = if contiguous {
        raw[offset * size..(offset + numel) * size]
            .chunks_exact(size)
            .map(|b| decode(st.dtype, b))
            .collect()
    } else {
        // An odometer over the indices, last dimension fastest.
        let mut data = Vec::with_capacity(numel);
        let mut index = vec![0usize; shape.len()];
        let mut pos = offset;
        for _ in 0..numel {
            data.push(decode(st.dtype, &raw[pos * size..(pos + 1) * size]));
            for d in (0..shape.len()).rev() {
                index[d] += 1;
                pos += stride[d];
                if index[d] < shape[d] {
                    break;
                }
                pos -= stride[d] * shape[d];
                index[d] = 0;
            }
        }
        data
    };
    Ok((Tensor { shape, data }, dtype))
}

#[cfg(test)]
mod tests;
