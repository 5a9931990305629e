//! The network: its config, its plan (the wiring every backend runs) and its weights.

pub mod config;
pub mod load;
pub mod plan;
pub mod unet;
pub mod weights;

pub use config::{Config, DiffusionConfig, ModelConfig};
#[cfg(not(target_arch = "wasm32"))]
pub use load::load_model;
pub use load::{metadata_config, model_from_bytes, parse_config, random_model, Model};
pub use plan::{Op, Param, Plan, Resample, Slot, View};
pub use weights::Weights;
