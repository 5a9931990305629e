//! conv2d on the CPU, over a whole batch at once: the columns of the implicit GEMM (images
//! × output pixels, folded) are cut into blocks whose im2col stays in cache, and each block
//! (and, when blocks are few, each range of output channels) is an independent GEMM on one
//! thread. So a single image uses every core, and the 8×8 and 4×4 layers of a batch make
//! GEMMs long enough to run well. Bias, a per-channel temb and a residual are added as the
//! product is written out. Modes: 3×3 (pad 1), 3×3 stride 2 with the official right/bottom
//! padding, 3×3 over a nearest-×2 upsampled input (never stored), and 1×1 (read in place).

use super::conv_direct::{self, Rows};
use super::gemm::{matmul, Mat};
use super::group_norm::Fused;
use super::{conv_layout, conv_wino};
use crate::model::Resample;
use std::cell::RefCell;

/// Output size of a conv over an h×w input.
pub fn out_size(h: usize, w: usize, k: usize, r: Resample) -> (usize, usize) {
    match (k, r) {
        (_, Resample::Up) => (2 * h, 2 * w),
        // Pad right/bottom by one, then a 3×3 window with stride 2.
        (_, Resample::Down) => ((h + 1 - 3) / 2 + 1, (w + 1 - 3) / 2 + 1),
        _ => (h, w),
    }
}

/// The input pixel a 3×3 tap reads for output row/col `o` and tap offset `t` (0..3), or None
/// where it falls in the padding.
#[inline]
fn src(o: usize, t: usize, n: usize, r: Resample) -> Option<usize> {
    match r {
        Resample::None => (o + t).checked_sub(1).filter(|&i| i < n),
        Resample::Down => Some(2 * o + t).filter(|&i| i < n),
        Resample::Up => (o + t).checked_sub(1).filter(|&u| u < 2 * n).map(|u| u / 2),
    }
}

/// What a conv adds to W·x besides nothing: bias, per-channel temb, residual map.
pub struct Epilogue<'a> {
    pub bias: &'a [f32],
    pub temb: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
}

