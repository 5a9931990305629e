//! The dense layers of the timestep MLP (linear.wgsl), the twin of backend/cpu/linear.rs.

use super::tiles::FLAT_WG;
use super::{Ctx, Dispatch};
use crate::backend::gpu::pipelines::{Key, Shader};
use crate::error::Result;
use crate::model::Op;

/// linear.wgsl's `Linear`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LinearParams {
    pub n_in: u32,
    pub n_out: u32,
    pub act: u32,
    pub pad: u32,
}

/// The one pipeline.
pub fn key() -> Key {
    Key::new(Shader::Linear, "main", vec![("WG", FLAT_WG)])
}

pub async fn dispatches(ctx: &Ctx<'_>, op: &Op, layer: String) -> Result<Vec<Dispatch>> {
    let Op::Linear { x, y, w, b, swish } = *op else {
        unreachable!("linear::dispatches takes a Linear")
    };
    let (ni, no) = (ctx.plan.slots[x].len(), ctx.plan.slots[y].len());
    let p = ctx.uniform(&LinearParams {
        n_in: ni as u32,
        n_out: no as u32,
        act: swish as u32,
        pad: 0,
    });
    let kernel = ctx.kernel(key()).await?;
    let bind = ctx.bind(
        &kernel,
        &[&p, ctx.buf(x), &ctx.weights[w], &ctx.weights[b], ctx.buf(y)],
    );
    let groups = [no.div_ceil(FLAT_WG as usize) as u32, ctx.n as u32, 1];
    Ok(vec![Dispatch {
        kernel,
        bind,
        groups: ctx.check_groups(groups, &layer)?,
        family: op.family(),
        layer,
        variant: "one output per invocation".into(),
        flops: 2 * (ni * no * ctx.n) as u64,
    }])
}
