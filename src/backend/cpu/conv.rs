//! conv2d on the CPU: im2col then one GEMM per image. 3×3 (pad 1), 3×3 stride 2 with the
//! official right/bottom-only padding, 3×3 over a nearest-×2 upsampled input (fused, so the
//! upsampled map is never stored), and 1×1. Bias, a per-channel temb and a residual are
//! written into the output first and the GEMM accumulates onto them.

use super::gemm::{matmul, Mat};
use crate::model::Resample;
use std::cell::RefCell;

thread_local! {
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

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

fn im2col(x: &[f32], ci: usize, h: usize, w: usize, r: Resample, cols: &mut [f32]) {
    let (ho, wo) = out_size(h, w, 3, r);
    let plane = ho * wo;
    for c in 0..ci {
        let xc = &x[c * h * w..(c + 1) * h * w];
        for ky in 0..3 {
            for kx in 0..3 {
                let row = &mut cols[(c * 9 + ky * 3 + kx) * plane..][..plane];
                for oy in 0..ho {
                    let dst = &mut row[oy * wo..(oy + 1) * wo];
                    let Some(iy) = src(oy, ky, h, r) else {
                        dst.fill(0.0);
                        continue;
                    };
                    let line = &xc[iy * w..(iy + 1) * w];
                    if r == Resample::None {
                        // The common case as three slice copies.
                        match kx {
                            0 => {
                                dst[0] = 0.0;
                                dst[1..].copy_from_slice(&line[..w - 1]);
                            }
                            1 => dst.copy_from_slice(line),
                            _ => {
                                dst[..w - 1].copy_from_slice(&line[1..]);
                                dst[w - 1] = 0.0;
                            }
                        }
                    } else {
                        for (ox, d) in dst.iter_mut().enumerate() {
                            *d = src(ox, kx, w, r).map_or(0.0, |ix| line[ix]);
                        }
                    }
                }
            }
        }
    }
}

/// What a conv adds to W·x besides nothing: bias, per-channel temb, residual map.
pub struct Epilogue<'a> {
    pub bias: &'a [f32],
    pub temb: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
}

/// One image: x [ci, h, w] → y [co, ho, wo], weights [co, ci, k, k].
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    ci: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    k: usize,
    r: Resample,
    ep: &Epilogue,
    y: &mut [f32],
    threaded: bool,
) {
    let co = ep.bias.len();
    let (ho, wo) = out_size(h, w, k, r);
    let plane = ho * wo;
    for (c, yc) in y[..co * plane].chunks_mut(plane).enumerate() {
        let v = ep.bias[c] + ep.temb.map_or(0.0, |t| t[c]);
        match ep.residual {
            Some(res) => {
                for (o, &s) in yc.iter_mut().zip(&res[c * plane..(c + 1) * plane]) {
                    *o = v + s;
                }
            }
            None => yc.fill(v),
        }
    }
    let kk = ci * k * k;
    if k == 1 && r == Resample::None {
        matmul(
            co,
            plane,
            kk,
            y,
            Mat::rows(weight, kk),
            Mat::rows(x, plane),
            1.0,
            true,
            threaded,
        );
        return;
    }
    assert_eq!(k, 3, "only 1×1 and 3×3 convolutions exist in this network");
    COLS.with(|cell| {
        let mut cols = cell.borrow_mut();
        if cols.len() < kk * plane {
            cols.resize(kk * plane, 0.0);
        }
        im2col(x, ci, h, w, r, &mut cols);
        matmul(
            co,
            plane,
            kk,
            y,
            Mat::rows(weight, kk),
            Mat::rows(&cols, plane),
            1.0,
            true,
            threaded,
        );
    });
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
