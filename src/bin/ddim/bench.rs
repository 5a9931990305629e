//! `ddim bench`: forward-pass latency of the CPU backend on seeded random weights, for any
//! config. The PyTorch baseline is tools/bench_torch.py on the same config and batch.

use crate::progress::Bar;
use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::backend::cpu::CpuBackend;
use ddim_webgpu::backend::Backend;
use ddim_webgpu::model::{load::parse_config, random_model};
use ddim_webgpu::sampler::initial_noise;
use ddim_webgpu::Error;
use std::path::PathBuf;
use std::time::Instant;

#[derive(ClapArgs)]
pub struct Args {
    /// Official YAML or diffusers config.json of the network to time.
    #[arg(long)]
    config: PathBuf,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Also time a whole sample of this many DDIM steps.
    #[arg(long)]
    sample_steps: Option<usize>,
    /// One JSON line instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.batch == 0 || a.iters == 0 {
        return Err(Error::invalid("batch", "--batch and --iters must be at least 1").into());
    }
    let text = std::fs::read_to_string(&a.config).map_err(|e| Error::io(&a.config, e))?;
    let cfg = parse_config(&text, &a.config.display().to_string(), None)?;
    let model = random_model(cfg, 0);
    let (c, r) = (
        model.config.model.in_channels,
        model.config.model.resolution,
    );
    let x = initial_noise(1, 0, a.batch, c, r);
    let t = vec![500.0; a.batch];
    let mut be = CpuBackend::new(&model);
    for _ in 0..a.warmup {
        be.forward(&x, &t)?;
    }
    let mut times = Vec::new();
    for _ in 0..a.iters {
        let s = Instant::now();
        be.forward(&x, &t)?;
        times.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let gflop = 2.0 * model.plan.macs_per_image() as f64 * a.batch as f64 / 1e9;
    let sample_ms = match a.sample_steps {
        Some(s) => {
            let d = &model.config.diffusion;
            let sched = d.schedule()?;
            let seq = ddim_webgpu::schedule::timesteps(
                ddim_webgpu::schedule::Skip::Uniform,
                d.num_timesteps,
                s,
                0,
            )?;
            let table = ddim_webgpu::schedule::step_table(&sched, &seq, &Default::default())?;
            let mut bar = Bar::new("sample");
            let job = ddim_webgpu::sampler::Job {
                table: &table,
                seed: 0,
                first: 0,
                n: a.batch,
                init: None,
                batch: a.batch,
                keep_x0: false,
            };
            let st = Instant::now();
            ddim_webgpu::sampler::run(&mut be, &job, c, r, &mut |p| {
                bar.update(p.done, p.total);
                Ok(())
            })?;
            Some(st.elapsed().as_secs_f64() * 1e3)
        }
        None => None,
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({"impl": "ddim-cpu", "threads": rayon::current_num_threads(), "batch": a.batch,
                "params": model.plan.param_count(), "median_ms": median, "min_ms": sorted[0], "times_ms": times,
                "gflops": gflop / (median / 1e3), "sample_ms": sample_ms})
        );
    } else {
        println!(
            "{}: {} params, batch {}, {} threads: forward median {:.1} ms (min {:.1}), {:.1} GFLOP/s",
            a.config.display(),
            model.plan.param_count(),
            a.batch,
            rayon::current_num_threads(),
            median,
            sorted[0],
            gflop / (median / 1e3)
        );
        if let Some(ms) = sample_ms {
            println!(
                "whole sample ({} steps): {:.1} s",
                a.sample_steps.unwrap_or(0),
                ms / 1e3
            );
        }
    }
    Ok(())
}
