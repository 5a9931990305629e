//! Every tile and workgroup size of the GPU kernels, in one place. The host passes them to
//! the shaders as pipeline constants (WGSL `override`s) and sizes each dispatch from the
//! same numbers, so the two cannot disagree.

/// A workgroup tile of the register-tiled GEMM (gemm_tile.wgsl): BM × BN outputs, K slices
/// of BK, and TM × TN outputs per invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    pub tm: u32,
    pub tn: u32,
}

/// gemm_tile.wgsl's MAX_LOADS and MAX_ACC: per-invocation register arrays.
const MAX_LOADS: u32 = 8;
const MAX_ACC: u32 = 64;

const fn t(bm: u32, bn: u32, bk: u32, tm: u32, tn: u32) -> Tile {
    Tile { bm, bn, bk, tm, tn }
}

/// The convolution tiles the tuner chooses among (those the device's workgroup memory and
/// invocation limits allow). The first fits WebGPU's default limits everywhere.
pub const CONV_TILES: [Tile; 8] = [
    t(64, 64, 16, 4, 4),
    t(128, 64, 16, 8, 4),
    t(64, 128, 16, 4, 8),
    t(128, 128, 8, 8, 8),
    t(128, 128, 16, 8, 8),
    t(32, 64, 16, 4, 4),
    t(64, 32, 16, 4, 4),
    t(32, 32, 16, 4, 4),
];

/// A workgroup tile of the tensor-core kernel (conv2d_coop.wgsl): WM × WN subgroups, each
/// owning 2 × 2 fragments of 16 × 16 outputs, over K slices of BK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopTile {
    pub wm: u32,
    pub wn: u32,
    pub bk: u32,
}

/// The side of one tensor-core fragment (coop_mat16x16) and of a subgroup's 2 × 2 block.
pub const FRAG: u32 = 16;
const SUB_BLOCK: u32 = 2 * FRAG;

/// The tensor-core tiles the tuner chooses among in the mixed precision.
pub const COOP_TILES: [CoopTile; 7] = [
    CoopTile {
        wm: 2,
        wn: 2,
        bk: 32,
    },
    CoopTile {
        wm: 4,
        wn: 2,
        bk: 32,
    },
    CoopTile {
        wm: 2,
        wn: 4,
        bk: 32,
    },
    CoopTile {
        wm: 2,
        wn: 2,
        bk: 16,
    },
    CoopTile {
        wm: 1,
        wn: 1,
        bk: 32,
    },
    CoopTile {
        wm: 2,
        wn: 1,
        bk: 32,
    },
    CoopTile {
        wm: 1,
        wn: 2,
        bk: 32,
    },
];

impl CoopTile {
    pub const fn bm(self) -> u32 {
        SUB_BLOCK * self.wm
    }

    pub const fn bn(self) -> u32 {
        SUB_BLOCK * self.wn
    }

    pub const fn threads(self, subgroup: u32) -> u32 {
        self.wm * self.wn * subgroup
    }

    /// f16 slices of A and B, then the f32 output block for the epilogue.
    pub const fn workgroup_bytes(self) -> u32 {
        2 * self.bk * (self.bm() + self.bn()) + 4 * self.bm() * self.bn()
    }

    /// Whether conv2d_coop.wgsl can run this tile on subgroups of this size.
    pub fn fits(self, limits: &wgpu::Limits, subgroup: u32) -> bool {
        let th = self.threads(subgroup);
        subgroup > 0
            && self.bk.is_multiple_of(FRAG)
            && th.is_multiple_of(self.bn())
            && th <= limits.max_compute_invocations_per_workgroup
            && th <= limits.max_compute_workgroup_size_x
            && self.workgroup_bytes() <= limits.max_compute_workgroup_storage_size
    }

    pub fn constants(self, subgroup: u32) -> Vec<(&'static str, u32)> {
        vec![
            ("WM", self.wm),
            ("WN", self.wn),
            ("SG", subgroup),
            ("BK", self.bk),
        ]
    }

    pub fn name(self) -> String {
        format!("{}x{}x{}", self.bm(), self.bn(), self.bk)
    }
}

