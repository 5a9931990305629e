//! Direct 3×3 convolution (at stride 1 or 2, or over the nearest-×2 upsampled input): no
//! im2col. The input is copied once into a layout (`conv_layout`) in which each tap
//! of a run of output pixels is one contiguous slice. The kernel keeps MR output channels ×
//! NV vectors of pixels (see `tile_for`) in registers and, for every input channel and tap,
//! multiplies MR broadcast weights into NV loads, so it reads each input run once per MR
//! channels instead of copying it nine times first. Weights are packed once per layer,
//! [co/MR][ci][k²][MR], so the broadcasts stream through memory in order. Written once over
//! `pulp`'s portable SIMD: AVX-512, AVX2 (+FMA), NEON and WebAssembly SIMD128 (or relaxed
//! SIMD, in the optional module) are chosen at run time (at build time in wasm).
//!
//! Rows narrower than a vector (the 8×8 and 4×4 layers), or ragged against it, run "flat":
//! a vector covers consecutive positions of the layout's grid, across row ends, since
//! output (y, x) reads each tap at the same offset from its own position. The padding
//! columns of each row are computed and dropped: 80% of the lanes do useful work at 8×8
//! instead of 50%. Where even that wastes lanes (8×8 and 4×4 on AVX-512, 4×4 on AVX2),
//! `choose` hands the layer to `conv_chan`, which puts output channels in the lanes.
//! Stride-1 layers on grids of 32×32 and more go to `conv_wino` (Winograd) instead; its
//! products run on this file's register tiles (`tile_for`).

use super::conv::ConvJob;
use super::conv_layout::Layout;
use pulp::{Simd, WithSimd};

/// f32 lanes of the SIMD vectors the running CPU gets.
pub fn lanes() -> usize {
    struct Lanes;
    impl WithSimd for Lanes {
        type Output = usize;
        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) -> usize {
            S::F32_LANES
        }
    }
    pulp::Arch::new().dispatch(Lanes)
}

/// The register tile: (MR output channels, NV vectors of pixels).
/// - AVX-512 (32 registers), up to 64 output channels: 6 × 4. Each tap takes 6 broadcasts
///   and 4 loads per 24 FMAs (8 × 3 took 8 and 3), and 4 vectors divide the rows of the
///   16×16 and 32×32 grids (one and two vectors a row), where 3 left a sixth of the 16×16
///   tiles' vectors empty; 64 channels fill 97% of 11 blocks of 6. Emoji32, batch 8, one
///   thread, all 3×3 convs: 69.6–70.3 ms against 71.8–72.8 for 8 × 3; a 16×16 layer 1.58
///   against 1.70 (three alternated rounds).
/// - AVX-512 above 64: 12 × 2, since a tile's input rows are read again from L2 once per MR
///   channels, and at 128–256 input channels they no longer fit L1 (CIFAR-10, batch 1, one
///   thread: 122–131 ms against 139–164 for 8 × 3).
/// - Narrower ISAs (16 registers: AVX2, wasm): 6 × 2. 4 × 3 and 3 × 4 ran 1.3× and 1.7×
///   slower on an AVX2 EPYC (one thread).
/// - At most 4 output channels (the last conv: 3): 4 × 2, not a tile mostly empty.
fn tile_for(lanes: usize, co: usize) -> (usize, usize) {
    match (lanes >= 16, co) {
        (_, ..=4) => (4, 2),
        (true, ..=64) => (6, 4),
        (true, _) => (12, 2),
        (false, _) => (6, 2),
    }
}

/// Which axis a kernel's vectors run along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Vectors of output pixels times broadcast weights (this file).
    Pixels,
    /// Vectors of output channels times broadcast input pixels (`conv_chan`).
    Channels,
    /// Winograd F(2×2, 3×3) (`conv_wino`): weights packed [16][co/MR][ci][MR].
    Winograd,
}

/// A 3×3 weight [co][ci][3][3] in a kernel's order: blocks of MR output channels,
/// [co/MR][ci][k²][MR], channels padded to a multiple of MR.
pub struct Packed {
    pub kernel: Kernel,
    /// Output channels per block.
    pub(super) mr: usize,
    /// Vectors per register tile: of pixels (Pixels) or of channels (Channels).
    pub(super) nv: usize,
    /// Pixels per register tile (Channels only).
    pub(super) mp: usize,
    pub(super) co: usize,
    pub(super) ci: usize,
    pub(super) data: Vec<f32>,
}

