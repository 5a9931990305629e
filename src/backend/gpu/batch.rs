//! Compiling and binding one batch size: its buffers, each convolution's kernel (forced,
//! cached, tuned now or the default) and every dispatch, built once and reused by every
//! forward pass and sampling step at that size.

use super::encode;
use super::ops::conv::{self, ConvShape, ConvVariant};
use super::ops::{self, Ctx, Dispatch};
use super::tune::{self, Tune};
use super::{device::is_software, GpuBackend};
use crate::error::{Error, Result};
use crate::model::Op;
use std::collections::HashMap;

/// The kernel of one convolution shape, and how it was chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub shape: ConvShape,
    pub variant: ConvVariant,
    /// "tuned", "cached", "default" or "forced".
    pub how: &'static str,
    /// The tuned variant's time, when it was measured now.
    pub ms: Option<f64>,
}

/// Everything that depends on the batch size: compiled and bound once.
pub(super) struct Batch {
    pub(super) n: usize,
    pub(super) bufs: Vec<wgpu::Buffer>,
    pub(super) latent: wgpu::Buffer,
    pub(super) x0: wgpu::Buffer,
    /// The step's uniform, copied from the trajectory's table each step.
    pub(super) cur: wgpu::Buffer,
    pub(super) ops: Vec<Dispatch>,
    pub(super) step: Dispatch,
    pub(super) choices: Vec<Choice>,
    /// Bytes of device memory this batch holds.
    pub(super) bytes: u64,
}

