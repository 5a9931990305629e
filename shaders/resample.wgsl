// Resampling without a conv (resamp_with_conv: false): 2×2 average pool and nearest ×2, the
// twins of backend/cpu/resample.rs. One invocation per output element.

struct Resample {
    c: u32, h: u32, w: u32, pad: u32,
    x_stride: u32, x_off: u32, y_stride: u32, y_off: u32,
}

@group(0) @binding(0) var<uniform> p: Resample;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn avg_pool(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ho = p.h / 2u;
    let wo = p.w / 2u;
    let e = gid.x;
    let img = gid.y;
    if (e >= p.c * ho * wo) {
        return;
    }
    let ch = e / (ho * wo);
    let oy = (e / wo) % ho;
    let ox = e % wo;
    let b = img * p.x_stride + p.x_off + (ch * p.h + 2u * oy) * p.w + 2u * ox;
    y[img * p.y_stride + p.y_off + e] = (x[b] + x[b + 1u] + x[b + p.w] + x[b + p.w + 1u]) * 0.25;
}

@compute @workgroup_size(WG)
fn upsample(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ho = p.h * 2u;
    let wo = p.w * 2u;
    let e = gid.x;
    let img = gid.y;
    if (e >= p.c * ho * wo) {
        return;
    }
    let ch = e / (ho * wo);
    let oy = (e / wo) % ho;
    let ox = e % wo;
    y[img * p.y_stride + p.y_off + e] = x[img * p.x_stride + p.x_off + (ch * p.h + oy / 2u) * p.w + ox / 2u];
}