/// The pixel kernel's packing, which every shape can run (the tests' default; the backend
/// calls `pack_for` with `choose`'s kernel).
pub fn pack(weight: &[f32], co: usize, ci: usize) -> Packed {
    pack_for(weight, co, ci, Kernel::Pixels)
}

/// Packed for `kernel` at the running CPU's SIMD width.
pub fn pack_for(weight: &[f32], co: usize, ci: usize, kernel: Kernel) -> Packed {
    pack_at(weight, co, ci, kernel, lanes())
}

/// Packed for a CPU with `lanes` lanes (the tests run the AVX2 kernels on AVX-512). The
/// channel kernel's blocks are NV vectors wide, so it asserts that it runs at `lanes`.
pub fn pack_at(weight: &[f32], co: usize, ci: usize, kernel: Kernel, lanes: usize) -> Packed {
    let (mr, nv, mp) = match kernel {
        Kernel::Pixels => {
            let (mr, nv) = tile_for(lanes, co);
            (mr, nv, 0)
        }
        Kernel::Channels => {
            let (nv, mp) = super::conv_chan::tile(lanes);
            (nv * lanes, nv, mp)
        }
        Kernel::Winograd => {
            let (mr, nv) = tile_for(lanes, co);
            return super::conv_wino::pack(weight, co, ci, mr, nv);
        }
    };
    let blocks = co.div_ceil(mr);
    let mut data = vec![0.0; blocks * ci * 9 * mr];
    for o in 0..co {
        let (b, i) = (o / mr, o % mr);
        for c in 0..ci {
            for t in 0..9 {
                data[((b * ci + c) * 9 + t) * mr + i] = weight[(o * ci + c) * 9 + t];
            }
        }
    }
    Packed {
        kernel,
        mr,
        nv,
        mp,
        co,
        ci,
        data,
    }
}

/// The kernel for co output channels on a grid ho × wo with rows `pitch` apart: the one
/// whose register tiles waste fewer lanes, the pixel kernel unless the channel kernel's
/// share of useful lanes is at least 1.2× its own (its stores scatter, one lane at a time).
/// Both add in the same order, so the choice never changes a bit.
pub fn choose(co: usize, ho: usize, wo: usize, pitch: usize) -> Kernel {
    let lanes = lanes();
    let useful = |n: usize, tile: usize| n as f64 / (n.div_ceil(tile) * tile) as f64;
    let (mr, nv) = tile_for(lanes, co);
    let vecs = vectors(wo, pitch, 0, ho, lanes).0.len();
    let pixels = useful(co, mr) * (ho * wo) as f64 / (vecs.div_ceil(nv) * nv * lanes) as f64;
    let (cnv, mp) = super::conv_chan::tile(lanes);
    let channels = useful(co, cnv * lanes) * useful(ho * wo, mp);
    if channels >= 1.2 * pixels {
        Kernel::Channels
    } else {
        Kernel::Pixels
    }
}

/// Whether output rows w wide laid `pitch` apart run flat: when a row's pitch fills fewer
/// vectors' lanes than whole-row vectors would.
fn flat(w: usize, pitch: usize, lanes: usize) -> bool {
    pitch < w.div_ceil(lanes) * lanes
}

/// The work items of a layer, (image, rows, channel blocks), enough for `threads` threads
/// four times over where the layer has them. Flat rows and the channel kernel split the
/// channel blocks first, since a few rows fill only a vector or two; the channel kernel's
/// runs of rows then hold whole tiles of MP pixels where the grid allows (4×4 split a row
/// per item filled 4 of a tile's 8 pixels). Whole-row vectors split the rows, in runs of
/// whole tiles of NV vectors: a run ending mid-tile computes the tile's missing vectors and
/// drops them (8×8 rows on AVX2, one vector each, split a row per item, computed every tile
/// half empty and ran no faster on two threads than on one). What is left over splits the
/// channel blocks.
pub fn items(job: &ConvJob, l: &Layout, packed: &Packed, threads: usize) -> Vec<[usize; 5]> {
    let (h, lanes) = (l.ho, lanes());
    let blocks = packed.co.div_ceil(packed.mr);
    let want = (4 * threads).div_ceil(job.n);
    let chan = packed.kernel == Kernel::Channels;
    let (rows, parts) = if chan || flat(l.wo, l.pitch, lanes) {
        let parts = want.min(blocks);
        let tile_rows = if chan {
            packed.mp / gcd(packed.mp, l.wo)
        } else {
            1
        };
        let unit = tile_rows.clamp(1, h.max(1));
        let rows = h.div_ceil(want.div_ceil(parts)).max(1);
        (rows.div_ceil(unit) * unit, parts)
    } else {
        let (per_row, nv) = (l.wo.div_ceil(lanes), packed.nv);
        let unit = (nv / gcd(nv, per_row)).min(h);
        let runs = want.min(h.div_ceil(unit));
        let rows = h.div_ceil(runs).div_ceil(unit) * unit;
        (rows, want.div_ceil(h.div_ceil(rows)).min(blocks))
    };
    split(job.n, h, rows, blocks, blocks.div_ceil(parts))
}

