//! The network: its config, its plan (the wiring every backend runs) and its weights.

pub mod config;
pub mod load;
pub mod plan;
pub mod unet;
pub mod weights;

pub use config::{Config, DiffusionConfig, ModelConfig};
pub use load::{
    is_torch, metadata_config, model_from_bytes, model_from_tensors, parse_config, random_model,
    read_weights, Model,
};
#[cfg(not(target_arch = "wasm32"))]
pub use load::{load_model, load_model_entry, Sources};
pub use plan::{Op, Param, Plan, Resample, Slot, View};
pub use weights::Weights;
