//! The backend trait: what the sampler needs from a device. The latent lives on the backend
//! between steps, so a GPU backend can keep the whole trajectory on the device and only
//! send back what is asked for.

pub mod cpu;
pub mod gpu;
pub mod profile;

use crate::error::Result;
use crate::schedule::StepCoeffs;
use crate::tensor::Tensor;

/// Where a trajectory's noise comes from: the counter-based RNG keyed by the seed, with
/// samples numbered from `first_sample` so a batch split never changes the noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseKey {
    pub seed: u64,
    pub first_sample: usize,
}

pub trait Backend {
    /// A line for the user: which device and how.
    fn describe(&self) -> String;

    /// The largest batch this backend runs at once; the sampler splits bigger jobs.
    fn max_batch(&self) -> usize;

    /// The network output for x [n, C, H, W] with one timestep per sample.
    fn forward(&mut self, x: &Tensor, t: &[f32]) -> Result<Tensor>;

    /// Begin a trajectory from x with this coefficient table (one entry per step).
    fn start(&mut self, x: &Tensor, table: &[StepCoeffs], noise: NoiseKey) -> Result<()>;

    /// Run step k of the table: evaluate the network, update the latent, keep the x0 estimate.
    fn step(&mut self, k: usize) -> Result<()>;

    /// The current latent.
    fn latent(&mut self) -> Result<Tensor>;

    /// The x0 predicted by the last step.
    fn x0(&mut self) -> Result<Tensor>;

    /// What the backend has to tell the user since the last call (the GPU tuner's work
    /// and any trouble with its cache).
    fn notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}
