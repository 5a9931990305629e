//! The input layouts the 3×3 convolution kernels (`conv_direct`, `conv_chan`, `conv_wino`)
//! read. Each is a copy of the input, made once per layer, in which tap t of output position
//! q (on a grid of rows `pitch` apart) is the value at q + taps[t] of the channel's region.
//! So every tap of a run of output pixels is one contiguous load, whatever the mode (1×1
//! convs go to the GEMM, which reads them in place and measured faster: 120–155 GFLOP/s
//! against 95–120 on CIFAR-10's, level on emoji32's):
//! - 3×3, pad 1: a zero border, [h+2][w+2];
//! - 3×3 over the nearest-×2 upsampled input: the same, at twice the size (the upsampled
//!   map is never stored on its own);
//! - 3×3 stride 2 (padded right and bottom by one): four phase planes, P_ab[i][j] =
//!   x[2i+a][2j+b], each [ho+1][wo+1], so tap (ky, kx) reads P_(ky%2)(kx%2) at
//!   (oy + ky/2, ox + kx/2);
//! - Winograd's (`conv_wino`, stride 1): the same four phase planes of the zero-padded
//!   input (or of its nearest-×2 map), P_ab[i][j] = x[2i+a−1][2j+b−1], so the patches of a
//!   run of 2×2 tiles are vectors.
//!
//! A GroupNorm folded into the conv is applied as the copy is made.

use super::conv::{out_size, scratch, ConvJob};
use super::conv_direct::{lanes, Kernel};
use super::group_norm;
use crate::model::Resample;
use pulp::{Simd, WithSimd};
use std::cell::RefCell;

/// Whether the direct kernel takes a k×k conv: every 3×3 (any resampling).
pub fn fits_shape(k: usize) -> bool {
    k == 3
}

pub fn fits(job: &ConvJob) -> bool {
    fits_shape(job.k)
}

/// Vectors of slack after the last image, for the loads of a row's last vector.
const SLACK_VECTORS: usize = 2;

/// Where the kernel reads and writes: the output grid ho × wo laid on rows `pitch` apart,
/// `cstride` floats per input channel, and each tap's offset within a channel's region.
pub struct Layout {
    pub ho: usize,
    pub wo: usize,
    pub pitch: usize,
    pub cstride: usize,
    pub taps: [usize; 9],
    /// Winograd's layout (`conv_wino`): the four phase planes of the zero-padded input (or
    /// of its nearest-×2 map), P_ab[i][j] = x[2i + a − 1][2j + b − 1], each `cstride / 4`
    /// long, rows `pitch` apart, so that the patches of consecutive 2×2 tiles are vectors.
    /// `taps` is unused there.
    pub wino: bool,
}

/// The output grid of a 3×3 conv over h × w: (ho, wo, pitch).
pub fn grid(h: usize, w: usize, r: Resample) -> (usize, usize, usize) {
    let (ho, wo) = out_size(h, w, 3, r);
    let pitch = if r == Resample::Down { wo + 1 } else { wo + 2 };
    (ho, wo, pitch)
}

pub fn layout(job: &ConvJob) -> Layout {
    let (ho, wo, pitch) = grid(job.h, job.w, job.r);
    if job.packed.is_some_and(|p| p.kernel == Kernel::Winograd) {
        assert!(job.r != Resample::Down, "Winograd runs stride-1 convs only");
        let pitch = wo.div_ceil(2) + 1;
        // A run of tiles' loads reach up to a vector past a tile row's end, and a row and a
        // column further.
        let phase = ((ho.div_ceil(2) + 1) * pitch + 64 + 1).next_multiple_of(16);
        return Layout {
            ho,
            wo,
            pitch,
            cstride: 4 * phase,
            taps: [0; 9],
            wino: true,
        };
    }
    if job.r == Resample::Down {
        let phase = (ho + 1) * pitch;
        let taps = std::array::from_fn(|t| {
            let (ky, kx) = (t / 3, t % 3);
            ((ky % 2) * 2 + kx % 2) * phase + (ky / 2) * pitch + kx / 2
        });
        return Layout {
            ho,
            wo,
            pitch,
            cstride: 4 * phase,
            taps,
            wino: false,
        };
    }
    Layout {
        ho,
        wo,
        pitch,
        cstride: (ho + 2) * pitch,
        taps: std::array::from_fn(|t| (t / 3) * pitch + t % 3),
        wino: false,
    }
}

