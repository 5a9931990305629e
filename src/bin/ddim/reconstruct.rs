//! `ddim reconstruct`: images → x_T through the reversed deterministic ODE, then back with
//! η = 0 DDIM on the same timesteps; reports how close the round trip comes.

use crate::common::{self, ModelArgs, StepArgs};
use crate::output::{self, Kind};
use crate::progress::Bar;
use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::image::{self, write_atomic};
use ddim_webgpu::sampler::{self, invert, Job};
use ddim_webgpu::{npy, Error, Tensor};
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    steps: StepArgs,
    /// Images to encode: PNG files at the model's resolution, or one float32 .npy [N,C,H,W]
    /// in model space ([-1, 1]).
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// The reconstruction: .png (inputs on the first row, reconstructions below), .npy, .npz
    /// or a folder.
    #[arg(long)]
    out: PathBuf,
    /// Also save the encoded x_T as float32 .npy.
    #[arg(long)]
    latent_out: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let kind = output::kind(&a.out)?;
    if let Some(l) = &a.latent_out {
        if output::kind(l)? != Kind::Npy {
            return Err(
                Error::invalid("latent-out", format!("{}: must be .npy", l.display())).into(),
            );
        }
    }
    let model = common::load(&a.model)?;
    let (c, r) = (
        model.config.model.in_channels,
        model.config.model.resolution,
    );
    output::check_channels(kind, c)?;
    let mut parts = Vec::new();
    for p in &a.input {
        let t = if p.extension().and_then(|e| e.to_str()) == Some("npy") {
            let b = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            npy::parse_f32(&b, &p.display().to_string())?
        } else {
            image::read_png(p, c)?
        };
        if t.shape.len() != 4 || t.shape[1..] != [c, r, r] {
            return Err(Error::Shape {
                what: format!("--input {} (the model is {c}×{r}×{r})", p.display()),
                expected: vec![t.shape.first().copied().unwrap_or(1), c, r, r],
                found: t.shape,
            }
            .into());
        }
        parts.push(t);
    }
    let x0 = crate::sample::concat(parts);
    let n = x0.shape[0];
    let mut s = a.steps.clone();
    s.eta = 0.0;
    let (seq, table) = common::table(&model, &s)?;
    let sched = model.config.diffusion.schedule()?;
    let mut backend = common::backend(&a.model, &model)?;
    let mut bar = Bar::new("encoding");
    let xt = invert(backend.as_mut(), &sched, &seq, &x0, &mut |p| {
        bar.update(p.done, p.total);
        Ok(())
    })?;
    let mut bar = Bar::new("decoding");
    let job = Job {
        table: &table,
        seed: 0,
        first: 0,
        n,
        init: Some(&xt),
        batch: n,
        keep_x0: false,
    };
    let rec = sampler::run(backend.as_mut(), &job, c, r, &mut |p| {
        bar.update(p.done, p.total);
        Ok(())
    })?
    .samples;
    if kind == Kind::Png {
        let both = crate::sample::concat(vec![x0.clone(), rec.clone()]);
        write_atomic(&a.out, &image::batch_grid(&both, Some(n))?.png()?)?;
    } else {
        output::write(kind, &a.out, &rec, 0)?;
    }
    if let Some(l) = &a.latent_out {
        write_atomic(l, &npy::to_bytes_f32(&xt))?;
    }
    let mse = mse(&x0, &rec);
    // PSNR over the [-1, 1] range (peak-to-peak 2).
    let psnr = 10.0 * (4.0 / mse.max(1e-20)).log10();
    eprintln!(
        "wrote {}: {n} images through {} steps; round-trip MSE {mse:.3e}, PSNR {psnr:.1} dB",
        a.out.display(),
        seq.len()
    );
    Ok(())
}

fn mse(a: &Tensor, b: &Tensor) -> f64 {
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.data.len() as f64
}
