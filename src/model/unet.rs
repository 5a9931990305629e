//! The DDPM UNet of ermongroup/ddim as a static plan: a list of ops over tensor slots, built
//! once per config. Every backend executes the same plan, so the network's wiring lives here
//! and only here. Parameter names are the official state-dict names.
//!
//! Concatenation costs nothing: each up-block input is one slot, and the op that produces h
//! writes its first channels while the down-path op that produces the skip writes the rest.

use super::config::ModelConfig;
use super::plan::{Op, Param, Plan, Resample, Slot, View};

struct Builder {
    params: Vec<Param>,
    slots: Vec<Slot>,
    ops: Vec<Op>,
    tact: usize,
}

impl Builder {
    fn param(&mut self, name: String, shape: Vec<usize>) -> usize {
        self.params.push(Param { name, shape });
        self.params.len() - 1
    }

    fn map(&mut self, c: usize, h: usize) -> View {
        self.slots.push(Slot::Map { c, h, w: h });
        View {
            slot: self.slots.len() - 1,
            c_off: 0,
            c,
        }
    }

    fn vector(&mut self, len: usize) -> usize {
        self.slots.push(Slot::Vector { len });
        self.slots.len() - 1
    }

    fn res(&self, v: View) -> usize {
        self.slots[v.slot].hw().0
    }

    fn norm(&mut self, name: &str, x: View, swish: bool) -> View {
        let y = self.map(x.c, self.res(x));
        let gamma = self.param(format!("{name}.weight"), vec![x.c]);
        let beta = self.param(format!("{name}.bias"), vec![x.c]);
        self.ops.push(Op::GroupNorm {
            x,
            y,
            gamma,
            beta,
            swish,
        });
        y
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        x: View,
        y: View,
        k: usize,
        resample: Resample,
        temb: Option<usize>,
        residual: Option<View>,
    ) {
        let w = self.param(format!("{name}.weight"), vec![y.c, x.c, k, k]);
        let b = self.param(format!("{name}.bias"), vec![y.c]);
        self.ops.push(Op::Conv {
            x,
            y,
            w,
            b,
            k,
            resample,
            temb,
            residual,
        });
    }

    fn linear(&mut self, name: &str, x: usize, n_in: usize, n_out: usize, swish: bool) -> usize {
        let y = self.vector(n_out);
        let w = self.param(format!("{name}.weight"), vec![n_out, n_in]);
        let b = self.param(format!("{name}.bias"), vec![n_out]);
        self.ops.push(Op::Linear { x, y, w, b, swish });
        y
    }

    fn resblock(&mut self, name: &str, x: View, out: View) {
        let (cin, cout, r) = (x.c, out.c, self.res(x));
        let n1 = self.norm(&format!("{name}.norm1"), x, true);
        let tp = self.linear(
            &format!("{name}.temb_proj"),
            self.tact,
            self.slots[self.tact].len(),
            cout,
            false,
        );
        let h = self.map(cout, r);
        self.conv(
            &format!("{name}.conv1"),
            n1,
            h,
            3,
            Resample::None,
            Some(tp),
            None,
        );
        let n2 = self.norm(&format!("{name}.norm2"), h, true);
        let short = if cin != cout {
            let s = self.map(cout, r);
            self.conv(
                &format!("{name}.nin_shortcut"),
                x,
                s,
                1,
                Resample::None,
                None,
                None,
            );
            s
        } else {
            x
        };
        self.conv(
            &format!("{name}.conv2"),
            n2,
            out,
            3,
            Resample::None,
            None,
            Some(short),
        );
    }

