//! Resampling without a conv (resamp_with_conv: false): 2×2 average pool and nearest ×2.

/// x [c, h, w] → y [c, h/2, w/2].
pub fn avg_pool(x: &[f32], c: usize, h: usize, w: usize, y: &mut [f32]) {
    let (ho, wo) = (h / 2, w / 2);
    for ch in 0..c {
        for oy in 0..ho {
            for ox in 0..wo {
                let at = |dy: usize, dx: usize| x[(ch * h + 2 * oy + dy) * w + 2 * ox + dx];
                y[(ch * ho + oy) * wo + ox] = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) * 0.25;
            }
        }
    }
}

/// x [c, h, w] → y [c, 2h, 2w].
pub fn upsample_nearest(x: &[f32], c: usize, h: usize, w: usize, y: &mut [f32]) {
    let (ho, wo) = (2 * h, 2 * w);
    for ch in 0..c {
        for oy in 0..ho {
            for ox in 0..wo {
                y[(ch * ho + oy) * wo + ox] = x[(ch * h + oy / 2) * w + ox / 2];
            }
        }
    }
}
