//! A small safetensors reader and writer. We parse the format ourselves so every failure can
//! name the file and the tensor, and so f16/bf16/f64 checkpoints widen to f32 on load.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use serde_json::{Map, Value};

/// The largest header we accept; real headers of the models we load are a few hundred KiB.
const MAX_HEADER: u64 = 100 << 20;

/// Tensors in file order, all widened to f32.
#[derive(Debug, Default, Clone)]
pub struct TensorFile {
    pub tensors: Vec<(String, Tensor)>,
    pub metadata: Map<String, Value>,
    /// The dtype each tensor had on disk (F32, F16, BF16, F64), for `ddim info`.
    pub dtypes: Vec<String>,
}

impl TensorFile {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

fn error(path: &str, why: String) -> Error {
    Error::Safetensors {
        path: path.to_string(),
        why,
    }
}

/// The header's JSON object and the data bytes after it.
fn header<'a>(bytes: &'a [u8], path: &str) -> Result<(Map<String, Value>, &'a [u8])> {
    if bytes.len() < 8 {
        return Err(error(
            path,
            format!(
                "file is {} bytes, too short for the 8-byte header length",
                bytes.len()
            ),
        ));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    if n > MAX_HEADER || n > (bytes.len() - 8) as u64 {
        return Err(error(
            path,
            format!(
                "header length {n} is larger than the file ({} bytes)",
                bytes.len()
            ),
        ));
    }
    let header = &bytes[8..8 + n as usize];
    let json: Value = serde_json::from_slice(header)
        .map_err(|e| error(path, format!("header is not valid JSON: {e}")))?;
    let Value::Object(obj) = json else {
        return Err(error(path, "header is not a JSON object".into()));
    };
    Ok((obj, &bytes[8 + n as usize..]))
}

/// Only the `__metadata__` strings, without decoding any tensor.
pub fn metadata(bytes: &[u8], path: &str) -> Result<Map<String, Value>> {
    let (mut obj, _) = header(bytes, path)?;
    Ok(match obj.remove("__metadata__") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    })
}

pub fn parse(bytes: &[u8], path: &str) -> Result<TensorFile> {
    let bad = |why: String| error(path, why);
    let (obj, data) = header(bytes, path)?;
    let mut out = TensorFile::default();
    let mut entries: Vec<(usize, String, &Map<String, Value>)> = Vec::new();
    for (name, v) in &obj {
        if name == "__metadata__" {
            if let Value::Object(m) = v {
                out.metadata = m.clone();
            }
            continue;
        }
        let info = v
            .as_object()
            .ok_or_else(|| bad(format!("entry {name:?} is not an object")))?;
        let start = info
            .get("data_offsets")
            .and_then(|o| o.get(0))
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(format!("tensor {name:?} has no valid data_offsets")))?;
        entries.push((start as usize, name.clone(), info));
    }
    entries.sort_by_key(|e| e.0);
    for (_, name, info) in entries {
        let dtype = info.get("dtype").and_then(Value::as_str).unwrap_or("");
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| bad(format!("tensor {name:?} has no valid shape")))?;
        let offs: Vec<u64> = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect())
            .unwrap_or_default();
        let [s, e] = offs[..] else {
            return Err(bad(format!("tensor {name:?} has no valid data_offsets")));
        };
        let size = match dtype {
            "F32" => 4,
            "F16" | "BF16" => 2,
            "F64" => 8,
            _ => {
                return Err(bad(format!(
                    "tensor {name:?} has dtype {dtype:?}; only F32, F16, BF16 and F64 are supported"
                )))
            }
        };
        let bytes = shape
            .iter()
            .try_fold(size as u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| bad(format!("tensor {name:?} shape {shape:?} overflows")))?;
        if e < s || e > data.len() as u64 || e - s != bytes {
            return Err(bad(format!(
                "tensor {name:?} ({dtype} {shape:?}) has data_offsets [{s}, {e}] that do not fit its \
                 size or the {} data bytes (file truncated?)",
                data.len()
            )));
        }
        let raw = &data[s as usize..e as usize];
        let values: Vec<f32> = match dtype {
            "F32" => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            "F16" => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            "BF16" => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
        };
        out.dtypes.push(dtype.to_string());
        out.tensors.push((
            name,
            Tensor {
                shape,
                data: values,
            },
        ));
    }
    Ok(out)
}

/// On-disk dtype for `serialize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

/// Serialize tensors (in the given order) with optional string metadata.
pub fn serialize(tensors: &[(&str, &Tensor)], dtype: Dtype, metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut header = Map::new();
    if !metadata.is_empty() {
        let m: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        header.insert("__metadata__".into(), Value::Object(m));
    }
    let mut body = Vec::new();
    for (name, t) in tensors {
        let start = body.len();
        for &x in &t.data {
            match dtype {
                Dtype::F32 => body.extend_from_slice(&x.to_le_bytes()),
                Dtype::F16 => body.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
                Dtype::BF16 => body.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
            }
        }
        let name_dtype = match dtype {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
        };
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": name_dtype, "shape": t.shape, "data_offsets": [start, body.len()]}),
        );
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).expect("json");
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn offsets_and_shapes_past_any_size_are_errors() {
        let far = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4294967292,4294967296]}}"#;
        let huge = r#"{"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]}}"#;
        for h in [far, huge] {
            let e = parse(&file(h, &[0; 4]), "bad.safetensors")
                .unwrap_err()
                .to_string();
            assert!(e.contains("bad.safetensors") && e.contains("\"w\""), "{e}");
        }
    }

    #[test]
    fn round_trip_in_every_dtype() {
        let t = Tensor::new(vec![2, 2], vec![1.0, -0.5, 0.25, 3.0]).unwrap();
        for d in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let f = parse(&serialize(&[("t", &t)], d, &[("k", "v")]), "x").unwrap();
            assert_eq!(f.get("t").unwrap(), &t);
            assert_eq!(f.metadata["k"], "v");
        }
    }
}
