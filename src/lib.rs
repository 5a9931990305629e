//! ddim-webgpu: DDIM sampling (Song et al., 2020) for the DDPM UNet of ermongroup/ddim.
//!
//! The data path is schedule → plan → backend → sampler: `schedule` computes betas, ᾱ,
//! timesteps and the per-step coefficient table in f64; `model` reads configs and
//! checkpoints and lays the network out as a plan; a `backend` runs the plan; `sampler`
//! drives the DDIM/DDPM loop over any backend.

pub mod backend;
pub mod error;
pub mod eval;
#[cfg(not(target_arch = "wasm32"))]
pub mod image;
pub mod model;
pub mod npy;
pub mod rng;
pub mod safetensors;
pub mod sampler;
pub mod schedule;
pub mod tensor;
pub mod torch;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
pub use tensor::Tensor;
