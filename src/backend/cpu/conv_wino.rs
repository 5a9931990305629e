//! 3×3 convolution (stride 1, pad 1, over the input or its nearest-×2 map) by Winograd's
//! F(2×2, 3×3): each 2×2 block of outputs (a tile) comes from its 4×4 input patch through
//! 16 products of transformed weights and transformed inputs, where the direct kernels
//! take 36 multiplies. Per image and group of tile rows:
//! - the input transform V = Bᵀ d B of each channel's patches, read from `conv_layout`'s
//!   phase planes, in which the patches of a run of tiles are vectors;
//! - 16 products, one per transformed position ξ: M[ξ] = U[ξ] · V[ξ], output channels by
//!   input channels times input channels by tiles, with the pixel kernel's register tile
//!   (MR broadcast weights into NV vectors of tiles per input channel, fused multiply-adds
//!   over the input channels in order);
//! - the output transform Y = Aᵀ M A (2×2 outputs per tile) plus bias and temb, kept per
//!   tile, then spread to the output rows with the residual.
//!
//! U = G g Gᵀ is made once per layer, at pack time, in f64. Each output's arithmetic follows
//! from the shape alone, never from the threads, the batch or the vector width. The
//! transforms round where the direct sum does not; the tests hold the error to the twin.

use super::conv::{scratch, ConvJob, Out};
use super::conv_direct::{lanes, split, Kernel, Packed};
use super::conv_layout::Layout;
use crate::model::Resample;
use pulp::{Simd, WithSimd};
use std::cell::RefCell;

/// Whether a layer runs here: at stride 1 (over its input or its nearest-×2 map), at least
/// 16 channels in and out, and an output grid of at least 32×32 (at widths that are
/// multiples of 32 a tile row fills whole 16-lane vectors; other widths run flat runs with
/// a padding lane per row). Fixed by the shape, not the CPU, so a model gives the same bits
/// on every machine with the same fused multiply-add.
pub fn fits(r: Resample, ci: usize, co: usize, ho: usize, wo: usize) -> bool {
    r != Resample::Down && ci >= 16 && co >= 16 && ho >= 32 && wo >= 32
}

/// The transformed weights U[ξ][co/MR][ci][MR], channels padded to a multiple of MR.
pub fn pack(weight: &[f32], co: usize, ci: usize, mr: usize, nv: usize) -> Packed {
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let blocks = co.div_ceil(mr);
    let mut data = vec![0.0; 16 * blocks * ci * mr];
    for o in 0..co {
        for c in 0..ci {
            let g = &weight[(o * ci + c) * 9..][..9];
            // G g, then (G g) Gᵀ.
            let gg: [[f64; 3]; 4] = std::array::from_fn(|u| {
                std::array::from_fn(|k| (0..3).map(|j| G[u][j] * g[j * 3 + k] as f64).sum())
            });
            for u in 0..4 {
                for v in 0..4 {
                    let x: f64 = (0..3).map(|k| gg[u][k] * G[v][k]).sum();
                    data[(((u * 4 + v) * blocks + o / mr) * ci + c) * mr + o % mr] = x as f32;
                }
            }
        }
    }
    Packed {
        kernel: Kernel::Winograd,
        mr,
        nv,
        mp: 0,
        co,
        ci,
        data,
    }
}

/// Slots per tile row in the transformed input: the tile row rounded up to whole vectors
/// where that costs no more than the flat run (rows `pitch` apart, one padding column each).
fn slot_pitch(l: &Layout, lanes: usize) -> usize {
    let tw = l.wo.div_ceil(2);
    let whole = tw.next_multiple_of(lanes);
    if whole <= l.pitch {
        whole
    } else {
        l.pitch
    }
}

