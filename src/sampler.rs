//! The sampling loop, written once over the `Backend` trait: plain DDIM/DDPM sampling,
//! slerp interpolation between seeds, and DDIM inversion / reconstruction.

use crate::backend::{Backend, NoiseKey};
use crate::error::{Error, Result};
use crate::model::DiffusionConfig;
use crate::rng;
use crate::schedule::{self, inversion_table, Schedule, Skip, StepCoeffs, StepOptions};
use crate::tensor::Tensor;

/// What a caller asks of a sampling run, in the words the CLI and the page take. None takes
/// the model's default (its diffusers scheduler config), else the official sampler's.
#[derive(Clone, Debug, Default)]
pub struct StepRequest {
    pub steps: usize,
    pub skip: Option<String>,
    pub steps_offset: Option<usize>,
    pub eta: f64,
    /// ddim or ddpm.
    pub sampler: Option<String>,
    pub clip: Option<bool>,
    pub prediction: Option<String>,
    pub final_alpha: Option<String>,
}

/// The skip, the timesteps (sampling order) and the coefficient table of a request: the one
/// resolution that the CLI and the web module share.
pub fn resolve(d: &DiffusionConfig, r: &StepRequest) -> Result<(Skip, Vec<i64>, Vec<StepCoeffs>)> {
    let skip: Skip = match &r.skip {
        Some(k) => k.parse()?,
        None => d.skip.unwrap_or(Skip::Uniform),
    };
    let offset = r.steps_offset.unwrap_or(d.steps_offset);
    let seq = schedule::timesteps(skip, d.num_timesteps, r.steps, offset)?;
    let opt = StepOptions {
        sampler: match &r.sampler {
            Some(s) => s.parse()?,
            None => Default::default(),
        },
        eta: r.eta,
        prediction: match &r.prediction {
            Some(p) => p.parse()?,
            None => d.prediction,
        },
        clip: match r.clip {
            Some(true) => Some(1.0),
            Some(false) => None,
            None => d.clip_sample,
        },
        final_alpha: match &r.final_alpha {
            Some(f) => f.parse()?,
            None => d.final_alpha,
        },
    };
    let table = schedule::step_table(&d.schedule()?, &seq, &opt)?;
    Ok((skip, seq, table))
}

/// What the loop reports after every step; returning an error from the callback cancels.
pub struct Progress<'a> {
    /// Steps finished over the whole job (all batches).
    pub done: usize,
    pub total: usize,
    /// The x0 predicted by this step for the current batch, when the job keeps them.
    pub x0: Option<&'a Tensor>,
}

pub struct Job<'a> {
    pub table: &'a [StepCoeffs],
    pub seed: u64,
    /// Index of the first sample: noise is keyed by sample index, so a job that resumes at
    /// sample k draws exactly what a full run would have drawn for it.
    pub first: usize,
    pub n: usize,
    /// [n, C, H, W] initial latents; None draws them from the seed.
    pub init: Option<&'a Tensor>,
    /// Largest batch to run at once (further capped by the backend).
    pub batch: usize,
    /// Keep the predicted x0 of every step (the official `sample_sequence`).
    pub keep_x0: bool,
}

pub struct Output {
    /// The final latents, [n, C, H, W], in model space and unclamped.
    pub samples: Tensor,
    /// With `keep_x0`: one [n, C, H, W] tensor per step.
    pub x0_seq: Vec<Tensor>,
}

/// x_T for samples `first..first + n` of a seed, shape [n, c, r, r].
pub fn initial_noise(seed: u64, first: usize, n: usize, c: usize, r: usize) -> Tensor {
    Tensor {
        shape: vec![n, c, r, r],
        data: rng::normal_batch(seed, rng::STREAM_INIT, first, n, c * r * r),
    }
}

fn concat(parts: &[Tensor]) -> Tensor {
    let mut shape = parts[0].shape.clone();
    shape[0] = parts.iter().map(|p| p.shape[0]).sum();
    Tensor {
        shape,
        data: parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
    }
}

