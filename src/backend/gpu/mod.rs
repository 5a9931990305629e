//! The GPU backend: the same plan as the CPU backend, run as WGSL compute dispatches through
//! wgpu. Weights live in one buffer per tensor and activations in one buffer per liveness
//! class, so no binding exceeds the device limit. Once a trajectory starts, each step is a
//! few buffer-to-buffer copies (the step's coefficients and timestep embedding, from tables
//! uploaded once) plus the dispatches; steps are encoded in groups and nothing comes back to
//! the host until a result is read.

pub mod device;
pub mod kernels;
mod profile;

use super::{Backend, NoiseKey};
use crate::error::{Error, Result};
use crate::model::unet::timestep_embedding;
use crate::model::{Model, Op, Plan, Resample, View};
use crate::schedule::StepCoeffs;
use crate::tensor::Tensor;
use device::{describe, Gpu};
use kernels::{Kernel, Kernels};
use wgpu::util::DeviceExt;

/// Which convolution kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKind {
    /// conv2d.wgsl: 4×4 register tiles, no workgroup memory (best on software adapters).
    Direct,
    /// conv2d_tiled.wgsl: 64×64 tiles staged through workgroup memory (hardware GPUs).
    Tiled,
}

/// Steps encoded into one submission.
pub const STEPS_PER_SUBMIT: usize = 8;

/// The uniform block of ddim_step.wgsl: this step's coefficients plus the noise key.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StepUniform {
    c: StepCoeffs,
    stream: u32,
    seed_lo: u32,
    seed_hi: u32,
    first_sample: u32,
    per_sample: u32,
    total: u32,
    row: u32,
    pad: u32,
}

struct Dispatch {
    kernel: fn(&Kernels) -> &Kernel,
    bind: wgpu::BindGroup,
    groups: [u32; 3],
    /// For the profile: the kernel family and its floating-point work per image.
    label: &'static str,
    flops: u64,
}

/// Everything that depends on the batch size.
struct Batch {
    n: usize,
    bufs: Vec<wgpu::Buffer>,
    ops: Vec<Dispatch>,
    latent: wgpu::Buffer,
    x0: wgpu::Buffer,
    cur: wgpu::Buffer,
    step_bind: wgpu::BindGroup,
    step_groups: [u32; 3],
    /// Bytes of device memory this batch holds (activations, scratch, latent, x0).
    bytes: u64,
}

/// A trajectory in progress.
struct Trajectory {
    steps: wgpu::Buffer,
    temb: wgpu::Buffer,
    len: usize,
    encoder: Option<wgpu::CommandEncoder>,
    pending: usize,
    bytes: u64,
}

pub struct GpuBackend {
    gpu: Gpu,
    kernels: Kernels,
    plan: Plan,
    weights: Vec<wgpu::Buffer>,
    dummy: wgpu::Buffer,
    buf_of: Vec<usize>,
    buf_len: Vec<usize>,
    attn_len: usize,
    max_batch: usize,
    conv_kind: ConvKind,
    /// Host time spent encoding and submitting steps (not waiting for the device).
    #[cfg(not(target_arch = "wasm32"))]
    pub host_time: std::time::Duration,
    batch: Option<Batch>,
    traj: Option<Trajectory>,
}

/// The f16 bits of `data`, padded to whole 4-byte words, if every value is exactly an f16.
fn exact_f16(data: &[f32]) -> Option<Vec<u16>> {
    let mut bits = data
        .iter()
        .map(|&v| {
            let h = half::f16::from_f32(v);
            (h.to_f32().to_bits() == v.to_bits()).then_some(h.to_bits())
        })
        .collect::<Option<Vec<u16>>>()?;
    if bits.len() % 2 == 1 {
        bits.push(0);
    }
    Some(bits)
}

fn ceil(a: usize, b: usize) -> u32 {
    a.div_ceil(b) as u32
}

