// conv2d with bias, an optional per-channel temb and an optional residual: the twin of
// backend/cpu/conv.rs. Modes: 0 = same size (3×3 pad 1, or 1×1), 1 = the official Downsample
// (pad right/bottom by one, 3×3 stride 2), 2 = 3×3 over a nearest-×2 upsampled input (the
// upsampled map is never stored). Each invocation computes 4 output channels × 4 pixels in
// registers: no workgroup memory, so it runs well on CPU-backed adapters too.

struct Conv {
    ci: u32, h: u32, w: u32, co: u32,
    ho: u32, wo: u32, k: u32, mode: u32,
    x_stride: u32, x_off: u32, y_stride: u32, y_off: u32,
    r_stride: u32, r_off: u32, t_stride: u32, flags: u32,
}

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> temb: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

const TM: u32 = 4u;
const TN: u32 = 4u;

// The input row (or column) read by output coordinate o at tap t, or -1 in the padding.
fn src(o: u32, t: u32, n: u32) -> i32 {
    if (p.k == 1u) {
        return i32(o);
    }
    if (p.mode == 1u) {
        let i = 2u * o + t;
        return select(-1, i32(i), i < n);
    }
    let u = i32(o + t) - 1;
    if (p.mode == 2u) {
        return select(-1, u / 2, u >= 0 && u < i32(2u * n));
    }
    return select(-1, u, u >= 0 && u < i32(n));
}

@compute @workgroup_size(16, 4, 1)
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
    let kk = p.k * p.k;
    let hw = p.h * p.w;
    let xb = img * p.x_stride + p.x_off;
    var wrow: array<u32, 4>;
    for (var i = 0u; i < TM; i++) {
        wrow[i] = min(o0 + i, p.co - 1u) * p.ci * kk;
    }
    // Tap-major: the padding and resampling arithmetic is done once per tap, and the channel
    // loop inside is plain strided loads and FMAs.
    for (var tap = 0u; tap < kk; tap++) {
        let ky = tap / p.k;
        let kx = tap % p.k;
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
            acc[0] += wt[wrow[0] + wi] * xv;
            acc[1] += wt[wrow[1] + wi] * xv;
            acc[2] += wt[wrow[2] + wi] * xv;
            acc[3] += wt[wrow[3] + wi] * xv;
        }
    }
    for (var i = 0u; i < TM; i++) {
        let o = o0 + i;
        if (o >= p.co) {
            break;
        }
        var add = bias[o];
        if ((p.flags & 1u) != 0u) {
            add += temb[img * p.t_stride + o];
        }
        for (var j = 0u; j < TN; j++) {
            let q = p0 + j;
            if (q >= plane) {
                break;
            }
            var v = acc[i][j] + add;
            if ((p.flags & 2u) != 0u) {
                v += res[img * p.r_stride + p.r_off + o * plane + q];
            }
            y[img * p.y_stride + p.y_off + o * plane + q] = v;
        }
    }
}
