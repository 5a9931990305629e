//! .npy in and out (float32 and uint8, C order), and a stored .npz through the `zip` crate,
//! which is all the FID tools and `--init-noise` need.
//!
//! The .npy container itself stays ours: it is a 10-byte preamble and one Python dict
//! literal, and the crates that read it (ndarray-npy, npyz) bring ndarray or a general
//! Python-literal parser for what is here a hundred lines. What keeps those lines honest:
//! numpy reads everything we write in CI (`tests/cli.rs`), and `fuzz/` runs the reader.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

pub fn to_bytes_f32(t: &Tensor) -> Vec<u8> {
    let mut out = header("<f4", &t.shape);
    out.extend(t.data.iter().flat_map(|x| x.to_le_bytes()));
    out
}

pub fn to_bytes_u8(shape: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = header("|u1", shape);
    out.extend_from_slice(data);
    out
}

/// Parse a float32 (or float64, widened) C-order .npy.
pub fn parse_f32(bytes: &[u8], path: &str) -> Result<Tensor> {
    let bad = |why: String| Error::Npy {
        path: path.to_string(),
        why,
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic".into()));
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported version {v}"))),
    };
    let h = bytes
        .get(hstart..hstart + hlen)
        .ok_or_else(|| bad("header runs past the end of the file".into()))?;
    let h = std::str::from_utf8(h).map_err(|_| bad("header is not text".into()))?;
    let field = |key: &str| -> Option<&str> {
        let i = h.find(&format!("'{key}'"))? + key.len() + 2;
        Some(h[i..].trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr")
        .and_then(|s| s.strip_prefix('\''))
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| bad("no descr in header".into()))?;
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
        return Err(bad(
            "Fortran order is not supported; save with C order".into()
        ));
    }
    let shape_s = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape in header".into()))?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(format!("bad shape entry {s:?}"))))
        .collect::<Result<_>>()?;
    let body = &bytes[hstart + hlen..];
    let (size, wide) = match descr {
        "<f4" => (4, false),
        "<f8" => (8, true),
        _ => return Err(bad(format!("dtype {descr:?} is not float32 (<f4)"))),
    };
    let bytes = shape
        .iter()
        .try_fold(size, |a: usize, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    if body.len() != bytes {
        return Err(bad(format!(
            "shape {shape:?} needs {bytes} data bytes, found {}",
            body.len()
        )));
    }
    let data = if wide {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect()
    } else {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    Ok(Tensor { shape, data })
}

/// An uncompressed (stored) zip holding the given members, as `numpy.savez` writes, through
/// the `zip` crate. Archives past 4 GiB get zip64 records, which numpy reads.
#[cfg(not(target_arch = "wasm32"))]
pub fn npz(members: &[(&str, Vec<u8>)], path: &str) -> Result<Vec<u8>> {
    use std::io::Write;
    let bad = |why: String| Error::Npy {
        path: path.to_string(),
        why,
    };
    let mut zw = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in members {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(data.len() as u64 >= u32::MAX as u64);
        zw.start_file(*name, opts)
            .and_then(|()| zw.write_all(data).map_err(Into::into))
            .map_err(|e| bad(format!("zip member {name}: {e}")))?;
    }
    let cursor = zw
        .finish()
        .map_err(|e| bad(format!("zip directory: {e}")))?;
    Ok(cursor.into_inner())
}

/// A stored .npz holding one uint8 array `arr_0` of `shape`, streamed to `path` as `fill`
/// writes its bytes in C order, so an array larger than memory never sits in memory. Written
/// under a temporary name and renamed, so a failure leaves no partial file.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_npz_u8(
    path: &std::path::Path,
    shape: &[usize],
    fill: &mut dyn FnMut(&mut dyn std::io::Write) -> Result<()>,
) -> Result<()> {
    use std::io::Write;
    let bad = |why: String| Error::Npy {
        path: path.display().to_string(),
        why,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let size = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    let mut write = || -> Result<()> {
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut zw = zip::ZipWriter::new(std::io::BufWriter::new(f));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(size.is_none_or(|s| s >= u32::MAX as u64 - 4096));
        zw.start_file("arr_0.npy", opts)
            .map_err(|e| bad(format!("zip member arr_0.npy: {e}")))?;
        zw.write_all(&header("|u1", shape))
            .map_err(|e| Error::io(&tmp, e))?;
        fill(&mut zw)?;
        let mut out = zw
            .finish()
            .map_err(|e| bad(format!("zip directory: {e}")))?;
        out.flush().map_err(|e| Error::io(&tmp, e))
    };
    write()
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_round_trip() {
        let t = Tensor::new(vec![2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e-7, 9.0]).unwrap();
        let b = to_bytes_f32(&t);
        assert_eq!(
            b[..10].len() + u16::from_le_bytes([b[8], b[9]]) as usize,
            128
        );
        assert_eq!(parse_f32(&b, "x").unwrap(), t);
    }

    #[test]
    fn an_impossible_shape_is_an_error_not_a_panic() {
        let b = header("<f4", &[1 << 62, 3, 32, 32]);
        let e = parse_f32(&b, "huge.npy").unwrap_err().to_string();
        assert!(e.contains("huge.npy") && e.contains("too large"), "{e}");
    }

    #[test]
    fn wrong_dtype_is_named() {
        let b = to_bytes_u8(&[3], &[1, 2, 3]);
        let e = parse_f32(&b, "noise.npy").unwrap_err().to_string();
        assert!(e.contains("noise.npy") && e.contains("|u1"), "{e}");
    }
}
