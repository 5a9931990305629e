//! `ddim bench`: forward latency and whole-sample time on seeded random weights, for the CPU
//! and GPU backends and (with --torch) PyTorch's CPU eager mode, all in one run with ratios.
//! With --profile, the GPU's per-kernel time table from timestamp queries.

use crate::common;
use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::backend::cpu::CpuBackend;
use ddim_webgpu::backend::gpu::ops::conv::{ConvShape, ConvVariant};
use ddim_webgpu::backend::gpu::precision::Precision;
use ddim_webgpu::backend::gpu::tune::{self, Tune};
use ddim_webgpu::backend::gpu::GpuBackend;
use ddim_webgpu::backend::profile::{by_family, LayerTime};
use ddim_webgpu::backend::Backend;
use ddim_webgpu::model::{parse_config, random_model, Model};
use ddim_webgpu::sampler::{self, initial_noise, Job};
use ddim_webgpu::schedule::{step_table, timesteps, Skip};
use ddim_webgpu::Error;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(ClapArgs)]
pub struct Args {
    /// Official YAML or diffusers config.json of the network to time.
    #[arg(long)]
    config: PathBuf,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    batch: Vec<usize>,
    /// Backends to time: cpu, gpu.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    backends: Vec<String>,
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Rounds: each times every backend and then the baselines at every batch size, so that
    /// on a shared, noisy machine ours and theirs are measured in the same windows; the
    /// ratios are printed per round, with their median.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Also time a whole sample of this many DDIM steps.
    #[arg(long)]
    sample_steps: Option<usize>,
    /// A Python with torch: also run tools/bench_torch.py on the same config and batch.
    #[arg(long)]
    torch: Option<String>,
    /// A Python with onnxruntime: also run tools/bench_ort.py (onnxruntime native, its best
    /// thread count) on the same config and batch, and print the ratios.
    #[arg(long)]
    onnxruntime: Option<String>,
    /// Threads for the PyTorch baseline.
    #[arg(long, default_value_t = 1)]
    torch_threads: usize,
    /// Print where the time goes, per kernel family and per layer (the GPU needs
    /// timestamp-query).
    #[arg(long)]
    profile: bool,
    /// GPU convolution kernel for every layer that can run it: direct (registers only) or a
    /// GEMM variant as the profile names it ("gemm 64x64x16/4x4 split 2"). Default: the
    /// tuner's (or, untuned, the default) choice per layer.
    #[arg(long)]
    conv: Option<String>,
    /// GPU kernel tuning: off, quick or full (default: $DDIM_TUNE, else quick on hardware
    /// GPUs, off on software adapters).
    #[arg(long)]
    tune: Option<String>,
    /// GPU precisions to time, comma-separated: f32 (held to the official code) and mixed
    /// (tensor cores, else f16 arithmetic, else f32; the report says which ran).
    #[arg(long, value_delimiter = ',', default_value = "f32,mixed")]
    precision: Vec<String>,
    /// One JSON line per measurement instead of text.
    #[arg(long)]
    json: bool,
}

struct Row {
    round: usize,
    backend: String,
    batch: usize,
    forward_ms: f64,
    sample_s: Option<f64>,
}

