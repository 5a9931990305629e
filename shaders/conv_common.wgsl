// What the convolution kernels share: the parameter block, the bindings, the padding and
// resampling rule, and the epilogue. The host prepends this file to conv2d.wgsl and
// conv2d_gemm.wgsl. Modes: 0 = same size (3×3 pad 1, or 1×1), 1 = the official Downsample
// (pad right/bottom by one, 3×3 stride 2), 2 = 3×3 over a nearest-×2 upsampled input (the
// upsampled map is never stored).

// `Weight`, the stored weight type, is declared by the host ahead of this file: f16 (after
// `enable f16;`) when the device has shader-f16 and every conv weight is exactly an f16
// (same results, half the bytes read), else f32.

struct Conv {
    ci: u32, h: u32, w: u32, co: u32,
    ho: u32, wo: u32, batch: u32, flags: u32,
    x_stride: u32, x_off: u32, y_stride: u32, y_off: u32,
    r_stride: u32, r_off: u32, t_stride: u32, pad: u32,
}

// The kernel size (1 or 3) and the mode are pipeline constants, so the index arithmetic
// divides by constants and the padding rule's branches are resolved when compiling.
override KS: u32 = 3u;
override MODE: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<Weight>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> temb: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// The input row (or column) read by output coordinate o at tap t, or -1 in the padding.
fn src(o: u32, t: u32, n: u32) -> i32 {
    if (KS == 1u) {
        return i32(o);
    }
    if (MODE == 1u) {
        let i = 2u * o + t;
        return select(-1, i32(i), i < n);
    }
    let u = i32(o + t) - 1;
    if (MODE == 2u) {
        return select(-1, u / 2, u >= 0 && u < i32(2u * n));
    }
    return select(-1, u, u >= 0 && u < i32(n));
}

// Output channel o, pixel q of image img: the accumulated sum plus bias, temb and residual.
fn store(img: u32, o: u32, q: u32, acc: f32) {
    let plane = p.ho * p.wo;
    var v = acc + bias[o];
    if ((p.flags & 1u) != 0u) {
        v += temb[img * p.t_stride + o];
    }
    if ((p.flags & 2u) != 0u) {
        v += res[img * p.r_stride + p.r_off + o * plane + q];
    }
    y[img * p.y_stride + p.y_off + o * plane + q] = v;
}
