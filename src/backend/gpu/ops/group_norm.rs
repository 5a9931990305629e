//! GroupNorm (group_norm.wgsl), the twin of backend/cpu/group_norm.rs: 32 groups, eps 1e-6,
//! the affine, and optionally swish.

use super::tiles::NORM_WG;
use super::{Ctx, Dispatch};
use crate::backend::gpu::pipelines::{Key, Shader};
use crate::error::Result;
use crate::model::Op;

/// group_norm.wgsl's `Norm`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NormParams {
    pub c: u32,
    pub hw: u32,
    pub x_stride: u32,
    pub x_off: u32,
    pub y_stride: u32,
    pub y_off: u32,
    pub act: u32,
    pub pad: u32,
}

/// The one pipeline.
pub fn key() -> Key {
    Key::new(Shader::GroupNorm, "main", vec![("WG", NORM_WG)])
}

pub async fn dispatches(ctx: &Ctx<'_>, op: &Op, layer: String) -> Result<Vec<Dispatch>> {
    let Op::GroupNorm {
        x,
        y,
        gamma,
        beta,
        swish,
    } = *op
    else {
        unreachable!("group_norm::dispatches takes a GroupNorm")
    };
    let (h, w) = ctx.hw(x.slot);
    let (x_stride, x_off) = ctx.place(x);
    let (y_stride, y_off) = ctx.place(y);
    let p = ctx.uniform(&NormParams {
        c: x.c as u32,
        hw: (h * w) as u32,
        x_stride,
        x_off,
        y_stride,
        y_off,
        act: swish as u32,
        pad: 0,
    });
    let kernel = ctx.kernel(key()).await?;
    let bind = ctx.bind(
        &kernel,
        &[
            &p,
            ctx.buf(x.slot),
            &ctx.weights[gamma],
            &ctx.weights[beta],
            ctx.buf(y.slot),
        ],
    );
    Ok(vec![Dispatch {
        kernel,
        bind,
        groups: ctx.check_groups([32, ctx.n as u32, 1], &layer)?,
        family: op.family(),
        layer,
        variant: "one workgroup per group".into(),
        flops: 0,
    }])
}