/// The layout's copy of every image into `out` (grown as needed, and reused from call to
/// call: a fresh allocation per layer cost page faults), with SLACK_VECTORS of slack
/// at the end, since a vector at a row's end reads (and then discards) lanes past it.
pub fn fill(job: &ConvJob, l: &Layout, out: &mut Vec<f32>) {
    let len = job.n * job.ci * l.cstride;
    let slack = SLACK_VECTORS * lanes();
    if out.len() < len + slack {
        out.resize(len + slack, 0.0);
    }
    out[len..len + slack].fill(0.0);
    // One channel region per (image, channel), filled in parallel.
    let fill = |(ic, dst): (usize, &mut [f32])| region(job, l, ic / job.ci, ic % job.ci, dst);
    let regions = &mut out[..len];
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        regions.par_chunks_mut(l.cstride).enumerate().for_each(fill);
    }
    #[cfg(target_arch = "wasm32")]
    regions.chunks_mut(l.cstride).enumerate().for_each(fill);
}

/// Image i alone into `out`, on this thread, with the same slack.
pub fn fill_image(job: &ConvJob, l: &Layout, i: usize, out: &mut Vec<f32>) {
    let len = job.ci * l.cstride;
    let slack = SLACK_VECTORS * lanes();
    if out.len() < len + slack {
        out.resize(len + slack, 0.0);
    }
    out[len..len + slack].fill(0.0);
    for (c, dst) in out[..len].chunks_mut(l.cstride).enumerate() {
        region(job, l, i, c, dst);
    }
}

thread_local! {
    /// A channel's plane, normalised, before its rows are placed: one pass over the plane,
    /// not one per row (a row of 4–32 values spent as long setting up as computing).
    static PLANE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Channel c of image i into its region, borders included; at the CPU's SIMD width, for a
/// folded norm's arithmetic.
fn region(job: &ConvJob, l: &Layout, i: usize, c: usize, dst: &mut [f32]) {
    if job.norm.is_none() {
        return group_norm::wide(Region {
            job,
            l,
            i,
            c,
            dst,
            plane: &mut [],
        });
    }
    PLANE.with(|cell| {
        scratch(cell, |buf| {
            let len = job.h * job.w;
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            group_norm::wide(Region {
                job,
                l,
                i,
                c,
                dst,
                plane: &mut buf[..len],
            })
        })
    })
}

/// `region`'s work, at the widest SIMD (see `group_norm::wide`).
struct Region<'a> {
    job: &'a ConvJob<'a>,
    l: &'a Layout,
    i: usize,
    c: usize,
    dst: &'a mut [f32],
    /// Room for the channel's plane, normalised (where a norm is folded in).
    plane: &'a mut [f32],
}

impl WithSimd for Region<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Region {
            job,
            l,
            i,
            c,
            dst,
            plane,
        } = self;
        let (h, w) = (job.h, job.w);
        let x = &job.x[i * job.x_stride + job.x_off + c * h * w..][..h * w];
        match job.norm {
            Some(f) => {
                f.channel(i, c, job.ci, x, plane);
                place(simd, job.r, l, w, plane, dst);
            }
            None => place(simd, job.r, l, w, x, dst),
        }
    }
}

