// conv2d as a tiled implicit GEMM for hardware GPUs: the same contract as conv2d.wgsl (and
// conv_common.wgsl, prepended), whose CPU twin is backend/cpu/conv.rs. A workgroup computes
// 64 output channels × 64 output pixels. K (input channel × tap) is walked in slices of 16 staged through
// workgroup memory: weights as they lie, and the input gathered im2col-style on the fly, so
// no im2col buffer exists. Each invocation accumulates a 4×4 block in registers. On software
// adapters (lavapipe, SwiftShader) barriers are costly, so conv2d.wgsl is used there instead.

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
var<workgroup> a_tile: array<f32, 1024>; // [BK][BM]
var<workgroup> b_tile: array<f32, 1024>; // [BK][BN]

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let plane = p.ho * p.wo;
    let kk = p.k * p.k;
    let kdim = p.ci * kk;
    let n0 = wg.x * BN;
    let m0 = wg.y * BM;
    let img = wg.z;
    let xb = img * p.x_stride + p.x_off;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < kdim; k0 += BK) {
        for (var r = 0u; r < 4u; r++) {
            let e = li + r * 256u;
            // Weights: consecutive invocations read consecutive k of one output channel.
            let ka = e % BK;
            let ma = e / BK;
            let gm = m0 + ma;
            let gk = k0 + ka;
            var wv = 0.0;
            if (gm < p.co && gk < kdim) {
                wv = f32(wt[gm * kdim + gk]);
            }
            a_tile[ka * BM + ma] = wv;
            // Input: consecutive invocations read consecutive output pixels.
            let kb = e / BN;
            let nb = e % BN;
            let gn = n0 + nb;
            let gk2 = k0 + kb;
            var xv = 0.0;
            if (gn < plane && gk2 < kdim) {
                let c = gk2 / kk;
                let tap = gk2 % kk;
                let iy = src(gn / p.wo, tap / p.k, p.h);
                let ix = src(gn % p.wo, tap % p.k, p.w);
                if (iy >= 0 && ix >= 0) {
                    xv = x[xb + c * p.h * p.w + u32(iy) * p.w + u32(ix)];
                }
            }
            b_tile[kb * BN + nb] = xv;
        }
        workgroupBarrier();
        for (var q = 0u; q < BK; q++) {
            let a = vec4<f32>(a_tile[q * BM + lid.y * 4u], a_tile[q * BM + lid.y * 4u + 1u],
                              a_tile[q * BM + lid.y * 4u + 2u], a_tile[q * BM + lid.y * 4u + 3u]);
            let b = vec4<f32>(b_tile[q * BN + lid.x * 4u], b_tile[q * BN + lid.x * 4u + 1u],
                              b_tile[q * BN + lid.x * 4u + 2u], b_tile[q * BN + lid.x * 4u + 3u]);
            acc[0] += a.x * b;
            acc[1] += a.y * b;
            acc[2] += a.z * b;
            acc[3] += a.w * b;
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let o = m0 + lid.y * 4u + i;
        if (o >= p.co) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let q = n0 + lid.x * 4u + j;
            if (q >= plane) {
                break;
            }
            store(img, o, q, acc[i][j]);
        }
    }
}
