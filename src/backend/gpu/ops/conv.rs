//! Convolutions (conv_common.wgsl with conv2d.wgsl, conv2d_gemm.wgsl or conv2d_coop.wgsl):
//! the parameter block, the kernel variants the tuner chooses among, the default choice when
//! it does not run, and the dispatches. The CPU twin is backend/cpu/conv.rs.

use super::tiles::{
    self, CoopTile, Tile, CONV_TILES, COOP_TILES, DIRECT_VEC, DIRECT_WX, DIRECT_WY, FLAT_WG, SPLITS,
};
use super::{Ctx, Dispatch};
use crate::backend::gpu::pipelines::{Key, Shader};
use crate::backend::gpu::precision::Arith;
use crate::error::{Error, Result};
use crate::model::{Op, Plan, Resample};

/// conv_common.wgsl's `Conv`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvParams {
    pub ci: u32,
    pub h: u32,
    pub w: u32,
    pub co: u32,
    pub ho: u32,
    pub wo: u32,
    pub batch: u32,
    /// Bit 0: add temb; bit 1: add the residual.
    pub flags: u32,
    pub x_stride: u32,
    pub x_off: u32,
    pub y_stride: u32,
    pub y_off: u32,
    pub r_stride: u32,
    pub r_off: u32,
    pub t_stride: u32,
    pub pad: u32,
}

/// Which kernel runs a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvVariant {
    /// conv2d.wgsl: registers only; best where barriers are costly (software adapters).
    Direct,
    /// conv2d_gemm.wgsl with this tile, K split into `split` parts (1: no split).
    Gemm { tile: Tile, split: u32 },
    /// The same with f16 slices and f16 arithmetic within each slice (mixed precision).
    GemmF16 { tile: Tile, split: u32 },
    /// conv2d_coop.wgsl on tensor cores (mixed precision), for subgroups of this size.
    Coop { tile: CoopTile, subgroup: u32 },
}

impl ConvVariant {
    /// The name the tuner's cache and the profile use: "direct", "gemm 64x64x16/4x4 split 2",
    /// "gemm-f16 64x64x16/4x4", "coop 64x64x32".
    pub fn name(&self) -> String {
        let split = |s: u32| {
            if s == 1 {
                String::new()
            } else {
                format!(" split {s}")
            }
        };
        match *self {
            ConvVariant::Direct => "direct".into(),
            ConvVariant::Gemm { tile, split: s } => format!("gemm {}{}", tile.name(), split(s)),
            ConvVariant::GemmF16 { tile, split: s } => {
                format!("gemm-f16 {}{}", tile.name(), split(s))
            }
            ConvVariant::Coop { tile, .. } => format!("coop {}", tile.name()),
        }
    }

    /// What the variant computes with.
    pub fn arith(&self) -> Arith {
        match self {
            ConvVariant::Direct | ConvVariant::Gemm { .. } => Arith::F32,
            ConvVariant::GemmF16 { .. } => Arith::F16,
            ConvVariant::Coop { .. } => Arith::Coop,
        }
    }

    fn split(&self) -> u32 {
        match *self {
            ConvVariant::Gemm { split, .. } | ConvVariant::GemmF16 { split, .. } => split,
            _ => 1,
        }
    }
}

/// What a convolution's speed depends on: the tuner's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    pub ci: usize,
    pub co: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub resample: Resample,
    pub batch: usize,
    /// The output's size, as the plan lays it out.
    pub ho: usize,
    pub wo: usize,
}

impl ConvShape {
    pub fn of(plan: &Plan, op: &Op, batch: usize) -> Option<ConvShape> {
        let Op::Conv {
            x, y, k, resample, ..
        } = *op
        else {
            return None;
        };
        let (h, w) = plan.slots[x.slot].hw();
        let (ho, wo) = plan.slots[y.slot].hw();
        Some(ConvShape {
            ci: x.c,
            co: y.c,
            h,
            w,
            k,
            resample,
            batch,
            ho,
            wo,
        })
    }