/// Run a job: split into batches, run every step of the table on the backend.
pub fn run(
    backend: &mut dyn Backend,
    job: &Job,
    c: usize,
    r: usize,
    progress: &mut dyn FnMut(Progress) -> Result<()>,
) -> Result<Output> {
    if job.n == 0 {
        return Err(Error::invalid("n", "must be at least 1"));
    }
    if let Some(x) = job.init {
        let want = vec![job.n, c, r, r];
        if x.shape != want {
            return Err(Error::Shape {
                what: "initial noise".into(),
                expected: want,
                found: x.shape.clone(),
            });
        }
    }
    let batch = job.batch.clamp(1, backend.max_batch().max(1));
    let total = job.table.len() * job.n.div_ceil(batch);
    let (mut outs, mut seqs): (Vec<Tensor>, Vec<Vec<Tensor>>) = (Vec::new(), Vec::new());
    let mut done = 0;
    for off in (0..job.n).step_by(batch) {
        let m = batch.min(job.n - off);
        let first = job.first + off;
        let x = match job.init {
            Some(t) => t.slice_batch(off, off + m),
            None => initial_noise(job.seed, first, m, c, r),
        };
        backend.start(
            &x,
            job.table,
            NoiseKey {
                seed: job.seed,
                first_sample: first,
            },
        )?;
        let mut seq = Vec::new();
        for k in 0..job.table.len() {
            backend.step(k)?;
            done += 1;
            let x0 = if job.keep_x0 {
                Some(backend.x0()?)
            } else {
                None
            };
            progress(Progress {
                done,
                total,
                x0: x0.as_ref(),
            })?;
            seq.extend(x0);
        }
        outs.push(backend.latent()?);
        seqs.push(seq);
    }
    let x0_seq = (0..if job.keep_x0 { job.table.len() } else { 0 })
        .map(|k| concat(&seqs.iter().map(|s| s[k].clone()).collect::<Vec<_>>()))
        .collect();
    Ok(Output {
        samples: concat(&outs),
        x0_seq,
    })
}

/// Spherical interpolation between two latents (the DDIM paper's interpolation).
pub fn slerp(z1: &[f32], z2: &[f32], alpha: f64) -> Vec<f32> {
    let dot: f64 = z1.iter().zip(z2).map(|(a, b)| *a as f64 * *b as f64).sum();
    let n1 = z1.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
    let n2 = z2.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
    let theta = (dot / (n1 * n2)).clamp(-1.0, 1.0).acos();
    let (a, b) = if theta.sin().abs() < 1e-12 {
        (1.0 - alpha, alpha)
    } else {
        (
            ((1.0 - alpha) * theta).sin() / theta.sin(),
            (alpha * theta).sin() / theta.sin(),
        )
    };
    z1.iter()
        .zip(z2)
        .map(|(x, y)| (a * *x as f64 + b * *y as f64) as f32)
        .collect()
}

/// `frames` latents along the slerp from seed A's x_T to seed B's, as one batch.
pub fn interpolation_latents(
    seed_a: u64,
    seed_b: u64,
    frames: usize,
    c: usize,
    r: usize,
) -> Result<Tensor> {
    if frames < 2 {
        return Err(Error::invalid(
            "frames",
            format!("{frames} (need at least 2)"),
        ));
    }
    let za = initial_noise(seed_a, 0, 1, c, r).data;
    let zb = initial_noise(seed_b, 0, 1, c, r).data;
    let data = (0..frames)
        .flat_map(|i| slerp(&za, &zb, i as f64 / (frames - 1) as f64))
        .collect();
    Tensor::new(vec![frames, c, r, r], data)
}

/// DDIM inversion: run the deterministic ODE from images x0 up to x_T through `seq`.
pub fn invert(
    backend: &mut dyn Backend,
    sched: &Schedule,
    seq: &[i64],
    x0: &Tensor,
    progress: &mut dyn FnMut(Progress) -> Result<()>,
) -> Result<Tensor> {
    let table = inversion_table(sched, seq);
    let n = x0.shape[0];
    let job = Job {
        table: &table,
        seed: 0,
        first: 0,
        n,
        init: Some(x0),
        batch: n,
        keep_x0: false,
    };
    Ok(run(backend, &job, x0.shape[1], x0.shape[2], progress)?.samples)
}
