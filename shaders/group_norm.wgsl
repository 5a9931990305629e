// GroupNorm(32 groups, eps 1e-6) with its affine, optionally followed by swish: the twin of
// backend/cpu/group_norm.rs. One workgroup per (group, image); mean, then the mean squared
// deviation, each reduced through workgroup memory.

struct Norm {
    c: u32, hw: u32, x_stride: u32, x_off: u32,
    y_stride: u32, y_off: u32, act: u32, pad: u32,
}

@group(0) @binding(0) var<uniform> p: Norm;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// A power of two, set by the host (ops/tiles.rs).
override WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

fn group_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let g = wid.x;
    let img = wid.y;
    let cg = p.c / 32u;
    let count = cg * p.hw;
    let xb = img * p.x_stride + p.x_off + g * count;
    let yb = img * p.y_stride + p.y_off + g * count;
    var s = 0.0;
    for (var i = lid; i < count; i += WG) {
        s += x[xb + i];
    }
    let mean = group_sum(s, lid) / f32(count);
    var q = 0.0;
    for (var i = lid; i < count; i += WG) {
        let d = x[xb + i] - mean;
        q += d * d;
    }
    let inv = inverseSqrt(group_sum(q, lid) / f32(count) + 1e-6);
    for (var i = lid; i < count; i += WG) {
        let ch = g * cg + i / p.hw;
        var v = (x[xb + i] - mean) * (inv * gamma[ch]) + beta[ch];
        if (p.act != 0u) {
            v = v / (1.0 + exp(-v));
        }
        y[yb + i] = v;
    }
}
