//! The compute pipelines, one per WGSL entry point. Each shader file is embedded with
//! `include_str!`; a compile or validation error names the file.

use super::device::Gpu;
use crate::error::{Error, Result};

/// How a kernel binds a buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    Uniform,
    Read,
    Write,
}

pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Every pipeline the plan and the sampler use.
pub struct Kernels {
    /// The convolutions read their weights as f16 (see conv_common.wgsl's `Weight`).
    pub half_weights: bool,
    pub conv: Kernel,
    pub conv_tiled: Kernel,
    pub group_norm: Kernel,
    pub linear: Kernel,
    pub attn_scores: Kernel,
    pub attn_softmax: Kernel,
    pub attn_apply: Kernel,
    pub avg_pool: Kernel,
    pub upsample: Kernel,
    pub step: Kernel,
}

const RNG: &str = include_str!("../../../shaders/rng.wgsl");
const CONV_COMMON: &str = include_str!("../../../shaders/conv_common.wgsl");

async fn kernel(
    gpu: &Gpu,
    file: &str,
    source: &str,
    entry: &str,
    binds: &[Bind],
) -> Result<Kernel> {
    let d = &gpu.device;
    let scope = d.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(file),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let entries: Vec<wgpu::BindGroupLayoutEntry> = binds
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match b {
                    Bind::Uniform => wgpu::BufferBindingType::Uniform,
                    Bind::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Bind::Write => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let layout = d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(entry),
        entries: &entries,
    });
    let pl = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pl),
        module: &module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    if let Some(e) = scope.pop().await {
        return Err(Error::Backend(format!("shaders/{file} ({entry}): {e}")));
    }
    Ok(Kernel { pipeline, layout })
}

impl Kernels {
    pub async fn new(gpu: &Gpu, half_weights: bool) -> Result<Kernels> {
        use Bind::*;
        let common = if half_weights {
            let s = CONV_COMMON.replacen("alias Weight = f32;", "alias Weight = f16;", 1);
            format!("enable f16;\n{s}")
        } else {
            CONV_COMMON.to_string()
        };
        let conv = format!("{common}\n{}", include_str!("../../../shaders/conv2d.wgsl"));
        let tiled = format!(
            "{common}\n{}",
            include_str!("../../../shaders/conv2d_tiled.wgsl")
        );
        let gn = include_str!("../../../shaders/group_norm.wgsl");
        let lin = include_str!("../../../shaders/linear.wgsl");
        let attn = include_str!("../../../shaders/attention.wgsl");
        let rs = include_str!("../../../shaders/resample.wgsl");
        let step = format!("{RNG}\n{}", include_str!("../../../shaders/ddim_step.wgsl"));
        let attn_binds = [Uniform, Read, Read, Read, Write, Write];
        Ok(Kernels {
            half_weights,
            conv: kernel(
                gpu,
                "conv2d.wgsl",
                &conv,
                "main",
                &[Uniform, Read, Read, Read, Read, Read, Write],
            )
            .await?,
            conv_tiled: kernel(
                gpu,
                "conv2d_tiled.wgsl",
                &tiled,
                "main",
                &[Uniform, Read, Read, Read, Read, Read, Write],
            )
            .await?,
            group_norm: kernel(
                gpu,
                "group_norm.wgsl",
                gn,
                "main",
                &[Uniform, Read, Read, Read, Write],
            )
            .await?,
            linear: kernel(
                gpu,
                "linear.wgsl",
                lin,
                "main",
                &[Uniform, Read, Read, Read, Write],
            )
            .await?,
            attn_scores: kernel(gpu, "attention.wgsl", attn, "scores", &attn_binds).await?,
            attn_softmax: kernel(gpu, "attention.wgsl", attn, "softmax", &attn_binds).await?,
            attn_apply: kernel(gpu, "attention.wgsl", attn, "apply", &attn_binds).await?,
            avg_pool: kernel(
                gpu,
                "resample.wgsl",
                rs,
                "avg_pool",
                &[Uniform, Read, Write],
            )
            .await?,
            upsample: kernel(
                gpu,
                "resample.wgsl",
                rs,
                "upsample",
                &[Uniform, Read, Write],
            )
            .await?,
            step: kernel(
                gpu,
                "ddim_step.wgsl",
                &step,
                "main",
                &[Uniform, Write, Read, Write],
            )
            .await?,
        })
    }
}
