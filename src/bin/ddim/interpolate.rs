//! `ddim interpolate`: slerp between the x_T of two seeds (the DDIM paper's interpolation),
//! decoded with the usual sampler, one frame per latent.

use crate::common::{self, ModelArgs, StepArgs};
use crate::output::{self, Kind};
use crate::progress::Bar;
use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::image;
use ddim_webgpu::sampler::{self, interpolation_latents, Job};
use ddim_webgpu::Error;
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    steps: StepArgs,
    #[arg(long, default_value_t = 0)]
    seed_a: u64,
    #[arg(long, default_value_t = 1)]
    seed_b: u64,
    /// Frames from A to B, both included (the paper uses 11).
    #[arg(long, default_value_t = 11)]
    frames: usize,
    #[arg(long)]
    batch: Option<usize>,
    /// .png (one strip), .npy, .npz or a folder.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let kind = output::kind(&a.out)?;
    let model = common::load(&a.model)?;
    let (c, r) = (
        model.config.model.in_channels,
        model.config.model.resolution,
    );
    output::check_channels(kind, c)?;
    let (_, table) = common::table(&model, &a.steps)?;
    let z = interpolation_latents(a.seed_a, a.seed_b, a.frames, c, r)?;
    if a.batch == Some(0) {
        return Err(Error::invalid("batch", "must be at least 1").into());
    }
    let mut backend = common::backend(&a.model, &model)?;
    let mut bar = Bar::new("interpolating");
    let job = Job {
        table: &table,
        seed: a.seed_a,
        first: 0,
        n: a.frames,
        init: Some(&z),
        batch: a.batch.unwrap_or(a.frames),
        keep_x0: false,
    };
    let out = sampler::run(backend.as_mut(), &job, c, r, &mut |p| {
        bar.update(p.done, p.total);
        Ok(())
    })?;
    if kind == Kind::Png {
        let strip = image::batch_grid(&out.samples, Some(a.frames))?;
        image::write_atomic(&a.out, &strip.png()?)?;
    } else {
        output::write(kind, &a.out, &out.samples, 0)?;
    }
    eprintln!(
        "wrote {}: {} frames from seed {} to seed {}",
        a.out.display(),
        a.frames,
        a.seed_a,
        a.seed_b
    );
    Ok(())
}
