//! The noise schedule, computed on the host in f64: betas, ᾱ, the timestep sequences and
//! the per-step coefficient table that every backend (and the GPU, as a storage buffer) reads.
//!
//! Two ᾱ tables live side by side. `alphas_cumprod` is the exact f64 product, for reports.
//! `abar_f32` is what the official sampler actually uses: betas rounded to f32, 1−β taken in
//! f32, the product accumulated in f64 and rounded once. Sampling uses that one, so our
//! coefficients match the reference bit for bit at the ᾱ level.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetaSchedule {
    Linear,
    Quad,
    Const,
    Jsd,
    Sigmoid,
    Cosine,
}

impl FromStr for BetaSchedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "linear" => Self::Linear,
            "quad" | "scaled_linear" => Self::Quad,
            "const" => Self::Const,
            "jsd" => Self::Jsd,
            "sigmoid" => Self::Sigmoid,
            "cosine" | "squaredcos_cap_v2" => Self::Cosine,
            _ => {
                return Err(Error::invalid(
                    "beta schedule",
                    format!("{s:?} (expected linear, quad, const, jsd, sigmoid or cosine)"),
                ))
            }
        })
    }
}

/// The most diffusion timesteps T a schedule may have.
pub const MAX_TIMESTEPS: usize = 1 << 20;

/// numpy.linspace, including its rule that the last element is exactly `stop`.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = v.last_mut() {
        *last = stop;
    }
    v
}

/// The beta schedule of the official `get_beta_schedule`, plus the cosine schedule of
/// Nichol & Dhariwal (2021) with its 0.999 clip.
pub fn betas(kind: BetaSchedule, beta_start: f64, beta_end: f64, t: usize) -> Result<Vec<f64>> {
    // Models train with T of 1000 to 4000; a config's T sizes every table allocated here.
    if t == 0 || t > MAX_TIMESTEPS {
        return Err(Error::invalid(
            "timesteps",
            format!("{t}: must be 1 to {MAX_TIMESTEPS}"),
        ));
    }
    if !(beta_start.is_finite() && beta_end.is_finite()) {
        return Err(Error::invalid(
            "beta",
            "beta_start and beta_end must be finite",
        ));
    }
    let b = match kind {
        BetaSchedule::Linear => linspace(beta_start, beta_end, t),
        BetaSchedule::Quad => linspace(beta_start.sqrt(), beta_end.sqrt(), t)
            .into_iter()
            .map(|x| x * x)
            .collect(),
        BetaSchedule::Const => vec![beta_end; t],
        BetaSchedule::Jsd => linspace(t as f64, 1.0, t)
            .into_iter()
            .map(|x| 1.0 / x)
            .collect(),
        BetaSchedule::Sigmoid => linspace(-6.0, 6.0, t)
            .into_iter()
            .map(|x| 1.0 / ((-x).exp() + 1.0) * (beta_end - beta_start) + beta_start)
            .collect(),
        BetaSchedule::Cosine => {
            let abar = |i: usize| {
                let s = 0.008;
                ((i as f64 / t as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2)
                    .cos()
                    .powi(2)
            };
            (0..t)
                .map(|i| (1.0 - abar(i + 1) / abar(i)).min(0.999))
                .collect()
        }
    };
    if let Some((i, x)) = b
        .iter()
        .enumerate()
        .find(|(_, x)| !(**x > 0.0 && **x <= 1.0))
    {
        return Err(Error::invalid(
            "beta",
            format!("beta[{i}] = {x} is outside (0, 1]"),
        ));
    }
    Ok(b)
}

/// Lin et al. (2023), Algorithm 1: shift √ᾱ so the last step has zero SNR, keep the first.
pub fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let mut acc = 1.0;
    let mut s: Vec<f64> = betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc.sqrt()
        })
        .collect();
    let (first, last) = (s[0], s[s.len() - 1]);
    for x in &mut s {
        *x = (*x - last) * first / (first - last);
    }
    let abar: Vec<f64> = s.iter().map(|x| x * x).collect();
    (0..abar.len())
        .map(|i| {
            let prev = if i == 0 { 1.0 } else { abar[i - 1] };
            1.0 - abar[i] / prev
        })
        .collect()
}

