//! Where the time goes: one forward pass with a GPU timestamp around every dispatch, summed
//! per kernel family. Needs the optional `timestamp-query` feature.

use super::GpuBackend;
use crate::error::{Error, Result};
use crate::model::unet::timestep_embedding;
use crate::tensor::Tensor;

/// Time and work of one kernel family over a forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub label: &'static str,
    pub dispatches: usize,
    pub ms: f64,
    pub gflop: f64,
}

impl GpuBackend {
    pub fn can_profile(&self) -> bool {
        self.gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// One timed forward pass; families sorted by time, largest first.
    pub async fn profile(&mut self, x: &Tensor, t: &[f32]) -> Result<Vec<KernelTime>> {
        if !self.can_profile() {
            return Err(Error::Backend(format!(
                "{} has no timestamp-query feature",
                self.gpu.info.name
            )));
        }
        self.flush()?;
        let n = t.len();
        self.ensure(n)?;
        let ch = self.plan.config.ch;
        let temb: Vec<f32> = t
            .iter()
            .flat_map(|&ti| timestep_embedding(ti, ch))
            .collect();
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
        let count = 2 * b.ops.len() as u32;
        let d = &self.gpu.device;
        let set = d.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolved = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut enc = d.create_command_encoder(&Default::default());
        for (i, op) in b.ops.iter().enumerate() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(op.label),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            pass.set_pipeline(&(op.kernel)(&self.kernels).pipeline);
            pass.set_bind_group(0, &op.bind, &[]);
            pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
        }
        enc.resolve_query_set(&set, 0..count, &resolved, 0);
        q.submit([enc.finish()]);
        // Timestamps are u64; read them as pairs of u32 words.
        let words = self.gpu.read(&resolved, count as u64 * 8).await?;
        let ticks: Vec<u64> = words
            .chunks_exact(2)
            .map(|w| w[0].to_bits() as u64 | (w[1].to_bits() as u64) << 32)
            .collect();
        let period = q.get_timestamp_period() as f64;
        let mut fams: Vec<KernelTime> = Vec::new();
        for (i, op) in b.ops.iter().enumerate() {
            let ms = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period / 1e6;
            let gflop = op.flops as f64 * n as f64 / 1e9;
            match fams.iter_mut().find(|f| f.label == op.label) {
                Some(f) => {
                    f.dispatches += 1;
                    f.ms += ms;
                    f.gflop += gflop;
                }
                None => fams.push(KernelTime {
                    label: op.label,
                    dispatches: 1,
                    ms,
                    gflop,
                }),
            }
        }
        fams.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(fams)
    }
}