impl GpuBackend {
    fn activation(&self, label: &str, elems: usize) -> wgpu::Buffer {
        self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (elems.max(4) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// Compile and bind batch size n: buffers, each convolution's kernel, every dispatch.
    /// The browser must await this before `start`; natively `start` calls it itself.
    pub async fn prepare(&mut self, n: usize) -> Result<()> {
        if self.batch.as_ref().is_some_and(|b| b.n == n) {
            return Ok(());
        }
        if n == 0 || n > self.max_batch {
            return Err(Error::Backend(format!(
                "batch {n} is outside this device's range of 1 to {}",
                self.max_batch
            )));
        }
        self.batch = None;
        // The trajectory's latent lived in the old batch.
        self.traj = None;
        let bufs: Vec<wgpu::Buffer> = self
            .buf_len
            .iter()
            .map(|&l| self.activation("activation", l * n))
            .collect();
        let scores = self.activation("attention scores", self.attn_len * n);
        let image = self.plan.slots[self.plan.input].len();
        let latent = self.activation("latent", image * n);
        let x0 = self.activation("x0", image * n);
        let cur = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step uniform"),
            size: std::mem::size_of::<ops::step::StepParams>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let (choices, conv_of) = self.choose(n, &bufs, &scores).await?;
        let part_len = choices
            .iter()
            .map(|c| conv::part_bytes(&c.shape, c.variant))
            .max()
            .unwrap_or(0);
        let part = self.activation("split-K parts", part_len as usize / 4);
        let ctx = Ctx {
            gpu: &self.gpu,
            half: self.half,
            plan: &self.plan,
            weights: &self.weights,
            bufs: &bufs,
            buf_of: &self.buf_of,
            dummy: &self.dummy,
            scores: &scores,
            part: &part,
            n,
        };
        let mut dispatches = Vec::new();
        for (op, v) in self.plan.ops.iter().zip(&conv_of) {
            dispatches.extend(ops::build(&ctx, op, *v).await?);
        }
        let step = ops::step::dispatch(&ctx, &cur, &latent, &x0).await?;
        self.gpu.check()?;
        let bytes = [&scores, &latent, &x0, &part]
            .into_iter()
            .chain(&bufs)
            .map(|b| b.size())
            .sum();
        self.batch = Some(Batch {
            n,
            bufs,
            latent,
            x0,
            cur,
            ops: dispatches,
            step,
            choices,
            bytes,
        });
        Ok(())
    }

    /// Each convolution's kernel at batch n: forced, cached, tuned now or the default.
    async fn choose(
        &mut self,
        n: usize,
        bufs: &[wgpu::Buffer],
        scores: &wgpu::Buffer,
    ) -> Result<(Vec<Choice>, Vec<Option<ConvVariant>>)> {
        let software = is_software(&self.gpu.info);
        let precision = format!(
            "{}{}",
            self.arith.name(),
            if self.half { ", f16 weights" } else { "" }
        );
        let mut choices: Vec<Choice> = Vec::new();
        let mut by_shape: HashMap<ConvShape, ConvVariant> = HashMap::new();
        let mut conv_of = vec![None; self.plan.ops.len()];
        let plan_ops = self.plan.ops.clone();
        for (i, op) in plan_ops.iter().enumerate() {
            let Some(shape) = ConvShape::of(&self.plan, op, n) else {
                continue;
            };
            if let Some(v) = by_shape.get(&shape) {
                conv_of[i] = Some(*v);
                continue;
            }
            let offered = conv::variants(&shape, &self.gpu.limits, self.arith, self.subgroup);
            // A forced variant runs where it can; other layers keep the usual choice.
            let (variant, how, ms) = match self.forced.filter(|v| offered.contains(v)) {
                Some(v) => (v, "forced", None),
                None if self.tuner.mode == Tune::Off => (
                    conv::default_variant(
                        &shape,
                        &self.gpu.limits,
                        software,
                        self.arith,
                        self.subgroup,
                    ),
                    "default",
                    None,
                ),
                None => {
                    let key = tune::entry_key(&self.gpu.info, &shape, &precision);
                    match self.tuner.lookup(&key, &offered) {
                        Some(v) => (v, "cached", None),
                        None => {
                            let (v, ms) = self.measure(op, n, &offered, bufs, scores).await?;
                            self.tuner.store(key, v);
                            (v, "tuned", Some(ms))
                        }
                    }
                }
            };
            by_shape.insert(shape, variant);
            conv_of[i] = Some(variant);
            choices.push(Choice {
                shape,
                variant,
                how,
                ms,
            });
        }
        Ok((choices, conv_of))
    }

    /// Time every offered variant of one convolution on the real buffers; the fastest wins.
    /// A variant the driver refuses to build is skipped with a warning.
    async fn measure(
        &mut self,
        op: &Op,
        n: usize,
        offered: &[ConvVariant],
        bufs: &[wgpu::Buffer],
        scores: &wgpu::Buffer,
    ) -> Result<(ConvVariant, f64)> {
        let shape = ConvShape::of(&self.plan, op, n).expect("a convolution");
        let layer = self.plan.layer_name(op);
        let mut built = Vec::new();
        for &v in offered {
            let part = self.activation("split-K parts", conv::part_bytes(&shape, v) as usize / 4);
            let ctx = Ctx {
                gpu: &self.gpu,
                half: self.half,
                plan: &self.plan,
                weights: &self.weights,
                bufs,
                buf_of: &self.buf_of,
                dummy: &self.dummy,
                scores,
                part: &part,
                n,
            };
            match conv::dispatches(&ctx, op, v, layer.clone()).await {
                Ok(d) => built.push((v, d)),
                Err(e) => self
                    .tuner
                    .warnings
                    .push(format!("tuner: {} skipped: {e}", v.name())),
            }
        }
        let groups: Vec<&[Dispatch]> = built.iter().map(|(_, d)| d.as_slice()).collect();
        let (warm, runs) = self.tuner.mode.runs();
        let times = encode::time(&self.gpu, &groups, warm, runs).await?;
        self.gpu.check()?;
        self.tuner.timed += built.len();
        built
            .iter()
            .zip(times)
            .map(|((v, _), t)| (*v, t))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .ok_or_else(|| Error::Backend(format!("no kernel can run layer {}", shape.key())))
    }
}