/// Everything derived from one beta list.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub betas: Vec<f64>,
    pub alphas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    pub alphas_cumprod_prev: Vec<f64>,
    /// The official sampler's ᾱ: f32(∏ f64(f32(1 − f32(β)))).
    pub abar_f32: Vec<f32>,
}

impl Schedule {
    pub fn new(betas: Vec<f64>) -> Self {
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let mut acc = 1.0;
        let alphas_cumprod: Vec<f64> = alphas
            .iter()
            .map(|a| {
                acc *= a;
                acc
            })
            .collect();
        let mut alphas_cumprod_prev = vec![1.0];
        alphas_cumprod_prev.extend_from_slice(&alphas_cumprod[..alphas_cumprod.len() - 1]);
        let mut acc = 1.0f64;
        let abar_f32 = betas
            .iter()
            .map(|&b| {
                acc *= (1.0f32 - b as f32) as f64;
                acc as f32
            })
            .collect();
        Schedule {
            betas,
            alphas,
            alphas_cumprod,
            alphas_cumprod_prev,
            abar_f32,
        }
    }

    pub fn from_kind(
        kind: BetaSchedule,
        start: f64,
        end: f64,
        t: usize,
        zsnr: bool,
    ) -> Result<Self> {
        let mut b = betas(kind, start, end, t)?;
        if zsnr && t < 2 {
            return Err(Error::invalid(
                "timesteps",
                "the zero-terminal-SNR rescale needs at least 2",
            ));
        }
        if zsnr {
            b = rescale_zero_terminal_snr(&b);
        }
        Ok(Self::new(b))
    }

    pub fn num_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// ᾱ as the sampler sees it; t = −1 means the clean image (ᾱ = 1).
    pub fn abar(&self, t: i64) -> f64 {
        if t < 0 {
            1.0
        } else {
            self.abar_f32[t as usize] as f64
        }
    }
}

/// How the S sampling timesteps are picked out of T.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// ermongroup/ddim: range(0, T, T//S); gives more than S steps when S does not divide T.
    Uniform,
    /// ermongroup/ddim: int(linspace(0, √(0.8T), S)²), duplicates kept.
    Quad,
    /// diffusers "leading": i·(T//S) + steps_offset.
    Leading,
    /// diffusers "trailing": round(arange(T, 0, −T/S)) − 1.
    Trailing,
    /// diffusers "linspace": round(linspace(0, T−1, S)).
    Linspace,
}

impl FromStr for Skip {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "uniform" => Self::Uniform,
            "quad" => Self::Quad,
            "leading" => Self::Leading,
            "trailing" => Self::Trailing,
            "linspace" => Self::Linspace,
            _ => {
                return Err(Error::invalid(
                    "skip",
                    format!("{s:?} (expected uniform, quad, leading, trailing or linspace)"),
                ))
            }
        })
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skip::Uniform => "uniform",
            Skip::Quad => "quad",
            Skip::Leading => "leading",
            Skip::Trailing => "trailing",
            Skip::Linspace => "linspace",
        })
    }
}