/// Split-K factors for layers with few output tiles (the 8×8 and 4×4 levels at batch 1).
pub const SPLITS: [u32; 4] = [1, 2, 4, 8];

/// The attention GEMMs: small tiles for up to 64 tokens, else the 64 × 64 one.
pub const ATTN_SMALL: Tile = t(32, 32, 16, 4, 4);
pub const ATTN_LARGE: Tile = t(64, 64, 16, 4, 4);

/// conv2d.wgsl (registers only, for software adapters): a DIRECT_WX × DIRECT_WY workgroup,
/// each invocation DIRECT_VEC pixels × DIRECT_VEC channels (the shader's vec4 accumulators).
pub const DIRECT_WX: u32 = 16;
pub const DIRECT_WY: u32 = 4;
pub const DIRECT_VEC: u32 = 4;

/// One-dimensional kernels: the step, linear, resampling and split-K reduce.
pub const FLAT_WG: u32 = 64;
/// group_norm.wgsl: one workgroup per (group, image), reduced through workgroup memory.
pub const NORM_WG: u32 = 256;

impl Tile {
    pub const fn threads(self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    /// Bytes of workgroup memory: A transposed with a padding float per row, then B.
    pub const fn workgroup_bytes(self) -> u32 {
        4 * self.bk * (self.bm + 1 + self.bn)
    }

    /// Whether gemm_tile.wgsl can run this tile within these limits.
    pub fn fits(self, limits: &wgpu::Limits) -> bool {
        let th = self.threads();
        self.bm.is_multiple_of(self.tm)
            && self.bn.is_multiple_of(self.tn)
            && self.tm * self.tn <= MAX_ACC
            && self.tm <= 8
            && self.tn <= 8
            && (self.bm * self.bk).is_multiple_of(th)
            && (self.bn * self.bk).is_multiple_of(th)
            && self.bm * self.bk / th <= MAX_LOADS
            && self.bn * self.bk / th <= MAX_LOADS
            && th <= limits.max_compute_invocations_per_workgroup
            && th <= limits.max_compute_workgroup_size_x
            && self.workgroup_bytes() <= limits.max_compute_workgroup_storage_size
    }

    pub fn constants(self) -> Vec<(&'static str, u32)> {
        vec![
            ("BM", self.bm),
            ("BN", self.bn),
            ("BK", self.bk),
            ("TM", self.tm),
            ("TN", self.tn),
        ]
    }

    pub fn name(self) -> String {
        format!(
            "{}x{}x{}/{}x{}",
            self.bm, self.bn, self.bk, self.tm, self.tn
        )
    }
}

/// Workgroups along x for `items` at `per` items a group, wrapped onto y past `max`.
pub fn grid(items: usize, per: u32, max: u32) -> [u32; 3] {
    let g = (items.div_ceil(per as usize) as u32).max(1);
    let x = g.min(max);
    [x, g.div_ceil(x), 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_tile_fits_some_device() {
        let big = wgpu::Limits {
            max_compute_workgroup_storage_size: 49152,
            ..Default::default()
        };
        for t in CONV_TILES.iter().chain([&ATTN_SMALL, &ATTN_LARGE]) {
            assert!(t.fits(&big), "{t:?}");
        }
        // WebGPU's defaults (16 KiB) still leave the first tile and the attention tiles.
        let web = wgpu::Limits::downlevel_defaults();
        assert!(CONV_TILES[0].fits(&web) && ATTN_LARGE.fits(&web) && ATTN_SMALL.fits(&web));
    }

    #[test]
    fn coop_tiles_fit_nvidia_and_amd_subgroups() {
        let big = wgpu::Limits {
            max_compute_workgroup_storage_size: 49152,
            max_compute_invocations_per_workgroup: 256,
            max_compute_workgroup_size_x: 256,
            ..Default::default()
        };
        for t in COOP_TILES {
            assert!(t.fits(&big, 32), "{t:?} on 32-wide subgroups");
        }
        assert!(COOP_TILES.iter().filter(|t| t.fits(&big, 64)).count() >= 4);
    }
}