/// Workgroups along x for `items` at 64 per group, split over y when x would pass the limit.
fn grid(items: usize, max: u32) -> [u32; 3] {
    let g = ceil(items, 64).max(1);
    let x = g.min(max);
    [x, g.div_ceil(x), 1]
}

impl GpuBackend {
    /// Open the best adapter (software ones included) and prepare the model on it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(model: &Model) -> Result<Self> {
        let adapter = pollster::block_on(Gpu::adapter())
            .ok_or_else(|| Error::Backend("no GPU adapter found (wgpu saw none)".into()))?;
        Self::with_adapter(model, adapter)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_adapter(model: &Model, adapter: wgpu::Adapter) -> Result<Self> {
        pollster::block_on(Self::create(model, adapter))
    }

    /// Open a device on `adapter` and prepare the model on it.
    pub async fn create(model: &Model, adapter: wgpu::Adapter) -> Result<Self> {
        let gpu = Gpu::open(adapter).await?;
        Self::with_plan(gpu, model.plan.clone(), &model.weights.tensors).await
    }

    /// Prepare any plan (the twin tests run single-op plans).
    pub async fn with_plan(gpu: Gpu, plan: Plan, weights: &[Tensor]) -> Result<Self> {
        let limit = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        // Conv weights go to the device as f16 only when that loses nothing: the device has
        // shader-f16 and every value is exactly an f16 (a model stored as f16, say). The conv
        // kernels are built for one weight type, so it is all convs or none.
        let mut as_f16: Vec<Option<Vec<u16>>> = vec![None; weights.len()];
        if gpu.features.contains(wgpu::Features::SHADER_F16) {
            for op in &plan.ops {
                if let Op::Conv { w, .. } = op {
                    match exact_f16(&weights[*w].data) {
                        Some(bits) => as_f16[*w] = Some(bits),
                        None => {
                            as_f16.fill(None);
                            break;
                        }
                    }
                }
            }
        }
        let half = as_f16.iter().any(Option::is_some);
        let kernels = Kernels::new(&gpu, half).await?;
        let mut wbufs = Vec::with_capacity(weights.len());
        for ((p, t), h) in plan.params.iter().zip(weights).zip(&as_f16) {
            let contents: &[u8] = match h {
                Some(bits) => bytemuck::cast_slice(bits),
                None => bytemuck::cast_slice(&t.data),
            };
            let bytes = contents.len() as u64;
            if bytes > limit {
                return Err(Error::Backend(format!(
                    "tensor {} is {bytes} bytes, over the device's max_storage_buffer_binding_size of {limit}",
                    p.name
                )));
            }
            wbufs.push(
                gpu.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some(&p.name),
                        contents,
                        usage: wgpu::BufferUsages::STORAGE,
                    }),
            );
        }
        let (buf_of, buf_len) = plan.assign_buffers();
        let attn_len = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Attention { q, .. } => {
                    let (h, w) = plan.slots[q.slot].hw();
                    Some(h * w * h * w)
                }
                _ => None,
            })
            .max()
            .unwrap_or(1);
        let per_image_max = buf_len.iter().copied().chain([attn_len]).max().unwrap_or(1) as u64 * 4;
        if per_image_max > limit {
            return Err(Error::Backend(format!(
                "one image needs a {per_image_max}-byte activation buffer, over the device's \
                 max_storage_buffer_binding_size of {limit}"
            )));
        }
        let max_batch = ((limit / per_image_max) as usize).clamp(1, 65_535);
        let gpu_check = gpu.check();
        gpu_check?;
        let dummy = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused binding"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let gpu_info = gpu.info.clone();
        Ok(GpuBackend {
            gpu,
            kernels,
            plan,
            weights: wbufs,
            dummy,
            buf_of,
            buf_len,
            attn_len,
            max_batch,
            conv_kind: if device::is_software(&gpu_info) {
                ConvKind::Direct
            } else {
                ConvKind::Tiled
            },
            #[cfg(not(target_arch = "wasm32"))]
            host_time: Default::default(),
            batch: None,
            traj: None,
        })
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.gpu.info
    }

    /// Whether the convolutions read f16 weights (shader-f16 present, weights exact in f16).
    pub fn half_weights(&self) -> bool {
        self.kernels.half_weights
    }

    /// Device memory held now: weights, the current batch and trajectory. Readback staging
    /// buffers are transient and not counted.
    pub fn gpu_bytes(&self) -> u64 {
        self.weights.iter().map(|b| b.size()).sum::<u64>()
            + self.batch.as_ref().map_or(0, |b| b.bytes)
            + self.traj.as_ref().map_or(0, |t| t.bytes)
    }

    /// Choose the convolution kernel (the default follows the adapter type). Takes effect
    /// for the next batch size prepared.
    pub fn set_conv_kind(&mut self, kind: ConvKind) {
        if kind != self.conv_kind {
            self.conv_kind = kind;
            self.batch = None;
            self.traj = None;
        }
    }

    /// Give the device back (to build another backend on it without reopening).
    pub fn into_gpu(self) -> Gpu {
        self.gpu
    }

    fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        self.gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("op params"),
                contents: bytemuck::cast_slice(words),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    fn bind(&self, k: &Kernel, bufs: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &k.layout,
                entries: &entries,
            })
    }

    /// (per-image stride, offset within the image) of a view, in elements.
    fn place(&self, v: View) -> (u32, u32) {
        let s = self.plan.slots[v.slot];
        let (h, w) = s.hw();
        (s.len() as u32, (v.c_off * h * w) as u32)
    }

    /// Buffers, bind groups and dispatch sizes for batch size n.
    fn ensure(&mut self, n: usize) -> Result<()> {
        if self.batch.as_ref().is_some_and(|b| b.n == n) {
            return Ok(());
        }
        if n > self.max_batch {
            return Err(Error::Backend(format!(
                "batch {n} is over this device's maximum of {}",
                self.max_batch
            )));
        }
        self.batch = None;
        // The trajectory's latent lived in the old batch.
        self.traj = None;
        let d = &self.gpu.device;
        let act = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        let mk = |label: &str, elems: usize| {
            d.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (elems.max(4) * 4) as u64,
                usage: act,
                mapped_at_creation: false,
            })
        };
        let bufs: Vec<wgpu::Buffer> = self
            .buf_len
            .iter()
            .map(|&l| mk("activation", l * n))
            .collect();
        let scratch = mk("attention scores", self.attn_len * n);
        let image = self.plan.slots[self.plan.input].len();
        let latent = mk("latent", image * n);
        let x0 = mk("x0", image * n);
        let cur = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step uniform"),
            size: std::mem::size_of::<StepUniform>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let maxg = self.gpu.limits.max_compute_workgroups_per_dimension;
        let buf = |s: usize| &bufs[self.buf_of[s]];
        let mut ops = Vec::new();
        for op in &self.plan.ops {
            let k = &self.kernels;
            match *op {
                Op::Conv {
                    x,
                    y,
                    w,
                    b,
                    k: ks,
                    resample,
                    temb,
                    residual,
                } => {
                    let (h, wd) = self.plan.slots[x.slot].hw();
                    let (ho, wo) = self.plan.slots[y.slot].hw();
                    let (xs, xo) = self.place(x);
                    let (ys, yo) = self.place(y);
                    let (rs, ro) = residual.map_or((0, 0), |r| self.place(r));
                    let ts = temb.map_or(0, |t| self.plan.slots[t].len() as u32);
                    let mode = match resample {
                        Resample::None => 0,
                        Resample::Down => 1,
                        Resample::Up => 2,
                    };
                    let flags = temb.is_some() as u32 | (residual.is_some() as u32) << 1;
                    let p = self.uniform(&[
                        x.c as u32, h as u32, wd as u32, y.c as u32, ho as u32, wo as u32,
                        ks as u32, mode, xs, xo, ys, yo, rs, ro, ts, flags,
                    ]);
                    let tb = temb.map_or(&self.dummy, buf);
                    let rb = residual.map_or(&self.dummy, |r| buf(r.slot));
                    let tiled = self.conv_kind == ConvKind::Tiled;
                    let bind = self.bind(
                        if tiled { &k.conv_tiled } else { &k.conv },
                        &[
                            &p,
                            buf(x.slot),
                            &self.weights[w],
                            &self.weights[b],
                            tb,
                            rb,
                            buf(y.slot),
                        ],
                    );
                    let groups = if tiled {
                        [ceil(ho * wo, 64), ceil(y.c, 64), n as u32]
                    } else {
                        [ceil(ho * wo, 64), ceil(y.c, 16), n as u32]
                    };
                    let kernel: fn(&Kernels) -> &Kernel = if tiled {
                        |k| &k.conv_tiled
                    } else {
                        |k| &k.conv
                    };
                    let label = match (ks, resample) {
                        (1, _) => "conv 1x1",
                        (_, Resample::Down) => "conv 3x3 stride 2",
                        (_, Resample::Up) => "conv 3x3 upsample",
                        _ => "conv 3x3",
                    };
                    ops.push(Dispatch {
                        kernel,
                        bind,
                        groups,
                        label,
                        flops: 2 * (x.c * y.c * ks * ks * ho * wo) as u64,
                    });
                }
                Op::GroupNorm {
                    x,
                    y,
                    gamma,
                    beta,
                    swish,
                } => {
                    let (h, wd) = self.plan.slots[x.slot].hw();
                    let (xs, xo) = self.place(x);
                    let (ys, yo) = self.place(y);
                    let p = self.uniform(&[
                        x.c as u32,
                        (h * wd) as u32,
                        xs,
                        xo,
                        ys,
                        yo,
                        swish as u32,
                        0,
                    ]);
                    let bind = self.bind(
                        &k.group_norm,
                        &[
                            &p,
                            buf(x.slot),
                            &self.weights[gamma],
                            &self.weights[beta],
                            buf(y.slot),
                        ],
                    );
                    ops.push(Dispatch {
                        kernel: |k| &k.group_norm,
                        bind,
                        groups: [32, n as u32, 1],
                        label: "group norm",
                        flops: 0,
                    });
                }
                Op::Linear { x, y, w, b, swish } => {
                    let (ni, no) = (self.plan.slots[x].len(), self.plan.slots[y].len());
                    let p = self.uniform(&[ni as u32, no as u32, swish as u32, 0]);
                    let bind = self.bind(
                        &k.linear,
                        &[&p, buf(x), &self.weights[w], &self.weights[b], buf(y)],
                    );
                    ops.push(Dispatch {
                        kernel: |k| &k.linear,
                        bind,
                        groups: [ceil(no, 64), n as u32, 1],
                        label: "linear",
                        flops: 2 * (ni * no) as u64,
                    });
                }
                Op::Attention { q, k: kv, v, y } => {
                    let (h, wd) = self.plan.slots[q.slot].hw();
                    let hw = h * wd;
                    let (qs, qo) = self.place(q);
                    let (ks2, ko) = self.place(kv);
                    let (vs, vo) = self.place(v);
                    let (ys, yo) = self.place(y);
                    let scale = (q.c as f32).powf(-0.5).to_bits();
                    let p = self.uniform(&[
                        q.c as u32, hw as u32, scale, 0, qs, qo, ks2, ko, vs, vo, ys, yo,
                    ]);
                    let all = [
                        &p,
                        buf(q.slot),
                        buf(kv.slot),
                        buf(v.slot),
                        &scratch,
                        buf(y.slot),
                    ];
                    let b1 = self.bind(&k.attn_scores, &all);
                    let b2 = self.bind(&k.attn_softmax, &all);
                    let b3 = self.bind(&k.attn_apply, &all);
                    ops.push(Dispatch {
                        kernel: |k| &k.attn_scores,
                        bind: b1,
                        groups: [ceil(hw, 64), ceil(hw, 4), n as u32],
                        label: "attention scores",
                        flops: 2 * (q.c * hw * hw) as u64,
                    });
                    ops.push(Dispatch {
                        kernel: |k| &k.attn_softmax,
                        bind: b2,
                        groups: [ceil(hw, 64), n as u32, 1],
                        label: "attention softmax",
                        flops: 0,
                    });
                    ops.push(Dispatch {
                        kernel: |k| &k.attn_apply,
                        bind: b3,
                        groups: [ceil(hw, 64), ceil(q.c, 4), n as u32],
                        label: "attention apply",
                        flops: 2 * (q.c * hw * hw) as u64,
                    });
                }
                Op::AvgPool { x, y } | Op::Upsample { x, y } => {
                    let (h, wd) = self.plan.slots[x.slot].hw();
                    let (xs, xo) = self.place(x);
                    let (ys, yo) = self.place(y);
                    let p = self.uniform(&[x.c as u32, h as u32, wd as u32, 0, xs, xo, ys, yo]);
                    let up = matches!(op, Op::Upsample { .. });
                    let kern = if up { &k.upsample } else { &k.avg_pool };
                    let bind = self.bind(kern, &[&p, buf(x.slot), buf(y.slot)]);
                    let out = self.plan.slots[y.slot].hw();
                    let items = y.c * out.0 * out.1;
                    if ceil(items, 64) > maxg {
                        return Err(Error::Backend(format!(
                            "resampling {items} elements is over the dispatch limit"
                        )));
                    }
                    let kernel: fn(&Kernels) -> &Kernel =
                        if up { |k| &k.upsample } else { |k| &k.avg_pool };
                    ops.push(Dispatch {
                        kernel,
                        bind,
                        groups: [ceil(items, 64), n as u32, 1],
                        label: if up { "upsample" } else { "avg pool" },
                        flops: 0,
                    });
                }
            }
        }
        for d in &ops {
            if d.groups.iter().any(|&g| g > maxg) {
                return Err(Error::Backend(format!(
                    "a dispatch of {:?} workgroups is over max_compute_workgroups_per_dimension ({maxg})",
                    d.groups
                )));
            }
        }
        let out = buf(self.plan.output);
        let step_bind = self.bind(&self.kernels.step, &[&cur, &latent, out, &x0]);
        let step_groups = grid(image.div_ceil(4) * n, maxg);
        self.gpu.check()?;
        let bytes =
            bufs.iter().map(|b| b.size()).sum::<u64>() + scratch.size() + latent.size() + x0.size();
        self.batch = Some(Batch {
            n,
            bufs,
            ops,
            latent,
            x0,
            cur,
            step_bind,
            step_groups,
            bytes,
        });
        Ok(())
    }

    fn encode_ops(&self, pass: &mut wgpu::ComputePass) {
        let b = self.batch.as_ref().expect("batch prepared");
        for d in &b.ops {
            pass.set_pipeline(&(d.kernel)(&self.kernels).pipeline);
            pass.set_bind_group(0, &d.bind, &[]);
            pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
        }
    }

    /// Run a plan on n images: `inputs` fill slots, `output` is read back.
    pub async fn execute(
        &mut self,
        n: usize,
        inputs: &[(usize, &[f32])],
        output: usize,
    ) -> Result<Vec<f32>> {
        self.flush()?;
        self.ensure(n)?;
        let b = self.batch.as_ref().expect("batch prepared");
        for (slot, data) in inputs {
            let want = self.plan.slots[*slot].len() * n;
            if data.len() != want {
                return Err(Error::Shape {
                    what: format!("input slot {slot}"),
                    expected: vec![want],
                    found: vec![data.len()],
                });
            }
            self.gpu
                .queue
                .write_buffer(&b.bufs[self.buf_of[*slot]], 0, bytemuck::cast_slice(data));
        }
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.encode_ops(&mut pass);
        }
        self.gpu.queue.submit([enc.finish()]);
        let len = self.plan.slots[output].len() * n;
        self.gpu
            .read(&b.bufs[self.buf_of[output]], (len * 4) as u64)
            .await
    }

    /// Submit the steps encoded so far.
    fn flush(&mut self) -> Result<()> {
        if let Some(t) = self.traj.as_mut() {
            if let Some(enc) = t.encoder.take() {
                self.gpu.queue.submit([enc.finish()]);
                t.pending = 0;
            }
        }
        self.gpu.check()
    }

    async fn read_image_buffer(&mut self, which: fn(&Batch) -> &wgpu::Buffer) -> Result<Tensor> {
        self.flush()?;
        let b = self
            .batch
            .as_ref()
            .ok_or_else(|| Error::Backend("no trajectory started".into()))?;
        let c = self.plan.config.in_channels;
        let r = self.plan.config.resolution;
        let data = self
            .gpu
            .read(which(b), (b.n * c * r * r * 4) as u64)
            .await?;
        Tensor::new(vec![b.n, c, r, r], data)
    }
}