/// The timesteps in sampling order (largest first). `steps_offset` applies to `leading` only,
/// as in diffusers.
pub fn timesteps(skip: Skip, t: usize, steps: usize, steps_offset: usize) -> Result<Vec<i64>> {
    if steps == 0 {
        return Err(Error::invalid("steps", "must be at least 1"));
    }
    if steps > t {
        return Err(Error::invalid(
            "steps",
            format!("{steps} is more than the {t} training timesteps"),
        ));
    }
    let (ti, si) = (t as i64, steps as i64);
    let mut seq: Vec<i64> = match skip {
        Skip::Uniform => (0..ti).step_by((ti / si) as usize).collect(),
        Skip::Quad => linspace(0.0, (t as f64 * 0.8).sqrt(), steps)
            .into_iter()
            .map(|x| (x * x) as i64)
            .collect(),
        Skip::Leading => (0..si)
            .map(|i| i * (ti / si) + steps_offset as i64)
            .collect(),
        Skip::Trailing => {
            // diffusers' np.arange(T, 0, -T/S) can gain a stray S+1-th entry (−1) from float
            // rounding (e.g. S = 61); take exactly the S values it means.
            let step = t as f64 / steps as f64;
            (0..steps)
                .map(|k| (t as f64 - k as f64 * step).round_ties_even() as i64 - 1)
                .rev()
                .collect()
        }
        Skip::Linspace => linspace(0.0, (t - 1) as f64, steps)
            .into_iter()
            .map(|x| x.round_ties_even() as i64)
            .collect(),
    };
    if let Some(&bad) = seq.iter().find(|&&x| x < 0 || x >= ti) {
        return Err(Error::invalid(
            "steps-offset",
            format!("timestep {bad} falls outside 0..{t}"),
        ));
    }
    seq.reverse();
    Ok(seq)
}

/// Which ᾱ the last step aims at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FinalAlpha {
    /// ᾱ(−1) = 1: the last step returns x0 (official, and diffusers `set_alpha_to_one=True`).
    #[default]
    One,
    /// ᾱ[0]: diffusers `set_alpha_to_one=False`.
    First,
}

impl FromStr for FinalAlpha {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "one" => Ok(Self::One),
            "first" => Ok(Self::First),
            _ => Err(Error::invalid(
                "final-alpha",
                format!("{s:?} (expected one or first)"),
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Sampler {
    /// The generalized step (DDIM, paper eq. 12) with any η ≥ 0.
    #[default]
    Ddim,
    /// The official `ddpm_steps`: ancestral sampling, x0 clamped to [−1, 1].
    Ddpm,
}

impl FromStr for Sampler {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ddim" => Ok(Self::Ddim),
            "ddpm" => Ok(Self::Ddpm),
            _ => Err(Error::invalid(
                "sampler",
                format!("{s:?} (expected ddim or ddpm)"),
            )),
        }
    }
}

/// What the network predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Prediction {
    #[default]
    Epsilon,
    V,
    Sample,
}

impl FromStr for Prediction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "epsilon" | "eps" => Ok(Self::Epsilon),
            "v" | "v_prediction" => Ok(Self::V),
            "sample" => Ok(Self::Sample),
            _ => Err(Error::invalid(
                "prediction",
                format!("{s:?} (expected epsilon, v or sample)"),
            )),
        }
    }
}

/// One sampling step as straight-line arithmetic, so a kernel needs no branches:
///
/// ```text
/// x0  = clamp(x0_x·x + x0_m·m, ±clip)      (clip = 0 means no clamp)
/// eps = eps_x·x + eps_m·m                   (from the unclamped prediction, like diffusers)
/// x'  = c_x0·x0 + c_eps·eps + c_x·x + c_z·z
/// ```
///
/// where m is the network output at timestep `t` and z is standard normal noise.
/// 12 f32, 48 bytes: the layout the WGSL struct mirrors.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepCoeffs {
    pub t: f32,
    pub x0_x: f32,
    pub x0_m: f32,
    pub eps_x: f32,
    pub eps_m: f32,
    pub clip: f32,
    pub c_x0: f32,
    pub c_eps: f32,
    pub c_x: f32,
    pub c_z: f32,
    pub abar: f32,
    pub abar_next: f32,
}

/// The knobs that decide the coefficient table.
#[derive(Clone, Copy, Debug)]
pub struct StepOptions {
    pub sampler: Sampler,
    pub eta: f64,
    pub prediction: Prediction,
    /// Clamp the predicted x0 to ±range. `ddpm` always clamps to 1.
    pub clip: Option<f64>,
    pub final_alpha: FinalAlpha,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            sampler: Sampler::Ddim,
            eta: 0.0,
            prediction: Prediction::Epsilon,
            clip: None,
            final_alpha: FinalAlpha::One,
        }
    }
}

