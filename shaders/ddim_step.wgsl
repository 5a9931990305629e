// One sampling step, the twin of schedule::apply_step: from the latent x and the network
// output m, with the coefficients of this step (copied into `s` on the GPU, so many steps can
// be encoded without a round trip):
//   x0 = clamp(x0_x·x + x0_m·m, ±clip);  eps = eps_x·x + eps_m·m
//   x' = c_x0·x0 + c_eps·eps + c_x·x + c_z·z,  z from the Philox stream of this step.
// Requires rng.wgsl, prepended by the host.

struct Step {
    t: f32, x0_x: f32, x0_m: f32, eps_x: f32, eps_m: f32, clip: f32,
    c_x0: f32, c_eps: f32, c_x: f32, c_z: f32, abar: f32, abar_next: f32,
    stream: u32, seed_lo: u32, seed_hi: u32, first_sample: u32,
    per_sample: u32, total: u32, row: u32, pad: u32,
}

@group(0) @binding(0) var<uniform> s: Step;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> x0: array<f32>;

override WG: u32 = 64u;

// Each invocation owns one Philox block: four consecutive elements of one sample.
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let blocks = (s.per_sample + 3u) / 4u;
    let id = gid.x + gid.y * s.row;
    let n = s.total / s.per_sample;
    if (id >= blocks * n) {
        return;
    }
    let sample = id / blocks;
    let block = id % blocks;
    var z = vec4<f32>(0.0);
    if (s.c_z != 0.0) {
        z = normal4(vec2<u32>(s.seed_lo, s.seed_hi), block, s.first_sample + sample, s.stream);
    }
    for (var j = 0u; j < 4u; j++) {
        let e = block * 4u + j;
        if (e >= s.per_sample) {
            break;
        }
        let i = sample * s.per_sample + e;
        let xi = x[i];
        let mi = m[i];
        var p = s.x0_x * xi + s.x0_m * mi;
        if (s.clip > 0.0) {
            p = clamp(p, -s.clip, s.clip);
        }
        let eps = s.eps_x * xi + s.eps_m * mi;
        x0[i] = p;
        x[i] = s.c_x0 * p + s.c_eps * eps + s.c_x * xi + s.c_z * z[j];
    }
}
