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

fn specialise(key: &Key, half: bool) {
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
        .unwrap_or_else(|e| panic!("{key:?}: SPIR-V: {e:?}"));
}

#[test]
fn every_pipeline_specialises_and_compiles_to_spirv() {
    let keys = every_key();
    assert!(keys.len() > 40, "only {} pipelines", keys.len());
    for key in &keys {
        specialise(key, false);
        if matches!(key.shader, Shader::ConvDirect | Shader::ConvGemm) {
            specialise(key, true);
        }
    }
}
