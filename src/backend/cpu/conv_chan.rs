//! Direct 3×3 convolution with output channels in the vector lanes: the twin of
//! `conv_direct`'s pixel kernel for grids too small to fill its vectors (8×8 and 4×4 on
//! AVX-512, 4×4 on AVX2; wasm's 4 lanes fill those rows), where a flat run computes padding
//! columns and a tile's last vectors are empty. It reads the same layout (`conv_layout`),
//! with weights packed in blocks of NV vectors of channels. A register tile is NV vectors of
//! channels × MP output pixels, any MP pixels of the rows, so every lane is an output. For
//! each input channel and tap it loads NV weight vectors and broadcasts MP input values.
//! Each output adds its channels and taps in the pixel kernel's order, with the same fused
//! multiply-adds, so the two kernels agree to the bit and the choice between them
//! (`conv_direct::choose`) never changes a sample.

use super::conv_direct::{Kernel, Rows};
use pulp::Simd;

/// (NV vectors of channels, MP pixels) per register tile: 16 accumulators of AVX-512's 32
/// registers (MP 8 divides the 8×8 and 4×4 grids), 12 of the 16 on AVX2 (and NEON or wasm,
/// should a shape choose it there).
pub fn tile(lanes: usize) -> (usize, usize) {
    if lanes >= 16 {
        (2, 8)
    } else {
        (2, 6)
    }
}

impl Rows<'_> {
    #[inline(always)]
    pub(super) fn channels<S: Simd>(&self, simd: S) {
        match (self.packed.nv, self.packed.mp) {
            (2, 8) => self.run_channels::<S, 2, 8>(simd),
            (2, 6) => self.run_channels::<S, 2, 6>(simd),
            t => panic!("no channel-kernel tile {t:?}"),
        }
    }

    #[inline(always)]
    fn run_channels<S: Simd, const NV: usize, const MP: usize>(&self, simd: S) {
        let (job, p, l) = (self.job, self.packed, self.layout);
        let lanes = S::F32_LANES;
        assert!(p.kernel == Kernel::Channels && (p.nv, p.mp, p.mr) == (NV, MP, NV * lanes));
        assert!(p.ci == job.ci && p.co == job.bias.len());
        assert!(self.cb1 <= p.co.div_ceil(p.mr));
        let (w, cs, mr) = (l.wo, l.cstride, p.mr);
        let plane = l.ho * w;
        let img_base = self.src_img * job.ci * cs;
        // Each pixel of the rows: (its position on the grid, its index in the plane).
        let pixels: Vec<(usize, usize)> = (self.oy0..self.oy1)
            .flat_map(|oy| (0..w).map(move |ox| (oy * l.pitch + ox, oy * w + ox)))
            .collect();
        let max_tap = *l.taps.iter().max().unwrap();
        let zero = simd.splat_f32s(0.0);
        let mut lane_vals = vec![0.0f32; lanes];
        let src = self.src;
        for group in pixels.chunks(MP) {
            // A short last group repeats its last pixel; the repeat is never stored.
            let offs: [usize; MP] = std::array::from_fn(|q| group[q.min(group.len() - 1)].0);
            let last = img_base + (job.ci - 1) * cs + offs.iter().max().unwrap() + max_tap;
            assert!(last < src.len());
            for cb in self.cb0..self.cb1 {
                let mut acc = [[zero; NV]; MP];
                let wb = &p.data[cb * job.ci * 9 * mr..][..job.ci * 9 * mr];
                for (c, wc) in wb.chunks_exact(9 * mr).enumerate() {
                    let base = img_base + c * cs;
                    for (&tap, wt) in l.taps.iter().zip(wc.chunks_exact(mr)) {
                        let a: [S::f32s; NV] = std::array::from_fn(|v| {
                            // SAFETY: wt holds NV vectors (mr = NV · lanes).
                            unsafe {
                                (wt.as_ptr().add(v * lanes) as *const S::f32s).read_unaligned()
                            }
                        });
                        let at = base + tap;
                        for q in 0..MP {
                            // SAFETY: in bounds by the assert above.
                            let b = simd.splat_f32s(unsafe { *src.get_unchecked(at + offs[q]) });
                            for v in 0..NV {
                                acc[q][v] = simd.mul_add_e_f32s(a[v], b, acc[q][v]);
                            }
                        }
                    }
                }
                for (acc_q, &(_, px)) in acc.iter().zip(group) {
                    for (v, &sum) in acc_q.iter().enumerate() {
                        simd.partial_store_f32s(&mut lane_vals, sum);
                        for (i, &s) in lane_vals.iter().enumerate() {
                            let o = cb * mr + v * lanes + i;
                            if o >= p.co {
                                break;
                            }
                            self.store_one(o, px, plane, s);
                        }
                    }
                }
            }
        }
    }

    /// One output (channel o, pixel px): the sum, plus bias and temb, plus the residual, in
    /// the pixel kernel's order.
    #[inline(always)]
    fn store_one(&self, o: usize, px: usize, plane: usize, sum: f32) {
        let job = self.job;
        let mut v = sum + job.bias_of(self.img, o);
        if let Some((r, s, off)) = job.residual {
            v += r[self.img * s + off + o * plane + px];
        }
        let at = self.img * job.y_stride + job.y_off + o * plane + px;
        assert!(at < self.y_len, "conv output out of range");
        // SAFETY: in bounds (checked); no other work item writes this cell.
        unsafe { *self.y.add(at) = v };
    }
}