    fn attn(&mut self, name: &str, x: View, out: View) {
        let (c, r) = (x.c, self.res(x));
        let n = self.norm(&format!("{name}.norm"), x, false);
        let mut qkv = [n; 3];
        for (i, p) in ["q", "k", "v"].iter().enumerate() {
            qkv[i] = self.map(c, r);
            self.conv(
                &format!("{name}.{p}"),
                n,
                qkv[i],
                1,
                Resample::None,
                None,
                None,
            );
        }
        let a = self.map(c, r);
        self.ops.push(Op::Attention {
            q: qkv[0],
            k: qkv[1],
            v: qkv[2],
            y: a,
        });
        self.conv(
            &format!("{name}.proj_out"),
            a,
            out,
            1,
            Resample::None,
            None,
            Some(x),
        );
    }

    /// A res block, followed by attention when the level has it, writing into `out`.
    fn block(&mut self, name: &str, attn: Option<String>, x: View, out: View) {
        match attn {
            Some(a) => {
                let t = self.map(out.c, self.res(x));
                self.resblock(name, x, t);
                self.attn(&a, t, out);
            }
            None => self.resblock(name, x, out),
        }
    }
}

impl Plan {
    /// Lay out the whole network for a (validated) config.
    pub fn new(cfg: &ModelConfig) -> Plan {
        let levels = cfg.ch_mult.len();
        let ch = cfg.ch;
        let res = cfg.resolutions();
        let has_attn = |r: usize| cfg.attn_resolutions.contains(&r);
        let mut b = Builder {
            params: Vec::new(),
            slots: Vec::new(),
            ops: Vec::new(),
            tact: 0,
        };
        let input = b.map(cfg.in_channels, cfg.resolution).slot;
        let temb = b.vector(ch);
        let t0 = b.linear("temb.dense.0", temb, ch, 4 * ch, true);
        // Every block applies swish to temb before its temb_proj, so do it once here.
        b.tact = b.linear("temb.dense.1", t0, 4 * ch, 4 * ch, true);

        // Simulate the skip stack to size each up-block input: [h | skip].
        let mut skips: Vec<(usize, usize)> = vec![(ch, res[0])];
        for i in 0..levels {
            for _ in 0..cfg.num_res_blocks {
                skips.push((ch * cfg.ch_mult[i], res[i]));
            }
            if i + 1 != levels {
                skips.push((ch * cfg.ch_mult[i], res[i + 1]));
            }
        }
        let mut h_ch = vec![0; skips.len()];
        let mut hc = ch * cfg.ch_mult[levels - 1];
        let mut k = skips.len();
        for i in (0..levels).rev() {
            for _ in 0..=cfg.num_res_blocks {
                k -= 1;
                h_ch[k] = hc;
                hc = ch * cfg.ch_mult[i];
            }
        }
        let cats: Vec<View> = skips
            .iter()
            .zip(&h_ch)
            .map(|(&(sc, r), &hc)| b.map(hc + sc, r))
            .collect();
        let skip_view = |k: usize| View {
            slot: cats[k].slot,
            c_off: h_ch[k],
            c: skips[k].0,
        };
        let h_view = |k: usize| View {
            slot: cats[k].slot,
            c_off: 0,
            c: h_ch[k],
        };

        // Down path: each output lands in the skip half of its up-block input.
        let x = View {
            slot: input,
            c_off: 0,
            c: cfg.in_channels,
        };
        b.conv("conv_in", x, skip_view(0), 3, Resample::None, None, None);
        let mut h = skip_view(0);
        let mut k = 1;
        for (i, &r) in res.iter().enumerate() {
            for j in 0..cfg.num_res_blocks {
                let a = has_attn(r).then(|| format!("down.{i}.attn.{j}"));
                b.block(&format!("down.{i}.block.{j}"), a, h, skip_view(k));
                h = skip_view(k);
                k += 1;
            }
            if i + 1 != levels {
                let out = skip_view(k);
                if cfg.resamp_with_conv {
                    let name = format!("down.{i}.downsample.conv");
                    b.conv(&name, h, out, 3, Resample::Down, None, None);
                } else {
                    b.ops.push(Op::AvgPool { x: h, y: out });
                }
                h = out;
                k += 1;
            }
        }

        // Middle.
        let mc = h.c;
        let r = res[levels - 1];
        let m1 = b.map(mc, r);
        b.resblock("mid.block_1", h, m1);
        let m2 = b.map(mc, r);
        b.attn("mid.attn_1", m1, m2);
        let mut k = skips.len() - 1;
        b.resblock("mid.block_2", m2, h_view(k));

        // Up path: up.{levels-1} first; up.0 is the highest resolution.
        let mut last = h;
        for i in (0..levels).rev() {
            let co = ch * cfg.ch_mult[i];
            for j in 0..=cfg.num_res_blocks {
                let x = cats[k];
                let a = has_attn(res[i]).then(|| format!("up.{i}.attn.{j}"));
                let name = format!("up.{i}.block.{j}");
                if j < cfg.num_res_blocks {
                    b.block(&name, a, x, h_view(k - 1));
                } else {
                    let t = b.map(co, res[i]);
                    b.block(&name, a, x, t);
                    if i == 0 {
                        last = t;
                    } else if cfg.resamp_with_conv {
                        let name = format!("up.{i}.upsample.conv");
                        b.conv(&name, t, h_view(k - 1), 3, Resample::Up, None, None);
                    } else {
                        b.ops.push(Op::Upsample {
                            x: t,
                            y: h_view(k - 1),
                        });
                    }
                }
                k = k.saturating_sub(1);
            }
        }

        let n = b.norm("norm_out", last, true);
        let out = b.map(cfg.out_ch, cfg.resolution);
        b.conv("conv_out", n, out, 3, Resample::None, None, None);
        Plan {
            config: cfg.clone(),
            params: b.params,
            slots: b.slots,
            ops: b.ops,
            input,
            temb,
            output: out.slot,
        }
    }
}

