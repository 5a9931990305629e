//! The one path that records dispatches: the forward pass, the sampling step, the profiler
//! and the tuner all go through `record`. `time` measures groups of dispatches with
//! timestamp queries, or natively without them with the wall clock.

use super::device::Gpu;
use super::ops::Dispatch;
#[cfg(target_arch = "wasm32")]
use crate::error::Error;
use crate::error::Result;

pub fn record<'a>(pass: &mut wgpu::ComputePass, ds: impl IntoIterator<Item = &'a Dispatch>) {
    for d in ds {
        pass.set_pipeline(&d.kernel.pipeline);
        pass.set_bind_group(0, &d.bind, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Device milliseconds of each group of dispatches: the median of `runs` timed runs, after
/// `warm` untimed ones.
pub async fn time(gpu: &Gpu, groups: &[&[Dispatch]], warm: usize, runs: usize) -> Result<Vec<f64>> {
    let runs = runs.max(1);
    if gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
        let mut out = Vec::with_capacity(groups.len());
        // A query set holds at most QUERY_SET_MAX_QUERIES timestamps.
        let per = (wgpu::QUERY_SET_MAX_QUERIES as usize / (2 * runs)).max(1);
        for chunk in groups.chunks(per) {
            out.extend(timestamps(gpu, chunk, warm, runs).await?);
        }
        return Ok(out);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let mut times = Vec::with_capacity(runs);
            for i in 0..warm + runs {
                let start = std::time::Instant::now();
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                record(&mut enc.begin_compute_pass(&Default::default()), g.iter());
                gpu.queue.submit([enc.finish()]);
                gpu.wait()?;
                if i >= warm {
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
            out.push(median(times));
        }
        Ok(out)
    }
    #[cfg(target_arch = "wasm32")]
    Err(Error::Backend(format!(
        "{}: no timestamp-query feature, so kernels cannot be timed here",
        super::device::describe(&gpu.info)
    )))
}

async fn timestamps(
    gpu: &Gpu,
    groups: &[&[Dispatch]],
    warm: usize,
    runs: usize,
) -> Result<Vec<f64>> {
    let count = (2 * groups.len() * runs) as u32;
    let d = &gpu.device;
    let set = d.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("timing"),
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
    if warm > 0 {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for _ in 0..warm {
            record(&mut pass, groups.iter().flat_map(|g| g.iter()));
        }
    }
    for r in 0..runs {
        for (i, g) in groups.iter().enumerate() {
            let q = (2 * (r * groups.len() + i)) as u32;
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: g.first().map(|d| d.family),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(q),
                    end_of_pass_write_index: Some(q + 1),
                }),
            });
            record(&mut pass, g.iter());
        }
    }
    enc.resolve_query_set(&set, 0..count, &resolved, 0);
    gpu.queue.submit([enc.finish()]);
    // Timestamps are u64; the read gives them as pairs of 32-bit words.
    let words = gpu.read(&resolved, count as u64 * 8).await?;
    let ticks: Vec<u64> = words
        .chunks_exact(2)
        .map(|w| w[0].to_bits() as u64 | (w[1].to_bits() as u64) << 32)
        .collect();
    let period = gpu.queue.get_timestamp_period() as f64;
    Ok((0..groups.len())
        .map(|i| {
            median(
                (0..runs)
                    .map(|r| {
                        let q = 2 * (r * groups.len() + i);
                        ticks[q + 1].saturating_sub(ticks[q]) as f64 * period / 1e6
                    })
                    .collect(),
            )
        })
        .collect())
}
