//! A dense layer for the timestep MLP: y = act(W·x + b), W is [out, in].

use super::group_norm::swish;

pub fn linear(x: &[f32], w: &[f32], b: &[f32], act: bool, y: &mut [f32]) {
    let n_in = x.len();
    for (o, out) in y.iter_mut().enumerate() {
        let row = &w[o * n_in..(o + 1) * n_in];
        let s = b[o] + row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
        *out = if act { swish(s) } else { s };
    }
}
