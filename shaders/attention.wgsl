// Single-head spatial attention, the twin of backend/cpu/attention.rs, as two batched GEMMs
// on the tiled machinery of gemm_tile.wgsl (prepended) and a softmax, over a scratch matrix
// per image that holds the scores transposed, keys × queries, so every pass reads it with
// neighbouring lanes on neighbouring queries:
//   scores (STAGE 0): s[j, i] = c^−½ · Σ_c k[c, j]·q[c, i]      M = keys, N = queries, K = c
//   softmax:          s[:, i] normalised over the keys j
//   apply (STAGE 1):  y[c, i] = Σ_j v[c, j]·s[j, i]              M = c, N = queries, K = keys

struct Attn {
    c: u32, hw: u32, scale: f32, pad: u32,
    q_stride: u32, q_off: u32, k_stride: u32, k_off: u32,
    v_stride: u32, v_off: u32, y_stride: u32, y_off: u32,
}

override STAGE: u32 = 0u;
override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Attn;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> s: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

var<private> img: u32;

fn rows() -> u32 {
    return select(p.c, p.hw, STAGE == 0u);
}

fn a_value(m: u32, kk: u32) -> f32 {
    if (m >= rows()) {
        return 0.0;
    }
    if (STAGE == 0u) {
        return k[img * p.k_stride + p.k_off + kk * p.hw + m];
    }
    return v[img * p.v_stride + p.v_off + m * p.hw + kk];
}

fn b_value(r: u32, kk: u32, n: u32) -> f32 {
    if (n >= p.hw) {
        return 0.0;
    }
    if (STAGE == 0u) {
        return q[img * p.q_stride + p.q_off + kk * p.hw + n];
    }
    return s[img * p.hw * p.hw + kk * p.hw + n];
}

@compute @workgroup_size(THREADS)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    img = wg.z;
    let n0 = wg.x * BN;
    let m0 = wg.y * BM;
    let kdim = select(p.hw, p.c, STAGE == 0u);
    gemm_tile(m0, n0, 0u, kdim, li);
    for (var i = 0u; i < TM; i++) {
        let m = m0 + tile_m(li, i);
        for (var j = 0u; j < TN; j++) {
            let n = n0 + tile_n(li, j);
            if (m < rows() && n < p.hw) {
                if (STAGE == 0u) {
                    s[img * p.hw * p.hw + m * p.hw + n] = acc[i * TN + j] * p.scale;
                } else {
                    y[img * p.y_stride + p.y_off + m * p.hw + n] = acc[i * TN + j];
                }
            }
        }
    }
}

// One invocation per (query, image): a column of the transposed scores.
@compute @workgroup_size(WG)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let b = gid.y * p.hw * p.hw;
    if (i >= p.hw) {
        return;
    }
    var mx = -3.4e38;
    for (var j = 0u; j < p.hw; j++) {
        mx = max(mx, s[b + j * p.hw + i]);
    }
    var sum = 0.0;
    for (var j = 0u; j < p.hw; j++) {
        let e = exp(s[b + j * p.hw + i] - mx);
        s[b + j * p.hw + i] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for (var j = 0u; j < p.hw; j++) {
        s[b + j * p.hw + i] *= inv;
    }
}
