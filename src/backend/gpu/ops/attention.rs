//! Single-head attention (attention.wgsl), the twin of backend/cpu/attention.rs: the scores
//! and the weighted sum as batched GEMMs on the tiled machinery of the convolutions
//! (gemm_tile.wgsl), and a softmax between them.

use super::tiles::{Tile, ATTN_LARGE, ATTN_SMALL, FLAT_WG};
use super::{Ctx, Dispatch};
use crate::backend::gpu::pipelines::{Key, Shader};
use crate::error::Result;
use crate::model::Op;

/// attention.wgsl's `Attn`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttnParams {
    pub c: u32,
    pub hw: u32,
    pub scale: f32,
    pub pad: u32,
    pub q_stride: u32,
    pub q_off: u32,
    pub k_stride: u32,
    pub k_off: u32,
    pub v_stride: u32,
    pub v_off: u32,
    pub y_stride: u32,
    pub y_off: u32,
}

/// The tile for a layer of `hw` tokens.
pub fn tile(hw: usize) -> Tile {
    if hw <= 64 {
        ATTN_SMALL
    } else {
        ATTN_LARGE
    }
}

/// The pipelines of the three passes: scores (A, the keys, stored k-major), softmax, apply.
pub fn keys(t: Tile) -> [Key; 3] {
    let gemm = |stage: u32, kmajor: bool| {
        let mut c = t.constants();
        c.push(("STAGE", stage));
        c.push(("A_KMAJOR", kmajor as u32));
        Key::new(Shader::Attention, "gemm", c)
    };
    [
        gemm(0, true),
        Key::new(Shader::Attention, "softmax", vec![("WG", FLAT_WG)]),
        gemm(1, false),
    ]
}

pub async fn dispatches(ctx: &Ctx<'_>, op: &Op, layer: String) -> Result<Vec<Dispatch>> {
    let Op::Attention { q, k, v, y } = *op else {
        unreachable!("attention::dispatches takes an Attention")
    };
    let (h, w) = ctx.hw(q.slot);
    let (hw, c, n) = (h * w, q.c, ctx.n);
    let (q_stride, q_off) = ctx.place(q);
    let (k_stride, k_off) = ctx.place(k);
    let (v_stride, v_off) = ctx.place(v);
    let (y_stride, y_off) = ctx.place(y);
    let p = ctx.uniform(&AttnParams {
        c: c as u32,
        hw: hw as u32,
        scale: (c as f32).powf(-0.5),
        pad: 0,
        q_stride,
        q_off,
        k_stride,
        k_off,
        v_stride,
        v_off,
        y_stride,
        y_off,
    });
    let t = tile(hw);
    let mut out = Vec::new();
    // M of the two GEMMs: the keys, then the channels.
    let stages = [
        (Some(hw), "attention scores"),
        (None, "attention softmax"),
        (Some(c), "attention apply"),
    ];
    for ((rows, family), key) in stages.into_iter().zip(keys(t)) {
        let (groups, flops) = match rows {
            Some(rows) => {
                let groups = [
                    hw.div_ceil(t.bn as usize) as u32,
                    rows.div_ceil(t.bm as usize) as u32,
                    n as u32,
                ];
                (groups, 2 * (c * hw * hw * n) as u64)
            }
            None => ([hw.div_ceil(FLAT_WG as usize) as u32, n as u32, 1], 0),
        };
        let gemm = rows.is_some();
        let kernel = ctx.kernel(key).await?;
        let bind = ctx.bind(
            &kernel,
            &[
                &p,
                ctx.buf(q.slot),
                ctx.buf(k.slot),
                ctx.buf(v.slot),
                ctx.scores,
                ctx.buf(y.slot),
            ],
        );
        out.push(Dispatch {
            kernel,
            bind,
            groups: ctx.check_groups(groups, &layer)?,
            family,
            layer: layer.clone(),
            variant: if gemm {
                format!("gemm {}", t.name())
            } else {
                "one query per invocation".into()
            },
            flops,
        });
    }
    Ok(out)
}