/// The sinusoidal timestep embedding, computed on the host in f64 (WGSL sin/cos lose
/// precision near t = 999 rad): half = ch/2, f_k = exp(−ln(10000)·k/(half−1)),
/// output [sin(t·f), cos(t·f)], zero-padded when ch is odd.
pub fn timestep_embedding(t: f32, ch: usize) -> Vec<f32> {
    let half = ch / 2;
    let mut out = vec![0.0f32; ch];
    for k in 0..half {
        // The reference builds the exponent and the product in f32; mirror its roundings.
        let c = (-(10000f64.ln()) / (half as f64 - 1.0)) as f32;
        let f = ((k as f32 * c) as f64).exp() as f32;
        let a = (t * f) as f64;
        out[k] = a.sin() as f32;
        out[half + k] = a.cos() as f32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cifar() -> ModelConfig {
        ModelConfig {
            ch: 128,
            out_ch: 3,
            ch_mult: vec![1, 2, 2, 2],
            num_res_blocks: 2,
            attn_resolutions: vec![16],
            in_channels: 3,
            resolution: 32,
            resamp_with_conv: true,
        }
    }

    #[test]
    fn cifar10_has_the_published_parameter_count() {
        let p = Plan::new(&cifar());
        assert_eq!(p.param_count(), 35_746_307);
        let names: Vec<&str> = p.params.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"up.1.block.2.nin_shortcut.weight"));
        assert!(names.contains(&"up.0.block.0.conv1.weight"));
        assert!(!names.contains(&"up.0.upsample.conv.weight"));
        let sc = p
            .params
            .iter()
            .find(|p| p.name == "up.0.block.0.nin_shortcut.weight");
        assert_eq!(sc.unwrap().shape, vec![128, 384, 1, 1]);
    }

    #[test]
    fn buffers_never_alias_live_slots() {
        let p = Plan::new(&cifar());
        let (buf, _) = p.assign_buffers();
        let last = p.last_use();
        for (i, op) in p.ops.iter().enumerate() {
            for r in op.reads() {
                for w in op.writes() {
                    assert!(r == w || buf[r] != buf[w], "op {i} aliases");
                }
            }
        }
        assert!(last[p.output] == p.ops.len());
    }
}
