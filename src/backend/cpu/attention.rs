//! Single-head spatial self-attention over a batch: per image q, k, v are [c, hw] (the
//! outputs of the 1×1 q/k/v convs); y[:, i] = Σ_j v[:, j]·softmax_j(q[:, i]·k[:, j]·c^−½).
//! The work items are blocks of query rows of one image, so a single image keeps every core
//! busy and a block's score rows (qb × hw) stay in cache between the two products. The
//! softmax's 1/Σ is applied as the block is written out, not as a pass over the scores.

use super::conv::Out;
use super::gemm::{matmul, Mat};
use super::group_norm::{exp, wide};
use pulp::{Simd, WithSimd};
use std::cell::RefCell;

/// A view of one operand: image i's [c, hw] starts at `data[i·stride + off]`.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    pub stride: usize,
    pub off: usize,
}

impl<'a> Operand<'a> {
    fn image(&self, i: usize, len: usize) -> &'a [f32] {
        &self.data[i * self.stride + self.off..][..len]
    }
}

/// Attention over n images; image i's output goes to `y[i·y_stride + y_off..]`.
pub struct AttnJob<'a> {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub q: Operand<'a>,
    pub k: Operand<'a>,
    pub v: Operand<'a>,
    pub y_stride: usize,
    pub y_off: usize,
}

/// Query rows per block: 32 rows of scores at hw = 4096 are 512 KiB, within L2, and a
/// 16×16 map makes 8 items. Fixed, not fitted to the batch or the threads, so that a
/// sample's rounding never depends on how the batch was split or how many cores ran it.
const BLOCK: usize = 32;

thread_local! {
    /// A block's scores [qb][hw] and its output [c][qb], kept by each thread.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl AttnJob<'_> {
    /// Query rows [i0, i1) of image `img`.
    fn block(&self, img: usize, i0: usize, i1: usize, y: &Out) {
        let (c, hw, qb) = (self.c, self.hw, i1 - i0);
        let len = c * hw;
        let (q, k, v) = (
            self.q.image(img, len),
            self.k.image(img, len),
            self.v.image(img, len),
        );
        SCRATCH.with(|cell| {
            let (s, o) = &mut *cell.borrow_mut();
            if s.len() < qb * hw {
                s.resize(qb * hw, 0.0);
            }
            if o.len() < c * qb {
                o.resize(c * qb, 0.0);
            }
            let s = &mut s[..qb * hw];
            // s = c^−½ · q[:, i0..i1]ᵀ · k: row i holds query i's scores.
            let qt = Mat {
                data: &q[i0..],
                rs: 1,
                cs: hw,
            };
            let scale = (c as f32).powf(-0.5);
            matmul(qb, hw, c, s, qt, Mat::rows(k, hw), scale, false, false);
            let mut inv = [0.0f32; BLOCK];
            wide(Softmax {
                s: &mut *s,
                hw,
                inv: &mut inv,
            });
            // o = v · sᵀ: [c][qb], unnormalised.
            let o = &mut o[..c * qb];
            matmul(
                c,
                qb,
                hw,
                o,
                Mat::rows(v, hw),
                Mat::transposed(s, hw),
                1.0,
                false,
                false,
            );
            for (ch, row) in o.chunks_exact(qb).enumerate() {
                let at = img * self.y_stride + self.y_off + ch * hw + i0;
                assert!(at + qb <= y.len, "attention output out of range");
                // SAFETY: in bounds (checked); the block's query columns of image img are
                // written by this item only.
                let dst = unsafe { std::slice::from_raw_parts_mut(y.ptr().add(at), qb) };
                for ((d, &a), &r) in dst.iter_mut().zip(row).zip(&inv) {
                    *d = a * r;
                }
            }
        });
    }
}

/// The whole batch on `threads` threads.
pub fn attention_batch(job: &AttnJob, y: &mut [f32], threads: usize) {
    let (n, hw) = (job.n, job.hw);
    if n == 0 || hw == 0 {
        return;
    }
    let qb = BLOCK.min(hw);
    let items: Vec<(usize, usize, usize)> = (0..n)
        .flat_map(|i| (0..hw).step_by(qb).map(move |a| (i, a, (a + qb).min(hw))))
        .collect();
    let out = Out::new(y);
    let run = |&(i, a, e): &(usize, usize, usize)| job.block(i, a, e, &out);
    #[cfg(not(target_arch = "wasm32"))]
    if threads > 1 && items.len() > 1 {
        use rayon::prelude::*;
        items.par_iter().for_each(run);
        return;
    }
    let _ = threads;
    items.iter().for_each(run);
}

/// The plain definition for one image, in f64: the twin the fast path and the WGSL kernel
/// are held to.
pub fn attention_naive(q: &[f32], k: &[f32], v: &[f32], c: usize, hw: usize, y: &mut [f32]) {
    let scale = (c as f64).powf(-0.5);
    for i in 0..hw {
        let s: Vec<f64> = (0..hw)
            .map(|j| {
                (0..c)
                    .map(|ch| q[ch * hw + i] as f64 * k[ch * hw + j] as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for ch in 0..c {
            y[ch * hw + i] =
                ((0..hw).map(|j| v[ch * hw + j] as f64 * e[j]).sum::<f64>() / z) as f32;
        }
    }
}

/// Partial maxima and sums the softmax keeps per row.
const LANES: usize = 16;

/// Each row of `s` (hw wide) to e^(x − max), and 1/Σ of each into `inv`, at the widest SIMD.
struct Softmax<'a> {
    s: &'a mut [f32],
    hw: usize,
    inv: &'a mut [f32],
}

impl WithSimd for Softmax<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for (row, inv) in self.s.chunks_exact_mut(self.hw).zip(self.inv.iter_mut()) {
            // A serial fold waits out the add's latency at every element; LANES independent
            // partial results vectorize. The lane count is fixed, not the ISA's, so the sum's
            // order (and every bit) is the same on AVX-512, AVX2, NEON and SIMD128.
            let mut it = row.chunks_exact(LANES);
            let mut lanes = [f32::NEG_INFINITY; LANES];
            for c in &mut it {
                for (l, &v) in lanes.iter_mut().zip(c) {
                    *l = l.max(v);
                }
            }
            let m = it
                .remainder()
                .iter()
                .chain(&lanes)
                .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut it = row.chunks_exact_mut(LANES);
            let mut lanes = [0.0f32; LANES];
            for c in &mut it {
                for (l, x) in lanes.iter_mut().zip(c) {
                    *x = exp(*x - m);
                    *l += *x;
                }
            }
            let mut total = lanes.iter().sum::<f32>();
            for x in it.into_remainder() {
                *x = exp(*x - m);
                total += *x;
            }
            *inv = 1.0 / total;
        }
    }
}
