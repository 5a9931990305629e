//! The compute pipelines, built lazily and cached by (shader, entry point, pipeline
//! constants, weight type), so only the kernel variants a plan uses are ever compiled. Each
//! shader file is embedded with `include_str!`; a compile or validation error names it.

use super::device::Gpu;
use crate::error::{Error, Result};
use std::collections::HashMap;

/// How a kernel binds a buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Bind {
    Uniform,
    Read,
    Write,
}

/// A WGSL module: one layer family's file, with what the host prepends to it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Shader {
    /// conv2d.wgsl: registers only, for software adapters.
    ConvDirect,
    /// conv2d_gemm.wgsl: the register-tiled implicit GEMM, with split-K.
    ConvGemm,
    /// conv2d_gemm.wgsl with f16 slices and f16 arithmetic within each K slice
    /// (`--precision mixed` on devices with shader-f16).
    ConvGemmF16,
    /// conv2d_coop.wgsl: tensor cores through cooperative matrices (`--precision mixed`).
    ConvCoop,
    GroupNorm,
    Linear,
    Attention,
    Resample,
    Step,
}

const CONV_COMMON: &str = include_str!("../../../shaders/conv_common.wgsl");
const GEMM_TILE: &str = include_str!("../../../shaders/gemm_tile.wgsl");
const RNG: &str = include_str!("../../../shaders/rng.wgsl");

impl Shader {
    pub fn file(self) -> &'static str {
        match self {
            Shader::ConvDirect => "conv2d.wgsl",
            Shader::ConvGemm | Shader::ConvGemmF16 => "conv2d_gemm.wgsl",
            Shader::ConvCoop => "conv2d_coop.wgsl",
            Shader::GroupNorm => "group_norm.wgsl",
            Shader::Linear => "linear.wgsl",
            Shader::Attention => "attention.wgsl",
            Shader::Resample => "resample.wgsl",
            Shader::Step => "ddim_step.wgsl",
        }
    }

    /// The module's text as the device gets it. The convolutions read weights of type
    /// `Weight`, and the GEMM loop stages slices of type `Stage`; both are declared here.
    pub fn wgsl(self, half: bool) -> String {
        let f16_math = matches!(self, Shader::ConvGemmF16 | Shader::ConvCoop);
        let mut head = String::new();
        if half || f16_math {
            head += "enable f16;\n";
        }
        if self.is_conv() {
            head += if half {
                "alias Weight = f16;\n"
            } else {
                "alias Weight = f32;\n"
            };
        }
        if matches!(
            self,
            Shader::ConvGemm | Shader::ConvGemmF16 | Shader::Attention
        ) {
            head += if f16_math {
                "alias Stage = f16;\nconst SLICE_SUMS: bool = true;\n"
            } else {
                "alias Stage = f32;\nconst SLICE_SUMS: bool = false;\n"
            };
        }
        let body = match self {
            Shader::ConvDirect => format!(
                "{CONV_COMMON}\n{}",
                include_str!("../../../shaders/conv2d.wgsl")
            ),
            Shader::ConvGemm | Shader::ConvGemmF16 => format!(
                "{CONV_COMMON}\n{GEMM_TILE}\n{}",
                include_str!("../../../shaders/conv2d_gemm.wgsl")
            ),
            Shader::ConvCoop => format!(
                "{CONV_COMMON}\n{}",
                include_str!("../../../shaders/conv2d_coop.wgsl")
            ),
            Shader::GroupNorm => include_str!("../../../shaders/group_norm.wgsl").into(),
            Shader::Linear => include_str!("../../../shaders/linear.wgsl").into(),
            Shader::Attention => format!(
                "{GEMM_TILE}\n{}",
                include_str!("../../../shaders/attention.wgsl")
            ),
            Shader::Resample => include_str!("../../../shaders/resample.wgsl").into(),
            Shader::Step => format!("{RNG}\n{}", include_str!("../../../shaders/ddim_step.wgsl")),
        };
        // Enable directives must come first: the coop kernel's own goes after ours.
        match body.find("enable wgpu_cooperative_matrix;") {
            Some(_) => format!(
                "enable wgpu_cooperative_matrix;\n{head}{}",
                body.replace("enable wgpu_cooperative_matrix;", "")
            ),
            None => format!("{head}{body}"),
        }
    }

    /// The convolution modules (they read `Weight`).
    pub fn is_conv(self) -> bool {
        matches!(
            self,
            Shader::ConvDirect | Shader::ConvGemm | Shader::ConvGemmF16 | Shader::ConvCoop
        )
    }

    /// The bindings, in order, of every entry point of the module.
    pub fn binds(self) -> &'static [Bind] {
        use Bind::*;
        match self {
            Shader::ConvDirect => &[Uniform, Read, Read, Read, Read, Read, Write],
            Shader::ConvGemm | Shader::ConvGemmF16 => {
                &[Uniform, Read, Read, Read, Read, Read, Write, Write]
            }
            Shader::ConvCoop => &[Uniform, Read, Read, Read, Read, Read, Write],
            Shader::GroupNorm | Shader::Linear => &[Uniform, Read, Read, Read, Write],
            Shader::Attention => &[Uniform, Read, Read, Read, Write, Write],
            Shader::Resample => &[Uniform, Read, Write],
            Shader::Step => &[Uniform, Write, Read, Write],
        }
    }

    /// Every module the engine can build, for validation without a device.
    pub const ALL: [Shader; 9] = [
        Shader::ConvDirect,
        Shader::ConvGemm,
        Shader::ConvGemmF16,
        Shader::ConvCoop,
        Shader::GroupNorm,
        Shader::Linear,
        Shader::Attention,
        Shader::Resample,
        Shader::Step,
    ];
}

