// conv2d with bias, an optional per-channel temb and an optional residual: the twin of
// backend/cpu/conv.rs (conv_common.wgsl, prepended, has the bindings and the padding rule).
// Each invocation computes 4 output channels × 4 pixels in registers: no workgroup memory,
// so it runs well on CPU-backed adapters too.

// The vec4 accumulators fix 4 × 4 outputs per invocation; the workgroup shape is set by the
// host (ops/tiles.rs), which sizes the dispatch from the same numbers.
const TM: u32 = 4u;
const TN: u32 = 4u;
override WX: u32 = 16u;
override WY: u32 = 4u;

@compute @workgroup_size(WX, WY, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let plane = p.ho * p.wo;
    let p0 = gid.x * TN;
    let o0 = gid.y * TM;
    let img = gid.z;
    if (p0 >= plane || o0 >= p.co) {
        return;
    }
    var oy: array<u32, 4>;
    var ox: array<u32, 4>;
    for (var j = 0u; j < TN; j++) {
        let q = min(p0 + j, plane - 1u);
        oy[j] = q / p.wo;
        ox[j] = q % p.wo;
    }
    var acc: array<vec4<f32>, 4>;
    let kk = KS * KS;
    let hw = p.h * p.w;
    let xb = img * p.x_stride + p.x_off;
    var wrow: array<u32, 4>;
    for (var i = 0u; i < TM; i++) {
        wrow[i] = min(o0 + i, p.co - 1u) * p.ci * kk;
    }
    // Tap-major: the padding and resampling arithmetic is done once per tap, and the channel
    // loop inside is plain strided loads and FMAs.
    for (var tap = 0u; tap < kk; tap++) {
        let ky = tap / KS;
        let kx = tap % KS;
        var off = vec4<u32>(0u);
        var mask = vec4<f32>(0.0);
        for (var j = 0u; j < TN; j++) {
            let iy = src(oy[j], ky, p.h);
            let ix = src(ox[j], kx, p.w);
            if (iy >= 0 && ix >= 0) {
                off[j] = u32(iy) * p.w + u32(ix);
                mask[j] = 1.0;
            }
        }
        for (var c = 0u; c < p.ci; c++) {
            let base = xb + c * hw;
            let xv = vec4<f32>(x[base + off.x], x[base + off.y], x[base + off.z], x[base + off.w]) * mask;
            let wi = c * kk + tap;
            acc[0] += f32(wt[wrow[0] + wi]) * xv;
            acc[1] += f32(wt[wrow[1] + wi]) * xv;
            acc[2] += f32(wt[wrow[2] + wi]) * xv;
            acc[3] += f32(wt[wrow[3] + wi]) * xv;
        }
    }
    for (var i = 0u; i < TM; i++) {
        let o = o0 + i;
        if (o >= p.co) {
            break;
        }
        for (var j = 0u; j < TN; j++) {
            let q = p0 + j;
            if (q >= plane) {
                break;
            }
            store(img, o, q, acc[i][j]);
        }
    }
}
