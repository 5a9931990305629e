//! `ddim info`: what a model is (config, parameters, FLOPs, tensors) and which devices exist.

use crate::common::{self, BackendKind, ModelArgs};
use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::backend::gpu::precision::coop_unavailable;
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct Args {
    /// A .safetensors file, PyTorch checkpoint or diffusers folder (default: the built-in
    /// emoji32 model).
    model: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Which item of a list checkpoint to read (see `ddim sample --help`).
    #[arg(long, allow_negative_numbers = true)]
    ckpt_entry: Option<i64>,
    /// List the compute devices instead.
    #[arg(long)]
    devices: bool,
    /// Print every tensor with its shape.
    #[arg(long)]
    tensors: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.devices {
        println!(
            "cpu: {} threads (GEMM: gemm crate, runtime SIMD dispatch)",
            rayon::current_num_threads()
        );
        let adapters = pollster::block_on(ddim_webgpu::backend::gpu::device::adapters());
        if adapters.is_empty() {
            println!("gpu: no adapter found");
        }
        for a in adapters {
            let (info, l, f) = (a.get_info(), a.limits(), a.features());
            let soft = if ddim_webgpu::backend::gpu::device::is_software(&info) {
                " (software: `--backend auto` prefers the CPU)"
            } else {
                ""
            };
            println!(
                "gpu: {}{soft}",
                ddim_webgpu::backend::gpu::device::describe(&info)
            );
            println!("  driver: {} {}", info.driver, info.driver_info);
            println!(
                "  limits: storage binding {} MiB, buffer {} MiB, {} storage buffers/stage, workgroup {} invocations, {} KiB workgroup memory",
                l.max_storage_buffer_binding_size >> 20,
                l.max_buffer_size >> 20,
                l.max_storage_buffers_per_shader_stage,
                l.max_compute_invocations_per_workgroup,
                l.max_compute_workgroup_storage_size >> 10
            );
            println!(
                "  features: shader-f16 {}, timestamp-query {}, subgroups {}",
                f.contains(wgpu::Features::SHADER_F16),
                f.contains(wgpu::Features::TIMESTAMP_QUERY),
                f.contains(wgpu::Features::SUBGROUP)
            );
            let props = a.cooperative_matrix_properties();
            let shapes: Vec<String> = props
                .iter()
                .map(|p| {
                    format!(
                        "{}x{}x{} {:?}->{:?}",
                        p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type
                    )
                })
                .collect();
            let mixed = match coop_unavailable(f, &props, &info) {
                None => "--precision mixed uses tensor cores".to_string(),
                Some(why) if f.contains(wgpu::Features::SHADER_F16) => {
                    format!("--precision mixed uses f16 arithmetic ({why})")
                }
                Some(why) => format!("--precision mixed runs f32 ({why}, no shader-f16)"),
            };
            println!(
                "  cooperative matrices: {}; {mixed}",
                if shapes.is_empty() {
                    "none".into()
                } else {
                    shapes.join(", ")
                }
            );
        }
        return Ok(());
    }
    let m = common::load(&ModelArgs {
        model: a.model,
        config: a.config,
        ckpt_entry: a.ckpt_entry,
        backend: BackendKind::Cpu,
        tune: None,
        precision: "f32".into(),
    })?;
    let c = &m.config.model;
    let d = &m.config.diffusion;
    let macs = m.plan.macs_per_image();
    println!("model:        {}", m.source);
    println!("stored as:    {}", m.dtypes.join(", "));
    println!(
        "network:      ch {}, ch_mult {:?}, {} res blocks, attention at {:?}, {}×{}×{} → {} channels{}",
        c.ch,
        c.ch_mult,
        c.num_res_blocks,
        c.attn_resolutions,
        c.in_channels,
        c.resolution,
        c.resolution,
        c.out_ch,
        if c.resamp_with_conv { "" } else { ", resampling without conv" }
    );
    println!(
        "parameters:   {} ({:.2} M)",
        m.plan.param_count(),
        m.plan.param_count() as f64 / 1e6
    );
    println!(
        "FLOPs/image:  {:.3} G per forward ({:.3} G multiply-adds)",
        2.0 * macs as f64 / 1e9,
        macs as f64 / 1e9
    );
    println!(
        "diffusion:    {:?} betas {}..{}, T = {}, prediction {:?}",
        d.beta_schedule, d.beta_start, d.beta_end, d.num_timesteps, d.prediction
    );
    println!("tensors:      {}", m.plan.params.len());
    if a.tensors {
        for p in &m.plan.params {
            println!("  {:<44} {:?}", p.name, p.shape);
        }
    }
    Ok(())
}
