//! `ddim sample`: DDIM (any η) or DDPM sampling to a grid, a folder, .npy or .npz.

use crate::common::{self, ModelArgs, StepArgs};
use crate::folder::{self, FolderJob};
use crate::manifest::{self, Manifest, Settings};
use crate::output::{self, Kind};
use crate::progress::Bar;
use crate::shard::Shard;
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
    /// Samples per batch [default: all that fit; for a folder, its own, else 64].
    #[arg(long)]
    batch: Option<usize>,
    /// Start from this x_T instead: float32 .npy of shape [N, C, H, W].
    #[arg(long)]
    init_noise: Option<PathBuf>,
    /// .png (grid), .npy (float32 NCHW, unclamped), .npz (uint8 NHWC, arr_0) or a folder.
    #[arg(long)]
    out: PathBuf,
    /// Also save the predicted x0 of every step: .png (a row per sample) or .npy [S,N,C,H,W].
    /// Not with a folder --out.
    #[arg(long)]
    sequence: Option<PathBuf>,
    /// With a folder --out: sample only part I of N (I from 0), split at batch boundaries;
    /// `auto` reads I and N from the job engine (SLURM or AWS Batch job array, Kubernetes
    /// Indexed Job, RANK/WORLD_SIZE). Every shard writes the files a single run would.
    #[arg(long, value_name = "I/N|auto")]
    shard: Option<String>,
    /// The shard count, for engines that do not give it (Kubernetes Indexed Jobs).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
}

/// Samples per batch of a folder run without --batch: fixed, so that shards on different
/// machines split the same batches; large enough to keep a GPU busy.
const FOLDER_BATCH: usize = 64;

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
    let shard = match (&a.shard, a.shards) {
        (Some(spec), shards) => Some(Shard::parse(spec, shards, &|k| std::env::var(k).ok())?),
        (None, Some(_)) => {
            return Err(Error::invalid("shards", "--shards goes with --shard auto").into())
        }
        (None, None) => None,
    };
    if kind != Kind::Dir && shard.is_some() {
        return Err(Error::invalid(
            "shard",
            format!(
                "--shard writes a folder of PNGs; {} is a file",
                a.out.display()
            ),
        )
        .into());
    }
    if kind == Kind::Dir && a.sequence.is_some() {
        return Err(Error::invalid(
            "sequence",
            "--sequence needs a .png, .npy or .npz --out, not a folder",
        )
        .into());
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
    // A folder remembers its run: a resumed or later shard need not repeat --n or --batch.
    let existing = match kind {
        Kind::Dir => manifest::read(&a.out)?,
        _ => None,
    };
    let n = match &init {
        Some(t) => t.shape[0],
        None => a.n.or(existing.as_ref().map(|m| m.n)).unwrap_or(16),
    };
    output::check_channels(kind, c)?;
    let mut backend = common::backend(&a.model, &model)?;
    let mut bar = Bar::new("sampling");
    if kind == Kind::Dir {
        // The batch fixes which samples are computed together, so it must not depend on the
        // machine: --batch, else the folder's, else a fixed default.
        let batch = a
            .batch
            .or(existing.as_ref().map(|m| m.batch))
            .unwrap_or(FOLDER_BATCH)
            .clamp(1, n);
        let m = Manifest::new(&Settings {
            model: &model,
            timesteps: &seq,
            table: &table,
            eta: a.steps.eta,
            sampler: &a.steps.sampler,
            seed: a.seed,
            n,
            batch,
            init: init.as_ref(),
            precision: &a.model.precision,
        });
        let job = FolderJob {
            dir: &a.out,
            shard: &shard.unwrap_or_else(Shard::whole),
            manifest: &m,
            table: &table,
            init: init.as_ref(),
        };
        let wrote = folder::run(backend.as_mut(), &job, &mut bar)?;
        common::print_notes(backend.as_mut());
        if wrote > 0 {
            let secs = bar.seconds();
            eprintln!(
                "wrote {wrote} samples to {}, {} steps ({} .. {}), {secs:.1} s",
                a.out.display(),
                seq.len(),
                seq[0],
                seq[seq.len() - 1],
            );
        }
        return Ok(());
    }
    let batch = a.batch.unwrap_or(backend.max_batch()).max(1);
    let job = Job {
        table: &table,
        seed: a.seed,
        first: 0,
        n,
        init: init.as_ref(),
        batch,
        keep_x0: a.sequence.is_some(),
    };
    let per_run = batch.min(backend.max_batch()).max(1);
    let total_steps = table.len() * n.div_ceil(per_run);
    let out = sampler::run(backend.as_mut(), &job, c, r, &mut |p| {
        bar.update(p.done, total_steps);
        Ok(())
    })?;
    output::write(kind, &a.out, &out.samples, 0)?;
    if let Some(s) = &a.sequence {
        write_sequence(s, &out.x0_seq)?;
    }
    common::print_notes(backend.as_mut());
    let secs = bar.seconds();
    eprintln!(
        "wrote {}: {n} samples, {} steps ({} .. {}), {:.1} s ({:.0} ms/step)",
        a.out.display(),
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
