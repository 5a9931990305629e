//! Writing results by the output's extension: .png grid, .npy float32 [N,C,H,W], .npz uint8
//! NHWC under arr_0, or a folder of numbered PNGs. Every file goes through a temporary name
//! and a rename, so a failure never leaves a partial file.

use anyhow::Result;
use ddim_webgpu::image::{self, write_atomic};
use ddim_webgpu::{npy, Error, Tensor};
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Png,
    Npy,
    Npz,
    Dir,
}

/// Decide the output kind and check it can be written, before any compute.
pub fn kind(path: &Path) -> Result<Kind> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let k = match ext.as_deref() {
        _ if path.is_dir() => Kind::Dir,
        Some("png") => Kind::Png,
        Some("npy") => Kind::Npy,
        Some("npz") => Kind::Npz,
        None => Kind::Dir,
        Some(e) => {
            return Err(Error::invalid(
                "out",
                format!(
                    "{}: unknown extension .{e} (use .png, .npy, .npz or a folder)",
                    path.display()
                ),
            )
            .into())
        }
    };
    if k != Kind::Dir {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(Error::invalid(
                "out",
                format!(
                    "{}: folder {} does not exist",
                    path.display(),
                    parent.display()
                ),
            )
            .into());
        }
    }
    Ok(k)
}

/// Image outputs need 1 or 3 channels: say so before any compute.
pub fn check_channels(kind: Kind, c: usize) -> Result<()> {
    if matches!(kind, Kind::Png | Kind::Dir | Kind::Npz) && c != 1 && c != 3 {
        return Err(Error::invalid(
            "out",
            format!("the model has {c} channels; images need 1 or 3, use .npy"),
        )
        .into());
    }
    Ok(())
}

/// Write a batch [N, C, H, W]; `first` numbers the files of a folder output.
pub fn write(kind: Kind, path: &Path, t: &Tensor, first: usize) -> Result<()> {
    match kind {
        Kind::Png => write_atomic(path, &image::batch_grid(t, None)?.png()?)?,
        Kind::Npy => write_atomic(path, &npy::to_bytes_f32(t))?,
        Kind::Npz => {
            let (n, c, h, w) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3]);
            let mut px = vec![0u8; n * h * w * c];
            for i in 0..n {
                for ch in 0..c {
                    for p in 0..h * w {
                        px[(i * h * w + p) * c + ch] =
                            image::to_u8(t.data[(i * c + ch) * h * w + p]);
                    }
                }
            }
            let arr = npy::to_bytes_u8(&[n, h, w, c], &px);
            write_atomic(
                path,
                &npy::npz(&[("arr_0.npy", arr)], &path.display().to_string())?,
            )?
        }
        Kind::Dir => {
            std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
            for i in 0..t.shape[0] {
                let f = path.join(format!("{}.png", first + i));
                write_atomic(&f, &image::sample_image(t, i)?.png()?)?;
            }
        }
    }
    Ok(())
}
