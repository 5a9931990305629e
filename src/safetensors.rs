//! Safetensors through the reference `safetensors` crate (the one Python's package wraps), so
//! we accept and write exactly what Python does. Around it we keep what it lacks: errors that
//! name the file, the tensor and its shape, and f16/bf16/f64 widened to f32 on load.
//!
//! The crate checks, as it deserializes the header: UTF-8 JSON of the right schema (a known
//! dtype, a shape and two data_offsets for every tensor; metadata values are strings); spans in
//! offset order that start at 0 and follow each other with no gap or overlap; each span exactly
//! the bytes its dtype and shape need, with overflow checked. We check: the 8-byte length
//! prefix against the file and our header cap; that the last span ends where the file does;
//! that each dtype is one we can widen to f32.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use safetensors::tensor::{Metadata, TensorInfo};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// The largest header we accept; real headers of the models we load are a few hundred KiB.
/// The crate's own cap (100 MB) is private to `SafeTensors::read_metadata`, which we bypass.
const MAX_HEADER: u64 = 100 << 20;

/// Tensors in data-offset order (file order), all widened to f32.
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

fn describe(name: &str, t: &TensorInfo) -> String {
    let (s, e) = t.data_offsets;
    format!(
        "tensor {name:?} ({} {:?}, data_offsets [{s}, {e}])",
        t.dtype, t.shape
    )
}

/// The header as the crate validates it, and the data bytes after it.
///
/// Not `SafeTensors::deserialize`: its final check adds the header length to the end of the
/// last span unchecked, which overflows (a panic under overflow checks) when a header declares
/// spans near 2^64 bytes. We compare the span end with the data length instead.
fn header<'a>(bytes: &'a [u8], path: &str) -> Result<(Metadata, &'a [u8])> {
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(error(
            path,
            format!(
                "file is {} bytes, too short for the 8-byte header length",
                bytes.len()
            ),
        ));
    };
    let n = u64::from_le_bytes(*len);
    if n > rest.len() as u64 {
        return Err(error(
            path,
            format!(
                "header length {n} is larger than the file ({} bytes)",
                bytes.len()
            ),
        ));
    }
    if n > MAX_HEADER {
        return Err(error(
            path,
            format!("header length {n} is over the {MAX_HEADER}-byte limit"),
        ));
    }
    let (h, data) = rest.split_at(n as usize);
    let meta: Metadata = serde_json::from_slice(h).map_err(|e| {
        let why = culprit(h).unwrap_or_else(|| "bad header".into());
        error(path, format!("{why}: {e}"))
    })?;
    let end = meta.data_len();
    if end != data.len() {
        let last = sorted(&meta)
            .last()
            .map_or("no tensor".into(), |(name, t)| describe(name, t));
        return Err(error(
            path,
            format!(
                "the data ends with {last} at byte {end}, but the file has {} data bytes \
                 (file truncated?)",
                data.len()
            ),
        ));
    }
    Ok((meta, data))
}

/// The header's own view of its tensors, so an error the crate reports without a name (a span
/// of the wrong size, a gap, an overflowing shape) can name the tensor. None when the header
/// does not even have the schema; the crate's message then says what is wrong.
fn culprit(h: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Loose {
        #[serde(rename = "__metadata__")]
        _metadata: Option<HashMap<String, String>>,
        #[serde(flatten)]
        tensors: HashMap<String, TensorInfo>,
    }
    let mut tensors: Vec<_> = serde_json::from_slice::<Loose>(h)
        .ok()?
        .tensors
        .into_iter()
        .collect();
    tensors.sort_by(|a, b| (a.1.data_offsets, &a.0).cmp(&(b.1.data_offsets, &b.0)));
    let mut end = 0;
    for (name, t) in &tensors {
        let (s, e) = t.data_offsets;
        let bytes = t
            .shape
            .iter()
            .try_fold(t.dtype.bitsize(), |a, &d| a.checked_mul(d));
        let fits = bytes.is_some_and(|b| b % 8 == 0 && e.checked_sub(s) == Some(b / 8));
        if s != end || !fits {
            let need = bytes.map_or("an overflowing number of".into(), |b| {
                format!("{}", b.div_ceil(8))
            });
            return Some(format!(
                "{} should span {need} bytes from byte {end}",
                describe(name, t)
            ));
        }
        end = e;
    }
    None
}