/// Items [image, first row, end row, first block, end block]: each of n images' h rows in
/// runs of `rows`, times its `blocks` channel blocks in runs of `per`.
pub(super) fn split(n: usize, h: usize, rows: usize, blocks: usize, per: usize) -> Vec<[usize; 5]> {
    let mut out = Vec::new();
    for i in 0..n {
        for y in (0..h).step_by(rows) {
            for b in (0..blocks).step_by(per) {
                out.push([i, y, (y + rows).min(h), b, (b + per).min(blocks)]);
            }
        }
    }
    out
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The lanes of one vector that land in the output: `len` pixels from lane `lane`, to
/// output pixel `px` of the plane.
struct Seg {
    lane: usize,
    len: usize,
    px: usize,
}

/// The vectors of output rows [oy0, oy1) of a grid w wide on rows `pitch` apart: each
/// vector's position on that grid, and the range of its segments in the returned list.
fn vectors(
    w: usize,
    pitch: usize,
    oy0: usize,
    oy1: usize,
    lanes: usize,
) -> (Vec<(usize, std::ops::Range<usize>)>, Vec<Seg>) {
    let (mut vecs, mut segs) = (Vec::new(), Vec::new());
    if flat(w, pitch, lanes) {
        let end = (oy1 - 1) * pitch + w;
        for f in (oy0 * pitch..end).step_by(lanes) {
            let first = segs.len();
            for oy in f / pitch..=((f + lanes - 1) / pitch).min(oy1 - 1) {
                let row = oy * pitch;
                let (a, b) = (f.max(row), (f + lanes).min(row + w));
                if a < b {
                    let px = oy * w + a - row;
                    segs.push(Seg {
                        lane: a - f,
                        len: b - a,
                        px,
                    });
                }
            }
            vecs.push((f, first..segs.len()));
        }
    } else {
        for oy in oy0..oy1 {
            for ox in (0..w).step_by(lanes) {
                let len = lanes.min(w - ox);
                let px = oy * w + ox;
                segs.push(Seg { lane: 0, len, px });
                vecs.push((oy * pitch + ox, segs.len() - 1..segs.len()));
            }
        }
    }
    (vecs, segs)
}

/// Output rows [oy0, oy1) of image `img` (rows of the grid), channel blocks [cb0, cb1) of
/// MR channels, into `y` (the whole output buffer; these cells written by one caller).
pub struct Rows<'a> {
    pub job: &'a ConvJob<'a>,
    pub layout: &'a Layout,
    pub packed: &'a Packed,
    /// The input in `layout`.
    pub src: &'a [f32],
    pub img: usize,
    /// Which image of `src` is image `img` (0 when `src` holds that image alone).
    pub src_img: usize,
    pub oy0: usize,
    pub oy1: usize,
    pub cb0: usize,
    pub cb1: usize,
    pub y: *mut f32,
    pub y_len: usize,
}

impl WithSimd for Rows<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        if self.packed.kernel == Kernel::Channels {
            return self.channels(simd);
        }
        match (self.packed.mr, self.packed.nv) {
            (12, 2) => self.run::<S, 12, 2>(simd),
            (6, 4) => self.run::<S, 6, 4>(simd),
            (6, 2) => self.run::<S, 6, 2>(simd),
            _ => self.run::<S, 4, 2>(simd),
        }
    }
}

