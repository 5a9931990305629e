//! Every WGSL module the engine builds, validated with naga as the device gets it (f32 and
//! f16 weights), and every pipeline it can ask for specialised with its constants and
//! written as SPIR-V: shader errors show on any machine, with or without an adapter, and
//! for kernel variants that this machine's adapter would never pick.

use ddim_webgpu::backend::gpu::ops::every_key;
use ddim_webgpu::backend::gpu::pipelines::{Key, Shader};

fn module(shader: Shader, half: bool) -> (naga::Module, naga::valid::ModuleInfo) {
    let src = shader.wgsl(half);
    let m = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{}: {}", shader.file(), e.emit_to_string(&src)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&m)
    .unwrap_or_else(|e| panic!("{} (f16 {half}): {e:?}", shader.file()));
    (m, info)
}

#[test]
fn every_module_validates() {
    for shader in Shader::ALL {
        for half in [false, true] {
            module(shader, half);
        }
    }
}

fn specialise(key: &Key, half: bool) -> Vec<u32> {
    let (m, info) = module(key.shader, half);
    let mut constants = naga::back::PipelineConstants::default();
    for &(name, v) in &key.constants {
        constants.insert(name.to_string(), v as f64);
    }
    let entry = (naga::ShaderStage::Compute, key.entry);
    let (m, info) =
        naga::back::pipeline_constants::process_overrides(&m, &info, Some(entry), &constants)
            .unwrap_or_else(|e| panic!("{key:?}: {e:?}"));
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: key.entry.to_string(),
    };
    naga::back::spv::write_vec(&m, &info, &Default::default(), Some(&pipeline))
        .unwrap_or_else(|e| panic!("{key:?}: SPIR-V: {e:?}"))
}

#[test]
fn every_pipeline_specialises_and_compiles_to_spirv() {
    let keys = every_key();
    assert!(keys.len() > 40, "only {} pipelines", keys.len());
    for key in &keys {
        specialise(key, false);
        if key.shader.is_conv() {
            specialise(key, true);
        }
    }
}

/// The tensor-core kernel really multiplies on cooperative matrices: its SPIR-V declares
/// the capability, holds the multiply-add and moves every fragment row-major, for every tile
/// and subgroup size offered.
#[test]
fn the_tensor_core_kernel_compiles_to_cooperative_matrix_spirv() {
    const CAPABILITY_COOPERATIVE_MATRIX_KHR: u32 = 6022;
    const OP_CONSTANT: u32 = 43;
    const OP_COOPERATIVE_MATRIX_LOAD_KHR: u32 = 4457;
    const OP_COOPERATIVE_MATRIX_STORE_KHR: u32 = 4458;
    const OP_COOPERATIVE_MATRIX_MUL_ADD_KHR: u32 = 4459;
    const ROW_MAJOR_KHR: u32 = 0;
    let coop: Vec<Key> = every_key()
        .into_iter()
        .filter(|k| k.shader == Shader::ConvCoop)
        .collect();
    assert!(coop.len() >= 28, "{} coop pipelines", coop.len());
    for key in &coop {
        for half in [false, true] {
            let words = specialise(key, half);
            let has_op = |op: u32| words.iter().any(|&w| w & 0xffff == op);
            assert!(
                words
                    .windows(2)
                    .any(|w| w[0] == (2 << 16 | 17) && w[1] == CAPABILITY_COOPERATIVE_MATRIX_KHR),
                "{key:?}: no CooperativeMatrixKHR capability"
            );
            assert!(
                has_op(OP_COOPERATIVE_MATRIX_MUL_ADD_KHR),
                "{key:?}: no multiply-add"
            );
            // Every fragment load and store is row-major, as the kernel's tiles are laid out
            // (a column-major one computes the transposed product).
            let mut constants = std::collections::HashMap::new();
            let mut layouts = Vec::new();
            let mut i = 5;
            while i < words.len() {
                let (len, op) = (((words[i] >> 16) as usize).max(1), words[i] & 0xffff);
                let ins = &words[i..(i + len).min(words.len())];
                match op {
                    OP_CONSTANT if len == 4 => {
                        constants.insert(ins[2], ins[3]);
                    }
                    // Load: type, id, pointer, layout. Store: pointer, object, layout.
                    OP_COOPERATIVE_MATRIX_LOAD_KHR => layouts.push(ins[4]),
                    OP_COOPERATIVE_MATRIX_STORE_KHR => layouts.push(ins[3]),
                    _ => {}
                }
                i += len;
            }
            assert!(
                layouts.len() >= 12,
                "{key:?}: {} fragment moves",
                layouts.len()
            );
            for id in layouts {
                assert_eq!(
                    constants.get(&id),
                    Some(&ROW_MAJOR_KHR),
                    "{key:?}: not row-major"
                );
            }
        }
    }
}