/// Work items: (image, first and last tile row, first and last channel block), enough for
/// `threads` threads four times over where the layer has them. Rows split first, in runs
/// that fill whole chunks of NV vectors where the grid allows, since items that split the
/// channels each repeat the input transform; a run's transformed input (16 × ci × its
/// slots, at most 1 MiB: a core's L2 on the machines measured) stays in L2 while every
/// channel block reads it.
pub fn items(job: &ConvJob, l: &Layout, p: &Packed, threads: usize) -> Vec<[usize; 5]> {
    let th = l.ho.div_ceil(2);
    let lanes = lanes();
    let spitch = slot_pitch(l, lanes);
    let unit = (p.nv * lanes).div_ceil(spitch).clamp(1, th.max(1));
    let cap = (16 * 1024 / (job.ci.max(1) * spitch)).max(unit) / unit * unit;
    let want = (4 * threads).div_ceil(job.n);
    let runs = want.min(th.div_ceil(unit)).max(1);
    let rows = th.div_ceil(runs).next_multiple_of(unit).min(cap).max(1);
    let blocks = p.co.div_ceil(p.mr);
    let parts = want.div_ceil(th.div_ceil(rows)).min(blocks);
    split(job.n, th, rows, blocks, blocks.div_ceil(parts))
}

thread_local! {
    /// A group's transformed input, one chunk's products and the group's outputs per tile.
    static SCRATCH: RefCell<[Vec<f32>; 3]> =
        const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// One work item (see `items`) of image `item[0]`, which is image `src_img` of `src` (the
/// input in the layout), into `y`.
pub(super) fn run(
    job: &ConvJob,
    layout: &Layout,
    packed: &Packed,
    src: &[f32],
    src_img: usize,
    item: [usize; 5],
    y: &Out,
) {
    SCRATCH.with(|cell| {
        scratch(cell, |[v, m, t]| {
            let vs = ((item[2] - item[1]) * slot_pitch(layout, lanes())).next_multiple_of(lanes());
            let chans = (item[4] - item[3]) * packed.mr;
            for (buf, len) in [
                (&mut *v, 16 * job.ci * vs),
                (&mut *m, 16 * packed.mr * packed.nv * lanes()),
                (&mut *t, 4 * chans * vs),
            ] {
                if buf.len() < len {
                    buf.resize(len, 0.0);
                }
            }
            pulp::Arch::new().dispatch(Tiles {
                job,
                l: layout,
                p: packed,
                src,
                src_img,
                item,
                y,
                v,
                m,
                t,
            })
        })
    })
}

/// One work item: image `item[0]` (image `src_img` of `src`), tile rows
/// [item[1], item[2]), channel blocks [item[3], item[4]).
struct Tiles<'a> {
    job: &'a ConvJob<'a>,
    l: &'a Layout,
    p: &'a Packed,
    src: &'a [f32],
    src_img: usize,
    item: [usize; 5],
    y: &'a Out,
    /// The group's transformed input, [16][ci][slots].
    v: &'a mut [f32],
    /// One chunk's products, [16][MR][NV·lanes].
    m: &'a mut [f32],
    /// The group's outputs per tile, bias added: [channel][2×2][slots].
    t: &'a mut [f32],
}

impl WithSimd for Tiles<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        match (self.p.mr, self.p.nv) {
            (12, 2) => self.run::<S, 12, 2>(simd),
            (6, 4) => self.run::<S, 6, 4>(simd),
            (6, 2) => self.run::<S, 6, 2>(simd),
            _ => self.run::<S, 4, 2>(simd),
        }
    }
}

/// (d0 − d2, d1 + d2, d2 − d1, d1 − d3): Bᵀ applied to four values.
#[inline(always)]
fn bt<S: Simd>(s: S, d: [S::f32s; 4]) -> [S::f32s; 4] {
    [
        s.sub_f32s(d[0], d[2]),
        s.add_f32s(d[1], d[2]),
        s.sub_f32s(d[2], d[1]),
        s.sub_f32s(d[1], d[3]),
    ]
}

