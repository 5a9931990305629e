//! Resampling without a conv (resample.wgsl): 2×2 average pool and nearest ×2, the twins of
//! backend/cpu/resample.rs. (With a conv, resampling is fused into the convolution.)

use super::tiles::FLAT_WG;
use super::{Ctx, Dispatch};
use crate::backend::gpu::pipelines::{Key, Shader};
use crate::error::Result;
use crate::model::Op;

/// resample.wgsl's `Resample`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ResampleParams {
    pub c: u32,
    pub h: u32,
    pub w: u32,
    pub pad: u32,
    pub x_stride: u32,
    pub x_off: u32,
    pub y_stride: u32,
    pub y_off: u32,
}

/// The pipeline of nearest ×2 (`up`) or the 2×2 average pool.
pub fn key(up: bool) -> Key {
    let entry = if up { "upsample" } else { "avg_pool" };
    Key::new(Shader::Resample, entry, vec![("WG", FLAT_WG)])
}

pub async fn dispatches(ctx: &Ctx<'_>, op: &Op, layer: String) -> Result<Vec<Dispatch>> {
    let (x, y, up) = match *op {
        Op::AvgPool { x, y } => (x, y, false),
        Op::Upsample { x, y } => (x, y, true),
        _ => unreachable!("resample::dispatches takes AvgPool or Upsample"),
    };
    let (h, w) = ctx.hw(x.slot);
    let (x_stride, x_off) = ctx.place(x);
    let (y_stride, y_off) = ctx.place(y);
    let p = ctx.uniform(&ResampleParams {
        c: x.c as u32,
        h: h as u32,
        w: w as u32,
        pad: 0,
        x_stride,
        x_off,
        y_stride,
        y_off,
    });
    let kernel = ctx.kernel(key(up)).await?;
    let bind = ctx.bind(&kernel, &[&p, ctx.buf(x.slot), ctx.buf(y.slot)]);
    let (ho, wo) = ctx.hw(y.slot);
    let items = y.c * ho * wo;
    let groups = [items.div_ceil(FLAT_WG as usize) as u32, ctx.n as u32, 1];
    Ok(vec![Dispatch {
        kernel,
        bind,
        groups: ctx.check_groups(groups, &layer)?,
        family: op.family(),
        layer,
        variant: "one output per invocation".into(),
        flops: 0,
    }])
}
