//! `ddim pack DIR --out samples.npz`: a finished sample folder (one run, or all its shards) as
//! the uint8 NHWC `arr_0` array that FID tools read.

use crate::folder::{self, file, read_sample};
use crate::manifest;
use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::{npy, Error};
use std::io::Write;
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct Args {
    /// A folder written by `ddim sample --out DIR` (with or without --shard).
    dir: PathBuf,
    /// The .npz to write: `arr_0`, uint8, [n, H, W, C].
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    if a.out.extension().and_then(|e| e.to_str()) != Some("npz") {
        return Err(Error::invalid("out", format!("{}: use a .npz name", a.out.display())).into());
    }
    let m = manifest::read(&a.dir)?.ok_or_else(|| folder::no_manifest(&a.dir))?;
    let (n, c, r) = (m.n, m.channels, m.resolution);
    // Check every file before writing a byte, so an incomplete folder names all that is
    // missing at once and leaves no output.
    let mut missing = Vec::new();
    let mut bad = Vec::new();
    for i in 0..n {
        let p = file(&a.dir, i);
        match read_sample(&p, c, r) {
            Ok(_) => {}
            Err(_) if !p.exists() => missing.push(i),
            Err(why) => bad.push(format!("{}: {why}", p.display())),
        }
    }
    if !missing.is_empty() || !bad.is_empty() {
        let mut why = String::new();
        if !missing.is_empty() {
            why += &format!(
                "{} of {n} samples missing: {}",
                missing.len(),
                folder::ranges(&missing)
            );
        }
        for b in bad.iter().take(5) {
            why += &format!("\n  unreadable {b}");
        }
        if bad.len() > 5 {
            why += &format!("\n  and {} more unreadable files", bad.len() - 5);
        }
        why += "\n  (run the missing shards again: they redo only what is missing)";
        return Err(Error::invalid("dir", format!("{}: {why}", a.dir.display())).into());
    }
    npy::write_npz_u8(&a.out, &[n, r, r, c], &mut |w: &mut dyn Write| {
        for i in 0..n {
            let p = file(&a.dir, i);
            // Read again (not kept from the check): 50,000 images need not fit in memory.
            let px = read_sample(&p, c, r)
                .map_err(|why| Error::invalid("dir", format!("{}: {why}", p.display())))?;
            w.write_all(&px).map_err(|e| Error::io(&a.out, e))?;
        }
        Ok(())
    })?;
    eprintln!(
        "wrote {}: arr_0 uint8 [{n}, {r}, {r}, {c}] from {}",
        a.out.display(),
        a.dir.display()
    );
    Ok(())
}