/// (m0 + m1 + m2, m1 − m2 − m3): Aᵀ applied to four values.
#[inline(always)]
fn at<S: Simd>(s: S, m: [S::f32s; 4]) -> [S::f32s; 2] {
    [
        s.add_f32s(s.add_f32s(m[0], m[1]), m[2]),
        s.sub_f32s(s.sub_f32s(m[1], m[2]), m[3]),
    ]
}

#[inline(always)]
fn load<S: Simd>(from: &[f32], at: usize) -> S::f32s {
    assert!(at + S::F32_LANES <= from.len());
    // SAFETY: in bounds (checked).
    unsafe { (from.as_ptr().add(at) as *const S::f32s).read_unaligned() }
}

#[inline(always)]
fn store<S: Simd>(to: &mut [f32], at: usize, x: S::f32s) {
    assert!(at + S::F32_LANES <= to.len());
    // SAFETY: in bounds (checked).
    unsafe { (to.as_mut_ptr().add(at) as *mut S::f32s).write_unaligned(x) }
}

impl Tiles<'_> {
    // Loops throughout, not closures: a closure's body is not compiled for the SIMD level
    // `dispatch` enables, and its arithmetic became calls. The indices follow the algebra
    // (patch rows and columns, ξ, channels, vectors), hence plain index loops.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn run<S: Simd, const MR: usize, const NV: usize>(mut self, simd: S) {
        let (job, l, p) = (self.job, self.l, self.p);
        assert!(p.kernel == Kernel::Winograd && p.mr == MR && p.nv == NV);
        assert!(p.ci == job.ci && p.co == job.bias.len());
        let lanes = S::F32_LANES;
        let [_, ty0, ty1, cb0, cb1] = self.item;
        let (ci, pitch) = (job.ci, l.pitch);
        let phase = l.cstride / 4;
        let spitch = slot_pitch(l, lanes);
        let slots = (ty1 - ty0) * spitch;
        let vecs = slots.div_ceil(lanes);
        let vs = vecs * lanes;
        let blocks = p.co.div_ceil(MR);
        let src = &self.src[self.src_img * ci * l.cstride..][..ci * l.cstride];
        let (v, m) = (std::mem::take(&mut self.v), std::mem::take(&mut self.m));
        let t = std::mem::take(&mut self.t);
        let zero = simd.splat_f32s(0.0);
        // The input transform: vector k of the group holds slots k·lanes.. of tile row
        // ty0 + s / spitch, from column s % spitch.
        for c in 0..ci {
            let ch = &src[c * l.cstride..][..l.cstride];
            for k in 0..vecs {
                let s = k * lanes;
                let q = (ty0 + s / spitch) * pitch + s % spitch;
                let mut rows = [[zero; 4]; 4];
                for (r, row) in rows.iter_mut().enumerate() {
                    // Patch row r is phase row r % 2, r / 2 rows down; its columns are
                    // phase columns (0, 1) at the tile and (0, 1) one further.
                    let at = (r % 2) * 2 * phase + q + (r / 2) * pitch;
                    *row = bt(
                        simd,
                        [
                            load::<S>(ch, at),
                            load::<S>(ch, at + phase),
                            load::<S>(ch, at + 1),
                            load::<S>(ch, at + phase + 1),
                        ],
                    );
                }
                for col in 0..4 {
                    let d = bt(
                        simd,
                        [rows[0][col], rows[1][col], rows[2][col], rows[3][col]],
                    );
                    for (u, &x) in d.iter().enumerate() {
                        store::<S>(v, ((u * 4 + col) * ci + c) * vs + s, x);
                    }
                }
            }
        }
        for k0 in (0..vecs).step_by(NV) {
            // A short last chunk repeats its last vector; the repeat is never kept.
            let offs: [usize; NV] = std::array::from_fn(|j| (k0 + j).min(vecs - 1) * lanes);
            for cb in cb0..cb1 {
                for xi in 0..16 {
                    let mut acc = [[zero; NV]; MR];
                    let wb = &p.data[(xi * blocks + cb) * ci * MR..][..ci * MR];
                    let vx = &v[xi * ci * vs..][..ci * vs];
                    for (c, wc) in wb.chunks_exact(MR).enumerate() {
                        let mut b = [zero; NV];
                        for j in 0..NV {
                            b[j] = load::<S>(vx, c * vs + offs[j]);
                        }
                        for i in 0..MR {
                            let a = simd.splat_f32s(wc[i]);
                            for j in 0..NV {
                                acc[i][j] = simd.mul_add_e_f32s(a, b[j], acc[i][j]);
                            }
                        }
                    }
                    for i in 0..MR {
                        for j in 0..NV {
                            store::<S>(m, ((xi * MR + i) * NV + j) * lanes, acc[i][j]);
                        }
                    }
                }
                // The output transform, bias and temb added, per tile.
                for i in 0..MR {
                    let o = cb * MR + i;
                    if o >= p.co {
                        break;
                    }
                    let bias = simd.splat_f32s(job.bias_of(self.item[0], o));
                    let row = (o - cb0 * MR) * 4;
                    for j in 0..NV.min(vecs - k0) {
                        let mv = |xi: usize| ((xi * MR + i) * NV + j) * lanes;
                        let mut cols = [[zero; 2]; 4];
                        for (col, out) in cols.iter_mut().enumerate() {
                            *out = at(
                                simd,
                                [
                                    load::<S>(m, mv(col)),
                                    load::<S>(m, mv(4 + col)),
                                    load::<S>(m, mv(8 + col)),
                                    load::<S>(m, mv(12 + col)),
                                ],
                            );
                        }
                        for a in 0..2 {
                            let y = at(simd, [cols[0][a], cols[1][a], cols[2][a], cols[3][a]]);
                            for (b, &yb) in y.iter().enumerate() {
                                let x = simd.add_f32s(yb, bias);
                                store::<S>(t, (row + a * 2 + b) * vs + offs[j], x);
                            }
                        }
                    }
                }
            }
        }
        self.spread(t, vs, spitch);
    }

    /// The group's outputs, per tile, into the output rows, plus the residual.
    #[inline(always)]
    fn spread(&self, t: &[f32], vs: usize, spitch: usize) {
        let (job, l) = (self.job, self.l);
        let [img, ty0, ty1, cb0, cb1] = self.item;
        let (ho, wo) = (l.ho, l.wo);
        let plane = ho * wo;
        let tw = wo.div_ceil(2);
        let (c0, c1) = (cb0 * self.p.mr, (cb1 * self.p.mr).min(self.p.co));
        for o in c0..c1 {
            let tt = &t[(o - c0) * 4 * vs..][..4 * vs];
            for ty in ty0..ty1 {
                for a in 0..2 {
                    let oy = 2 * ty + a;
                    if oy >= ho {
                        break;
                    }
                    let px = o * plane + oy * wo;
                    let at = img * job.y_stride + job.y_off + px;
                    assert!(at + wo <= self.y.len, "conv output out of range");
                    // SAFETY: in bounds (checked); only this item writes these rows of
                    // channel o.
                    let dst = unsafe { std::slice::from_raw_parts_mut(self.y.ptr().add(at), wo) };
                    let s = (ty - ty0) * spitch;
                    let (e, od) = (
                        &tt[(a * 2) * vs + s..][..tw],
                        &tt[(a * 2 + 1) * vs + s..][..tw],
                    );
                    let pairs = dst.chunks_exact_mut(2);
                    for ((d, &x0), &x1) in pairs.zip(e).zip(od) {
                        d[0] = x0;
                        d[1] = x1;
                    }
                    if wo % 2 == 1 {
                        dst[wo - 1] = e[tw - 1];
                    }
                    if let Some((r, rs, off)) = job.residual {
                        let r = &r[img * rs + off + px..][..wo];
                        for (d, &rv) in dst.iter_mut().zip(r) {
                            *d += rv;
                        }
                    }
                }
            }
        }
    }
}
