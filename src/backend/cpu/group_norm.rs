//! GroupNorm(32 groups, eps 1e-6) with its affine, optionally followed by swish. Statistics
//! are accumulated in f64 (two passes) so large activations do not lose the variance.

pub const GROUPS: usize = 32;
pub const EPS: f64 = 1e-6;

#[inline]
pub fn swish(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// One image: x and y are [c, hw].
pub fn group_norm(
    x: &[f32],
    c: usize,
    hw: usize,
    gamma: &[f32],
    beta: &[f32],
    act: bool,
    y: &mut [f32],
) {
    let cg = c / GROUPS;
    let n = (cg * hw) as f64;
    for g in 0..GROUPS {
        let xs = &x[g * cg * hw..(g + 1) * cg * hw];
        let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + EPS).sqrt();
        for ch in g * cg..(g + 1) * cg {
            let a = (gamma[ch] as f64 * inv) as f32;
            let b = (beta[ch] as f64 - mean * gamma[ch] as f64 * inv) as f32;
            let (src, dst) = (&x[ch * hw..(ch + 1) * hw], &mut y[ch * hw..(ch + 1) * hw]);
            if act {
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = swish(a * v + b);
                }
            } else {
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = a * v + b;
                }
            }
        }
    }
}