    /// N of the implicit GEMM: the batch folded with the output pixels.
    pub fn columns(&self) -> usize {
        self.batch * self.ho * self.wo
    }

    /// K of the implicit GEMM.
    pub fn depth(&self) -> usize {
        self.ci * self.k * self.k
    }

    pub fn flops(&self) -> u64 {
        2 * (self.co * self.depth() * self.columns()) as u64
    }

    /// "3x3 128->256 16x16 down, batch 8": the tuner's cache key and the profile's label.
    pub fn key(&self) -> String {
        let r = match self.resample {
            Resample::None => "",
            Resample::Down => " down",
            Resample::Up => " up",
        };
        format!(
            "{k}x{k} {}->{} {}x{}{r}, batch {}",
            self.ci,
            self.co,
            self.h,
            self.w,
            self.batch,
            k = self.k
        )
    }

    /// Output tiles of the GEMM for a tile size.
    fn tiles(&self, t: Tile) -> usize {
        self.co.div_ceil(t.bm as usize) * self.columns().div_ceil(t.bn as usize)
    }
}

/// Bytes of split-K partial sums a variant needs (0 without a split).
pub fn part_bytes(s: &ConvShape, v: ConvVariant) -> u64 {
    match v.split() {
        1 => 0,
        split => 4 * split as u64 * s.co as u64 * s.columns() as u64,
    }
}

/// Every variant that can run this shape with this arithmetic on a device with these limits
/// (`subgroup`: the fixed subgroup size, which the tensor-core kernel needs). f32 offers only
/// f32 kernels; the mixed modes offer theirs on top, so the tuner never picks a reduced
/// kernel for f32.
pub fn variants(
    s: &ConvShape,
    limits: &wgpu::Limits,
    arith: Arith,
    subgroup: Option<u32>,
) -> Vec<ConvVariant> {
    let mut out = f32_variants(s, limits);
    if arith != Arith::F32 {
        let f16: Vec<ConvVariant> = out
            .iter()
            .filter_map(|v| match *v {
                ConvVariant::Gemm { tile, split } => Some(ConvVariant::GemmF16 { tile, split }),
                _ => None,
            })
            .collect();
        out.extend(f16);
    }
    if let (Arith::Coop, Some(sg)) = (arith, subgroup) {
        let max_groups = limits.max_compute_workgroups_per_dimension as usize;
        for &tile in COOP_TILES.iter().filter(|t| t.fits(limits, sg)) {
            if s.columns().div_ceil(tile.bn() as usize) <= max_groups {
                out.push(ConvVariant::Coop { tile, subgroup: sg });
            }
        }
    }
    out
}

/// The f32 kernels. Split-K is offered only where the layer has few output tiles and each
/// part keeps at least two K slices.
fn f32_variants(s: &ConvShape, limits: &wgpu::Limits) -> Vec<ConvVariant> {
    let max_groups = limits.max_compute_workgroups_per_dimension as usize;
    let max_bytes = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let mut out = vec![ConvVariant::Direct];
    for &tile in CONV_TILES.iter().filter(|t| t.fits(limits)) {
        if s.columns().div_ceil(tile.bn as usize) > max_groups {
            continue;
        }
        for &split in &SPLITS {
            let v = ConvVariant::Gemm { tile, split };
            let worth =
                split == 1 || (s.tiles(tile) < 256 && s.depth() >= 2 * (split * tile.bk) as usize);
            if worth && part_bytes(s, v) <= max_bytes {
                out.push(v);
            }
        }
    }
    out
}