fn time_forward(be: &mut dyn Backend, model: &Model, n: usize, a: &Args) -> Result<f64> {
    let (c, r) = (
        model.config.model.in_channels,
        model.config.model.resolution,
    );
    let x = initial_noise(1, 0, n, c, r);
    let t = vec![500.0; n];
    for _ in 0..a.warmup {
        be.forward(&x, &t)?;
    }
    let mut times: Vec<f64> = (0..a.iters)
        .map(|_| {
            let s = Instant::now();
            be.forward(&x, &t).map(|_| s.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn time_sample(be: &mut dyn Backend, model: &Model, n: usize, steps: usize) -> Result<f64> {
    let d = &model.config.diffusion;
    let seq = timesteps(Skip::Uniform, d.num_timesteps, steps, 0)?;
    let table = step_table(&d.schedule()?, &seq, &Default::default())?;
    let (c, r) = (
        model.config.model.in_channels,
        model.config.model.resolution,
    );
    let job = Job {
        table: &table,
        seed: 0,
        first: 0,
        n,
        init: None,
        batch: n,
        keep_x0: false,
    };
    let s = Instant::now();
    sampler::run(be, &job, c, r, &mut |_| Ok(()))?;
    Ok(s.elapsed().as_secs_f64())
}

/// The host's share of a GPU step: time spent encoding and submitting, against the wall time.
fn host_cost(model: &Model, n: usize, steps: usize, a: &Args, p: Precision) -> Result<()> {
    let mut g = gpu_backend(model, a, p)?;
    let wall = time_sample(&mut g, model, n, steps)?;
    let host = g.host_time.as_secs_f64();
    println!(
        "  host cost per GPU step (batch {n}): {:.0} µs to encode and submit, of {:.1} ms wall ({:.2}%)",
        host * 1e6 / steps as f64,
        wall * 1e3 / steps as f64,
        100.0 * host / wall
    );
    Ok(())
}

fn gpu_backend(model: &Model, a: &Args, p: Precision) -> Result<GpuBackend> {
    let mut g = GpuBackend::new(model, p)?;
    for n in g.notes() {
        eprintln!("{n}");
    }
    if let Some(t) = &a.tune {
        g.set_tuning(t.parse::<Tune>()?, tune::default_path());
    }
    match a.conv.as_deref() {
        None => {}
        Some("direct") => g.set_conv(Some(ConvVariant::Direct)),
        Some(name) => {
            // Any variant some layer of this model offers, by its profile name.
            let v = model
                .plan
                .ops
                .iter()
                .filter_map(|op| ConvShape::of(&model.plan, op, 1))
                .flat_map(|s| g.conv_variants(&s))
                .find(|v| v.name() == name)
                .ok_or_else(|| {
                    Error::invalid(
                        "conv",
                        format!("{name:?} (expected direct or a variant the profile names)"),
                    )
                })?;
            g.set_conv(Some(v));
        }
    }
    Ok(g)
}

/// A baseline script's median forward time at batch n: tools/bench_torch.py (PyTorch CPU
/// eager, --torch-threads) or tools/bench_ort.py (onnxruntime at 1, 2 and its default
/// thread count, the best of them, which its last line names).
fn baseline(a: &Args, py: &str, script: &str, threads: &str, n: usize) -> Result<f64> {
    let path = format!("{}/tools/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(py)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .args([path.as_str(), "--config"])
        .arg(&a.config)
        .args([
            "--batch",
            &n.to_string(),
            "--threads",
            threads,
            "--iters",
            &a.iters.to_string(),
        ])
        .output()
        .map_err(|e| Error::Backend(format!("{py}: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).map_err(|_| {
        Error::Backend(format!(
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    })?;
    let row = v.get("best").map_or(&v, |b| &b[n.to_string()]);
    Ok(row["median_ms"].as_f64().unwrap_or(f64::NAN))
}

pub fn run(a: Args) -> Result<()> {
    if a.batch.contains(&0) || a.iters == 0 || a.rounds == 0 {
        return Err(
            Error::invalid("batch", "--batch, --iters and --rounds must be at least 1").into(),
        );
    }
    let text = std::fs::read_to_string(&a.config).map_err(|e| Error::io(&a.config, e))?;
    let cfg = parse_config(&text, &a.config.display().to_string(), None)?;
    let model = random_model(cfg, 0);
    let gflop_per_image = 2.0 * model.plan.macs_per_image() as f64 / 1e9;
    let precisions: Vec<Precision> = a
        .precision
        .iter()
        .map(|p| p.parse())
        .collect::<Result<_, _>>()?;
    // The CPU has one precision; the GPU is timed at each one asked for.
    let mut runs: Vec<(&str, Precision)> = Vec::new();
    for name in &a.backends {
        match name.as_str() {
            "cpu" => runs.push(("cpu", Precision::F32)),
            "gpu" => runs.extend(precisions.iter().map(|&p| ("gpu", p))),
            other => {
                return Err(
                    Error::invalid("backends", format!("{other:?} (expected cpu or gpu)")).into(),
                )
            }
        }
    }
    let mut backends = Vec::new();
    for (name, precision) in runs {
        let be: Box<dyn Backend> = match name {
            "cpu" => Box::new(CpuBackend::new(&model)),
            _ => Box::new(gpu_backend(&model, &a, precision)?),
        };
        let label = format!("{name}: {}", be.describe());
        backends.push((name, precision, be, label));
    }
    let mut rows = Vec::new();
    for round in 1..=a.rounds {
        if a.rounds > 1 && !a.json {
            println!("round {round} of {}", a.rounds);
        }
        for (name, precision, be, label) in &mut backends {
            for &n in &a.batch {
                let mut sample_s = None;
                // A batch the device cannot hold at once is timed as the chunks sampling
                // would run.
                let mb = be.max_batch();
                let forward_ms =
                    time_forward(be.as_mut(), &model, n.min(mb), &a)? * n.div_ceil(mb) as f64;
                if let Some(s) = a.sample_steps {
                    sample_s = Some(time_sample(be.as_mut(), &model, n, s)?);
                    if *name == "gpu" && round == 1 {
                        host_cost(&model, n.min(mb), s, &a, *precision)?;
                    }
                }
                rows.push(Row {
                    round,
                    backend: label.clone(),
                    batch: n,
                    forward_ms,
                    sample_s,
                });
                report(&a, rows.last().unwrap(), gflop_per_image);
            }
        }
        if let Some(py) = &a.onnxruntime {
            for &n in &a.batch {
                let ms = baseline(&a, py, "bench_ort.py", "1,2,0", n)?;
                rows.push(Row {
                    round,
                    backend: "onnxruntime: CPU, best of 1, 2 and default threads".into(),
                    batch: n,
                    forward_ms: ms,
                    sample_s: None,
                });
                report(&a, rows.last().unwrap(), gflop_per_image);
            }
        }
        if let Some(py) = &a.torch {
            for &n in &a.batch {
                let threads = a.torch_threads.to_string();
                let ms = baseline(&a, py, "bench_torch.py", &threads, n)?;
                let label = format!(
                    "torch: PyTorch CPU eager fp32, {} thread(s)",
                    a.torch_threads
                );
                rows.push(Row {
                    round,
                    backend: label,
                    batch: n,
                    forward_ms: ms,
                    sample_s: None,
                });
                report(&a, rows.last().unwrap(), gflop_per_image);
            }
        }
    }
    if a.profile {
        // The profile builds its own backend: free the timed ones (GPU memory) first.
        let kinds: Vec<_> = backends.into_iter().map(|(n, p, _, _)| (n, p)).collect();
        for (name, precision) in kinds {
            profile(&model, &a, name, precision)?;
        }
    }
    if !a.json {
        print_ratios(&rows);
    }
    Ok(())
}

/// Each of our rows against the baseline's row of the same batch and round; with several
/// rounds, every round's ratio and their median.
fn print_ratios(rows: &[Row]) {
    let is_base = |r: &Row| r.backend.starts_with("torch") || r.backend.starts_with("onnx");
    for (base, name) in [("torch", "PyTorch CPU"), ("onnxruntime", "onnxruntime")] {
        let mut keys: Vec<(&str, usize)> = Vec::new();
        for r in rows.iter().filter(|r| !is_base(r)) {
            if !keys.contains(&(r.backend.as_str(), r.batch)) {
                keys.push((r.backend.as_str(), r.batch));
            }
        }
        let mut lines = Vec::new();
        for (backend, batch) in keys {
            let mut q: Vec<f64> = rows
                .iter()
                .filter(|r| r.backend == backend && r.batch == batch)
                .filter_map(|r| {
                    let t = rows.iter().find(|t| {
                        t.backend.starts_with(base) && t.batch == batch && t.round == r.round
                    })?;
                    Some(r.forward_ms / t.forward_ms)
                })
                .collect();
            if q.is_empty() {
                continue;
            }
            let each: Vec<String> = q.iter().map(|v| format!("{v:.2}")).collect();
            let text = if q.len() == 1 {
                each[0].clone()
            } else {
                q.sort_by(f64::total_cmp);
                let mid = q.len() / 2;
                let median = if q.len() % 2 == 1 {
                    q[mid]
                } else {
                    (q[mid - 1] + q[mid]) / 2.0
                };
                format!("{} (median {median:.2})", each.join(", "))
            };
            lines.push(format!("  {backend:<50} batch {batch:>3}: {text}"));
        }
        if !lines.is_empty() {
            println!("\nratios (forward time / {name}, same batch):");
            for l in lines {
                println!("{l}");
            }
        }
    }
}

fn report(a: &Args, r: &Row, gflop_per_image: f64) {
    let rate = gflop_per_image * r.batch as f64 / (r.forward_ms / 1e3);
    if a.json {
        println!(
            "{}",
            serde_json::json!({"config": a.config, "round": r.round, "backend": r.backend, "batch": r.batch,
                "forward_ms": r.forward_ms, "gflops": rate, "sample_s": r.sample_s, "sample_steps": a.sample_steps})
        );
        return;
    }
    let sample = r.sample_s.map_or(String::new(), |s| {
        format!(", {}-step sample {:.2} s", a.sample_steps.unwrap_or(0), s)
    });
    println!(
        "{:<50} batch {:>3}: forward {:>9.1} ms ({:.1} GFLOP/s){sample}",
        r.backend, r.batch, r.forward_ms, rate
    );
}

/// Per kernel family and per layer (with the kernel variant that ran it, on the GPU): where
/// one forward pass at the first batch size spends its time; on the GPU also how each
/// convolution's kernel was chosen.
fn profile(model: &Model, a: &Args, backend: &str, precision: Precision) -> Result<()> {
    let n = a.batch[0];
    let (c, r) = (
        model.config.model.in_channels,
        model.config.model.resolution,
    );
    let t = vec![500.0; n];
    if backend == "cpu" {
        let mut be = CpuBackend::new(model);
        let x = initial_noise(1, 0, n, c, r);
        be.profile(&x, &t);
        let layers = be.profile(&x, &t);
        print_profile(
            &format!("CPU profile, batch {n} ({})", be.describe()),
            &layers,
        );
        return Ok(());
    }
    let mut g = gpu_backend(model, a, precision)?;
    let n = n.min(g.max_batch());
    let x = initial_noise(1, 0, n, c, r);
    pollster::block_on(g.profile(&x, &t[..n]))?;
    let layers = pollster::block_on(g.profile(&x, &t[..n]))?;
    print_profile(
        &format!("GPU profile, batch {n} ({})", g.describe()),
        &layers,
    );
    println!("\nconvolution kernels chosen (batch {n}):");
    for ch in g.choices() {
        let ms = ch.ms.map_or(String::new(), |m| format!(", {m:.3} ms"));
        println!(
            "  {:<40} {} ({}{ms})",
            ch.shape.key(),
            ch.variant.name(),
            ch.how
        );
    }
    common::print_notes(&mut g);
    Ok(())
}

fn print_profile(title: &str, layers: &[LayerTime]) {
    let fams = by_family(layers);
    let total: f64 = fams.iter().map(|f| f.ms).sum();
    let rate = |l: &LayerTime| l.gflops().map_or("-".into(), |r| format!("{r:.1}"));
    println!("\n{title}:");
    println!(
        "{:<22} {:>6} {:>10} {:>7} {:>10}",
        "kernel", "calls", "ms", "share", "GFLOP/s"
    );
    for f in &fams {
        println!(
            "{:<22} {:>6} {:>10.3} {:>6.1}% {:>10}",
            f.family,
            f.dispatches,
            f.ms,
            100.0 * f.ms / total,
            rate(f)
        );
    }
    let (cg, cm) = fams
        .iter()
        .filter(|f| f.family.starts_with("conv"))
        .fold((0.0, 0.0), |(g, m), f| (g + f.gflop, m + f.ms));
    println!(
        "{:<22} {:>6} {:>10.3} {:>7} {:>10.1}",
        "all convolutions",
        "",
        cm,
        "",
        cg / (cm / 1e3)
    );
    println!("{:<22} {:>6} {:>10.3}", "total", "", total);
    println!("\nper layer:");
    println!(
        "{:<34} {:<20} {:<30} {:>9} {:>9}",
        "layer", "kernel", "variant", "ms", "GFLOP/s"
    );
    for l in layers {
        println!(
            "{:<34} {:<20} {:<30} {:>9.3} {:>9}",
            l.layer,
            l.family,
            l.variant,
            l.ms,
            rate(l)
        );
    }
}
