//! From files (or bytes, in the browser) to a validated model.

use super::config::{self, Config};
use super::plan::Plan;
use super::weights::{self, Weights};
use crate::error::{Error, Result};
use crate::safetensors::{self, TensorFile};
use crate::torch;

#[derive(Clone, Debug)]
pub struct Model {
    pub config: Config,
    pub plan: Plan,
    pub weights: Weights,
    /// Where the weights came from, for messages.
    pub source: String,
    /// On-disk dtypes, e.g. "F32" or "F16".
    pub dtypes: Vec<String>,
}

/// Parse a config from its text: diffusers JSON when it looks like JSON, else ddim YAML.
pub fn parse_config(text: &str, name: &str, scheduler: Option<(&str, &str)>) -> Result<Config> {
    if text.trim_start().starts_with('{') {
        let model = config::from_diffusers_json(text, name)?;
        let diffusion = match scheduler {
            Some((t, n)) => config::scheduler_from_json(t, n)?,
            None => Default::default(),
        };
        Ok(Config { model, diffusion })
    } else {
        config::from_yaml(text, name)
    }
}

/// The config text a safetensors file carries in its metadata under `config`
/// (`tools/export_model.py` writes it), if any. PyTorch checkpoints carry none.
pub fn metadata_config(bytes: &[u8], name: &str) -> Result<Option<String>> {
    if is_torch(bytes, name) {
        return Ok(None);
    }
    Ok(safetensors::metadata(bytes, name)?
        .get("config")
        .and_then(|v| v.as_str())
        .map(str::to_string))
}

/// A PyTorch checkpoint by its content, or, when the content is no format we know, by its
/// name (so a damaged .pth is reported as a checkpoint, not as bad safetensors).
pub fn is_torch(bytes: &[u8], name: &str) -> bool {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    torch::is_checkpoint(bytes) || ["pth", "pt", "ckpt"].contains(&ext)
}

/// The tensors of a weights file: a PyTorch checkpoint or safetensors. `entry` picks an item
/// of a list checkpoint (ddim's training checkpoints); see `torch::parse`.
pub fn read_weights(bytes: &[u8], name: &str, entry: Option<i64>) -> Result<TensorFile> {
    match (is_torch(bytes, name), entry) {
        (true, _) => torch::parse(bytes, name, entry),
        (false, Some(_)) => Err(Error::invalid(
            "ckpt-entry",
            format!("{name} is not a PyTorch checkpoint, so it has no entries to pick"),
        )),
        (false, None) => safetensors::parse(bytes, name),
    }
}

/// Build a model from the bytes of a weights file (safetensors or PyTorch) and a config.
pub fn model_from_bytes(bytes: &[u8], name: &str, config: Config) -> Result<Model> {
    model_from_tensors(read_weights(bytes, name, None)?, name, config)
}

