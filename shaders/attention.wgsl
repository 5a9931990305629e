// Single-head spatial attention, the twin of backend/cpu/attention.rs, in three passes over
// a scratch matrix w [hw, hw] per image:
//   scores:  w[i, j] = Σ_c q[c, i]·k[c, j] · c^−½
//   softmax: each row of w, over the keys j
//   apply:   y[c, i] = Σ_j v[c, j]·w[i, j]

struct Attn {
    c: u32, hw: u32, scale: f32, pad: u32,
    q_stride: u32, q_off: u32, k_stride: u32, k_off: u32,
    v_stride: u32, v_off: u32, y_stride: u32, y_off: u32,
}

@group(0) @binding(0) var<uniform> p: Attn;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> w: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// One invocation per (query i, 4 keys j).
@compute @workgroup_size(16, 4, 1)
fn scores(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j0 = gid.x * 4u;
    let i = gid.y;
    let img = gid.z;
    if (j0 >= p.hw || i >= p.hw) {
        return;
    }
    let qb = img * p.q_stride + p.q_off;
    let kb = img * p.k_stride + p.k_off;
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < p.c; c++) {
        let qi = q[qb + c * p.hw + i];
        let row = kb + c * p.hw;
        var kv: vec4<f32>;
        for (var t = 0u; t < 4u; t++) {
            kv[t] = k[row + min(j0 + t, p.hw - 1u)];
        }
        acc += qi * kv;
    }
    let wb = img * p.hw * p.hw + i * p.hw;
    for (var t = 0u; t < 4u; t++) {
        if (j0 + t < p.hw) {
            w[wb + j0 + t] = acc[t] * p.scale;
        }
    }
}

// One invocation per row (image, query).
@compute @workgroup_size(64)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let img = gid.y;
    if (i >= p.hw) {
        return;
    }
    let wb = img * p.hw * p.hw + i * p.hw;
    var m = -3.4e38;
    for (var j = 0u; j < p.hw; j++) {
        m = max(m, w[wb + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < p.hw; j++) {
        let e = exp(w[wb + j] - m);
        w[wb + j] = e;
        s += e;
    }
    let inv = 1.0 / s;
    for (var j = 0u; j < p.hw; j++) {
        w[wb + j] *= inv;
    }
}

// One invocation per (4 queries i, channel c).
@compute @workgroup_size(16, 4, 1)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.x * 4u;
    let c = gid.y;
    let img = gid.z;
    if (i0 >= p.hw || c >= p.c) {
        return;
    }
    let vb = img * p.v_stride + p.v_off + c * p.hw;
    let wb = img * p.hw * p.hw;
    var acc = vec4<f32>(0.0);
    for (var j = 0u; j < p.hw; j++) {
        let vj = v[vb + j];
        var wv: vec4<f32>;
        for (var t = 0u; t < 4u; t++) {
            wv[t] = w[wb + min(i0 + t, p.hw - 1u) * p.hw + j];
        }
        acc += vj * wv;
    }
    let yb = img * p.y_stride + p.y_off + c * p.hw;
    for (var t = 0u; t < 4u; t++) {
        if (i0 + t < p.hw) {
            y[yb + i0 + t] = acc[t];
        }
    }
}