/// A convolution over a whole batch, where image i's input is `x[i·x_stride + x_off..]`
/// [ci, h, w] and its output goes to `y[i·y_stride + y_off..]` [co, ho, wo] (the plan's
/// channel-offset views). temb is (buffer, per-image stride); the residual (buffer, stride,
/// offset).
pub struct ConvJob<'a> {
    pub n: usize,
    pub x: &'a [f32],
    pub x_stride: usize,
    pub x_off: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub weight: &'a [f32],
    pub k: usize,
    pub r: Resample,
    pub bias: &'a [f32],
    pub temb: Option<(&'a [f32], usize)>,
    pub residual: Option<(&'a [f32], usize, usize)>,
    pub y_stride: usize,
    pub y_off: usize,
    /// The weight packed for the direct 3×3 kernel, where the layer fits it.
    pub packed: Option<&'a conv_direct::Packed>,
    /// A GroupNorm to apply to the input as it is read (only with the direct kernel, whose
    /// padded copy applies it).
    pub norm: Option<&'a Fused<'a>>,
}

/// Floats of one im2col block: with the GEMM's packed panels it stays in a core's L2.
const BLOCK_FLOATS: usize = 96 * 1024;

thread_local! {
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// The direct kernel's input in its layout, kept by the thread that runs the layer.
    static LAYOUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The output, written by many work items at once: each writes its own (channel, column)
/// cells, so the writes never overlap.
pub(super) struct Out {
    ptr: *mut f32,
    pub len: usize,
}
// SAFETY: every work item writes a disjoint set of cells (see conv2d_batch).
unsafe impl Sync for Out {}

impl Out {
    pub fn new(y: &mut [f32]) -> Self {
        Out {
            ptr: y.as_mut_ptr(),
            len: y.len(),
        }
    }

    // A method, so closures capture the whole (Sync) Out rather than its raw pointer.
    pub fn ptr(&self) -> *mut f32 {
        self.ptr
    }
}

/// `f` on this thread's scratch in `cell`, or on a fresh one where the thread holds it
/// already: a pool thread waiting inside a layer's loop may steal another forward pass (of
/// another backend on the same pool) and reach the same scratch again. Called outside a
/// SIMD dispatch: code inside `with`'s closure is not compiled at the dispatched level.
pub(super) fn scratch<T: Default, R>(cell: &RefCell<T>, f: impl FnOnce(&mut T) -> R) -> R {
    match cell.try_borrow_mut() {
        Ok(mut held) => f(&mut held),
        Err(_) => f(&mut T::default()),
    }
}

impl<'a> ConvJob<'a> {
    /// Output channel o's bias plus image `img`'s temb: one expression for every kernel (the
    /// direct kernels' bits must agree).
    #[inline(always)]
    pub(super) fn bias_of(&self, img: usize, o: usize) -> f32 {
        self.bias[o] + self.temb.map_or(0.0, |(t, s)| t[img * s + o])
    }

    fn out(&self) -> (usize, usize) {
        out_size(self.h, self.w, self.k, self.r)
    }

    fn image(&self, i: usize) -> &'a [f32] {
        &self.x[i * self.x_stride + self.x_off..][..self.ci * self.h * self.w]
    }

    /// Columns [c0, c1) of the batch-folded im2col matrix (row (c, ky, kx), column g =
    /// pixel g % plane of image g / plane) into `cols` [ci·k·k][c1 − c0].
    fn im2col(&self, c0: usize, c1: usize, cols: &mut [f32]) {
        let (ho, wo) = self.out();
        let (plane, len, k, w, h) = (ho * wo, c1 - c0, self.k, self.w, self.h);
        let mut g = c0;
        // Runs of columns within one output row of one image.
        while g < c1 {
            let (img, p) = (g / plane, g % plane);
            let (oy, ox0) = (p / wo, p % wo);
            let run = (wo - ox0).min(c1 - g);
            let j0 = g - c0;
            let xi = self.image(img);
            for c in 0..self.ci {
                let xc = &xi[c * h * w..(c + 1) * h * w];
                for ky in 0..k {
                    let iy = if k == 1 {
                        Some(oy)
                    } else {
                        src(oy, ky, h, self.r)
                    };
                    for kx in 0..k {
                        let row = &mut cols[((c * k + ky) * k + kx) * len + j0..][..run];
                        let Some(iy) = iy else {
                            row.fill(0.0);
                            continue;
                        };
                        let line = &xc[iy * w..(iy + 1) * w];
                        if k == 1 {
                            row.copy_from_slice(&line[ox0..ox0 + run]);
                        } else if self.r == Resample::None {
                            // ix = ox + kx − 1: one copy, zeros where it leaves the row.
                            let start = ox0 as isize + kx as isize - 1;
                            let lo = (-start).clamp(0, run as isize) as usize;
                            let hi = (w as isize - start).clamp(lo as isize, run as isize) as usize;
                            row[..lo].fill(0.0);
                            let s0 = (start + lo as isize) as usize;
                            row[lo..hi].copy_from_slice(&line[s0..s0 + hi - lo]);
                            row[hi..].fill(0.0);
                        } else {
                            for (j, d) in row.iter_mut().enumerate() {
                                *d = src(ox0 + j, kx, w, self.r).map_or(0.0, |ix| line[ix]);
                            }
                        }
                    }
                }
            }
            g += run;
        }
    }

    /// Rows [m0, m1) of columns [c0, c1): the GEMM, then bias, temb and residual as the
    /// product is written out.
    fn item(&self, m0: usize, m1: usize, c0: usize, c1: usize, y: &Out) {
        let (ho, wo) = self.out();
        let (plane, len) = (ho * wo, c1 - c0);
        let kk = self.ci * self.k * self.k;
        let weight = Mat::rows(&self.weight[m0 * kk..m1 * kk], kk);
        SCRATCH.with(|cell| {
            let (cols, prod) = &mut *cell.borrow_mut();
            if prod.len() < (m1 - m0) * len {
                prod.resize((m1 - m0) * len, 0.0);
            }
            // A 1×1 conv reads a block within one image in place.
            let same_image = c0 / plane == (c1 - 1) / plane;
            let b = if self.k == 1 && self.r == Resample::None && same_image {
                Mat {
                    data: &self.image(c0 / plane)[c0 % plane..],
                    rs: plane,
                    cs: 1,
                }
            } else {
                if cols.len() < kk * len {
                    cols.resize(kk * len, 0.0);
                }
                self.im2col(c0, c1, cols);
                Mat::rows(&cols[..kk * len], len)
            };
            matmul(m1 - m0, len, kk, prod, weight, b, 1.0, false, false);
            for (i, o) in (m0..m1).enumerate() {
                let row = &prod[i * len..(i + 1) * len];
                let mut g = c0;
                while g < c1 {
                    let (img, p) = (g / plane, g % plane);
                    let run = (plane - p).min(c1 - g);
                    let v = self.bias[o] + self.temb.map_or(0.0, |(t, s)| t[img * s + o]);
                    let at = img * self.y_stride + self.y_off + o * plane + p;
                    assert!(at + run <= y.len, "conv output out of range");
                    // SAFETY: in bounds (checked), and no other item writes channel o of
                    // these columns.
                    let dst = unsafe { std::slice::from_raw_parts_mut(y.ptr.add(at), run) };
                    let src = &row[g - c0..g - c0 + run];
                    match self.residual {
                        Some((r, s, off)) => {
                            let res = &r[img * s + off + o * plane + p..][..run];
                            for ((d, &a), &b) in dst.iter_mut().zip(src).zip(res) {
                                *d = a + v + b;
                            }
                        }
                        None => {
                            for (d, &a) in dst.iter_mut().zip(src) {
                                *d = a + v;
                            }
                        }
                    }
                    g += run;
                }
            }
        });
    }
}

/// The direct kernel over the batch: (image, rows, channel blocks) are the work items.
fn direct(job: &ConvJob, packed: &conv_direct::Packed, y: &mut [f32], threads: usize) {
    let layout = conv_layout::layout(job);
    let out = Out::new(y);
    let with_buffer = |f: &mut dyn FnMut(&mut Vec<f32>)| LAYOUT.with(|cell| scratch(cell, f));
    let wino = packed.kernel == conv_direct::Kernel::Winograd;
    let rows = |src: &[f32], item: [usize; 5], src_img: usize| {
        if wino {
            return conv_wino::run(job, &layout, packed, src, src_img, item, &out);
        }
        let [img, oy0, oy1, cb0, cb1] = item;
        pulp::Arch::new().dispatch(Rows {
            job,
            layout: &layout,
            packed,
            src,
            img,
            src_img,
            oy0,
            oy1,
            cb0,
            cb1,
            y: out.ptr(),
            y_len: out.len,
        })
    };
    let items = if wino {
        conv_wino::items(job, &layout, packed, threads)
    } else {
        conv_direct::items(job, &layout, packed, threads)
    };
    // When every item is a whole image, each fills its own image into its thread's buffer
    // and convolves it at once: one parallel loop per layer instead of two, and the copy
    // is still in L2 when the kernel reads it.
    #[cfg(not(target_arch = "wasm32"))]
    if threads > 1 && items.len() == job.n && job.n > 1 {
        use rayon::prelude::*;
        items.par_iter().for_each(|&item| {
            with_buffer(&mut |src| {
                conv_layout::fill_image(job, &layout, item[0], src);
                rows(src, item, 0);
            })
        });
        return;
    }
    with_buffer(&mut |src| {
        conv_layout::fill(job, &layout, src);
        let src = &src[..];
        let run = |&item: &[usize; 5]| rows(src, item, item[0]);
        #[cfg(not(target_arch = "wasm32"))]
        if threads > 1 && items.len() > 1 {
            use rayon::prelude::*;
            items.par_iter().for_each(run);
            return;
        }
        items.iter().for_each(run);
    });
}

/// The whole batch, on `threads` threads: the columns (images × pixels, folded) are cut
/// into blocks whose im2col stays in cache, and when there are too few blocks to go round,
/// the output channels are split as well. Every work item is an independent GEMM.
pub fn conv2d_batch(job: &ConvJob, y: &mut [f32], threads: usize) {
    let co = job.bias.len();
    let (ho, wo) = job.out();
    let cols = job.n * ho * wo;
    let kk = job.ci * job.k * job.k;
    if cols == 0 || co == 0 {
        return;
    }
    if let Some(packed) = job.packed.filter(|_| conv_layout::fits(job)) {
        direct(job, packed, y, threads);
        return;
    }
    assert!(
        job.norm.is_none(),
        "a fused GroupNorm needs the direct kernel"
    );
    // Blocks of equal width (not full ones and a remainder), so that the items balance: at
    // batch 1 an emoji32 1×1 conv (1,024 columns) was cut 768 + 256 and ran slower on two
    // threads than on one. The width follows the shape only, never the thread count.
    let most = (BLOCK_FLOATS / kk).clamp(16, 4096) / 16 * 16;
    // A 1×1 conv reads its input in place, if a block stays within one image: otherwise the
    // block is copied first. So its blocks split each image, never cross one.
    let span = if job.k == 1 && job.r == Resample::None {
        ho * wo
    } else {
        cols
    };
    let nb = span.div_ceil(span.div_ceil(most)).div_ceil(16) * 16;
    let spans: Vec<(usize, usize)> = (0..cols)
        .step_by(span)
        .flat_map(|s0| {
            let s1 = (s0 + span).min(cols);
            (s0..s1).step_by(nb).map(move |c0| (c0, (c0 + nb).min(s1)))
        })
        .collect();
    let blocks = spans.len();
    // Enough items for every thread twice over, each with at least 16 channels.
    let parts = (2 * threads).div_ceil(blocks).clamp(1, co.div_ceil(16));
    let rows = co.div_ceil(parts);
    let items: Vec<(usize, usize, usize, usize)> = spans
        .iter()
        .flat_map(|&(c0, c1)| {
            (0..co.div_ceil(rows)).map(move |r| (r * rows, ((r + 1) * rows).min(co), c0, c1))
        })
        .collect();
    let out = Out::new(y);
    #[cfg(not(target_arch = "wasm32"))]
    if threads > 1 && items.len() > 1 {
        use rayon::prelude::*;
        items
            .par_iter()
            .for_each(|&(m0, m1, c0, c1)| job.item(m0, m1, c0, c1, &out));
        return;
    }
    let _ = threads;
    for &(m0, m1, c0, c1) in &items {
        job.item(m0, m1, c0, c1, &out);
    }
}

/// The definition, written as plainly as possible: the reference the fast path is tested
/// against (and the twin of the WGSL kernel).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_naive(
    x: &[f32],
    ci: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    k: usize,
    r: Resample,
    ep: &Epilogue,
    y: &mut [f32],
) {
    let co = ep.bias.len();
    let (ho, wo) = out_size(h, w, k, r);
    for o in 0..co {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut acc = ep.bias[o] as f64 + ep.temb.map_or(0.0, |t| t[o] as f64);
                for c in 0..ci {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = if k == 1 {
                                (Some(oy), Some(ox))
                            } else {
                                (src(oy, ky, h, r), src(ox, kx, w, r))
                            };
                            if let (Some(iy), Some(ix)) = (iy, ix) {
                                acc += weight[((o * ci + c) * k + ky) * k + kx] as f64
                                    * x[(c * h + iy) * w + ix] as f64;
                            }
                        }
                    }
                }
                let i = (o * ho + oy) * wo + ox;
                y[i] = (acc + ep.residual.map_or(0.0, |r| r[i] as f64)) as f32;
            }
        }
    }
}