impl GpuBackend {
    /// The current latent (awaitable: the browser's path).
    pub async fn read_latent(&mut self) -> Result<Tensor> {
        self.read_image_buffer(|b| &b.latent).await
    }

    /// The x0 predicted by the last step (awaitable).
    pub async fn read_x0(&mut self) -> Result<Tensor> {
        self.read_image_buffer(|b| &b.x0).await
    }

    /// Submit what is encoded and wait until the device has finished it (awaitable).
    pub async fn sync(&mut self) -> Result<()> {
        self.flush()?;
        let (tx, rx) = futures_channel::oneshot::channel();
        self.gpu.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.gpu.wait()?;
        rx.await
            .map_err(|_| Error::Backend("the device never finished (lost?)".into()))?;
        self.gpu.check()
    }

    /// The network output (awaitable).
    pub async fn forward_async(&mut self, x: &Tensor, t: &[f32]) -> Result<Tensor> {
        let (c, r) = (self.plan.config.in_channels, self.plan.config.resolution);
        let n = t.len();
        if x.shape != [n, c, r, r] {
            return Err(Error::Shape {
                what: "model input".into(),
                expected: vec![n, c, r, r],
                found: x.shape.clone(),
            });
        }
        let ch = self.plan.config.ch;
        let temb: Vec<f32> = t
            .iter()
            .flat_map(|&ti| timestep_embedding(ti, ch))
            .collect();
        let (inp, tslot, out) = (self.plan.input, self.plan.temb, self.plan.output);
        let y = self
            .execute(n, &[(inp, &x.data), (tslot, &temb)], out)
            .await?;
        Tensor::new(vec![n, self.plan.config.out_ch, r, r], y)
    }
}