fn prediction_coeffs(p: Prediction, a: f64) -> [f64; 4] {
    let (sa, s1a) = (a.sqrt(), (1.0 - a).sqrt());
    match p {
        Prediction::Epsilon => [1.0 / sa, -s1a / sa, 0.0, 1.0],
        Prediction::V => [sa, -s1a, s1a, sa],
        Prediction::Sample => [0.0, 1.0, 1.0 / s1a, -sa / s1a],
    }
}

/// The coefficient table for the timesteps `seq` (sampling order). Step k goes from
/// seq[k] to seq[k+1], and the last one to ᾱ(−1) (or ᾱ[0] with `FinalAlpha::First`).
pub fn step_table(sched: &Schedule, seq: &[i64], opt: &StepOptions) -> Result<Vec<StepCoeffs>> {
    if !(opt.eta.is_finite() && opt.eta >= 0.0) {
        return Err(Error::invalid(
            "eta",
            format!("{} (must be a finite number ≥ 0)", opt.eta),
        ));
    }
    if let Some(c) = opt.clip {
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::invalid("clip", format!("{c} (must be > 0)")));
        }
    }
    let final_abar = match opt.final_alpha {
        FinalAlpha::One => 1.0,
        FinalAlpha::First => sched.abar(0),
    };
    let mut out = Vec::with_capacity(seq.len());
    for (k, &t) in seq.iter().enumerate() {
        let a = sched.abar(t);
        let an = match seq.get(k + 1) {
            Some(&n) => sched.abar(n),
            None => final_abar,
        };
        if a <= 0.0 && opt.prediction == Prediction::Epsilon {
            return Err(Error::invalid(
                "prediction",
                format!(
                    "ᾱ is 0 at t = {t} (a zero-terminal-SNR or jsd schedule): an epsilon \
                         model cannot predict x0 there; use v prediction or fewer steps"
                ),
            ));
        }
        let [x0_x, x0_m, eps_x, eps_m] = prediction_coeffs(opt.prediction, a);
        let mut c = StepCoeffs {
            t: t as f32,
            x0_x: x0_x as f32,
            x0_m: x0_m as f32,
            eps_x: eps_x as f32,
            eps_m: eps_m as f32,
            abar: a as f32,
            abar_next: an as f32,
            ..Default::default()
        };
        match opt.sampler {
            Sampler::Ddim => {
                let sigma = opt.eta * ((1.0 - a / an) * (1.0 - an) / (1.0 - a)).max(0.0).sqrt();
                c.clip = opt.clip.unwrap_or(0.0) as f32;
                c.c_x0 = an.sqrt() as f32;
                c.c_eps = (1.0 - an - sigma * sigma).max(0.0).sqrt() as f32;
                c.c_z = sigma as f32;
            }
            Sampler::Ddpm => {
                let beta = 1.0 - a / an;
                c.clip = opt.clip.unwrap_or(1.0) as f32;
                c.c_x0 = (an.sqrt() * beta / (1.0 - a)) as f32;
                c.c_x = ((1.0 - beta).sqrt() * (1.0 - an) / (1.0 - a)) as f32;
                // The official sampler masks the noise of the step that starts at t = 0.
                c.c_z = if t == 0 {
                    0.0
                } else {
                    beta.max(0.0).sqrt() as f32
                };
            }
        }
        out.push(c);
    }
    Ok(out)
}

/// The deterministic reversed ODE (DDIM inversion): from the clean image up through `seq`
/// taken in increasing order. Like diffusers' inverse scheduler, the network is evaluated at
/// the target timestep, since the source of the first step is the image itself (t = −1).
pub fn inversion_table(sched: &Schedule, seq: &[i64]) -> Vec<StepCoeffs> {
    let mut up: Vec<i64> = seq.to_vec();
    up.sort_unstable();
    let mut src = -1;
    up.iter()
        .map(|&t| {
            let (a, an) = (sched.abar(src), sched.abar(t));
            src = t;
            StepCoeffs {
                t: t as f32,
                x0_x: (1.0 / a.sqrt()) as f32,
                x0_m: (-(1.0 - a).sqrt() / a.sqrt()) as f32,
                eps_m: 1.0,
                c_x0: an.sqrt() as f32,
                c_eps: (1.0 - an).sqrt() as f32,
                abar: a as f32,
                abar_next: an as f32,
                ..Default::default()
            }
        })
        .collect()
}