/// A plane w wide (`x`) into its region of the layout, borders included.
#[inline(always)]
fn place<S: Simd>(simd: S, r: Resample, l: &Layout, w: usize, x: &[f32], dst: &mut [f32]) {
    let h = x.len() / w.max(1);
    if l.wino && r == Resample::Up {
        dst.fill(0.0);
        let phase = l.cstride / 4;
        // Over the nearest-×2 map, P_ab[i][j] is source value (i − 1 + a, j − 1 + b): each
        // source row goes to rows i = y + 1 (a = 0) and i = y (a = 1) of its phases, at
        // column 1 (b = 0) and 0 (b = 1).
        for (y, line) in x.chunks_exact(w).enumerate().take(h) {
            for (a, i) in [(0, y + 1), (1, y)] {
                let row = a * 2 * phase + i * l.pitch;
                copy(simd, line, &mut dst[row + 1..][..w]);
                copy(simd, line, &mut dst[row + phase..][..w]);
            }
        }
        return;
    }
    match r {
        // Stride 2 and Winograd: phase planes, P_ab[i][j] = x[2i + a − s][2j + b − s], s the
        // shift of the zero padding (0 at stride 2, padded right and bottom; 1 for Winograd).
        _ if l.wino || r == Resample::Down => {
            dst.fill(0.0);
            let phase = l.cstride / 4;
            let s = usize::from(l.wino);
            for (y, line) in x.chunks_exact(w).enumerate().take(h) {
                let (a, i) = ((y + s) % 2, (y + s) / 2);
                let (p0, p1) = dst[a * 2 * phase + i * l.pitch..].split_at_mut(phase);
                // Column x lands in plane (x + s) % 2 at (x + s) / 2.
                if s == 0 {
                    deinterleave(line, p0, p1);
                } else {
                    deinterleave(line, p1, &mut p0[1..]);
                }
            }
        }
        r => {
            let (p, wo) = (l.pitch, l.wo);
            dst[..p].fill(0.0);
            dst[(l.ho + 1) * p..].fill(0.0);
            for y in 0..l.ho {
                let (done, rest) = dst.split_at_mut((y + 1) * p);
                let line = &mut rest[..p];
                line[0] = 0.0;
                line[wo + 1] = 0.0;
                if r != Resample::Up {
                    copy(simd, &x[y * w..][..w], &mut line[1..=w]);
                } else if y % 2 == 1 {
                    // The row above came from the same source row.
                    copy(simd, &done[y * p..], line);
                } else {
                    let src = &x[y / 2 * w..][..w];
                    for (d, &v) in line[1..=wo].chunks_exact_mut(2).zip(src) {
                        d[0] = v;
                        d[1] = v;
                    }
                }
            }
        }
    }
}

/// Even-indexed values of `line` to `evens`, odd-indexed to `odds`, in order: two runs, no
/// index arithmetic per value.
#[inline(always)]
fn deinterleave(line: &[f32], evens: &mut [f32], odds: &mut [f32]) {
    let pairs = line.chunks_exact(2);
    if let [v] = pairs.remainder() {
        evens[line.len() / 2] = *v;
    }
    for ((e, o), p) in evens.iter_mut().zip(odds.iter_mut()).zip(pairs) {
        *e = p[0];
        *o = p[1];
    }
}

/// dst = src, in vectors: a short row through `copy_from_slice` was a call to memcpy.
#[inline(always)]
fn copy<S: Simd>(simd: S, src: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    let src = &src[..n];
    let lanes = S::F32_LANES;
    let mut k = 0;
    while k + lanes <= n {
        // SAFETY: both slices hold lanes values from k.
        unsafe {
            let v = (src.as_ptr().add(k) as *const S::f32s).read_unaligned();
            (dst.as_mut_ptr().add(k) as *mut S::f32s).write_unaligned(v);
        }
        k += lanes;
    }
    if k < n {
        simd.partial_store_f32s(&mut dst[k..], simd.partial_load_f32s(&src[k..]));
    }
}