/// Build a model from tensors already read, checking them against the config.
pub fn model_from_tensors(file: TensorFile, name: &str, config: Config) -> Result<Model> {
    let mut dtypes = file.dtypes.clone();
    dtypes.sort();
    dtypes.dedup();
    let plan = Plan::new(&config.model);
    let weights = weights::load(&plan, file).map_err(|e| match e {
        Error::Weights(m) => Error::Weights(format!("{name}:\n{m}")),
        e => e,
    })?;
    Ok(Model {
        config,
        plan,
        weights,
        source: name.to_string(),
        dtypes,
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{load_model, load_model_entry, Sources};

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::*;
    use std::path::{Path, PathBuf};

    fn read(p: &Path) -> Result<Vec<u8>> {
        std::fs::read(p).map_err(|e| Error::io(p, e))
    }

    fn read_text(p: &Path) -> Result<String> {
        String::from_utf8(read(p)?).map_err(|_| Error::Config {
            path: p.display().to_string(),
            why: "not UTF-8 text".into(),
        })
    }

    fn first_existing(cands: &[PathBuf]) -> Option<PathBuf> {
        cands.iter().find(|p| p.is_file()).cloned()
    }

    /// A model's files, found and read: the weights' bytes and the config's text.
    pub struct Sources {
        pub weights: PathBuf,
        pub bytes: Vec<u8>,
        pub config_text: String,
        /// Where the config came from, for messages.
        pub config_name: String,
        /// A diffusers scheduler_config.json beside the weights: its text and path.
        pub scheduler: Option<(String, String)>,
    }

    impl Sources {
        /// `model` is a .safetensors file, a PyTorch checkpoint (.pth, .pt, .ckpt) or a
        /// diffusers folder (a UNet folder, or a pipeline folder with unet/ and scheduler/).
        /// Without `config`, the config is `<name>.yml` beside the weights, else (safetensors
        /// only) the file's metadata key `config`, else the folder's config.json/.yml.
        pub fn find(model: &Path, config: Option<&Path>) -> Result<Sources> {
            let (weights, dir, sched) = if model.is_dir() {
                let (unet, sched) = if model.join("unet").is_dir() {
                    (
                        model.join("unet"),
                        model.join("scheduler/scheduler_config.json"),
                    )
                } else {
                    (model.to_path_buf(), model.join("scheduler_config.json"))
                };
                let w = unet.join("diffusion_pytorch_model.safetensors");
                if !w.is_file() {
                    return Err(Error::io(
                        &w,
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no diffusers weights in this folder",
                        ),
                    ));
                }
                (w, unet, sched)
            } else {
                let dir = model.parent().map(Path::to_path_buf).unwrap_or_default();
                let sched = dir.join("scheduler_config.json");
                (model.to_path_buf(), dir, sched)
            };
            // Most specific first: --config, <name>.yml beside the file, the file's own
            // metadata, then a folder-wide config.json or config.yml.
            let own = match config {
                Some(c) => Some(c.to_path_buf()),
                None => first_existing(&[
                    weights.with_extension("yml"),
                    weights.with_extension("yaml"),
                ]),
            };
            let bytes = read(&weights)?;
            let wname = weights.display().to_string();
            // A PyTorch checkpoint has no metadata, and a folder's config.json would be a guess.
            if own.is_none() && is_torch(&bytes, &wname) {
                return Err(Error::Config {
                    why: format!(
                        "a PyTorch checkpoint carries no config: pass --config, or put it in {} \
                         beside the weights",
                        weights.with_extension("yml").display()
                    ),
                    path: wname,
                });
            }
            let meta = match own {
                Some(_) => None,
                None => metadata_config(&bytes, &wname)?,
            };
            let folder = || first_existing(&[dir.join("config.json"), dir.join("config.yml")]);
            let (config_text, config_name) = match (own, meta) {
                (Some(p), _) => (read_text(&p)?, p.display().to_string()),
                (None, Some(t)) => (t, format!("{wname} (metadata \"config\")")),
                (None, None) => match folder() {
                    Some(p) => (read_text(&p)?, p.display().to_string()),
                    None => {
                        return Err(Error::Config {
                            path: wname,
                            why: "no config beside the weights (<name>.yml, config.json or \
                                  config.yml) nor in its metadata; pass --config"
                                .into(),
                        })
                    }
                },
            };
            let scheduler = if sched.is_file() {
                Some((read_text(&sched)?, sched.display().to_string()))
            } else {
                None
            };
            Ok(Sources {
                weights,
                bytes,
                config_text,
                config_name,
                scheduler,
            })
        }

        /// Parse the config and the weights, and check one against the other. `entry` picks an
        /// item of a list checkpoint (see `torch::parse`).
        pub fn model(&self, entry: Option<i64>) -> Result<Model> {
            let sched = self
                .scheduler
                .as_ref()
                .map(|(t, n)| (t.as_str(), n.as_str()));
            let cfg = parse_config(&self.config_text, &self.config_name, sched)?;
            let name = self.weights.display().to_string();
            model_from_tensors(read_weights(&self.bytes, &name, entry)?, &name, cfg)
        }
    }

    /// The model at `model` (see `Sources::find`).
    pub fn load_model(model: &Path, config: Option<&Path>) -> Result<Model> {
        load_model_entry(model, config, None)
    }

    /// `load_model`, with `entry` picking an item of a list checkpoint (see `torch::parse`).
    pub fn load_model_entry(
        model: &Path,
        config: Option<&Path>,
        entry: Option<i64>,
    ) -> Result<Model> {
        Sources::find(model, config)?.model(entry)
    }
}

/// A model with seeded random weights (fan-in scaled normals, GroupNorm at identity): for
/// benchmarks and for tests at sizes too big to commit.
pub fn random_model(config: Config, seed: u64) -> Model {
    let plan = Plan::new(&config.model);
    let tensors = plan
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let n: usize = p.shape.iter().product();
            let is_norm_weight = p.shape.len() == 1 && p.name.ends_with(".weight");
            let data = if is_norm_weight {
                vec![1.0; n]
            } else if p.shape.len() == 1 {
                vec![0.0; n]
            } else {
                let fan_in: usize = p.shape[1..].iter().product();
                let s = (fan_in as f32).sqrt().recip();
                let mut v = vec![0.0; n];
                crate::rng::fill_normal(seed, 0x5745_4947, i as u32, &mut v);
                v.iter_mut().for_each(|x| *x *= s);
                v
            };
            crate::tensor::Tensor {
                shape: p.shape.clone(),
                data,
            }
        })
        .collect();
    Model {
        config,
        plan,
        weights: Weights { tensors },
        source: format!("random weights (seed {seed})"),
        dtypes: vec!["F32".into()],
    }
}
