//! GroupNorm(32 groups, eps 1e-6) with its affine, optionally followed by swish. Statistics
//! take two passes (mean, then squared deviations) with f32 lanes summed into f64 per block:
//! the lanes vectorize, and the f64 totals keep large groups from losing precision.

use pulp::{Simd, WithSimd};

pub const GROUPS: usize = 32;
pub const EPS: f64 = 1e-6;

#[inline(always)]
pub fn swish(x: f32) -> f32 {
    // Below −87, e^−x is clamped, and x·e^x is under 1e-36 anyway.
    let v = x / (1.0 + exp(-x));
    if x < -87.0 {
        0.0
    } else {
        v
    }
}

/// e^x for f32 without a libm call, so loops over it vectorize (libm's expf was 9% of an
/// emoji32 forward pass). x = n·ln2 + r with |r| ≤ ln2/2, a degree-7 Taylor polynomial for
/// e^r (truncation error below 2e-9 relative), and 2^n built in the exponent bits. Inputs
/// are clamped to ±87, where e^x still fits an f32 normal (swish handles below −87).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding 1.5·2^23 rounds to an integer in the low mantissa bits: no roundf or float→int
    // call, which baseline x86-64 would need and which would stop the loop vectorizing.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 87.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    // ln2 split in two so n·ln2 is subtracted without losing r's low bits.
    let r = (x - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let ni = t.to_bits().wrapping_sub(MAGIC.to_bits());
    p * f32::from_bits(ni.wrapping_add(127) << 23)
}

/// Code that must run at the CPU's widest SIMD (AVX-512, AVX2, NEON; SIMD128 in wasm)
/// rather than at the build's baseline (SSE2 on x86-64) goes in a `WithSimd` struct whose
/// `with_simd` is inlined, so that each level gets its own copy. Never pass a closure, though
/// pulp accepts one (it implements `WithSimd` for `FnOnce`): dispatch calls it from every
/// level's code, so it stays one function, out of line, at SSE2 (the folded norm's copy
/// took 9% of an emoji32 forward pass on one AVX2 thread that way).
/// Elementwise results are the same at any width.
#[inline(always)]
pub fn wide<Op: WithSimd>(op: Op) -> Op::Output {
    pulp::Arch::new().dispatch(op)
}

/// `stats` at the widest SIMD.
pub struct Stats<'a>(pub &'a [f32]);

impl WithSimd for Stats<'_> {
    type Output = (f32, f64);
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> (f32, f64) {
        stats(self.0)
    }
}

/// Σ f(x) with 8 f32 lanes over blocks of 512, each block's total added in f64.
#[inline(always)]
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
    let len = c / GROUPS * hw;
    for (g, ys) in y[..c * hw].chunks_mut(len).enumerate() {
        one_group(&x[g * len..(g + 1) * len], hw, gamma, beta, g, act, ys);
    }
}

/// Group g alone: xs and ys are its channels, [c/32, hw]; gamma and beta are for all c.
/// (So a single image's groups can run on different threads.)
pub fn one_group(
    xs: &[f32],
    hw: usize,
    gamma: &[f32],
    beta: &[f32],
    g: usize,
    act: bool,
    ys: &mut [f32],
) {
    wide(OneGroup {
        xs,
        hw,
        gamma,
        beta,
        g,
        act,
        ys,
    })
}

/// `one_group`'s work, at the widest SIMD.
struct OneGroup<'a> {
    xs: &'a [f32],
    hw: usize,
    gamma: &'a [f32],
    beta: &'a [f32],
    g: usize,
    act: bool,
    ys: &'a mut [f32],
}

impl WithSimd for OneGroup<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let (xs, hw, g, ys) = (self.xs, self.hw, self.g, self.ys);
        let cg = xs.len() / hw.max(1);
        let (m, inv) = stats(xs);
        for (i, ch) in (g * cg..(g + 1) * cg).enumerate() {
            let (src, dst) = (&xs[i * hw..(i + 1) * hw], &mut ys[i * hw..(i + 1) * hw]);
            normalise(src, m, inv, self.gamma[ch], self.beta[ch], self.act, dst);
        }
    }
}

/// The mean of a group's values, and 1/√(variance + eps): what `normalise` takes.
#[inline(always)]
pub fn stats(xs: &[f32]) -> (f32, f64) {
    let n = xs.len() as f64;
    let m = (block_sum(xs, |v| v) / n) as f32;
    let var = block_sum(xs, |v| (v - m) * (v - m)) / n;
    (m, 1.0 / (var + EPS).sqrt())
}

/// dst = act((src − mean)·γ/σ + β) for one channel. Subtracting the mean before scaling
/// matters: folding it into the bias cancels badly when the spread is tiny against the mean.
#[inline(always)]
pub fn normalise(src: &[f32], m: f32, inv: f64, gamma: f32, beta: f32, act: bool, dst: &mut [f32]) {
    let a = (gamma as f64 * inv) as f32;
    if act {
        for (o, &v) in dst.iter_mut().zip(src) {
            *o = swish((v - m) * a + beta);
        }
    } else {
        for (o, &v) in dst.iter_mut().zip(src) {
            *o = (v - m) * a + beta;
        }
    }
}

/// A GroupNorm (with its swish) applied by a convolution as it reads its input, instead of
/// as a pass of its own: the affine, and the statistics of every (image, group).
pub struct Fused<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub swish: bool,
    /// (mean, 1/σ) of group g of image i at i·32 + g.
    pub stats: Vec<(f32, f64)>,
}

impl Fused<'_> {
    /// Channel c (of ci) of image i, normalised into dst. Inlined into its caller's `wide`
    /// region: compiled on its own it ran at the build's baseline, SSE2, and took 8.6% of
    /// an emoji32 forward pass on one AVX2 thread.
    #[inline(always)]
    pub fn channel(&self, i: usize, c: usize, ci: usize, src: &[f32], dst: &mut [f32]) {
        let (m, inv) = self.stats[i * GROUPS + c / (ci / GROUPS)];
        normalise(src, m, inv, self.gamma[c], self.beta[c], self.swish, dst);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_matches_libm() {
        let mut worst = 0.0f64;
        for i in -86_000..=86_000 {
            let x = i as f32 / 1000.0 + 0.000_37;
            let want = (x as f64).exp();
            let got = super::exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
        assert_eq!(super::exp(-1e30), super::exp(-87.0));
        assert!(super::exp(1e30).is_finite());
        assert!(super::swish(-100.0).abs() < 1e-30);
        assert_eq!(super::swish(-1e30), 0.0);
    }
}
