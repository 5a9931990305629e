//! Arguments shared by the sampling commands: the model, the backend, the schedule knobs.

use crate::builtin;
use anyhow::Result;
use clap::{Args as ClapArgs, ValueEnum};
use ddim_webgpu::backend::cpu::CpuBackend;
use ddim_webgpu::backend::gpu::device::{describe, is_software, Gpu};
use ddim_webgpu::backend::gpu::GpuBackend;
use ddim_webgpu::backend::Backend;
use ddim_webgpu::model::{load_model, Model};
use ddim_webgpu::schedule::{self, FinalAlpha, Prediction, Sampler, Skip, StepCoeffs, StepOptions};
use ddim_webgpu::Error;
use std::path::PathBuf;

#[derive(ClapArgs, Clone)]
pub struct ModelArgs {
    /// Weights: a .safetensors file (official or diffusers names) or a diffusers folder.
    /// Without it, the built-in emoji32 model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Config: official YAML or diffusers config.json. If omitted: <name>.yml beside the
    /// weights, the file's metadata, or the folder's config.json.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Compute backend; auto picks a GPU when one exists, else the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendKind,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Auto,
    Cpu,
    Gpu,
}

#[derive(ClapArgs, Clone)]
pub struct StepArgs {
    /// Number of sampling steps S.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// How the S timesteps are chosen out of T: uniform, quad, leading, trailing, linspace.
    #[arg(long)]
    pub skip: Option<String>,
    /// Added to every `leading` timestep, as diffusers' steps_offset.
    #[arg(long)]
    pub steps_offset: Option<usize>,
    /// η: 0 is deterministic DDIM, 1 is DDPM-like.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub eta: f64,
    /// ddim (the generalized step) or ddpm (ancestral, x0 clamped).
    #[arg(long, default_value = "ddim")]
    pub sampler: String,
    /// Clamp the predicted x0 to [-1, 1] (diffusers' clip_sample).
    #[arg(long, conflicts_with = "no_clip")]
    pub clip: bool,
    /// Never clamp x0, even when the model's scheduler_config.json asks for it.
    #[arg(long)]
    pub no_clip: bool,
    /// What the network predicts: epsilon, v or sample.
    #[arg(long)]
    pub prediction: Option<String>,
    /// The ᾱ the last step aims at: one (official) or first (diffusers set_alpha_to_one=False).
    #[arg(long)]
    pub final_alpha: Option<String>,
}

pub fn load(args: &ModelArgs) -> Result<Model> {
    match (&args.model, &args.config) {
        (Some(path), _) => Ok(load_model(path, args.config.as_deref())?),
        (None, Some(_)) => Err(Error::invalid(
            "config",
            "--config needs --model (without --model the built-in emoji32 model is used)",
        )
        .into()),
        (None, None) => {
            eprintln!("model: {}", builtin::NAME);
            builtin::load()
        }
    }
}

/// The backend to run on. `auto` takes a hardware GPU when there is one; a software adapter
/// (lavapipe, SwiftShader, WARP) is slower than our CPU backend, so it counts as none.
pub fn backend(kind: BackendKind, model: &Model) -> Result<Box<dyn Backend>> {
    let cpu = || -> Box<dyn Backend> { Box::new(CpuBackend::new(model)) };
    match kind {
        BackendKind::Cpu => Ok(cpu()),
        BackendKind::Gpu => {
            let b = GpuBackend::new(model)?;
            eprintln!("backend: {}", b.describe());
            Ok(Box::new(b))
        }
        BackendKind::Auto => {
            let why = match pollster::block_on(Gpu::adapter()) {
                None => "no GPU adapter".to_string(),
                Some(a) if is_software(&a.get_info()) => {
                    format!("{} is a software adapter", describe(&a.get_info()))
                }
                Some(a) => {
                    let b = GpuBackend::with_adapter(model, a)?;
                    eprintln!("backend: {} (auto)", b.describe());
                    return Ok(Box::new(b));
                }
            };
            let b = cpu();
            eprintln!("backend: {} (auto: {why})", b.describe());
            Ok(b)
        }
    }
}

/// The timesteps (sampling order) and the coefficient table for these arguments.
pub fn table(model: &Model, s: &StepArgs) -> Result<(Vec<i64>, Vec<StepCoeffs>)> {
    let d = &model.config.diffusion;
    let sched = d.schedule()?;
    let skip: Skip = match &s.skip {
        Some(k) => k.parse()?,
        None => d.skip.unwrap_or(Skip::Uniform),
    };
    let seq = schedule::timesteps(
        skip,
        d.num_timesteps,
        s.steps,
        s.steps_offset.unwrap_or(d.steps_offset),
    )?;
    if seq.len() != s.steps {
        eprintln!(
            "warning: --skip {skip} with {} steps out of {} gives {} steps (the official range(0, T, T//S))",
            s.steps,
            d.num_timesteps,
            seq.len()
        );
    }
    let opt = StepOptions {
        sampler: s.sampler.parse::<Sampler>()?,
        eta: s.eta,
        prediction: match &s.prediction {
            Some(p) => p.parse::<Prediction>()?,
            None => d.prediction,
        },
        clip: match (s.clip, s.no_clip) {
            (true, _) => Some(1.0),
            (_, true) => None,
            _ => d.clip_sample,
        },
        final_alpha: match &s.final_alpha {
            Some(f) => f.parse::<FinalAlpha>()?,
            None => d.final_alpha,
        },
    };
    let table = schedule::step_table(&sched, &seq, &opt)?;
    Ok((seq, table))
}