/// The tensors in data-offset order, then by name (zero-size tensors share an offset).
fn sorted(meta: &Metadata) -> Vec<(String, &TensorInfo)> {
    let mut v: Vec<_> = meta.tensors().into_iter().collect();
    v.sort_by(|a, b| (a.1.data_offsets, &a.0).cmp(&(b.1.data_offsets, &b.0)));
    v
}

fn strings(meta: &Metadata) -> Map<String, Value> {
    meta.metadata()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// Only the `__metadata__` strings, without decoding any tensor.
pub fn metadata(bytes: &[u8], path: &str) -> Result<Map<String, Value>> {
    Ok(strings(&header(bytes, path)?.0))
}

pub fn parse(bytes: &[u8], path: &str) -> Result<TensorFile> {
    let (meta, data) = header(bytes, path)?;
    let mut out = TensorFile {
        metadata: strings(&meta),
        ..Default::default()
    };
    for (name, info) in sorted(&meta) {
        // The crate has checked that the span lies in the data and is exactly the size of
        // the dtype and shape, so the chunks below cover it.
        let raw = &data[info.data_offsets.0..info.data_offsets.1];
        let values: Vec<f32> = match info.dtype {
            safetensors::Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            safetensors::Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            safetensors::Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()) as f32)
                .collect(),
            d => {
                return Err(error(
                    path,
                    format!(
                        "{} has dtype {d}; only F32, F16, BF16 and F64 are supported",
                        describe(&name, info)
                    ),
                ))
            }
        };
        out.dtypes.push(info.dtype.to_string());
        out.tensors.push((
            name,
            Tensor {
                shape: info.shape.clone(),
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

/// One tensor's bytes as the crate's writer takes them.
struct View<'a> {
    dtype: safetensors::Dtype,
    shape: &'a [usize],
    data: Vec<u8>,
}

impl safetensors::View for View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Serialize tensors with optional string metadata, through the crate's writer: tensors are
/// laid out by name and the header padded to 8 bytes, as Python's `save_file` does. The order
/// of metadata keys in the header follows a hash map, in the crate as in Python.
///
/// # Panics
/// If a tensor's data does not fill its shape (`Tensor::new` rules that out), or the header
/// passes the crate's 100 MB limit (about a million tensors).
pub fn serialize(tensors: &[(&str, &Tensor)], dtype: Dtype, metadata: &[(&str, &str)]) -> Vec<u8> {
    let (st, size) = match dtype {
        Dtype::F32 => (safetensors::Dtype::F32, 4),
        Dtype::F16 => (safetensors::Dtype::F16, 2),
        Dtype::BF16 => (safetensors::Dtype::BF16, 2),
    };
    let views = tensors.iter().map(|(name, t)| {
        let mut data = Vec::with_capacity(t.data.len() * size);
        for &x in &t.data {
            match dtype {
                Dtype::F32 => data.extend_from_slice(&x.to_le_bytes()),
                Dtype::F16 => data.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
                Dtype::BF16 => data.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
            }
        }
        let view = View {
            dtype: st,
            shape: &t.shape,
            data,
        };
        (*name, view)
    });
    let meta = (!metadata.is_empty()).then(|| {
        metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    safetensors::serialize(views, meta).unwrap_or_else(|e| panic!("serialize: {e}"))
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

    fn parse_err(header: &str, data: &[u8]) -> String {
        parse(&file(header, data), "bad.safetensors")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn offsets_and_shapes_past_any_size_are_errors() {
        let far = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4294967292,4294967296]}}"#;
        let huge = r#"{"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]}}"#;
        for h in [far, huge] {
            let e = parse_err(h, &[0; 4]);
            assert!(e.contains("bad.safetensors") && e.contains("\"w\""), "{e}");
        }
    }

    #[test]
    fn spans_ending_near_2_pow_64_are_an_error_not_an_overflow() {
        // Eight valid U8 spans of 2^61 - 1 bytes end at 2^64 - 8: the crate's own
        // `SafeTensors::deserialize` adds the header length to that and overflows.
        let n = (1u64 << 61) - 1;
        let spans: Vec<String> = (0..8)
            .map(|i| {
                format!(
                    r#""t{i}":{{"dtype":"U8","shape":[{n}],"data_offsets":[{},{}]}}"#,
                    i * n,
                    (i + 1) * n
                )
            })
            .collect();
        let e = parse_err(&format!("{{{}}}", spans.join(",")), &[]);
        assert!(e.contains("truncated") && e.contains("\"t7\""), "{e}");
        let e = metadata(&file(&format!("{{{}}}", spans.join(",")), &[]), "m").unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn errors_name_the_tensor_and_its_shape() {
        let gap = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                      "b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#;
        let short = r#"{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}}"#;
        let int = r#"{"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#;
        for (h, needle) in [
            (gap, r#"tensor "b" (F32 [2]"#),
            (short, r#"tensor "a" (F16 [3]"#),
            (int, "dtype I32"),
        ] {
            let e = parse_err(h, &[0; 16][..if h == gap { 16 } else { 4 }]);
            assert!(e.contains("bad.safetensors") && e.contains(needle), "{e}");
        }
        let e = parse_err(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            &[0; 8],
        );
        assert!(
            e.contains("truncated") && e.contains(r#"tensor "a""#),
            "{e}"
        );
    }

    #[test]
    fn round_trip_in_every_dtype() {
        let t = Tensor::new(vec![2, 2], vec![1.0, -0.5, 0.25, 3.0]).unwrap();
        let u = Tensor::new(vec![3], vec![7.0, 8.0, 9.0]).unwrap();
        for d in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let f = parse(&serialize(&[("t", &t), ("a", &u)], d, &[("k", "v")]), "x").unwrap();
            assert_eq!(f.get("t").unwrap(), &t);
            assert_eq!(f.get("a").unwrap(), &u);
            assert_eq!(f.metadata["k"], "v");
        }
    }

    #[test]
    fn widens_f64() {
        let h = r#"{"x":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#;
        let data: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let f = parse(&file(h, &data), "x").unwrap();
        assert_eq!(f.get("x").unwrap().data, [1.5, -2.0]);
        assert_eq!(f.dtypes, ["F64"]);
    }

    /// Python's `safetensors` reads what we write, and writes the very same bytes from what
    /// it read. Skipped (with a line) without python3, numpy and safetensors, unless
    /// DDIM_REQUIRE_NUMPY is set.
    #[test]
    fn python_safetensors_reads_our_files_byte_for_byte() {
        let t = Tensor::new(vec![2, 3], vec![1.0, -0.5, 0.25, 3.0, 0.125, -7.0]).unwrap();
        let u = Tensor::new(vec![1], vec![42.0]).unwrap();
        let dir = std::env::temp_dir().join(format!("ddim-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = "import sys, json\n\
            from safetensors import safe_open\n\
            from safetensors.numpy import load_file, save\n\
            a = load_file(sys.argv[1])\n\
            meta = safe_open(sys.argv[1], 'np').metadata()\n\
            open(sys.argv[2], 'wb').write(save(a, metadata=meta))\n\
            print(json.dumps({k: [str(v.dtype), list(v.shape), v.astype('f8').ravel().tolist()] \
                for k, v in a.items()} | {'__metadata__': meta}))";
        for (d, py) in [(Dtype::F32, "float32"), (Dtype::F16, "float16")] {
            let ours = serialize(&[("t", &t), ("u", &u)], d, &[("config", "a: 1\n")]);
            let (p, back) = (dir.join("ours.safetensors"), dir.join("back.safetensors"));
            std::fs::write(&p, &ours).unwrap();
            let out = std::process::Command::new("python3")
                .args(["-c", script])
                .arg(&p)
                .arg(&back)
                .output();
            let required = std::env::var_os("DDIM_REQUIRE_NUMPY").is_some();
            let out = match out {
                Ok(o) if o.status.success() => o,
                Ok(o)
                    if !required
                        && String::from_utf8_lossy(&o.stderr).contains("No module named") =>
                {
                    eprintln!("skipped: python3 lacks numpy or safetensors (set DDIM_REQUIRE_NUMPY to fail instead)");
                    return;
                }
                Err(e) if !required => {
                    eprintln!("skipped: no python3 ({e})");
                    return;
                }
                Ok(o) => panic!("python: {}", String::from_utf8_lossy(&o.stderr)),
                Err(e) => panic!("DDIM_REQUIRE_NUMPY is set but python3 did not run: {e}"),
            };
            let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
            let want = serde_json::json!({
                "t": [py, [2, 3], t.data],
                "u": [py, [1], u.data],
                "__metadata__": {"config": "a: 1\n"},
            });
            assert_eq!(seen, want);
            assert_eq!(
                std::fs::read(&back).unwrap(),
                ours,
                "{py}: Python writes other bytes"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
