//! A folder of numbered PNGs (`{index}.png`), written batch by batch under a manifest, so a
//! run resumes where it stopped and shards on many machines fill one folder.

use crate::manifest::{self, Manifest};
use crate::progress::Bar;
use crate::shard::Shard;
use anyhow::Result;
use ddim_webgpu::backend::Backend;
use ddim_webgpu::image::{self, write_atomic};
use ddim_webgpu::sampler::{self, Job};
use ddim_webgpu::schedule::StepCoeffs;
use ddim_webgpu::{Error, Tensor};
use std::ops::Range;
use std::path::{Path, PathBuf};

pub fn file(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("{index}.png"))
}

/// The pixels of one sample file (rows of interleaved channels), checked to be a whole PNG
/// of the run's size and channel count: a torn or foreign file is an error.
pub fn read_sample(path: &Path, c: usize, r: usize) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec.read_info().map_err(|e| format!("not a PNG: {e}"))?;
    let info = reader.info();
    let want = if c == 1 {
        png::ColorType::Grayscale
    } else {
        png::ColorType::Rgb
    };
    let (w, h, ct, depth) = (info.width, info.height, info.color_type, info.bit_depth);
    if (w as usize, h as usize, ct, depth) != (r, r, want, png::BitDepth::Eight) {
        return Err(format!(
            "{w}×{h} {ct:?} {depth:?}, not {r}×{r} {want:?} 8-bit"
        ));
    }
    let mut buf = vec![0; r * r * c];
    reader
        .next_frame(&mut buf)
        .map_err(|e| format!("bad PNG data: {e}"))?;
    reader.finish().map_err(|e| format!("bad PNG end: {e}"))?;
    Ok(buf)
}

pub struct FolderJob<'a> {
    pub dir: &'a Path,
    pub shard: &'a Shard,
    pub manifest: &'a Manifest,
    pub table: &'a [StepCoeffs],
    pub init: Option<&'a Tensor>,
}

/// Sample this shard's batches that are not complete on disk. Returns how many samples it
/// wrote.
pub fn run(be: &mut dyn Backend, job: &FolderJob, bar: &mut Bar) -> Result<usize> {
    let m = job.manifest;
    let (n, batch, c, r) = (m.n, m.batch, m.channels, m.resolution);
    manifest::claim(job.dir, m)?;
    let batches = n.div_ceil(batch);
    let mine = job.shard.batches(batches);
    let span = |b: &Range<usize>| (b.start * batch).min(n)..(b.end * batch).min(n);
    let samples = span(&mine);
    eprintln!(
        "shard {}/{} from {}: batches {} of {batches}, samples {} of {n}",
        job.shard.index,
        job.shard.count,
        job.shard.source,
        span_text(&mine),
        span_text(&samples),
    );
    if job.shard.count > batches {
        eprintln!(
            "warning: {} shards share {batches} batches of {batch}, so {} of them have \
             nothing to do; a smaller --batch spreads the work",
            job.shard.count,
            job.shard.count - batches
        );
    }
    let todo: Vec<usize> = mine
        .clone()
        .filter(|&k| span(&(k..k + 1)).any(|i| read_sample(&file(job.dir, i), c, r).is_err()))
        .collect();
    if todo.is_empty() {
        eprintln!(
            "{}: all {} samples of this shard exist",
            job.dir.display(),
            samples.len()
        );
        return Ok(0);
    }
    if todo.len() < mine.len() {
        eprintln!(
            "{}: resuming, {} of {} batches already complete",
            job.dir.display(),
            mine.len() - todo.len(),
            mine.len()
        );
    }
    if be.max_batch() < batch {
        eprintln!(
            "warning: this backend holds at most {} samples at once, so each batch of {batch} \
             runs in parts; its bytes may differ from a run that holds a whole batch",
            be.max_batch()
        );
    }
    let per_run = batch.min(be.max_batch()).max(1);
    let total = job.table.len() * todo.len() * batch.div_ceil(per_run);
    let mut done_before = 0;
    let mut written = 0;
    for k in todo {
        let s = span(&(k..k + 1));
        let init = job.init.map(|t| t.slice_batch(s.start, s.end));
        let out = sampler::run(
            be,
            &Job {
                table: job.table,
                seed: m.seed,
                first: s.start,
                n: s.len(),
                init: init.as_ref(),
                batch,
                keep_x0: false,
            },
            c,
            r,
            &mut |p| {
                bar.update(done_before + p.done, total);
                Ok(())
            },
        )?;
        done_before += job.table.len() * s.len().div_ceil(per_run);
        for (j, i) in s.clone().enumerate() {
            write_atomic(
                &file(job.dir, i),
                &image::sample_image(&out.samples, j)?.png()?,
            )?;
        }
        written += s.len();
    }
    Ok(written)
}

/// A range for people: "none", "7" or "4-7" (both ends included).
fn span_text(r: &Range<usize>) -> String {
    match r.len() {
        0 => "none".into(),
        1 => r.start.to_string(),
        _ => format!("{}-{}", r.start, r.end - 1),
    }
}

/// Indices as compact ranges for messages: "3, 7-9, 12".
pub fn ranges(idx: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && idx[j + 1] == idx[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            idx[i].to_string()
        } else {
            format!("{}-{}", idx[i], idx[j])
        });
        i = j + 1;
    }
    if parts.len() > 12 {
        let more = parts.len() - 10;
        parts.truncate(10);
        parts.push(format!("and {more} more ranges"));
    }
    parts.join(", ")
}

/// A missing manifest, named for the user.
pub fn no_manifest(dir: &Path) -> Error {
    Error::invalid(
        "dir",
        format!(
            "{}: no {} here, so not a folder written by `ddim sample --out DIR`",
            dir.display(),
            manifest::FILE
        ),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges() {
        assert_eq!(super::ranges(&[3, 7, 8, 9, 12]), "3, 7-9, 12");
        assert_eq!(super::ranges(&[]), "");
        let many: Vec<usize> = (0..40).map(|i| i * 2).collect();
        assert!(super::ranges(&many).ends_with("and 30 more ranges"));
    }
}
