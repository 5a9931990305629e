//! Images in and out (native only): model space ↔ 8-bit, PNG grids, and atomic writes so a
//! failed run never leaves a half-written file behind.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::path::Path;

pub use crate::tensor::to_u8;

/// Write `bytes` to `path` through a temporary file in the same folder and a rename. The
/// temporary name is unique to this write (process, time and a counter) and created
/// exclusively, so writers on many machines sharing a folder never write into each other's
/// temporary file (process ids repeat across hosts; in containers every process may be 1).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(
        ".{name}.tmp{}-{nanos}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// An 8-bit image, rows of interleaved channels (1 = gray, 3 = RGB).
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

impl Image {
    pub fn png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(match self.channels {
                1 => png::ColorType::Grayscale,
                _ => png::ColorType::Rgb,
            });
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc
                .write_header()
                .map_err(|e| Error::Backend(format!("png: {e}")))?;
            w.write_image_data(&self.pixels)
                .map_err(|e| Error::Backend(format!("png: {e}")))?;
        }
        Ok(out)
    }
}

fn check_channels(c: usize) -> Result<()> {
    if c == 1 || c == 3 {
        Ok(())
    } else {
        Err(Error::invalid(
            "out",
            format!("{c} channels cannot be written as PNG; use .npy"),
        ))
    }
}

/// Sample i of an [n, C, H, W] batch as an image.
pub fn sample_image(t: &Tensor, i: usize) -> Result<Image> {
    let (c, h, w) = (t.shape[1], t.shape[2], t.shape[3]);
    check_channels(c)?;
    let x = &t.data[i * c * h * w..(i + 1) * c * h * w];
    let mut pixels = vec![0u8; c * h * w];
    for ch in 0..c {
        for p in 0..h * w {
            pixels[p * c + ch] = to_u8(x[ch * h * w + p]);
        }
    }
    Ok(Image {
        width: w,
        height: h,
        channels: c,
        pixels,
    })
}

/// Tile images into a grid with `cols` columns and a 2-pixel border, like torchvision's
/// `make_grid`.
pub fn grid(images: &[Image], cols: usize) -> Image {
    let (w, h, c) = (images[0].width, images[0].height, images[0].channels);
    let cols = cols.clamp(1, images.len());
    let rows = images.len().div_ceil(cols);
    let pad = 2;
    let (gw, gh) = (cols * (w + pad) + pad, rows * (h + pad) + pad);
    let mut pixels = vec![0u8; gw * gh * c];
    for (i, im) in images.iter().enumerate() {
        let (x0, y0) = (pad + (i % cols) * (w + pad), pad + (i / cols) * (h + pad));
        for y in 0..h {
            let dst = ((y0 + y) * gw + x0) * c;
            pixels[dst..dst + w * c].copy_from_slice(&im.pixels[y * w * c..(y + 1) * w * c]);
        }
    }
    Image {
        width: gw,
        height: gh,
        channels: c,
        pixels,
    }
}

/// A batch as a near-square grid.
pub fn batch_grid(t: &Tensor, cols: Option<usize>) -> Result<Image> {
    let n = t.shape[0];
    let imgs = (0..n)
        .map(|i| sample_image(t, i))
        .collect::<Result<Vec<_>>>()?;
    let cols = cols.unwrap_or_else(|| (n as f64).sqrt().ceil() as usize);
    Ok(grid(&imgs, cols))
}

/// The largest image `decode_png` takes (4096×4096): 201 MB as 3-channel f32.
const MAX_PIXELS: u64 = 1 << 24;

/// Read a PNG as one [1, C, H, W] image in model space ([-1, 1]), with C = `channels`.
pub fn read_png(path: &Path, channels: usize) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_png(&bytes, &path.display().to_string(), channels)
}

/// `read_png` on bytes already read; `name` is the file for messages.
pub fn decode_png(bytes: &[u8], name: &str, channels: usize) -> Result<Tensor> {
    let bad = |why: String| Error::invalid("input", format!("{name}: {why}"));
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec
        .read_info()
        .map_err(|e| bad(format!("not a PNG: {e}")))?;
    // The header alone sets the buffer sizes below, and png's memory limit does not cover
    // the image buffer: an 81-byte file can ask for a terabyte.
    let (w, h) = reader.info().size();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(bad(format!(
            "{w}×{h} pixels is more than the {MAX_PIXELS} this reads"
        )));
    }
    // png 0.18.1 panics expanding a palette that is not whole RGB triples
    // (image-rs/image-png#694, fixed upstream after that release); the PNG spec requires them.
    if reader
        .info()
        .palette
        .as_ref()
        .is_some_and(|p| p.len() % 3 != 0)
    {
        return Err(bad(
            "its PLTE chunk is not a whole number of RGB entries".into()
        ));
    }
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(format!("bad PNG data: {e}")))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let src_c = info.color_type.samples();
    let mut data = vec![0.0f32; channels * h * w];
    for p in 0..h * w {
        let px = &buf[p * src_c..(p + 1) * src_c];
        let rgb = match src_c {
            1 | 2 => [px[0]; 3],
            _ => [px[0], px[1], px[2]],
        };
        for ch in 0..channels {
            let v = if channels == 1 {
                (rgb[0] as f32 * 0.299 + rgb[1] as f32 * 0.587 + rgb[2] as f32 * 0.114) / 255.0
            } else {
                rgb[ch.min(2)] as f32 / 255.0
            };
            data[ch * h * w + p] = v * 2.0 - 1.0;
        }
    }
    Tensor::new(vec![1, channels, h, w], data)
}