/// Natively the trait's reads block on the device; in the browser use the async methods.
fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    return pollster::block_on(f);
    #[cfg(target_arch = "wasm32")]
    {
        drop(f);
        Err(Error::Backend(
            "blocking GPU reads are not possible in the browser".into(),
        ))
    }
}

impl Backend for GpuBackend {
    fn describe(&self) -> String {
        let half = if self.kernels.half_weights {
            ", f16 conv weights"
        } else {
            ""
        };
        format!("gpu: {}{half}", describe(&self.gpu.info))
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn forward(&mut self, x: &Tensor, t: &[f32]) -> Result<Tensor> {
        block_on(self.forward_async(x, t))
    }

    fn start(&mut self, x: &Tensor, table: &[StepCoeffs], noise: NoiseKey) -> Result<()> {
        let (c, r) = (self.plan.config.in_channels, self.plan.config.resolution);
        let n = x.shape.first().copied().unwrap_or(0);
        if x.shape != [n, c, r, r] || n == 0 {
            return Err(Error::Shape {
                what: "initial latent".into(),
                expected: vec![n.max(1), c, r, r],
                found: x.shape.clone(),
            });
        }
        if self.plan.config.out_ch != c {
            return Err(Error::invalid(
                "model",
                format!(
                    "out_ch {} differs from in_channels {c}",
                    self.plan.config.out_ch
                ),
            ));
        }
        self.flush()?;
        self.traj = None;
        self.ensure(n)?;
        let b = self.batch.as_ref().expect("batch prepared");
        self.gpu
            .queue
            .write_buffer(&b.latent, 0, bytemuck::cast_slice(&x.data));
        let per = c * r * r;
        let rows: Vec<StepUniform> = table
            .iter()
            .enumerate()
            .map(|(k, &c)| StepUniform {
                c,
                stream: crate::rng::stream_step(k),
                seed_lo: noise.seed as u32,
                seed_hi: (noise.seed >> 32) as u32,
                first_sample: noise.first_sample as u32,
                per_sample: per as u32,
                total: (per * n) as u32,
                row: b.step_groups[0] * 64,
                pad: 0,
            })
            .collect();
        let ch = self.plan.config.ch;
        let temb: Vec<f32> = table
            .iter()
            .flat_map(|c| timestep_embedding(c.t, ch))
            .collect();
        let d = &self.gpu.device;
        let src = wgpu::BufferUsages::COPY_SRC;
        let steps = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("step table"),
            contents: bytemuck::cast_slice(&rows),
            usage: src,
        });
        let temb = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("temb table"),
            contents: bytemuck::cast_slice(&temb),
            usage: src,
        });
        let bytes = steps.size() + temb.size();
        self.traj = Some(Trajectory {
            steps,
            temb,
            len: table.len(),
            encoder: None,
            pending: 0,
            bytes,
        });
        self.gpu.check()
    }

    fn step(&mut self, k: usize) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        let started = std::time::Instant::now();
        let t = self
            .traj
            .as_ref()
            .ok_or_else(|| Error::Backend("no trajectory started".into()))?;
        if k >= t.len {
            return Err(Error::Backend(format!(
                "step {k} is past the table ({} steps)",
                t.len
            )));
        }
        let b = self
            .batch
            .as_ref()
            .ok_or_else(|| Error::Backend("no trajectory started".into()))?;
        let mut enc = match self.traj.as_mut().and_then(|t| t.encoder.take()) {
            Some(e) => e,
            None => self.gpu.device.create_command_encoder(&Default::default()),
        };
        let t = self.traj.as_ref().expect("trajectory");
        let su = std::mem::size_of::<StepUniform>() as u64;
        enc.copy_buffer_to_buffer(&t.steps, k as u64 * su, &b.cur, 0, su);
        let ch = self.plan.config.ch as u64;
        let tb = &b.bufs[self.buf_of[self.plan.temb]];
        for i in 0..b.n as u64 {
            enc.copy_buffer_to_buffer(&t.temb, k as u64 * ch * 4, tb, i * ch * 4, ch * 4);
        }
        let image = (self.plan.slots[self.plan.input].len() * b.n * 4) as u64;
        enc.copy_buffer_to_buffer(
            &b.latent,
            0,
            &b.bufs[self.buf_of[self.plan.input]],
            0,
            image,
        );
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.encode_ops(&mut pass);
            pass.set_pipeline(&self.kernels.step.pipeline);
            pass.set_bind_group(0, &b.step_bind, &[]);
            pass.dispatch_workgroups(b.step_groups[0], b.step_groups[1], 1);
        }
        let t = self.traj.as_mut().expect("trajectory");
        t.pending += 1;
        if t.pending >= STEPS_PER_SUBMIT {
            let cb = enc.finish();
            self.gpu.queue.submit([cb]);
            t.pending = 0;
            #[cfg(not(target_arch = "wasm32"))]
            {
                self.host_time += started.elapsed();
            }
            // Keep at most one group in flight, so the host never races far ahead.
            self.gpu.wait()?;
        } else {
            t.encoder = Some(enc);
            #[cfg(not(target_arch = "wasm32"))]
            {
                self.host_time += started.elapsed();
            }
        }
        Ok(())
    }

    fn latent(&mut self) -> Result<Tensor> {
        block_on(self.read_latent())
    }

    fn x0(&mut self) -> Result<Tensor> {
        block_on(self.read_x0())
    }
}
