// conv2d as a register-tiled implicit GEMM for hardware GPUs, with the same contract as
// conv2d.wgsl (conv_common.wgsl and gemm_tile.wgsl are prepended); its CPU twin is
// backend/cpu/conv.rs. M is the output channels, K the input channel × tap, and N the
// batch folded with the output pixels, so the 8×8 and 4×4 layers still fill the device.
// The input is gathered im2col-style as B is loaded, so no im2col buffer exists. With
// SPLIT > 1 each workgroup z-slice sums one part of K into `part`, and `reduce` adds the
// parts and applies the epilogue.

override SPLIT: u32 = 1u;
override REDUCE_WG: u32 = 64u;

@group(0) @binding(7) var<storage, read_write> part: array<f32>;

// Per invocation, the B columns it loads never change across K slices: decode them once.
var<private> col_base: array<u32, MAX_LOADS>;
var<private> col_y: array<u32, MAX_LOADS>;
var<private> col_x: array<u32, MAX_LOADS>;
var<private> col_ok: array<bool, MAX_LOADS>;

fn columns() -> u32 {
    return p.batch * p.ho * p.wo;
}

fn b_begin(n0: u32, li: u32) {
    let plane = p.ho * p.wo;
    for (var r = 0u; r < LB; r++) {
        let n = n0 + (li + r * THREADS) % BN;
        let img = n / plane;
        let q = n % plane;
        col_ok[r] = n < columns();
        col_base[r] = img * p.x_stride + p.x_off;
        col_y[r] = q / p.wo;
        col_x[r] = q % p.wo;
    }
}

fn a_value(m: u32, k: u32) -> f32 {
    if (m >= p.co) {
        return 0.0;
    }
    return f32(wt[m * p.ci * KS * KS + k]);
}

fn b_value(r: u32, k: u32, n: u32) -> f32 {
    if (!col_ok[r]) {
        return 0.0;
    }
    let kk = KS * KS;
    let c = k / kk;
    let tap = k % kk;
    let iy = src(col_y[r], tap / KS, p.h);
    let ix = src(col_x[r], tap % KS, p.w);
    if (iy < 0 || ix < 0) {
        return 0.0;
    }
    return x[col_base[r] + c * p.h * p.w + u32(iy) * p.w + u32(ix)];
}

// The K range of split s, in whole BK slices.
fn split_range(s: u32) -> vec2<u32> {
    let kdim = p.ci * KS * KS;
    let per = ((kdim + SPLIT - 1u) / SPLIT + BK - 1u) / BK * BK;
    return vec2<u32>(min(kdim, s * per), min(kdim, (s + 1u) * per));
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n0 = wg.x * BN;
    let m0 = wg.y * BM;
    let ks = split_range(wg.z);
    b_begin(n0, li);
    gemm_tile(m0, n0, ks.x, ks.y, li);
    let plane = p.ho * p.wo;
    let cols = columns();
    for (var i = 0u; i < TM; i++) {
        let m = m0 + tile_m(li, i);
        for (var j = 0u; j < TN; j++) {
            let n = n0 + tile_n(li, j);
            if (m < p.co && n < cols) {
                if (SPLIT == 1u) {
                    store(n / plane, m, n % plane, acc[i * TN + j]);
                } else {
                    part[(wg.z * p.co + m) * cols + n] = acc[i * TN + j];
                }
            }
        }
    }
}

// One invocation per output: the SPLIT partial sums, then the epilogue.
@compute @workgroup_size(REDUCE_WG)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
    let cols = columns();
    let e = gid.x + gid.y * ng.x * REDUCE_WG;
    if (e >= p.co * cols) {
        return;
    }
    let m = e / cols;
    let n = e % cols;
    var s = 0.0;
    for (var z = 0u; z < SPLIT; z++) {
        s += part[(z * p.co + m) * cols + n];
    }
    let plane = p.ho * p.wo;
    store(n / plane, m, n % plane, s);
}
