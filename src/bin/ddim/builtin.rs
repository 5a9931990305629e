//! The default model, compiled into the binary so `ddim sample` draws emoji with no download:
//! `models/emoji32.safetensors` (EMA weights from `tools/train.py`) and its config.
//! See `models/README.md` for the data, licence and training record.

use anyhow::Result;
use ddim_webgpu::model::{model_from_bytes, parse_config, Model};

pub const NAME: &str = "built-in emoji32 (models/emoji32.safetensors)";
const WEIGHTS: &[u8] = include_bytes!("../../../models/emoji32.safetensors");
const CONFIG: &str = include_str!("../../../models/emoji32.yml");

pub fn load() -> Result<Model> {
    let cfg = parse_config(CONFIG, "models/emoji32.yml", None)?;
    Ok(model_from_bytes(WEIGHTS, NAME, cfg)?)
}
