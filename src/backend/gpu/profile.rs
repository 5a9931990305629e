//! Where the time goes: one forward pass with a GPU timestamp around every dispatch, per
//! layer (with the kernel variant that ran it). Needs the optional `timestamp-query` feature.

use super::{encode, GpuBackend};
use crate::backend::profile::LayerTime;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

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