impl Rows<'_> {
    #[inline(always)]
    fn run<S: Simd, const MR: usize, const NV: usize>(&self, simd: S) {
        let (job, p) = (self.job, self.packed);
        assert!(p.kernel == Kernel::Pixels && p.mr == MR && p.nv == NV);
        assert!(p.ci == job.ci && p.co == job.bias.len());
        assert!(self.cb1 <= p.co.div_ceil(MR));
        let lanes = S::F32_LANES;
        let l = self.layout;
        let (w, cs) = (l.wo, l.cstride);
        let plane = l.ho * w;
        let img_base = self.src_img * job.ci * cs;
        let (vectors, segs) = vectors(w, l.pitch, self.oy0, self.oy1, lanes);
        let zero = simd.splat_f32s(0.0);
        let mut tile = vec![0.0f32; lanes];
        let max_tap = *l.taps.iter().max().unwrap();
        for group in vectors.chunks(NV) {
            // A short last group repeats its last vector; the repeat is never stored.
            let offs: [usize; NV] = std::array::from_fn(|v| group[v.min(group.len() - 1)].0);
            // Every load below stays inside `src`: the largest offset is the last channel's
            // furthest tap, plus the slack the layout's copy keeps.
            let last = img_base + (job.ci - 1) * cs + offs.iter().max().unwrap();
            assert!(last + max_tap + lanes <= self.src.len());
            for cb in self.cb0..self.cb1 {
                let mut acc = [[zero; NV]; MR];
                let wb = &p.data[cb * job.ci * 9 * MR..][..job.ci * 9 * MR];
                for (c, wc) in wb.chunks_exact(9 * MR).enumerate() {
                    let base = img_base + c * cs;
                    for (&tap, wt) in l.taps.iter().zip(wc.chunks_exact(MR)) {
                        let tap = base + tap;
                        let b: [S::f32s; NV] = std::array::from_fn(|v| {
                            // SAFETY: in bounds by the assert above.
                            unsafe {
                                (self.src.as_ptr().add(tap + offs[v]) as *const S::f32s)
                                    .read_unaligned()
                            }
                        });
                        // mul_add_e: fused where the ISA has FMA (relaxed_madd in the
                        // relaxed-SIMD wasm build); SIMD128 has none, and pulp's exact
                        // mul_add emulates one lane at a time there.
                        for i in 0..MR {
                            let a = simd.splat_f32s(wt[i]);
                            for v in 0..NV {
                                acc[i][v] = simd.mul_add_e_f32s(a, b[v], acc[i][v]);
                            }
                        }
                    }
                }
                for (i, acc_i) in acc.iter().enumerate() {
                    let o = cb * MR + i;
                    if o >= p.co {
                        break;
                    }
                    let bias_v = simd.splat_f32s(job.bias_of(self.img, o));
                    for (v, (_, range)) in group.iter().enumerate() {
                        let sum = simd.add_f32s(acc_i[v], bias_v);
                        for seg in &segs[range.clone()] {
                            self.store(simd, sum, seg, o * plane, &mut tile);
                        }
                    }
                }
            }
        }
    }

    /// One segment of a vector (bias added) to the output, plus the residual.
    #[inline(always)]
    fn store<S: Simd>(&self, simd: S, sum: S::f32s, seg: &Seg, chan: usize, tile: &mut [f32]) {
        let job = self.job;
        let lanes = S::F32_LANES;
        let px = chan + seg.px;
        let at = self.img * job.y_stride + job.y_off + px;
        assert!(at + seg.len <= self.y_len, "conv output out of range");
        let res = job
            .residual
            .map(|(r, s, off)| &r[self.img * s + off + px..][..seg.len]);
        if seg.len == lanes {
            let sum = match res {
                // SAFETY: `res` holds a whole vector.
                Some(r) => simd.add_f32s(sum, unsafe {
                    (r.as_ptr() as *const S::f32s).read_unaligned()
                }),
                None => sum,
            };
            // SAFETY: in bounds (checked); no other caller writes these cells.
            unsafe { (self.y.add(at) as *mut S::f32s).write_unaligned(sum) };
            return;
        }
        simd.partial_store_f32s(tile, sum);
        let src = &tile[seg.lane..seg.lane + seg.len];
        // SAFETY: in bounds (checked); no other caller writes these cells.
        let dst = unsafe { std::slice::from_raw_parts_mut(self.y.add(at), seg.len) };
        match res {
            Some(r) => {
                for ((d, &a), &r) in dst.iter_mut().zip(src).zip(r) {
                    *d = a + r;
                }
            }
            None => dst.copy_from_slice(src),
        }
    }
}