/// The choice without tuning. f32: the direct kernel on software adapters; on hardware
/// GPUs a tile by the layer's size, and split-K where few output tiles would leave the
/// device idle. The mixed modes run their own kernel everywhere (so `--precision mixed`
/// means what it says, even on a software adapter): the tensor-core tile by the layer's
/// size, or the f16 twin of the f32 choice. These are rules of thumb, not measurements: the
/// tuner's choice replaces them.
pub fn default_variant(
    s: &ConvShape,
    limits: &wgpu::Limits,
    software: bool,
    arith: Arith,
    subgroup: Option<u32>,
) -> ConvVariant {
    let offered = variants(s, limits, arith, subgroup);
    if arith == Arith::Coop {
        let want = if s.co >= 128 && s.columns() >= 8192 {
            [COOP_TILES[1], COOP_TILES[0]]
        } else {
            [COOP_TILES[0], COOP_TILES[4]]
        };
        for tile in want {
            if let Some(v) = offered
                .iter()
                .find(|v| matches!(v, ConvVariant::Coop { tile: t, .. } if *t == tile))
            {
                return *v;
            }
        }
    }
    let f32_choice = default_f32(s, limits, software && arith == Arith::F32, &offered);
    match f32_choice {
        ConvVariant::Gemm { tile, split } if arith != Arith::F32 => {
            ConvVariant::GemmF16 { tile, split }
        }
        v => v,
    }
}

fn default_f32(
    s: &ConvShape,
    limits: &wgpu::Limits,
    software: bool,
    offered: &[ConvVariant],
) -> ConvVariant {
    let has = |v: &ConvVariant| offered.contains(v);
    if software {
        return ConvVariant::Direct;
    }
    let big = tiles::Tile {
        bm: 128,
        bn: 128,
        bk: 8,
        tm: 8,
        tn: 8,
    };
    let tile = if s.co >= 128 && s.columns() >= 8192 && big.fits(limits) {
        big
    } else if s.tiles(CONV_TILES[0]) >= 64 {
        CONV_TILES[0]
    } else {
        CONV_TILES[5]
    };
    // Enough workgroups to occupy a large GPU, without parts thinner than 4 K slices.
    let split = SPLITS
        .iter()
        .copied()
        .filter(|&sp| has(&ConvVariant::Gemm { tile, split: sp }))
        .take_while(|&sp| sp == 1 || s.depth() >= (4 * sp * tile.bk) as usize)
        .find(|&sp| s.tiles(tile) * sp as usize >= 128)
        .unwrap_or(1);
    let v = ConvVariant::Gemm { tile, split };
    if has(&v) {
        v
    } else {
        ConvVariant::Direct
    }
}

/// The pipelines of a variant for a k×k kernel with this resampling: the convolution, then
/// the split-K reduce when it has one.
pub fn keys(variant: ConvVariant, k: usize, resample: Resample) -> Vec<Key> {
    let mode = match resample {
        Resample::None => 0,
        Resample::Down => 1,
        Resample::Up => 2,
    };
    let layer = [("KS", k as u32), ("MODE", mode)];
    match variant {
        ConvVariant::Direct => {
            let mut c = vec![("WX", DIRECT_WX), ("WY", DIRECT_WY)];
            c.extend(layer);
            vec![Key::new(Shader::ConvDirect, "main", c)]
        }
        ConvVariant::Gemm { tile, split } | ConvVariant::GemmF16 { tile, split } => {
            let shader = if variant.arith() == Arith::F16 {
                Shader::ConvGemmF16
            } else {
                Shader::ConvGemm
            };
            let mut c = tile.constants();
            c.push(("SPLIT", split));
            c.extend(layer);
            let mut out = vec![Key::new(shader, "main", c)];
            if split > 1 {
                let mut c = vec![("SPLIT", split), ("REDUCE_WG", FLAT_WG)];
                c.extend(layer);
                out.push(Key::new(shader, "reduce", c));
            }
            out
        }
        ConvVariant::Coop { tile, subgroup } => {
            let mut c = tile.constants(subgroup);
            c.extend(layer);
            vec![Key::new(Shader::ConvCoop, "main", c)]
        }
    }
}

