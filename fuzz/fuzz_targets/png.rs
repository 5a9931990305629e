//! `image::decode_png`, what `ddim reconstruct` reads its input with, on any bytes, as gray
//! and as RGB: errors, never a panic; what decodes is [1, C, H, W] in [-1, 1].
#![no_main]

use ddim_webgpu::image::decode_png;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: ddim_webgpu_fuzz::Capped = ddim_webgpu_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    for c in [1, 3] {
        let Ok(t) = decode_png(data, "fuzz.png", c) else {
            return;
        };
        assert_eq!(t.shape.len(), 4);
        assert_eq!(&t.shape[..2], &[1, c]);
        assert!(t.data.iter().all(|x| (-1.0..=1.0).contains(x)));
    }
});
