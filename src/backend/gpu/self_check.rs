//! Settling the precision on a device: each reduced mode runs the model's forward pass once
//! (a batch of 8 fixed inputs at timesteps from 999 down to 0, default kernels) and is
//! compared with the f32 pass before any real work uses it. Batch 8 makes the large layers
//! take the large-tile defaults, and the spread of timesteps meets the largest activations
//! (where f16 could overflow). The rule of which mode comes next is precision.rs.

use super::precision::{self, coop_unavailable, fixed_subgroup, Arith, Precision};
use super::tune::{Tune, Tuner};
use super::GpuBackend;
use crate::error::Result;
use crate::tensor::Tensor;

impl GpuBackend {
    /// Use `want` from the next batch on: `mixed` takes the best reduced mode this device
    /// offers that passes its self-check, else f32. What was chosen, and why better modes
    /// were passed over, comes out through `notes`.
    pub async fn set_precision(&mut self, want: Precision) -> Result<()> {
        let props = self.gpu.adapter.cooperative_matrix_properties();
        let coop = coop_unavailable(self.gpu.features, &props, &self.gpu.info);
        self.subgroup = fixed_subgroup(&self.gpu.info);
        let candidates = precision::candidates(want, self.gpu.features, coop);
        let mut checks = std::mem::take(&mut self.checked);
        // The checks need `self` mutably, so they are run first, in the candidates' order,
        // stopping at the first that passes, as `resolve` would.
        for &a in &candidates.0 {
            if a == Arith::F32 {
                break;
            }
            let r = match checks.get(&a) {
                Some(r) => r.clone(),
                None => match self.check_mode(a).await {
                    Ok(r) => r,
                    Err(e) => {
                        self.checked = checks;
                        return Err(e);
                    }
                },
            };
            let passed = matches!(r, Ok(e) if e <= precision::SELF_CHECK_TOLERANCE);
            checks.insert(a, r);
            if passed {
                break;
            }
        }
        let (arith, notes) = precision::resolve(want, candidates, |a| {
            let r = checks
                .get(&a)
                .cloned()
                .unwrap_or_else(|| Err("not checked".into()));
            async move { Ok(r) }
        })
        .await?;
        self.checked = checks;
        self.precision_notes.extend(notes);
        self.use_arith(arith);
        Ok(())
    }

    /// What the convolutions compute with now.
    pub fn arith(&self) -> Arith {
        self.arith
    }

    /// Make `mode`'s self-check disagree with f32, as a broken driver would: for testing the
    /// fallback on devices whose kernels are fine.
    #[doc(hidden)]
    pub fn break_self_check(&mut self, mode: Option<Arith>) {
        self.fault = mode;
        self.checked.clear();
    }

    /// Compute with `mode` from the next batch on, without a self-check: for tests that
    /// hold each kernel to its CPU twin themselves.
    #[doc(hidden)]
    pub fn force_arith(&mut self, mode: Arith) {
        self.subgroup = fixed_subgroup(&self.gpu.info);
        self.use_arith(mode);
    }

    fn use_arith(&mut self, a: Arith) {
        self.arith = a;
        self.batch = None;
        self.traj = None;
    }

    /// max |ε_mode − ε_f32| / max |ε_f32| on one forward pass, or why `mode` could not run.
    async fn check_mode(&mut self, mode: Arith) -> Result<std::result::Result<f32, String>> {
        let (c, r) = (self.plan.config.in_channels, self.plan.config.resolution);
        let t = [999.0, 900.0, 750.0, 500.0, 250.0, 100.0, 20.0, 0.0];
        let n = t.len().min(self.max_batch);
        let mut data = vec![0.0; n * c * r * r];
        crate::rng::fill_normal(0x5e1f, 0, 0, &mut data);
        let x = Tensor::new(vec![n, c, r, r], data)?;
        let t = &t[..n];
        // Default kernels, so the check neither tunes nor depends on a tuner's cache.
        let tuner = std::mem::replace(&mut self.tuner, Tuner::new(Tune::Off, None));
        let forced = self.forced.take();
        let before = self.arith;
        self.use_arith(Arith::F32);
        let reference = self.forward_async(&x, t).await;
        self.use_arith(mode);
        let got = self.forward_async(&x, t).await;
        self.use_arith(before);
        self.tuner = tuner;
        self.forced = forced;
        let reference = reference?;
        let mut got = match got {
            Ok(g) => g,
            Err(e) => {
                // A kernel the driver refuses is a failed check, not a failed run; but the
                // device must still be usable for the next mode.
                self.gpu.check()?;
                return Ok(Err(e.to_string()));
            }
        };
        if self.fault == Some(mode) {
            got.data.iter_mut().for_each(|v| *v = -*v);
        }
        // f16 overflows to infinity, and a max that skips NaN would call that a pass.
        if let Some(i) = got.data.iter().position(|v| !v.is_finite()) {
            return Ok(Err(format!(
                "its output has {} at element {i}",
                got.data[i]
            )));
        }
        let d = got.max_abs_diff(&reference)?;
        Ok(Ok(d / reference.max_abs().max(f32::MIN_POSITIVE)))
    }
}
