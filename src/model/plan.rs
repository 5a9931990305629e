//! The plan's vocabulary: slots (per-image tensors), views (channel ranges of a slot), ops
//! and the plan itself, with what every backend needs to know about it (liveness, buffer
//! assignment, work, and names for profiles). `unet.rs` builds the plan of the DDPM UNet.

use super::config::ModelConfig;

/// A per-image slot: an activation map (c, h, w) or a vector (len).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Map { c: usize, h: usize, w: usize },
    Vector { len: usize },
}

impl Slot {
    pub fn len(&self) -> usize {
        match *self {
            Slot::Map { c, h, w } => c * h * w,
            Slot::Vector { len } => len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn hw(&self) -> (usize, usize) {
        match *self {
            Slot::Map { h, w, .. } => (h, w),
            Slot::Vector { .. } => (1, 1),
        }
    }
}

/// Channels `c_off..c_off + c` of a map slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub slot: usize,
    pub c_off: usize,
    pub c: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resample {
    /// Same size (3×3 pad 1, or 1×1).
    None,
    /// Pad right and bottom by one, then stride 2 (the official Downsample).
    Down,
    /// Nearest ×2 on the input, fused into the conv (the official Upsample).
    Up,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// y = act(W·x + b) on vector slots (the temb MLP and each block's temb_proj).
    Linear {
        x: usize,
        y: usize,
        w: usize,
        b: usize,
        swish: bool,
    },
    /// GroupNorm(32, eps 1e-6), optionally followed by swish.
    GroupNorm {
        x: View,
        y: View,
        gamma: usize,
        beta: usize,
        swish: bool,
    },
    /// Convolution with bias; adds a per-channel vector (temb) and a residual when given.
    Conv {
        x: View,
        y: View,
        w: usize,
        b: usize,
        k: usize,
        resample: Resample,
        temb: Option<usize>,
        residual: Option<View>,
    },
    /// Single-head attention: y[:, i] = Σ_j v[:, j]·softmax_j(q[:, i]·k[:, j]/√C).
    Attention { q: View, k: View, v: View, y: View },
    /// 2×2 average pool (Downsample without conv).
    AvgPool { x: View, y: View },
    /// Nearest ×2 (Upsample without conv).
    Upsample { x: View, y: View },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub config: ModelConfig,
    pub params: Vec<Param>,
    pub slots: Vec<Slot>,
    pub ops: Vec<Op>,
    /// The image x_t.
    pub input: usize,
    /// The sinusoidal timestep embedding, filled by the host.
    pub temb: usize,
    pub output: usize,
}

impl Plan {
    pub fn param_count(&self) -> usize {
        self.params
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum()
    }

    /// Multiply-accumulates per image for one forward pass (convs, linears, attention).
    pub fn macs_per_image(&self) -> u64 {
        self.ops.iter().map(|op| self.macs(op)).sum()
    }

    /// Multiply-accumulates of one op per image.
    pub fn macs(&self, op: &Op) -> u64 {
        match *op {
            Op::Conv { x, y, k, .. } => {
                let (h, w) = self.slots[y.slot].hw();
                (y.c * x.c * k * k * h * w) as u64
            }
            Op::Linear { x, y, .. } => (self.slots[x].len() * self.slots[y].len()) as u64,
            Op::Attention { q, .. } => {
                let (h, w) = self.slots[q.slot].hw();
                2 * (q.c * h * w * h * w) as u64
            }
            _ => 0,
        }
    }

    /// For each slot, the index of the last op that reads it (inputs live to the end).
    pub fn last_use(&self) -> Vec<usize> {
        let mut last = vec![0; self.slots.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for s in op.reads() {
                last[s] = i;
            }
        }
        last[self.output] = self.ops.len();
        last
    }

    /// Pack slots into reusable buffers by liveness (best fit). Returns the buffer of each
    /// slot and each buffer's per-image length.
    pub fn assign_buffers(&self) -> (Vec<usize>, Vec<usize>) {
        let last = self.last_use();
        let mut first = vec![usize::MAX; self.slots.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for s in op.writes() {
                first[s] = first[s].min(i);
            }
        }
        // Slots no op writes (the image, the timestep embedding) are filled before op 0.
        for f in first.iter_mut().filter(|f| **f == usize::MAX) {
            *f = 0;
        }
        let mut order: Vec<usize> = (0..self.slots.len()).collect();
        order.sort_by_key(|&s| first[s]);
        let mut buf_of = vec![usize::MAX; self.slots.len()];
        let mut sizes: Vec<usize> = Vec::new();
        let mut busy_until: Vec<usize> = Vec::new();
        for s in order {
            let need = self.slots[s].len();
            // A buffer is free when its last reader ran before this slot's first writer.
            let pick = (0..sizes.len())
                .filter(|&b| busy_until[b] < first[s] && sizes[b] >= need)
                .min_by_key(|&b| sizes[b]);
            let b = pick.unwrap_or_else(|| {
                sizes.push(need);
                busy_until.push(0);
                sizes.len() - 1
            });
            buf_of[s] = b;
            busy_until[b] = last[s].max(first[s]);
        }
        (buf_of, sizes)
    }
}

impl Op {
    pub fn reads(&self) -> Vec<usize> {
        match *self {
            Op::Linear { x, .. } => vec![x],
            Op::GroupNorm { x, .. } | Op::AvgPool { x, .. } | Op::Upsample { x, .. } => {
                vec![x.slot]
            }
            Op::Conv {
                x, temb, residual, ..
            } => {
                let mut v = vec![x.slot];
                v.extend(temb);
                v.extend(residual.map(|r| r.slot));
                v
            }
            Op::Attention { q, k, v, .. } => vec![q.slot, k.slot, v.slot],
        }
    }

    pub fn writes(&self) -> Vec<usize> {
        match *self {
            Op::Linear { y, .. } => vec![y],
            Op::GroupNorm { y, .. }
            | Op::AvgPool { y, .. }
            | Op::Upsample { y, .. }
            | Op::Conv { y, .. }
            | Op::Attention { y, .. } => vec![y.slot],
        }
    }
}

impl Op {
    /// The kernel family, as the profiles name it ("conv 3x3", "group norm", ...).
    pub fn family(&self) -> &'static str {
        match *self {
            Op::Conv { k: 1, .. } => "conv 1x1",
            Op::Conv {
                resample: Resample::Down,
                ..
            } => "conv 3x3 stride 2",
            Op::Conv {
                resample: Resample::Up,
                ..
            } => "conv 3x3 upsample",
            Op::Conv { .. } => "conv 3x3",
            Op::GroupNorm { .. } => "group norm",
            Op::Linear { .. } => "linear",
            Op::Attention { .. } => "attention",
            Op::AvgPool { .. } => "avg pool",
            Op::Upsample { .. } => "upsample",
        }
    }
}

impl Plan {
    /// The layer an op belongs to, named by its first parameter ("down.0.block.0.conv1");
    /// attention by the block of its q conv ("mid.attn_1"), and resampling without a conv
    /// by its output slot.
    pub fn layer_name(&self, op: &Op) -> String {
        let p = match *op {
            Op::Conv { w, .. } | Op::Linear { w, .. } => Some(w),
            Op::GroupNorm { gamma, .. } => Some(gamma),
            _ => None,
        };
        if let Some(p) = p.and_then(|i| self.params.get(i)) {
            return p.name.trim_end_matches(".weight").to_string();
        }
        if let Op::Attention { q, .. } = op {
            if let Some(w) = self.ops.iter().find(|o| o.writes() == [q.slot]) {
                let q_conv = self.layer_name(w);
                if let Some((block, _)) = q_conv.rsplit_once('.') {
                    return block.to_string();
                }
            }
        }
        format!("slot {}", op.writes()[0])
    }
}
