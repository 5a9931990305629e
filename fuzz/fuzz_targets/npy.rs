//! `npy::parse_f32` (what `--init-noise` reads) on any bytes: errors, never a panic. What
//! parses must hold its shape and survive our writer bit for bit.
#![no_main]

use ddim_webgpu::npy::{parse_f32, to_bytes_f32};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: ddim_webgpu_fuzz::Capped = ddim_webgpu_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = parse_f32(data, "fuzz.npy") else {
        return;
    };
    assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
    let again = parse_f32(&to_bytes_f32(&t), "again").expect("our own file");
    assert_eq!(again.shape, t.shape);
    assert!(again
        .data
        .iter()
        .zip(&t.data)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
});
