//! Adapter and device setup: pick an adapter, ask for the limits the model needs (never more
//! than the adapter offers), turn on optional features when present, and turn wgpu's
//! asynchronous errors (validation, out of memory, device loss) into our errors.

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// A device and what we learnt about it.
pub struct Gpu {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The first error wgpu reported outside an error scope, or the device-lost reason.
    errors: Arc<Mutex<Option<String>>>,
    /// Compiled pipelines (see pipelines.rs).
    pub(super) pipelines: Mutex<super::pipelines::Pipelines>,
}

/// Software adapters (lavapipe, SwiftShader, WARP) are far slower than our CPU backend.
pub fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
}

pub fn describe(info: &wgpu::AdapterInfo) -> String {
    // Browsers may hide the adapter's name; fall back to what they do expose.
    let name = [&info.name, &info.driver, &info.driver_info]
        .into_iter()
        .find(|s| !s.is_empty())
        .map_or("unnamed adapter", |s| s.as_str());
    format!("{name} ({:?}, {:?})", info.backend, info.device_type)
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter wgpu can see, for `ddim info --devices`.
pub async fn adapters() -> Vec<wgpu::Adapter> {
    instance().enumerate_adapters(wgpu::Backends::all()).await
}

/// The adapter `auto` runs on: a hardware GPU, or why there is none. A software adapter
/// counts as none: it is far slower than the CPU backend. The CLI and the web module share
/// this rule.
pub async fn auto_adapter() -> std::result::Result<wgpu::Adapter, String> {
    match Gpu::adapter().await {
        None => Err("no GPU adapter".into()),
        Some(a) if is_software(&a.get_info()) => {
            Err(format!("{} is a software adapter", describe(&a.get_info())))
        }
        Some(a) => Ok(a),
    }
}

impl Gpu {
    /// The high-performance adapter, or None when there is none at all.
    pub async fn adapter() -> Option<wgpu::Adapter> {
        instance()
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .ok()
    }

    /// Open a device on `adapter` with the limits our kernels need, for f32.
    pub async fn open(adapter: wgpu::Adapter) -> Result<Gpu> {
        Self::open_for(adapter, super::precision::Precision::F32).await
    }

    /// Open a device for a precision: the mixed one also asks for cooperative matrices and
    /// subgroups where the adapter has them.
    pub async fn open_for(
        adapter: wgpu::Adapter,
        precision: super::precision::Precision,
    ) -> Result<Gpu> {
        let have = adapter.limits();
        let info = adapter.get_info();
        let need_buffers = 8;
        if have.max_storage_buffers_per_shader_stage < need_buffers {
            return Err(Error::Backend(format!(
                "{}: max_storage_buffers_per_shader_stage is {}, the conv kernel needs {need_buffers}",
                describe(&info),
                have.max_storage_buffers_per_shader_stage
            )));
        }
        let mut limits = wgpu::Limits::downlevel_defaults();
        limits.max_storage_buffers_per_shader_stage = need_buffers;
        limits.max_storage_buffer_binding_size = have.max_storage_buffer_binding_size;
        limits.max_buffer_size = have.max_buffer_size;
        limits.max_compute_invocations_per_workgroup =
            256.min(have.max_compute_invocations_per_workgroup);
        limits.max_compute_workgroup_size_x = 256.min(have.max_compute_workgroup_size_x);
        // Larger GEMM tiles need more than WebGPU's default 16 KiB; ask for what is there.
        limits.max_compute_workgroup_storage_size = have.max_compute_workgroup_storage_size;
        let mut optional = wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY;
        let coop = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SUBGROUP;
        let mixed = precision == super::precision::Precision::Mixed;
        if mixed {
            optional |= coop;
        }
        let features = adapter.features() & optional;
        let experimental = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: wgpu marks cooperative matrices experimental (its implementation may
            // still have bugs). They are asked for only in the mixed precision, whose kernels
            // must pass a self-check against f32 on this device before they are used.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("ddim"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: experimental,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::Backend(format!("{}: could not open a device: {e}", describe(&info)))
            })?;
        let errors = Arc::new(Mutex::new(None::<String>));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| format!("device lost ({reason:?}): {msg}"));
        });
        Ok(Gpu {
            adapter,
            device,
            queue,
            info,
            limits,
            features,
            errors,
            pipelines: Default::default(),
        })
    }

    /// The error wgpu reported since the last check, if any.
    pub fn check(&self) -> Result<()> {
        match self.errors.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(Error::Backend(format!("{}: {e}", describe(&self.info)))),
            None => Ok(()),
        }
    }

    /// Wait for all submitted work (native only; the browser resolves through callbacks).
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Backend(format!("{}: {e}", describe(&self.info))))?;
        self.check()
    }

    /// Copy a buffer's first `bytes` bytes back to the host. Natively this polls the device;
    /// in the browser the mapping resolves through the event loop, so await it there.
    pub async fn read(&self, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.wait()?;
        rx.await
            .map_err(|_| Error::Backend("readback was never answered (device lost?)".into()))?
            .map_err(|e| Error::Backend(format!("readback failed: {e}")))?;
        self.check()?;
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Backend(format!("readback mapping failed: {e}")))?;
        let out = bytemuck::pod_collect_to_vec::<u8, f32>(&view);
        drop(view);
        staging.unmap();
        Ok(out)
    }
}
