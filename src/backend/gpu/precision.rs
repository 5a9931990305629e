//! Precision modes. `f32` (the default) is held to the official code. `mixed` trades f16
//! rounding of the convolutions' inputs for speed, as PyTorch's TF32 does: tensor cores
//! through cooperative matrices where the device has them, else f16 arithmetic where it has
//! shader-f16, else f32. Each reduced mode must pass a self-check on the device (the model's
//! forward pass against its f32 one) before it is used; a failure falls back to the next
//! mode with a warning.

use crate::error::{Error, Result};

/// What the user asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    Mixed,
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Precision> {
        match s {
            "f32" => Ok(Precision::F32),
            "mixed" => Ok(Precision::Mixed),
            _ => Err(Error::invalid(
                "precision",
                format!("{s:?} (expected f32 or mixed)"),
            )),
        }
    }
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Mixed => "mixed",
        }
    }
}

/// What the convolutions compute with on this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arith {
    F32,
    /// f16 slices, f16 products and per-slice sums, f32 accumulation (conv2d_gemm.wgsl).
    F16,
    /// Tensor cores: f16 inputs, f32 accumulation (conv2d_coop.wgsl).
    Coop,
}

impl Arith {
    pub fn name(self) -> &'static str {
        match self {
            Arith::F32 => "f32",
            Arith::F16 => "f16 arithmetic",
            Arith::Coop => "tensor cores (cooperative matrices)",
        }
    }
}

/// The largest relative difference (max |ε_mode − ε_f32| / max |ε_f32| over one forward
/// pass of the model) a reduced mode may show in its self-check. f16 keeps 11 significant
/// bits, so rounding the inputs of a convolution costs about 2⁻¹¹ ≈ 5e-4 relative; through
/// the network's 20 to 40 convolutions that measured 1e-3 to 4e-3 for the f16 arithmetic on
/// the shipped model (BENCHMARKS.md). A kernel with a wrong index or layout errs by order 1.
/// 2e-2 sits between the two with room on either side.
pub const SELF_CHECK_TOLERANCE: f32 = 2e-2;