/// Which pipeline: the module, the entry point, its pipeline constants and whether the
/// convolutions read f16 weights.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Key {
    pub shader: Shader,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, u32)>,
    pub half: bool,
}

impl Key {
    pub fn new(shader: Shader, entry: &'static str, constants: Vec<(&'static str, u32)>) -> Key {
        Key {
            shader,
            entry,
            constants,
            half: false,
        }
    }
}

#[derive(Clone)]
pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// The cache, one per device, so backends built one after another on it (the twin tests)
/// compile each variant once.
#[derive(Default)]
pub struct Pipelines {
    modules: HashMap<(Shader, bool), wgpu::ShaderModule>,
    layouts: HashMap<Shader, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    built: HashMap<Key, Kernel>,
}

impl Pipelines {
    fn create(&mut self, d: &wgpu::Device, key: &Key) -> wgpu::ComputePipeline {
        let file = key.shader.file();
        let module = self
            .modules
            .entry((key.shader, key.half))
            .or_insert_with(|| {
                d.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(file),
                    source: wgpu::ShaderSource::Wgsl(key.shader.wgsl(key.half).into()),
                })
            });
        let (_, pl) = self
            .layouts
            .entry(key.shader)
            .or_insert_with(|| layouts(d, key.shader));
        let constants: Vec<(&str, f64)> =
            key.constants.iter().map(|&(n, v)| (n, v as f64)).collect();
        d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(file),
            layout: Some(pl),
            module,
            entry_point: Some(key.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
    }
}

impl Gpu {
    /// The pipeline for `key`, built on first use; a shader that fails names its file.
    pub async fn kernel(&self, key: &Key) -> Result<Kernel> {
        let lock = || self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = lock().built.get(key) {
            return Ok(k.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = lock().create(&self.device, key);
        if let Some(e) = scope.pop().await {
            return Err(Error::Backend(format!(
                "shaders/{} ({}, {:?}): {e}",
                key.shader.file(),
                key.entry,
                key.constants
            )));
        }
        let mut cache = lock();
        let layout = cache.layouts[&key.shader].0.clone();
        let k = Kernel { pipeline, layout };
        cache.built.insert(key.clone(), k.clone());
        Ok(k)
    }
}

fn layouts(d: &wgpu::Device, shader: Shader) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = shader
        .binds()
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
        label: Some(shader.file()),
        entries: &entries,
    });
    let pl = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(shader.file()),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    (layout, pl)
}
