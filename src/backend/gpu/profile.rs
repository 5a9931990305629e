//! Where the time goes: one forward pass with a GPU timestamp around every dispatch, per
//! layer (with the kernel variant that ran it) and summed per kernel family. Needs the
//! optional `timestamp-query` feature.

use super::{encode, GpuBackend};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Time and work of one dispatch, or of a kernel family summed over a forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTime {
    pub family: &'static str,
    pub layer: String,
    pub variant: String,
    pub dispatches: usize,
    pub ms: f64,
    pub gflop: f64,
}

impl LayerTime {
    pub fn gflops(&self) -> Option<f64> {
        (self.gflop > 0.0 && self.ms > 0.0).then(|| self.gflop / (self.ms / 1e3))
    }
}

/// Per-family totals of a per-dispatch profile, largest first.
pub fn by_family(layers: &[LayerTime]) -> Vec<LayerTime> {
    let mut fams: Vec<LayerTime> = Vec::new();
    for l in layers {
        match fams.iter_mut().find(|f| f.family == l.family) {
            Some(f) => {
                f.dispatches += 1;
                f.ms += l.ms;
                f.gflop += l.gflop;
            }
            None => fams.push(LayerTime {
                layer: String::new(),
                variant: String::new(),
                dispatches: 1,
                ..l.clone()
            }),
        }
    }
    fams.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    fams
}

impl GpuBackend {
    pub fn can_profile(&self) -> bool {
        self.gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// One timed forward pass: every dispatch in plan order (use `by_family` for totals).
    pub async fn profile(&mut self, x: &Tensor, t: &[f32]) -> Result<Vec<LayerTime>> {
        if !self.can_profile() {
            return Err(Error::Backend(format!(
                "{} has no timestamp-query feature",
                self.gpu.info.name
            )));
        }
        self.flush()?;
        let n = t.len();
        self.prepare(n).await?;
        let temb = self.temb(t.iter().copied());
        let b = self.batch.as_ref().expect("batch prepared");
        let q = &self.gpu.queue;
        q.write_buffer(
            &b.bufs[self.buf_of[self.plan.input]],
            0,
            bytemuck::cast_slice(&x.data),
        );
        q.write_buffer(
            &b.bufs[self.buf_of[self.plan.temb]],
            0,
            bytemuck::cast_slice(&temb),
        );
        let groups: Vec<&[super::ops::Dispatch]> = b.ops.iter().map(std::slice::from_ref).collect();
        let ms = encode::time(&self.gpu, &groups, 0, 1).await?;
        Ok(b.ops
            .iter()
            .zip(ms)
            .map(|(d, ms)| LayerTime {
                family: d.family,
                layer: d.layer.clone(),
                variant: d.variant.clone(),
                dispatches: 1,
                ms,
                gflop: d.flops as f64 / 1e9,
            })
            .collect())
    }
}
