// conv2d on tensor cores (wgpu's cooperative matrices), for `--precision mixed`: the same
// implicit GEMM as conv2d_gemm.wgsl (M = output channels, K = input channel × tap, N = the
// batch folded with the output pixels) and the same contract and epilogue (conv_common.wgsl
// is prepended), with f16 inputs and f32 accumulation. Its CPU twin is backend/cpu/conv.rs.
//
// A workgroup is WM × WN subgroups; each subgroup owns a 32 × 32 block of the output as
// 2 × 2 tensor-core fragments of 16 × 16, so the workgroup tile is (32 WM) × (32 WN). K is
// walked in slices of BK: every invocation gathers its share of the weight slice and of the
// im2col slice, rounds them to f16 into workgroup memory, and each subgroup multiplies its
// fragments there. The accumulators go through workgroup memory once at the end, where the
// usual epilogue (bias, temb, residual) reads them. The host keeps THREADS a multiple of BN,
// so each invocation gathers one fixed output column and decodes its pixel once. Every tile
// here is row-major, so fragments move with coopLoadT/coopStoreT (wgpu's plain coopLoad and
// coopStore read and write column-major).

enable wgpu_cooperative_matrix;

override WM: u32 = 2u;
override WN: u32 = 2u;
// The subgroup size; the host offers this kernel only where it is fixed.
override SG: u32 = 32u;
override BK: u32 = 32u;
override BM: u32 = 32u * WM;
override BN: u32 = 32u * WN;
override THREADS: u32 = WM * WN * SG;
override A_LEN: u32 = BM * BK;
override B_LEN: u32 = BK * BN;
override C_LEN: u32 = BM * BN;

// A as [m][k] (row stride BK), B as [k][n] (row stride BN), C as [m][n] (row stride BN).
var<workgroup> a_s: array<f16, A_LEN>;
var<workgroup> b_s: array<f16, B_LEN>;
var<workgroup> c_s: array<f32, C_LEN>;

fn columns() -> u32 {
    return p.batch * p.ho * p.wo;
}

@compute @workgroup_size(THREADS)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
) {
    let n0 = wg.x * BN;
    let m0 = wg.y * BM;
    let kdim = p.ci * KS * KS;
    let kk2 = KS * KS;
    let plane = p.ho * p.wo;
    let cols = columns();
    // This invocation's im2col column, decoded once.
    let col = li % BN;
    let n = n0 + col;
    let img = n / plane;
    let oy = (n % plane) / p.wo;
    let ox = n % p.wo;
    let base = img * p.x_stride + p.x_off;
    let col_ok = n < cols;
    // The accumulators start from zero through workgroup memory (a fragment has no
    // zero constructor).
    for (var e = li; e < C_LEN; e += THREADS) {
        c_s[e] = 0.0;
    }
    workgroupBarrier();
    let sm = (sg / WN) * 32u;
    let sn = (sg % WN) * 32u;
    var c00 = coopLoadT<coop_mat16x16<f32, C>>(&c_s[sm * BN + sn], BN);
    var c01 = coopLoadT<coop_mat16x16<f32, C>>(&c_s[sm * BN + sn + 16u], BN);
    var c10 = coopLoadT<coop_mat16x16<f32, C>>(&c_s[(sm + 16u) * BN + sn], BN);
    var c11 = coopLoadT<coop_mat16x16<f32, C>>(&c_s[(sm + 16u) * BN + sn + 16u], BN);
    for (var k0 = 0u; k0 < kdim; k0 += BK) {
        // Weights: consecutive lanes read consecutive k of one output channel.
        for (var e = li; e < A_LEN; e += THREADS) {
            let m = m0 + e / BK;
            let k = k0 + e % BK;
            var v = 0.0;
            if (m < p.co && k < kdim) {
                v = f32(wt[m * kdim + k]);
            }
            a_s[e] = f16(v);
        }
        // Inputs: consecutive lanes read consecutive output pixels of one (channel, tap).
        for (var r = li / BN; r < BK; r += THREADS / BN) {
            let k = k0 + r;
            var v = 0.0;
            if (col_ok && k < kdim) {
                let c = k / kk2;
                let tap = k % kk2;
                let iy = src(oy, tap / KS, p.h);
                let ix = src(ox, tap % KS, p.w);
                if (iy >= 0 && ix >= 0) {
                    v = x[base + c * p.h * p.w + u32(iy) * p.w + u32(ix)];
                }
            }
            b_s[r * BN + col] = f16(v);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk += 16u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[sm * BK + kk], BK);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&a_s[(sm + 16u) * BK + kk], BK);
            let b0 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[kk * BN + sn], BN);
            let b1 = coopLoadT<coop_mat16x16<f16, B>>(&b_s[kk * BN + sn + 16u], BN);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
    }
    coopStoreT(c00, &c_s[sm * BN + sn], BN);
    coopStoreT(c01, &c_s[sm * BN + sn + 16u], BN);
    coopStoreT(c10, &c_s[(sm + 16u) * BN + sn], BN);
    coopStoreT(c11, &c_s[(sm + 16u) * BN + sn + 16u], BN);
    workgroupBarrier();
    for (var e = li; e < C_LEN; e += THREADS) {
        let m = m0 + e / BN;
        let nn = n0 + e % BN;
        if (m < p.co && nn < cols) {
            store(nn / plane, m, nn % plane, c_s[e]);
        }
    }
}