/// Apply one step to host memory: the CPU twin of the step kernel.
pub fn apply_step(c: &StepCoeffs, x: &mut [f32], m: &[f32], z: Option<&[f32]>, x0_out: &mut [f32]) {
    for i in 0..x.len() {
        let (xi, mi) = (x[i], m[i]);
        let mut x0 = c.x0_x * xi + c.x0_m * mi;
        if c.clip > 0.0 {
            x0 = x0.clamp(-c.clip, c.clip);
        }
        let eps = c.eps_x * xi + c.eps_m * mi;
        let zi = z.map_or(0.0, |z| z[i]);
        x0_out[i] = x0;
        x[i] = c.c_x0 * x0 + c.c_eps * eps + c.c_x * xi + c.c_z * zi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_t100_matches_the_notebook() {
        let b = betas(BetaSchedule::Linear, 1e-4, 0.02, 100).unwrap();
        assert_eq!(b[0], 1e-4);
        assert!((b[1] - 0.00030101).abs() < 1e-8);
        assert!((b[2] - 0.00050202).abs() < 1e-8);
        assert_eq!(b[99], 0.02);
    }

    #[test]
    fn uniform_has_extra_steps_when_s_does_not_divide_t() {
        let s = timesteps(Skip::Uniform, 1000, 30, 0).unwrap();
        assert_eq!(s.len(), 31);
        assert_eq!((s[0], s[30]), (990, 0));
    }

    #[test]
    fn trailing_never_gains_a_stray_step() {
        for s in [61, 103, 121, 122, 201, 999] {
            let seq = timesteps(Skip::Trailing, 1000, s, 0).unwrap();
            assert_eq!(seq.len(), s);
            assert!(
                seq.iter().all(|&t| (0..1000).contains(&t)),
                "S={s}: {seq:?}"
            );
        }
    }

    #[test]
    fn zero_alpha_bar_is_refused_for_epsilon_models() {
        // jsd ends at β = 1, so ᾱ[T−1] = 0 and x0 cannot be recovered from ε there.
        let sched = Schedule::from_kind(BetaSchedule::Jsd, 1e-4, 0.02, 100, false).unwrap();
        let seq = timesteps(Skip::Linspace, 100, 10, 0).unwrap();
        let e = step_table(&sched, &seq, &StepOptions::default()).unwrap_err();
        assert!(e.to_string().contains("prediction"), "{e}");
        let v = StepOptions {
            prediction: Prediction::V,
            ..Default::default()
        };
        assert!(step_table(&sched, &seq, &v).is_ok());
    }

    #[test]
    fn last_ddim_step_returns_x0() {
        let sched = Schedule::from_kind(BetaSchedule::Linear, 1e-4, 0.02, 1000, false).unwrap();
        let seq = timesteps(Skip::Uniform, 1000, 10, 0).unwrap();
        let tab = step_table(&sched, &seq, &StepOptions::default()).unwrap();
        let last = tab.last().unwrap();
        assert_eq!((last.c_x0, last.c_eps, last.c_z), (1.0, 0.0, 0.0));
    }

    #[test]
    fn repeated_timestep_is_a_no_op() {
        let sched = Schedule::from_kind(BetaSchedule::Linear, 1e-4, 0.02, 1000, false).unwrap();
        let tab = step_table(&sched, &[5, 5, 0], &StepOptions::default()).unwrap();
        let (mut x, m, mut x0) = (vec![0.3f32, -1.2], vec![0.7f32, 0.1], vec![0.0; 2]);
        apply_step(&tab[0], &mut x, &m, None, &mut x0);
        assert!((x[0] - 0.3).abs() < 1e-6 && (x[1] + 1.2).abs() < 1e-6);
    }
}
