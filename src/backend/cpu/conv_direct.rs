//! Direct 3×3 convolution (stride 1, pad 1, also over a nearest-×2 upsampled input) for
//! output rows at least one SIMD vector wide: no im2col. The input is copied once into a zero-padded layout [ci][h+2][w+2], so each tap of
//! a run of output pixels is one contiguous slice. The kernel keeps MR output channels × NV
//! vectors of pixels in registers and, for every input channel and tap, multiplies MR
//! broadcast weights into NV loads, so it reads each input run once per MR channels instead
//! of copying it nine times first. Weights are packed once per layer, [co/MR][ci][9][MR], so
//! the broadcasts stream through memory in order. Written once over `pulp`'s portable SIMD:
//! AVX-512, AVX2 (+FMA), NEON and WebAssembly SIMD128 are chosen at run time (at build
//! time in wasm).

use super::conv::ConvJob;
use crate::model::Resample;
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

/// Output channels per register tile: 12 × 2 vectors fill 24 of AVX-512's 32 registers;
/// narrower ISAs (16 registers on AVX2 and wasm) take 6 × 2.
fn mr_for(lanes: usize) -> usize {
    if lanes >= 16 {
        12
    } else {
        6
    }
}

/// Vectors of pixels per register tile.
const NV: usize = 2;

/// A 3×3 weight [co][ci][3][3] in the kernel's order, channels padded to a multiple of MR.
pub struct Packed {
    mr: usize,
    co: usize,
    ci: usize,
    data: Vec<f32>,
}

pub fn pack(weight: &[f32], co: usize, ci: usize) -> Packed {
    let mr = mr_for(lanes());
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
    Packed { mr, co, ci, data }
}

/// Whether the direct kernel takes a k×k conv with this resampling over rows w wide: 3×3,
/// same size or over the nearest-×2 upsampled input, with output rows that fill a vector.
pub fn fits_shape(k: usize, r: Resample, w: usize) -> bool {
    match r {
        Resample::None => k == 3 && w >= lanes(),
        Resample::Up => k == 3 && 2 * w >= lanes(),
        Resample::Down => false,
    }
}

pub fn fits(job: &ConvJob) -> bool {
    fits_shape(job.k, job.r, job.w)
}

/// The grid the kernel convolves: the input, or the upsampled input (never stored itself:
/// the padded copy is made at that size).
fn grid(job: &ConvJob) -> (usize, usize) {
    match job.r {
        Resample::Up => (2 * job.h, 2 * job.w),
        _ => (job.h, job.w),
    }
}

/// Zero-padded copies of every image into `out` (grown as needed, and reused from call to
/// call: a fresh allocation per layer cost page faults), with a vector's worth of slack at
/// the end, since a vector at a row's end reads (and then discards) lanes past it.
pub fn pad_into(job: &ConvJob, out: &mut Vec<f32>) {
    let (h, w) = grid(job);
    let pitch = w + 2;
    let up = job.r == Resample::Up;
    let (sh, sw) = (job.h, job.w);
    let pplane = (h + 2) * pitch;
    let len = job.n * job.ci * pplane;
    if out.len() < len + lanes() + 2 {
        out.resize(len + lanes() + 2, 0.0);
    }
    // One padded plane per (image, channel), filled in parallel, borders included.
    let fill = |(ic, dst): (usize, &mut [f32])| {
        let (i, c) = (ic / job.ci, ic % job.ci);
        let x = &job.x[i * job.x_stride + job.x_off + c * sh * sw..][..sh * sw];
        dst[..pitch].fill(0.0);
        dst[(h + 1) * pitch..].fill(0.0);
        for y in 0..h {
            let line = &mut dst[(y + 1) * pitch..(y + 2) * pitch];
            line[0] = 0.0;
            line[w + 1] = 0.0;
            let row = &x[if up { y / 2 } else { y } * sw..][..sw];
            match job.norm {
                Some(f) => f.channel(i, c, job.ci, row, &mut line[1..=sw]),
                None => line[1..=sw].copy_from_slice(row),
            }
            if up {
                // Widen in place from the right, so no source is overwritten before use.
                for x in (0..sw).rev() {
                    let v = line[1 + x];
                    line[1 + 2 * x] = v;
                    line[2 + 2 * x] = v;
                }
            }
        }
    };
    let planes = &mut out[..len];
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        planes.par_chunks_mut(pplane).enumerate().for_each(fill);
    }
    #[cfg(target_arch = "wasm32")]
    planes.chunks_mut(pplane).enumerate().for_each(fill);
}

