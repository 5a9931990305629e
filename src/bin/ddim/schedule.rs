//! `ddim schedule`: the beta schedule and its derived values, as a table or JSON.

use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::schedule::{timesteps, BetaSchedule, Schedule, Skip};
use std::io::Write;

#[derive(ClapArgs)]
pub struct Args {
    /// linear, quad, const, jsd, sigmoid or cosine.
    #[arg(long, default_value = "linear")]
    schedule: String,
    #[arg(long, default_value_t = 0.0001)]
    beta_start: f64,
    #[arg(long, default_value_t = 0.02)]
    beta_end: f64,
    /// Training timesteps T.
    #[arg(long, default_value_t = 1000)]
    timesteps: usize,
    /// Also list the S sampling timesteps.
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, default_value = "uniform")]
    skip: String,
    #[arg(long, default_value_t = 0)]
    steps_offset: usize,
    /// Rescale to zero terminal SNR (Lin et al. 2023).
    #[arg(long)]
    zero_snr: bool,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    match print(a) {
        // `ddim schedule | head` closing the pipe early is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>().map(|e| e.kind())
                == Some(std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn print(a: Args) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let kind: BetaSchedule = a.schedule.parse()?;
    let s = Schedule::from_kind(kind, a.beta_start, a.beta_end, a.timesteps, a.zero_snr)?;
    let seq = match a.steps {
        Some(n) => Some(timesteps(
            a.skip.parse::<Skip>()?,
            a.timesteps,
            n,
            a.steps_offset,
        )?),
        None => None,
    };
    if a.json {
        let mut v = serde_json::json!({
            "betas": s.betas,
            "alphas": s.alphas,
            "alphas_cumprod": s.alphas_cumprod,
            "alphas_cumprod_prev": s.alphas_cumprod_prev,
        });
        if let Some(seq) = &seq {
            v["timesteps"] = serde_json::json!(seq);
        }
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>6}  {:>14}  {:>14}  {:>14}  {:>19}",
        "t", "betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev"
    )?;
    for t in 0..a.timesteps {
        writeln!(
            out,
            "{t:>6}  {:>14.8e}  {:>14.8e}  {:>14.8e}  {:>19.8e}",
            s.betas[t], s.alphas[t], s.alphas_cumprod[t], s.alphas_cumprod_prev[t]
        )?;
    }
    if let Some(seq) = seq {
        writeln!(
            out,
            "timesteps ({} steps, sampling order): {seq:?}",
            seq.len()
        )?;
    }
    Ok(())
}