/// The tensor-core shape the kernel uses: 16 × 16 × 16, f16 inputs, f32 accumulator.
fn coop_shape_offered(props: &[wgpu::CooperativeMatrixProperties]) -> bool {
    props.iter().any(|p| {
        (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
            && p.ab_type == wgpu::CooperativeScalarType::F16
            && p.cr_type == wgpu::CooperativeScalarType::F32
    })
}

/// The subgroup size, if the adapter runs every subgroup at one size (the coop kernel
/// lays its fragments out by subgroup, so it needs to know it).
pub fn fixed_subgroup(info: &wgpu::AdapterInfo) -> Option<u32> {
    (info.subgroup_min_size == info.subgroup_max_size && info.subgroup_min_size >= 8)
        .then_some(info.subgroup_min_size)
}

/// Why the tensor-core kernel cannot run on this adapter, or None when it can.
pub fn coop_unavailable(
    features: wgpu::Features,
    props: &[wgpu::CooperativeMatrixProperties],
    info: &wgpu::AdapterInfo,
) -> Option<String> {
    use wgpu::Features as F;
    if !features.contains(F::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return Some("no cooperative matrices on this adapter".into());
    }
    if !features.contains(F::SHADER_F16 | F::SUBGROUP) {
        return Some("cooperative matrices without shader-f16 and subgroups".into());
    }
    if !coop_shape_offered(props) {
        return Some("no 16x16x16 f16 cooperative matrix with an f32 accumulator".into());
    }
    if fixed_subgroup(info).is_none() {
        return Some(format!(
            "subgroup size varies ({} to {})",
            info.subgroup_min_size, info.subgroup_max_size
        ));
    }
    None
}

/// The modes to try for a request, best first, and why the better ones were passed over.
/// f32 always ends the list: it needs nothing and has nothing to check.
pub fn candidates(
    want: Precision,
    features: wgpu::Features,
    coop: Option<String>,
) -> (Vec<Arith>, Vec<String>) {
    let mut out = Vec::new();
    let mut why = Vec::new();
    if want == Precision::Mixed {
        match coop {
            None => out.push(Arith::Coop),
            Some(w) => why.push(format!("tensor cores: {w}")),
        }
        if features.contains(wgpu::Features::SHADER_F16) {
            out.push(Arith::F16);
        } else {
            why.push("f16 arithmetic: no shader-f16 on this adapter".into());
        }
    }
    out.push(Arith::F32);
    (out, why)
}

/// Walk the candidates: the first whose self-check passes wins. `check` gives the
/// relative difference of a mode from f32 (or why it could not run). Returns the mode and
/// what the user should be told.
pub async fn resolve<F, Fut>(
    want: Precision,
    candidates: (Vec<Arith>, Vec<String>),
    mut check: F,
) -> Result<(Arith, Vec<String>)>
where
    F: FnMut(Arith) -> Fut,
    Fut: std::future::Future<Output = Result<std::result::Result<f32, String>>>,
{
    let (list, mut notes) = candidates;
    for a in list {
        if a == Arith::F32 {
            if want == Precision::Mixed {
                notes.push("precision mixed: running f32".into());
            }
            return Ok((a, notes));
        }
        match check(a).await? {
            Ok(err) if err <= SELF_CHECK_TOLERANCE => {
                notes.push(format!(
                    "precision mixed: {} (self-check: {err:.1e} from f32)",
                    a.name()
                ));
                return Ok((a, notes));
            }
            Ok(err) => notes.push(format!(
                "warning: {} failed its self-check on this device ({err:.1e} from f32, over \
                 the {SELF_CHECK_TOLERANCE:.0e} allowed); not using it",
                a.name()
            )),
            Err(why) => notes.push(format!(
                "warning: {} failed its self-check on this device ({why}); not using it",
                a.name()
            )),
        }
    }
    unreachable!("f32 ends every candidate list")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::Features as F;

    /// Resolve with checks that pass, except for the modes in `fails` (which disagree with
    /// f32) and in `broken` (which cannot produce a result at all).
    fn run_with(
        want: Precision,
        features: F,
        coop: Option<&str>,
        fails: &[Arith],
        broken: &[Arith],
    ) -> (Arith, String) {
        let c = candidates(want, features, coop.map(str::to_string));
        let (a, notes) = pollster::block_on(resolve(want, c, |a| {
            let r = if broken.contains(&a) {
                Err("its output has NaN at element 0".to_string())
            } else {
                Ok(if fails.contains(&a) { 0.5 } else { 1e-3 })
            };
            async move { Ok(r) }
        }))
        .unwrap();
        (a, notes.join("\n"))
    }

    fn run(want: Precision, features: F, coop: Option<&str>, fails: &[Arith]) -> (Arith, String) {
        run_with(want, features, coop, fails, &[])
    }

    #[test]
    fn a_mode_that_cannot_produce_a_result_is_passed_over() {
        let (a, n) = run_with(Precision::Mixed, F::all(), None, &[], &[Arith::Coop]);
        assert_eq!(a, Arith::F16);
        assert!(
            n.contains("failed its self-check") && n.contains("NaN"),
            "{n}"
        );
    }

    #[test]
    fn f32_never_takes_a_reduced_mode() {
        let (a, notes) = run(Precision::F32, F::all(), None, &[]);
        assert_eq!(a, Arith::F32);
        assert!(notes.is_empty(), "{notes}");
    }

    #[test]
    fn mixed_takes_the_best_mode_that_passes_and_says_why() {
        assert_eq!(run(Precision::Mixed, F::all(), None, &[]).0, Arith::Coop);
        let (a, n) = run(Precision::Mixed, F::SHADER_F16, Some("no coop here"), &[]);
        assert_eq!(a, Arith::F16);
        assert!(
            n.contains("no coop here") && n.contains("f16 arithmetic"),
            "{n}"
        );
        let (a, n) = run(Precision::Mixed, F::all(), None, &[Arith::Coop]);
        assert_eq!(a, Arith::F16);
        assert!(
            n.contains("tensor cores") && n.contains("failed its self-check"),
            "{n}"
        );
        let (a, n) = run(Precision::Mixed, F::all(), None, &[Arith::Coop, Arith::F16]);
        assert_eq!(a, Arith::F32);
        assert!(n.contains("running f32"), "{n}");
        let (a, n) = run(Precision::Mixed, F::empty(), Some("none"), &[]);
        assert_eq!(a, Arith::F32);
        assert!(n.contains("no shader-f16"), "{n}");
    }

    #[test]
    fn coop_needs_the_shape_and_a_fixed_subgroup() {
        let mut info = wgpu::AdapterInfo {
            subgroup_min_size: 32,
            subgroup_max_size: 32,
            ..wgpu::AdapterInfo::new(wgpu::DeviceType::DiscreteGpu, wgpu::Backend::Vulkan)
        };
        let good = wgpu::CooperativeMatrixProperties {
            m_size: 16,
            n_size: 16,
            k_size: 16,
            ab_type: wgpu::CooperativeScalarType::F16,
            cr_type: wgpu::CooperativeScalarType::F32,
            saturating_accumulation: false,
        };
        let all = F::all();
        assert_eq!(coop_unavailable(all, &[good], &info), None);
        let f32_only = wgpu::CooperativeMatrixProperties {
            m_size: 8,
            n_size: 8,
            k_size: 8,
            ab_type: wgpu::CooperativeScalarType::F32,
            ..good
        };
        assert!(coop_unavailable(all, &[f32_only], &info).is_some());
        assert!(coop_unavailable(F::SHADER_F16, &[good], &info).is_some());
        info.subgroup_max_size = 64;
        assert!(coop_unavailable(all, &[good], &info)
            .unwrap()
            .contains("varies"));
    }
}
