//! The sampling step (ddim_step.wgsl), the twin of schedule::apply_step: the update of the
//! latent from the network output, with the step's Philox noise generated on the device.

use super::tiles::{grid, FLAT_WG};
use super::{Ctx, Dispatch};
use crate::backend::gpu::pipelines::{Key, Shader};
use crate::backend::NoiseKey;
use crate::error::Result;
use crate::schedule::StepCoeffs;

/// ddim_step.wgsl's `Step`: one step's coefficients plus the noise key. A trajectory uploads
/// one per step, and each step copies its own into the uniform on the device.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    pub c: StepCoeffs,
    pub stream: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub first_sample: u32,
    pub per_sample: u32,
    pub total: u32,
    /// Invocations per row of the dispatch grid (it wraps onto y past the x limit).
    pub row: u32,
    pub pad: u32,
}

/// Each invocation owns one Philox block of four elements.
const PER_INVOCATION: usize = 4;

/// The one pipeline.
pub fn key() -> Key {
    Key::new(Shader::Step, "main", vec![("WG", FLAT_WG)])
}

/// The step's dispatch over n images of `per_sample` elements; `params` is the uniform the
/// trajectory copies each step's row into.
pub async fn dispatch(
    ctx: &Ctx<'_>,
    params: &wgpu::Buffer,
    latent: &wgpu::Buffer,
    x0: &wgpu::Buffer,
) -> Result<Dispatch> {
    let per = ctx.plan.slots[ctx.plan.input].len();
    let max = ctx.gpu.limits.max_compute_workgroups_per_dimension;
    let groups = grid(per.div_ceil(PER_INVOCATION) * ctx.n, FLAT_WG, max);
    let kernel = ctx.kernel(key()).await?;
    let bind = ctx.bind(&kernel, &[params, latent, ctx.buf(ctx.plan.output), x0]);
    Ok(Dispatch {
        kernel,
        bind,
        groups: ctx.check_groups(groups, "sampling step")?,
        family: "ddim step",
        layer: "step".into(),
        variant: "one noise block per invocation".into(),
        flops: 0,
    })
}

/// The rows of a trajectory's table: one uniform per step.
pub fn rows(
    table: &[StepCoeffs],
    noise: NoiseKey,
    per_sample: usize,
    n: usize,
    groups: [u32; 3],
) -> Vec<StepParams> {
    table
        .iter()
        .enumerate()
        .map(|(k, &c)| StepParams {
            c,
            stream: crate::rng::stream_step(k),
            seed_lo: noise.seed as u32,
            seed_hi: (noise.seed >> 32) as u32,
            first_sample: noise.first_sample as u32,
            per_sample: per_sample as u32,
            total: (per_sample * n) as u32,
            row: groups[0] * FLAT_WG,
            pad: 0,
        })
        .collect()
}
