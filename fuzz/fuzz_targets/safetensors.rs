//! `safetensors::parse` and `metadata` on any bytes: errors, never a panic. What parses must
//! hold its shapes, and must survive our writer and a second reading bit for bit.
#![no_main]

use ddim_webgpu::safetensors::{metadata, parse, serialize, Dtype};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: ddim_webgpu_fuzz::Capped = ddim_webgpu_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    let meta = metadata(data, "fuzz.safetensors");
    let Ok(file) = parse(data, "fuzz.safetensors") else {
        return;
    };
    assert_eq!(meta.unwrap(), file.metadata);
    assert_eq!(file.dtypes.len(), file.tensors.len());
    for (_, t) in &file.tensors {
        assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
    }
    let pairs: Vec<_> = file.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let strings: Vec<(&str, &str)> = file
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().expect("metadata values are strings")))
        .collect();
    let again = parse(&serialize(&pairs, Dtype::F32, &strings), "again").expect("our own file");
    assert_eq!(again.metadata, file.metadata);
    assert_eq!(again.tensors.len(), file.tensors.len());
    for (name, t) in &file.tensors {
        let u = again.get(name).expect("every tensor written");
        assert_eq!(u.shape, t.shape);
        assert!(u
            .data
            .iter()
            .zip(&t.data)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
});
