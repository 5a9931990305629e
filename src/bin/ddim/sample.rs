//! `ddim sample`: DDIM (any η) or DDPM sampling to a grid, a folder, .npy or .npz.

use crate::common::{self, ModelArgs, StepArgs};
use crate::output::{self, Kind};
use crate::progress::Bar;
use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::image::{self, write_atomic};
use ddim_webgpu::sampler::{self, Job};
use ddim_webgpu::{npy, Error, Tensor};
use std::path::{Path, PathBuf};

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    steps: StepArgs,
    /// Seed of the counter-based noise (x_T and, for η > 0, every step's noise).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of samples [default: 16, or the N of --init-noise].
    #[arg(long)]
    n: Option<usize>,
    /// Samples per batch [default: all that fit].
    #[arg(long)]
    batch: Option<usize>,
    /// Start from this x_T instead: float32 .npy of shape [N, C, H, W].
    #[arg(long)]
    init_noise: Option<PathBuf>,
    /// .png (grid), .npy (float32 NCHW, unclamped), .npz (uint8 NHWC, arr_0) or a folder.
    #[arg(long)]
    out: PathBuf,
    /// Also save the predicted x0 of every step: .png (a row per sample) or .npy [S,N,C,H,W].
    #[arg(long)]
    sequence: Option<PathBuf>,
}

pub fn load_init(path: &Path, n: Option<usize>, c: usize, r: usize) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let t = npy::parse_f32(&bytes, &path.display().to_string())?;
    let ok = t.shape.len() == 4 && t.shape[1..] == [c, r, r] && n.is_none_or(|n| n == t.shape[0]);
    if !ok || t.shape[0] == 0 {
        return Err(Error::Shape {
            what: format!("--init-noise {}", path.display()),
            expected: vec![
                n.unwrap_or(t.shape.first().copied().unwrap_or(1)).max(1),
                c,
                r,
                r,
            ],
            found: t.shape,
        }
        .into());
    }
    Ok(t)
}

pub fn run(a: Args) -> Result<()> {
    let kind = output::kind(&a.out)?;
    if let Some(s) = &a.sequence {
        if !matches!(output::kind(s)?, Kind::Png | Kind::Npy) {
            return Err(
                Error::invalid("sequence", format!("{}: use .png or .npy", s.display())).into(),
            );
        }
    }
    if a.n == Some(0) || a.batch == Some(0) {
        return Err(Error::invalid("n", "--n and --batch must be at least 1").into());
    }
    let model = common::load(&a.model)?;
    let (c, r) = (
        model.config.model.in_channels,
        model.config.model.resolution,
    );
    let (seq, table) = common::table(&model, &a.steps)?;
    let init = match &a.init_noise {
        Some(p) => Some(load_init(p, a.n, c, r)?),
        None => None,
    };
    let n = init.as_ref().map_or(a.n.unwrap_or(16), |t| t.shape[0]);
    output::check_channels(kind, c)?;
    let mut backend = common::backend(&a.model, &model)?;
    // A folder is written batch by batch, so by default a batch is what the backend holds.
    let batch = a.batch.unwrap_or(backend.max_batch()).max(1);
    let first = if kind == Kind::Dir {
        output::done_in_dir(&a.out).min(n)
    } else {
        0
    };
    if first == n {
        eprintln!("{}: all {n} samples already exist", a.out.display());
        return Ok(());
    }
    if first > 0 {
        eprintln!("{}: resuming at sample {first}", a.out.display());
    }
    let mut bar = Bar::new("sampling");
    let mut parts = Vec::new();
    let mut seqs: Vec<Vec<Tensor>> = Vec::new();
    // A folder is written batch by batch, so an interrupted run resumes where it stopped.
    let chunk = if kind == Kind::Dir { batch } else { n };
    let per_run = batch.min(backend.max_batch()).max(1);
    // Each chunk runs in batches of per_run; count them chunk by chunk.
    let total_steps: usize = (first..n)
        .step_by(chunk)
        .map(|s| table.len() * chunk.min(n - s).div_ceil(per_run))
        .sum();
    let mut done_before = 0;
    for start in (first..n).step_by(chunk) {
        let m = chunk.min(n - start);
        let init_part = init.as_ref().map(|t| t.slice_batch(start, start + m));
        let job = Job {
            table: &table,
            seed: a.seed,
            first: start,
            n: m,
            init: init_part.as_ref(),
            batch,
            keep_x0: a.sequence.is_some(),
        };
        let out = sampler::run(backend.as_mut(), &job, c, r, &mut |p| {
            bar.update(done_before + p.done, total_steps);
            Ok(())
        })?;
        done_before += table.len() * m.div_ceil(per_run);
        if kind == Kind::Dir {
            output::write(kind, &a.out, &out.samples, start)?;
        } else {
            parts.push(out.samples);
        }
        seqs.push(out.x0_seq);
    }
    if kind != Kind::Dir {
        let all = concat(parts);
        output::write(kind, &a.out, &all, 0)?;
    }
    if let Some(s) = &a.sequence {
        let per_step: Vec<Tensor> = (0..table.len())
            .map(|k| concat(seqs.iter().map(|b| b[k].clone()).collect()))
            .collect();
        write_sequence(s, &per_step)?;
    }
    common::print_notes(backend.as_mut());
    let secs = bar.seconds();
    eprintln!(
        "wrote {}: {} samples, {} steps ({} .. {}), {:.1} s ({:.0} ms/step)",
        a.out.display(),
        n - first,
        seq.len(),
        seq[0],
        seq[seq.len() - 1],
        secs,
        secs * 1e3 / total_steps.max(1) as f64
    );
    Ok(())
}

pub fn concat(parts: Vec<Tensor>) -> Tensor {
    let mut shape = parts[0].shape.clone();
    shape[0] = parts.iter().map(|p| p.shape[0]).sum();
    Tensor {
        shape,
        data: parts.into_iter().flat_map(|p| p.data).collect(),
    }
}

/// x0 predictions: a PNG with one row per sample and one column per step, or .npy [S,N,C,H,W].
fn write_sequence(path: &Path, steps: &[Tensor]) -> Result<()> {
    if output::kind(path)? == Kind::Npy {
        let mut shape = vec![steps.len()];
        shape.extend_from_slice(&steps[0].shape);
        let t = Tensor {
            shape,
            data: steps.iter().flat_map(|s| s.data.iter().copied()).collect(),
        };
        return Ok(write_atomic(path, &npy::to_bytes_f32(&t))?);
    }
    let n = steps[0].shape[0];
    let mut imgs = Vec::new();
    for i in 0..n {
        for s in steps {
            imgs.push(image::sample_image(s, i)?);
        }
    }
    Ok(write_atomic(path, &image::grid(&imgs, steps.len()).png()?)?)
}
