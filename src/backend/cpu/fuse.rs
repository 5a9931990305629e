//! GroupNorm folded into the convolution that reads it. In every ResNet block a norm (with
//! swish) feeds a 3×3 conv and nothing else; the direct kernel copies its input into a padded
//! buffer anyway, so it can normalise while it copies, and the norm's own pass over memory
//! (a read and a write of the whole activation) goes away.

use crate::model::{Op, Plan, Slot};

/// The affine and activation of a folded GroupNorm (parameter indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Norm {
    pub gamma: usize,
    pub beta: usize,
    pub swish: bool,
}

/// The plan with every GroupNorm whose only reader is a convolution that `direct` accepts
/// folded into it (the conv then reads the norm's input), and for each op of the new plan
/// the norm it applies. Buffers assigned on the new plan keep the norm's input alive until
/// the conv has read it.
pub fn fold(plan: &Plan, direct: &impl Fn(&Op) -> bool) -> (Plan, Vec<Option<Norm>>) {
    let n = plan.ops.len();
    let mut into = vec![None; n];
    for (i, op) in plan.ops.iter().enumerate() {
        let Op::GroupNorm { x, y, .. } = *op else {
            continue;
        };
        let whole = matches!(plan.slots[y.slot], Slot::Map { c, .. } if c == y.c) && y.c_off == 0;
        let readers: Vec<usize> = (0..n)
            .filter(|&j| plan.ops[j].reads().contains(&y.slot))
            .collect();
        if let [j] = readers[..] {
            if let Op::Conv {
                x: cx,
                residual,
                temb,
                ..
            } = plan.ops[j]
            {
                let only_x = residual.is_none_or(|r| r.slot != y.slot) && temb != Some(y.slot);
                let same = cx.slot == y.slot && cx.c_off == 0 && cx.c == y.c && x.c == y.c;
                if whole && only_x && same && y.slot != plan.output && direct(&plan.ops[j]) {
                    into[i] = Some(j);
                }
            }
        }
    }
    let mut ops = Vec::with_capacity(n);
    let mut norms = Vec::with_capacity(n);
    let mut from = vec![None; n];
    for (i, j) in into.iter().enumerate() {
        if let Some(j) = *j {
            from[j] = Some(i);
        }
    }
    for (j, op) in plan.ops.iter().enumerate() {
        if into[j].is_some() {
            continue;
        }
        match (from[j].map(|i| &plan.ops[i]), op) {
            (
                Some(&Op::GroupNorm {
                    x,
                    gamma,
                    beta,
                    swish,
                    ..
                }),
                Op::Conv { .. },
            ) => {
                let mut conv = op.clone();
                if let Op::Conv { x: cx, .. } = &mut conv {
                    *cx = x;
                }
                ops.push(conv);
                norms.push(Some(Norm { gamma, beta, swish }));
            }
            _ => {
                ops.push(op.clone());
                norms.push(None);
            }
        }
    }
    (
        Plan {
            ops,
            ..plan.clone()
        },
        norms,
    )
}