/// Output rows [oy0, oy1) of image `img` (rows of the grid), every channel, into `y` (the whole output buffer;
/// the rows of one image written by one caller).
pub struct Rows<'a> {
    pub job: &'a ConvJob<'a>,
    pub packed: &'a Packed,
    pub padded: &'a [f32],
    pub img: usize,
    pub oy0: usize,
    pub oy1: usize,
    pub y: *mut f32,
    pub y_len: usize,
}

impl WithSimd for Rows<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        if self.packed.mr == 12 {
            self.run::<S, 12>(simd);
        } else {
            self.run::<S, 6>(simd);
        }
    }
}

impl Rows<'_> {
    #[inline(always)]
    fn run<S: Simd, const MR: usize>(&self, simd: S) {
        let (job, p) = (self.job, self.packed);
        assert!(p.mr == MR && p.ci == job.ci && p.co == job.bias.len());
        let lanes = S::F32_LANES;
        let (h, w) = grid(job);
        let pitch = w + 2;
        let (plane, pplane) = (h * w, (h + 2) * pitch);
        let img_base = self.img * job.ci * pplane;
        // The vectors of output pixels: `lanes` pixels of one row each (fewer at a row's
        // end). A register tile takes NV of them, from one row or, for narrow rows, several.
        let vectors: Vec<(usize, usize)> = (self.oy0..self.oy1)
            .flat_map(|oy| (0..w).step_by(lanes).map(move |ox| (oy, ox)))
            .collect();
        let zero = simd.splat_f32s(0.0);
        let mut tile = vec![0.0f32; lanes];
        for group in vectors.chunks(NV) {
            // A short last group repeats its last vector; the repeat is never stored.
            let at = |v: usize| group[v.min(group.len() - 1)];
            let offs: [usize; NV] = std::array::from_fn(|v| at(v).0 * pitch + at(v).1);
            // Every load below stays inside `padded`: the largest offset is the last
            // channel's last padded row, plus the slack `padded` keeps.
            let last = img_base + (job.ci - 1) * pplane + offs.iter().max().unwrap();
            assert!(last + 2 * pitch + 2 + lanes <= self.padded.len());
            let taps: [usize; 9] = std::array::from_fn(|t| (t / 3) * pitch + t % 3);
            for cb in 0..p.co.div_ceil(MR) {
                let mut acc = [[zero; NV]; MR];
                let wb = &p.data[cb * job.ci * 9 * MR..][..job.ci * 9 * MR];
                for (c, wc) in wb.chunks_exact(9 * MR).enumerate() {
                    let base = img_base + c * pplane;
                    for (t, wt) in wc.chunks_exact(MR).enumerate() {
                        let tap = base + taps[t];
                        let b: [S::f32s; NV] = std::array::from_fn(|v| {
                            // SAFETY: in bounds by the assert above.
                            unsafe {
                                (self.padded.as_ptr().add(tap + offs[v]) as *const S::f32s)
                                    .read_unaligned()
                            }
                        });
                        // mul_add_e: fused where the ISA has FMA; WebAssembly's SIMD128 has
                        // none, and pulp's exact mul_add emulates one lane at a time there.
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
                    let bias = job.bias[o] + job.temb.map_or(0.0, |(t, s)| t[self.img * s + o]);
                    for (v, &(oy, ox)) in group.iter().enumerate() {
                        let len = lanes.min(w - ox);
                        simd.partial_store_f32s(&mut tile, acc_i[v]);
                        let px = o * plane + oy * w + ox;
                        let at = self.img * job.y_stride + job.y_off + px;
                        assert!(at + len <= self.y_len, "conv output out of range");
                        // SAFETY: in bounds (checked); rows of one image are written by one
                        // caller only, so no other thread touches these cells.
                        let dst = unsafe { std::slice::from_raw_parts_mut(self.y.add(at), len) };
                        match job.residual {
                            Some((r, s, off)) => {
                                let res = &r[self.img * s + off + px..][..len];
                                for ((d, &a), &r) in dst.iter_mut().zip(&tile[..len]).zip(res) {
                                    *d = a + bias + r;
                                }
                            }
                            None => {
                                for (d, &a) in dst.iter_mut().zip(&tile[..len]) {
                                    *d = a + bias;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
