//! The WGSL kernels against their CPU twins, and the GPU backend against the PyTorch fixtures
//! and the CPU backend. CI runs these on lavapipe (Vulkan on the CPU). Without any adapter they
//! are skipped, unless DDIM_REQUIRE_GPU is set (CI sets it), in which case they fail.
//!
//! One test binary (`cargo test --test gpu`), so the GPU machine's prebuilt copy runs them
//! all; its modules: `twins.rs` (the harness), `kernels.rs`, `model.rs`, `tuner.rs`,
//! `precision.rs`.

#[path = "../common/mod.rs"]
mod common;
mod kernels;
mod model;
mod precision;
mod tuner;
mod twins;

use twins::{map, offered, offered_mixed, offset_conv, twin, twin_with};

use common::{
    assert_close, fixture, get, max_rel, randn, read_tensors, sample_uniform, shipped_model,
};
use ddim_webgpu::backend::cpu::CpuBackend;
use ddim_webgpu::backend::gpu::device::Gpu;
use ddim_webgpu::backend::gpu::ops::conv::{variants, ConvShape, ConvVariant};
use ddim_webgpu::backend::gpu::ops::tiles::CONV_TILES;
use ddim_webgpu::backend::gpu::precision::{coop_unavailable, fixed_subgroup, Arith, Precision};
use ddim_webgpu::backend::gpu::tune::Tune;
use ddim_webgpu::backend::gpu::GpuBackend;
use ddim_webgpu::backend::{Backend, NoiseKey};
use ddim_webgpu::model::config::ModelConfig;
use ddim_webgpu::model::Param;
use ddim_webgpu::model::{load_model, random_model, Config, Model, Op, Plan, Resample, Slot, View};
use ddim_webgpu::rng;
use ddim_webgpu::sampler::{self, Job};
use ddim_webgpu::schedule::{step_table, timesteps, Sampler, Skip, StepCoeffs, StepOptions};
use ddim_webgpu::Tensor;

fn gpu() -> Option<Gpu> {
    match pollster::block_on(Gpu::adapter()) {
        Some(a) => Some(pollster::block_on(Gpu::open(a)).unwrap()),
        None if std::env::var_os("DDIM_REQUIRE_GPU").is_some() => {
            panic!("DDIM_REQUIRE_GPU is set but wgpu found no adapter")
        }
        None => {
            eprintln!("skipped: no GPU adapter");
            None
        }
    }
}

fn dummy_config() -> ModelConfig {
    ModelConfig {
        ch: 32,
        out_ch: 3,
        ch_mult: vec![1],
        num_res_blocks: 1,
        attn_resolutions: vec![],
        in_channels: 3,
        resolution: 8,
        resamp_with_conv: true,
    }
}
