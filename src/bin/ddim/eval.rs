//! `ddim eval`: sample quality against the training images, for a grid of step counts, η and
//! skips (the shape of the DDIM paper's Table 1), in the SWD feature space of `ddim_webgpu::eval`.

use crate::common::{self, ModelArgs, StepArgs};
use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::eval::swd;
use ddim_webgpu::image::read_atlas;
use ddim_webgpu::sampler::{self, Job};
use ddim_webgpu::Error;
use std::path::PathBuf;
use std::time::Instant;

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The reference images: an atlas PNG with its .json beside it.
    #[arg(long, default_value = "data/emoji32.png")]
    data: PathBuf,
    /// Samples per row (the paper's FID uses 50k; SWD is stable from about 1k).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Step counts S, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20,50,100,1000")]
    steps: Vec<usize>,
    /// η values, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,0.2,0.5,1")]
    eta: Vec<f64>,
    /// Skips, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "uniform")]
    skip: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(a: Args) -> Result<()> {
    if a.n < 2 || a.batch == 0 {
        return Err(Error::invalid("n", "--n must be at least 2 and --batch at least 1").into());
    }
    let data = read_atlas(&a.data)?;
    let model = common::load(&a.model)?;
    let (c, r) = (
        model.config.model.in_channels,
        model.config.model.resolution,
    );
    if data.shape[1..] != [c, r, r] {
        return Err(Error::Shape {
            what: format!("{} against the model", a.data.display()),
            expected: vec![data.shape[0], c, r, r],
            found: data.shape,
        }
        .into());
    }
    let mut backend = common::backend(a.model.backend, &model)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // The floor: two disjoint halves of the training set.
    let half = data.shape[0] / 2;
    let floor = swd(
        &data.slice_batch(0, half),
        &data.slice_batch(half, 2 * half),
    )?;
    println!(
        "SWD ×10³ against {} ({} images); levels finest first; {} samples per row",
        a.data.display(),
        data.shape[0],
        a.n
    );
    println!("| skip | S | η | SWD (mean) | per level | sampling time |");
    println!("|---|---|---|---|---|---|");
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "| training set, half vs half | | | {:.1} | {} | |",
        mean(&floor),
        fmt(&floor)
    );
    for skip in &a.skip {
        for &s in &a.steps {
            for &eta in &a.eta {
                let args = StepArgs {
                    steps: s,
                    skip: Some(skip.clone()),
                    steps_offset: None,
                    eta,
                    sampler: "ddim".into(),
                    clip: false,
                    no_clip: false,
                    prediction: None,
                    final_alpha: None,
                };
                let (_, table) = common::table(&model, &args)?;
                let job = Job {
                    table: &table,
                    seed: a.seed,
                    first: 0,
                    n: a.n,
                    init: None,
                    batch: a.batch,
                    keep_x0: false,
                };
                let t0 = Instant::now();
                let out = sampler::run(backend.as_mut(), &job, c, r, &mut |_| Ok(()))?;
                let secs = t0.elapsed().as_secs_f64();
                let d = swd(&data, &out.samples)?;
                println!(
                    "| {skip} | {s} | {eta} | {:.1} | {} | {secs:.1} s |",
                    mean(&d),
                    fmt(&d)
                );
            }
        }
    }
    Ok(())
}
