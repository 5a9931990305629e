//! Arguments shared by the sampling commands: the model, the backend, the schedule knobs.

use crate::builtin;
use anyhow::Result;
use clap::{Args as ClapArgs, ValueEnum};
use ddim_webgpu::backend::cpu::CpuBackend;
use ddim_webgpu::backend::gpu::device::auto_adapter;
use ddim_webgpu::backend::gpu::precision::Precision;
use ddim_webgpu::backend::gpu::tune::{self, Tune};
use ddim_webgpu::backend::gpu::GpuBackend;
use ddim_webgpu::backend::Backend;
use ddim_webgpu::model::{load_model_entry, Model};
use ddim_webgpu::sampler::{resolve, StepRequest};
use ddim_webgpu::schedule::StepCoeffs;
use ddim_webgpu::Error;
use std::path::PathBuf;

#[derive(ClapArgs, Clone)]
pub struct ModelArgs {
    /// Weights: a .safetensors file (official or diffusers names), a PyTorch checkpoint
    /// (.pth, .pt, .ckpt) or a diffusers folder. Without it, the built-in emoji32 model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Config: official YAML or diffusers config.json. If omitted: <name>.yml beside the
    /// weights, the file's metadata, or the folder's config.json.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Which item of a list checkpoint to read: ddim's training checkpoint is
    /// [model, optimizer, epoch, step, ema]; negative counts from the end. Default: the EMA
    /// (-1) of a training checkpoint, as the official sampler uses.
    #[arg(long, allow_negative_numbers = true)]
    pub ckpt_entry: Option<i64>,
    /// Compute backend; auto picks a GPU when one exists, else the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendKind,
    /// GPU kernel tuning: off (fixed defaults), quick or full. The first run of a model on a
    /// device times each convolution's kernel variants and caches the fastest. Default:
    /// $DDIM_TUNE, else quick on hardware GPUs and off on software adapters.
    #[arg(long)]
    pub tune: Option<String>,
    /// f32 (default; held to the official code) or mixed: f16 inputs on the GPU's tensor
    /// cores where it has cooperative matrices, else f16 arithmetic where it has shader-f16,
    /// else f32. Each mode checks itself against f32 on the device first; stderr says which
    /// ran. The CPU backend always runs f32.
    #[arg(long, default_value = "f32")]
    pub precision: String,
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
    match (&args.model, &args.config, args.ckpt_entry) {
        (Some(path), _, entry) => Ok(load_model_entry(path, args.config.as_deref(), entry)?),
        (None, Some(_), _) | (None, _, Some(_)) => Err(Error::invalid(
            "model",
            "--config and --ckpt-entry need --model (without it the built-in emoji32 model is used)",
        )
        .into()),
        (None, None, None) => {
            eprintln!("model: {}", builtin::NAME);
            builtin::load()
        }
    }
}

/// The backend to run on. `auto` takes a hardware GPU when there is one (the library's
/// `auto_adapter` rule, which the web module shares).
pub fn backend(args: &ModelArgs, model: &Model) -> Result<Box<dyn Backend>> {
    let tune: Option<Tune> = args.tune.as_deref().map(str::parse).transpose()?;
    let precision: Precision = args.precision.parse()?;
    let cpu = || -> Box<dyn Backend> {
        if precision == Precision::Mixed {
            eprintln!("precision mixed: the CPU backend runs f32");
        }
        Box::new(CpuBackend::new(model))
    };
    let gpu = |mut b: GpuBackend, how: &str| -> Box<dyn Backend> {
        if let Some(t) = tune {
            b.set_tuning(t, tune::default_path());
        }
        eprintln!("backend: {}{how}", b.describe());
        // What the precision came to, and why, before the work starts.
        for n in b.notes() {
            eprintln!("{n}");
        }
        Box::new(b)
    };
    match args.backend {
        BackendKind::Cpu => Ok(cpu()),
        BackendKind::Gpu => Ok(gpu(GpuBackend::new(model, precision)?, "")),
        BackendKind::Auto => match pollster::block_on(auto_adapter()) {
            Ok(a) => Ok(gpu(
                GpuBackend::with_adapter(model, a, precision)?,
                " (auto)",
            )),
            Err(why) => {
                let b = cpu();
                eprintln!("backend: {} (auto: {why})", b.describe());
                Ok(b)
            }
        },
    }
}

/// Print what the backend has to say (the tuner's work, trouble with its cache).
pub fn print_notes(be: &mut dyn Backend) {
    for n in be.notes() {
        eprintln!("{n}");
    }
}

/// The timesteps (sampling order) and the coefficient table for these arguments.
pub fn table(model: &Model, s: &StepArgs) -> Result<(Vec<i64>, Vec<StepCoeffs>)> {
    let d = &model.config.diffusion;
    let req = StepRequest {
        steps: s.steps,
        skip: s.skip.clone(),
        steps_offset: s.steps_offset,
        eta: s.eta,
        sampler: Some(s.sampler.clone()),
        clip: match (s.clip, s.no_clip) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        prediction: s.prediction.clone(),
        final_alpha: s.final_alpha.clone(),
    };
    let (skip, seq, table) = resolve(d, &req)?;
    if seq.len() != s.steps {
        eprintln!(
            "warning: --skip {skip} with {} steps out of {} gives {} steps (the official range(0, T, T//S))",
            s.steps,
            d.num_timesteps,
            seq.len()
        );
    }
    Ok((seq, table))
}
