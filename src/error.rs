//! One error type for the library. Every variant names the file, key or value at fault,
//! because the CLI prints these straight to the user.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OS message is part of the text and not a `source`: the CLI prints the whole chain,
    /// which would say it twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {why}")]
    Safetensors { path: String, why: String },
    #[error("{path}: not a readable PyTorch checkpoint: {why}")]
    Checkpoint { path: String, why: String },
    #[error("{path}: not a valid .npy file: {why}")]
    Npy { path: String, why: String },
    #[error("{path}: bad config: {why}")]
    Config { path: String, why: String },
    #[error("weights do not fit the config:\n{0}")]
    Weights(String),
    #[error("invalid value for {name}: {why}")]
    Invalid { name: &'static str, why: String },
    #[error("shape mismatch for {what}: expected {expected:?}, found {found:?}")]
    Shape {
        what: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("backend error: {0}")]
    Backend(String),
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    pub fn invalid(name: &'static str, why: impl Into<String>) -> Self {
        Error::Invalid {
            name,
            why: why.into(),
        }
    }
}