pub async fn dispatches(
    ctx: &Ctx<'_>,
    op: &Op,
    variant: ConvVariant,
    layer: String,
) -> Result<Vec<Dispatch>> {
    let Op::Conv {
        x,
        y,
        w,
        b,
        k,
        resample,
        temb,
        residual,
    } = *op
    else {
        return Err(Error::Backend(format!("{layer} is not a convolution")));
    };
    let n = ctx.n;
    let s = ConvShape::of(ctx.plan, op, n).expect("a conv");
    let (h, wd) = ctx.hw(x.slot);
    let (ho, wo) = ctx.hw(y.slot);
    let (x_stride, x_off) = ctx.place(x);
    let (y_stride, y_off) = ctx.place(y);
    let (r_stride, r_off) = residual.map_or((0, 0), |r| ctx.place(r));
    let params = ConvParams {
        ci: x.c as u32,
        h: h as u32,
        w: wd as u32,
        co: y.c as u32,
        ho: ho as u32,
        wo: wo as u32,
        batch: n as u32,
        flags: temb.is_some() as u32 | (residual.is_some() as u32) << 1,
        x_stride,
        x_off,
        y_stride,
        y_off,
        r_stride,
        r_off,
        t_stride: temb.map_or(0, |t| ctx.plan.slots[t].len() as u32),
        pad: 0,
    };
    let family = op.family();
    let what = format!("{layer} ({})", variant.name());
    let groups = match variant {
        ConvVariant::Direct => [
            (ho * wo).div_ceil((DIRECT_WX * DIRECT_VEC) as usize) as u32,
            y.c.div_ceil((DIRECT_WY * DIRECT_VEC) as usize) as u32,
            n as u32,
        ],
        ConvVariant::Gemm { tile, split } | ConvVariant::GemmF16 { tile, split } => [
            s.columns().div_ceil(tile.bn as usize) as u32,
            y.c.div_ceil(tile.bm as usize) as u32,
            split,
        ],
        ConvVariant::Coop { tile, .. } => [
            s.columns().div_ceil(tile.bn() as usize) as u32,
            y.c.div_ceil(tile.bm() as usize) as u32,
            1,
        ],
    };
    let mut keys = keys(variant, k, resample).into_iter();
    let kernel = ctx.kernel(keys.next().expect("a main key")).await?;
    let reduce = match keys.next() {
        Some(k) => Some(ctx.kernel(k).await?),
        None => None,
    };
    let uniform = ctx.uniform(&params);
    let tb = temb.map_or(ctx.dummy, |t| ctx.buf(t));
    let rb = residual.map_or(ctx.dummy, |r| ctx.buf(r.slot));
    let mut io = vec![
        &uniform,
        ctx.buf(x.slot),
        &ctx.weights[w],
        &ctx.weights[b],
        tb,
        rb,
        ctx.buf(y.slot),
    ];
    if matches!(
        variant,
        ConvVariant::Gemm { .. } | ConvVariant::GemmF16 { .. }
    ) {
        // Bound even without a split: the dummy is bound read-only elsewhere here.
        io.push(ctx.part);
    }
    let mut out = vec![Dispatch {
        bind: ctx.bind(&kernel, &io),
        kernel,
        groups: ctx.check_groups(groups, &what)?,
        family,
        layer: layer.clone(),
        variant: variant.name(),
        flops: s.flops(),
    }];
    if let Some(kernel) = reduce {
        let max = ctx.gpu.limits.max_compute_workgroups_per_dimension;
        out.push(Dispatch {
            bind: ctx.bind(&kernel, &io),
            kernel,
            groups: ctx.check_groups(tiles::grid(y.c * s.columns(), FLAT_WG, max), &what)?,
            family: "conv split-K reduce",
            layer,
            variant: variant.name(),
            flops: 0,
        });
    }
    Ok(out)
}
