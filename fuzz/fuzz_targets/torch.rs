//! `torch::parse` (PyTorch checkpoints, src/torch/) on any
//! bytes, for the default entry and one picked by the last byte: errors, never a panic.
#![no_main]

use ddim_webgpu::torch::parse;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: ddim_webgpu_fuzz::Capped = ddim_webgpu_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    let entry = data.last().map(|&b| b as i8 as i64);
    for e in [None, entry] {
        if let Ok(f) = parse(data, "fuzz.pt", e) {
            assert_eq!(f.dtypes.len(), f.tensors.len());
            for (_, t) in &f.tensors {
                assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
            }
        }
    }
});
