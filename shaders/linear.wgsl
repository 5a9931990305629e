// A dense layer for the timestep MLP, y = act(W·x + b): the twin of backend/cpu/linear.rs.

struct Linear { n_in: u32, n_out: u32, act: u32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Linear;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o = gid.x;
    let img = gid.y;
    if (o >= p.n_out) {
        return;
    }
    var s = bias[o];
    for (var i = 0u; i < p.n_in; i++) {
        s += wt[o * p.n_in + i] * x[img * p.n_in + i];
    }
    if (p.act != 0u) {
        s = s / (1.0 + exp(-s));
    }
    y[img * p.n_out + o] = s;
}
