//! Single-head spatial self-attention over one image: q, k, v are [c, hw] (the outputs of
//! the 1×1 q/k/v convs); y[:, i] = Σ_j v[:, j]·softmax_j(q[:, i]·k[:, j]·c^−½).

use super::gemm::{matmul, Mat};

pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    c: usize,
    hw: usize,
    y: &mut [f32],
    threaded: bool,
) {
    let mut w = vec![0.0f32; hw * hw];
    let scale = (c as f32).powf(-0.5);
    // w = qᵀ·k, rows are queries.
    matmul(
        hw,
        hw,
        c,
        &mut w,
        Mat::transposed(q, hw),
        Mat::rows(k, hw),
        scale,
        false,
        threaded,
    );
    for row in w.chunks_mut(hw) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut s = 0.0f32;
        for x in row.iter_mut() {
            *x = (*x - m).exp();
            s += *x;
        }
        let inv = 1.0 / s;
        row.iter_mut().for_each(|x| *x *= inv);
    }
    // y = v·wᵀ.
    matmul(
        c,
        hw,
        hw,
        y,
        Mat::rows(v, hw),
        Mat::transposed(&w, hw),
        1.0,
        false,
        threaded,
    );
}

/// The plain definition, in f64: the twin the fast path and the WGSL kernel are held to.
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
