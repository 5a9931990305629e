//! GroupNorm(32 groups, eps 1e-6) with its affine, optionally followed by swish. Statistics
//! take two passes (mean, then squared deviations) with f32 lanes summed into f64 per block:
//! the lanes vectorize, and the f64 totals keep large groups from losing precision.

pub const GROUPS: usize = 32;
pub const EPS: f64 = 1e-6;

#[inline]
pub fn swish(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Σ f(x) with 8 f32 lanes over blocks of 512, each block's total added in f64.
fn block_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0.0f64;
    for block in xs.chunks(512) {
        let mut lanes = [0.0f32; 8];
        let mut it = block.chunks_exact(8);
        for c in &mut it {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += f(v);
            }
        }
        total += lanes.iter().map(|&l| l as f64).sum::<f64>();
        total += it.remainder().iter().map(|&v| f(v) as f64).sum::<f64>();
    }
    total
}

/// The plain definition in f64: the twin the fast path (and the WGSL kernel) is held to.
pub fn group_norm_naive(
    x: &[f32],
    c: usize,
    hw: usize,
    gamma: &[f32],
    beta: &[f32],
    act: bool,
    y: &mut [f32],
) {
    let cg = c / GROUPS;
    for g in 0..GROUPS {
        let xs = &x[g * cg * hw..(g + 1) * cg * hw];
        let n = xs.len() as f64;
        let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        for ch in g * cg..(g + 1) * cg {
            for p in 0..hw {
                let v = (x[ch * hw + p] as f64 - mean) / (var + EPS).sqrt() * gamma[ch] as f64
                    + beta[ch] as f64;
                y[ch * hw + p] = if act {
                    (v / (1.0 + (-v).exp())) as f32
                } else {
                    v as f32
                };
            }
        }
    }
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
        let mean = block_sum(xs, |v| v) / n;
        let m = mean as f32;
        let var = block_sum(xs, |v| (v - m) * (v - m)) / n;
        let inv = 1.0 / (var + EPS).sqrt();
        // Subtract the mean before scaling: folding it into the bias cancels badly when the
        // spread is tiny against the mean.
        for ch in g * cg..(g + 1) * cg {
            let a = (gamma[ch] as f64 * inv) as f32;
            let b = beta[ch];
            let (src, dst) = (&x[ch * hw..(ch + 1) * hw], &mut y[ch * hw..(ch + 1) * hw]);
            if act {
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = swish((v - m) * a + b);
                }
            } else {
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = (v - m) * a + b;
                }
            }
        }
    }
}
