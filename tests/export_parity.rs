//! The training exporter against our loader: `tools/make_export_fixture.py` trains a small
//! network a few steps with tools/train.py, exports it with tools/export_model.py (f32 with a
//! .yml beside it, f16 with its config only in the metadata), and records the exporter's own
//! PyTorch eps. Our loader must reproduce it from the exported files.

mod common;

use common::{assert_close, fixture, get, read_tensors};
use ddim_webgpu::backend::cpu::CpuBackend;
use ddim_webgpu::backend::Backend;
use ddim_webgpu::model::{load_model, metadata_config, Model};

fn forward(model: &Model, want: &str) {
    let r = read_tensors("export/ref.safetensors");
    let x = get(&r, "x");
    let t = get(&r, "t").data;
    let got = CpuBackend::new(model).forward(&x, &t).unwrap();
    assert_close(&format!("{} eps", model.source), &got, &get(&r, want), 1e-5);
}

#[test]
fn f32_export_matches_the_exporter_forward() {
    let model = load_model(&fixture("export/model.safetensors"), None).unwrap();
    assert_eq!(model.dtypes, ["F32"]);
    forward(&model, "eps");
}

#[test]
fn f16_export_loads_its_config_from_metadata_and_matches() {
    let path = fixture("export/model_f16.safetensors");
    assert!(!path.with_extension("yml").exists());
    let model = load_model(&path, None).unwrap();
    assert_eq!(model.dtypes, ["F16"]);
    let yml = std::fs::read_to_string(fixture("export/model.yml")).unwrap();
    let meta = metadata_config(&std::fs::read(&path).unwrap(), "f16").unwrap();
    assert_eq!(meta.as_deref(), Some(yml.as_str()));
    forward(&model, "eps_f16");
}