/// An image atlas (as tools/prepare_emoji.py writes: `NAME.png` plus `NAME.json` with
/// `tile`, `columns` and `count`) as [count, C, tile, tile] in model space.
pub fn read_atlas(path: &Path) -> Result<Tensor> {
    let meta_path = path.with_extension("json");
    let meta = std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
    let v: serde_json::Value = serde_json::from_slice(&meta).map_err(|e| Error::Config {
        path: meta_path.display().to_string(),
        why: format!("not valid JSON: {e}"),
    })?;
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_u64())
            .map(|x| x as usize)
            .ok_or_else(|| Error::Config {
                path: meta_path.display().to_string(),
                why: format!("missing integer {k:?}"),
            })
    };
    let (tile, cols, count) = (field("tile")?, field("columns")?, field("count")?);
    let sheet = read_png(path, 3)?;
    let (h, w) = (sheet.shape[2], sheet.shape[3]);
    let fits = tile > 0
        && cols > 0
        && cols.checked_mul(tile).is_some_and(|x| x <= w)
        && count
            .div_ceil(cols)
            .checked_mul(tile)
            .is_some_and(|y| y <= h);
    if !fits {
        return Err(Error::invalid(
            "data",
            format!(
                "{}: {count} tiles of {tile}px in {cols} columns do not fit its {w}×{h} pixels",
                path.display()
            ),
        ));
    }
    let mut data = vec![0.0f32; count * 3 * tile * tile];
    for i in 0..count {
        let (ty, tx) = ((i / cols) * tile, (i % cols) * tile);
        for c in 0..3 {
            for y in 0..tile {
                let src = (c * h + ty + y) * w + tx;
                let dst = ((i * 3 + c) * tile + y) * tile;
                data[dst..dst + tile].copy_from_slice(&sheet.data[src..src + tile]);
            }
        }
    }
    Tensor::new(vec![count, 3, tile, tile], data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        let crc = crc32fast::hash(&[&kind[..], body].concat());
        out.extend_from_slice(&crc.to_be_bytes());
    }

    /// The PNG signature and the IHDR chunk of a w×h image of 8-bit colour type `color`.
    fn start(w: u32, h: u32, color: u8) -> Vec<u8> {
        let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
        let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, color, 0, 0, 0]];
        chunk(&mut f, b"IHDR", &ihdr.concat());
        f
    }

    /// Found by fuzzing (fuzz/README.md): a header of 65544×16714760 gray pixels made
    /// `decode_png` allocate its 1.1 TB output buffer before reading any data. (The fuzz
    /// build skips png's CRC checks, so the saved input is rebuilt here with valid CRCs.)
    #[test]
    fn a_huge_header_is_refused_before_any_allocation() {
        let mut f = start(65544, 16714760, 0);
        chunk(&mut f, b"IDAT", b"x\x9cc`\x00\x00\x00\x02\x00\x01");
        chunk(&mut f, b"IEND", b"");
        let e = decode_png(&f, "huge.png", 3).unwrap_err().to_string();
        assert!(
            e.contains("huge.png") && e.contains("65544×16714760"),
            "{e}"
        );
    }

    /// A 1×1 indexed PNG with the given PLTE chunk.
    fn indexed(plte: &[u8]) -> Vec<u8> {
        let mut f = start(1, 1, 3);
        chunk(&mut f, b"PLTE", plte);
        // One row (filter 0, index 0) as a stored zlib block.
        chunk(
            &mut f,
            b"IDAT",
            b"\x78\x01\x01\x02\x00\xfd\xff\x00\x00\x00\x02\x00\x01",
        );
        chunk(&mut f, b"IEND", b"");
        f
    }

    /// Found by fuzzing (fuzz/README.md): a PLTE of 4 bytes made png 0.18.1 panic in
    /// next_frame.
    #[test]
    fn a_palette_of_partial_entries_is_an_error_not_a_panic() {
        let t = decode_png(&indexed(&[255, 0, 0]), "red.png", 3).unwrap();
        assert_eq!(t.data, [1.0, -1.0, -1.0]);
        let e = decode_png(&indexed(&[1, 2, 3, 4]), "plte.png", 3).unwrap_err();
        assert!(e.to_string().contains("plte.png: its PLTE"), "{e}");
    }

    #[test]
    fn decodes_what_png_writes() {
        let im = Image {
            width: 3,
            height: 2,
            channels: 1,
            pixels: vec![0, 255, 0, 255, 0, 255],
        };
        let t = decode_png(&im.png().unwrap(), "x", 1).unwrap();
        assert_eq!(t.shape, [1, 1, 2, 3]);
        assert_eq!(t.data, [-1.0, 1.0, -1.0, 1.0, -1.0, 1.0]);
    }
}
