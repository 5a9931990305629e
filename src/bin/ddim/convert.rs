//! `ddim convert`: any weights file we read (a PyTorch checkpoint above all) to a safetensors
//! file with the official names and the config in its metadata, as `tools/export_model.py`
//! writes them, so the result loads on its own, in the CLI and in the browser.

use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::image::write_atomic;
use ddim_webgpu::model::Sources;
use ddim_webgpu::safetensors::{serialize, Dtype};
use ddim_webgpu::Error;
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct Args {
    /// A PyTorch checkpoint (.pth, .pt, .ckpt), a .safetensors file or a diffusers folder.
    input: PathBuf,
    /// The .safetensors file to write.
    out: PathBuf,
    /// Config: official YAML or diffusers config.json. If omitted: <name>.yml beside the
    /// input, or (safetensors) its metadata.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Which item of a list checkpoint to read (default: the EMA of a training checkpoint).
    #[arg(long, allow_negative_numbers = true)]
    ckpt_entry: Option<i64>,
    /// Store float16 instead of float32.
    #[arg(long)]
    half: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        let why = format!(
            "{}: the output must be a .safetensors file",
            a.out.display()
        );
        return Err(Error::invalid("out", why).into());
    }
    let src = Sources::find(&a.input, a.config.as_deref())?;
    // The model, not just the tensors: every name and shape is checked against the config
    // before anything is written.
    let model = src.model(a.ckpt_entry)?;
    let tensors: Vec<(&str, _)> = (model.plan.params.iter())
        .map(|p| p.name.as_str())
        .zip(&model.weights.tensors)
        .collect();
    if a.half {
        for (name, t) in &tensors {
            if let Some(x) = t.data.iter().find(|x| x.abs() > f32::from(half::f16::MAX)) {
                let why = format!("{name}: value {x} does not fit float16");
                return Err(Error::invalid("half", why).into());
            }
        }
    }
    let (dtype, dtype_name) = match a.half {
        true => (Dtype::F16, "float16"),
        false => (Dtype::F32, "float32"),
    };
    let n_params = model.plan.param_count().to_string();
    let metadata = [
        ("format", "pt"),
        ("producer", "ddim-webgpu ddim convert"),
        ("n_params", n_params.as_str()),
        ("dtype", dtype_name),
        // The key both loaders read when no config file is given.
        ("config", src.config_text.as_str()),
    ];
    write_atomic(&a.out, &serialize(&tensors, dtype, &metadata))?;
    eprintln!(
        "wrote {} ({} tensors, {n_params} parameters, {dtype_name}) from {}",
        a.out.display(),
        tensors.len(),
        model.source
    );
    Ok(())
}
