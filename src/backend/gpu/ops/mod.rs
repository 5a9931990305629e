//! The host side of each layer family, one file each, named like its WGSL file: the
//! parameter block (a `#[repr(C)]` mirror of the shader's struct), the bindings, the kernel
//! variants and the dispatch sizes, from the tile constants in `tiles.rs`.

pub mod attention;
pub mod conv;
pub mod group_norm;
pub mod linear;
pub mod resample;
pub mod step;
pub mod tiles;

use super::device::Gpu;
use super::pipelines::{Kernel, Key};
use crate::error::{Error, Result};
use crate::model::{Op, Plan, Resample, View};
use conv::ConvVariant;
use wgpu::util::DeviceExt;

/// One recorded compute dispatch, with what the profile and the tuner report of it.
pub struct Dispatch {
    pub kernel: Kernel,
    pub bind: wgpu::BindGroup,
    pub groups: [u32; 3],
    /// The kernel family ("conv 3x3", "group norm", ...).
    pub family: &'static str,
    /// The layer, by its parameter names ("down.0.block.0.conv1").
    pub layer: String,
    /// The kernel variant that runs it.
    pub variant: String,
    /// Floating-point operations of the whole batch.
    pub flops: u64,
}

/// What building an op's dispatches needs: the device, the pipeline cache, the plan, the
/// weights and this batch size's buffers.
pub struct Ctx<'a> {
    pub gpu: &'a Gpu,
    /// The convolutions read f16 weights.
    pub half: bool,
    pub plan: &'a Plan,
    pub weights: &'a [wgpu::Buffer],
    pub bufs: &'a [wgpu::Buffer],
    pub buf_of: &'a [usize],
    /// Bound where a kernel's optional input is absent.
    pub dummy: &'a wgpu::Buffer,
    /// Attention scores, one hw × hw matrix per image.
    pub scores: &'a wgpu::Buffer,
    /// Split-K partial sums, sized for the largest split chosen.
    pub part: &'a wgpu::Buffer,
    pub n: usize,
}

impl Ctx<'_> {
    pub fn buf(&self, slot: usize) -> &wgpu::Buffer {
        &self.bufs[self.buf_of[slot]]
    }

    pub fn hw(&self, slot: usize) -> (usize, usize) {
        self.plan.slots[slot].hw()
    }

    /// (per-image stride, offset within the image) of a view, in elements.
    pub fn place(&self, v: View) -> (u32, u32) {
        let s = self.plan.slots[v.slot];
        let (h, w) = s.hw();
        (s.len() as u32, (v.c_off * h * w) as u32)
    }

    pub fn uniform<T: bytemuck::Pod>(&self, p: &T) -> wgpu::Buffer {
        self.gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("op params"),
                contents: bytemuck::bytes_of(p),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    pub fn bind(&self, k: &Kernel, bufs: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &k.layout,
                entries: &entries,
            })
    }

    pub async fn kernel(&self, key: Key) -> Result<Kernel> {
        let half = self.half && key.shader.is_conv();
        self.gpu.kernel(&Key { half, ..key }).await
    }

    /// Check a dispatch against max_compute_workgroups_per_dimension.
    pub fn check_groups(&self, groups: [u32; 3], what: &str) -> Result<[u32; 3]> {
        let max = self.gpu.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Backend(format!(
                "{what}: a dispatch of {groups:?} workgroups is over \
                 max_compute_workgroups_per_dimension ({max})"
            )));
        }
        Ok(groups)
    }
}

/// Every pipeline the engine can ask for, on any device: for validating the shaders with
/// naga without one.
pub fn every_key() -> Vec<Key> {
    let mut out = Vec::new();
    for (k, r) in [
        (1, Resample::None),
        (3, Resample::None),
        (3, Resample::Down),
        (3, Resample::Up),
    ] {
        out.extend(conv::keys(ConvVariant::Direct, k, r));
        for &tile in &tiles::CONV_TILES {
            for &split in &tiles::SPLITS {
                out.extend(conv::keys(ConvVariant::Gemm { tile, split }, k, r));
                out.extend(conv::keys(ConvVariant::GemmF16 { tile, split }, k, r));
            }
        }
        for tile in tiles::COOP_TILES {
            for subgroup in [32, 64] {
                out.extend(conv::keys(ConvVariant::Coop { tile, subgroup }, k, r));
            }
        }
    }
    out.extend(attention::keys(tiles::ATTN_SMALL));
    out.extend(attention::keys(tiles::ATTN_LARGE));
    out.extend([group_norm::key(), linear::key(), step::key()]);
    out.extend([resample::key(false), resample::key(true)]);
    let mut seen = std::collections::HashSet::new();
    out.retain(|k| seen.insert(k.clone()));
    out
}

/// The dispatches of one op; `conv` is the variant chosen when it is a convolution.
pub async fn build(ctx: &Ctx<'_>, op: &Op, conv: Option<ConvVariant>) -> Result<Vec<Dispatch>> {
    let layer = ctx.plan.layer_name(op);
    match *op {
        Op::Conv { .. } => {
            let v = conv.ok_or_else(|| Error::Backend(format!("{layer}: no conv variant")))?;
            conv::dispatches(ctx, op, v, layer).await
        }
        Op::GroupNorm { .. } => group_norm::dispatches(ctx, op, layer).await,
        Op::Linear { .. } => linear::dispatches(ctx, op, layer).await,
        Op::Attention { .. } => attention::dispatches(ctx, op, layer).await,
        Op::AvgPool { .. } | Op::Upsample { .. } => resample::dispatches(ctx, op, layer).await,
    }
}
