//! `ddim-manifest.json`: what a folder of samples is samples of. The first process to write
//! into a folder creates it; every later one (another shard, a resumed run) must agree with
//! it field by field, so no folder ever mixes two runs.

use anyhow::Result;
use ddim_webgpu::model::Model;
use ddim_webgpu::schedule::StepCoeffs;
use ddim_webgpu::{Error, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE: &str = "ddim-manifest.json";
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub ddim_version: String,
    /// Where the weights came from; for people, not compared (paths differ across machines).
    pub model: String,
    /// SHA-256 of the weights as loaded (f32, in the network's order), so a checkpoint and
    /// its safetensors conversion are the same model, and a changed file is not.
    pub weights_sha256: String,
    pub config_sha256: String,
    pub channels: usize,
    pub resolution: usize,
    pub timesteps: Vec<i64>,
    pub eta: f64,
    pub sampler: String,
    /// SHA-256 of the step coefficient table: every sampler setting that changes a number
    /// (η, clipping, prediction type, final ᾱ) changes this.
    pub steps_sha256: String,
    pub seed: u64,
    pub n: usize,
    /// Batches are always samples `k·batch .. (k+1)·batch`, so this fixes which samples
    /// are computed together.
    pub batch: usize,
    pub init_noise_sha256: Option<String>,
    /// `--precision` as asked (f32 or mixed): one folder never mixes the two. (What mixed
    /// came to on each device may differ, as GPU models do: see the README.)
    pub precision: String,
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_f32s<'a>(parts: impl IntoIterator<Item = &'a [f32]>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(bytemuck::cast_slice::<f32, u8>(p));
    }
    hex(h.finalize())
}

pub struct Settings<'a> {
    pub model: &'a Model,
    pub timesteps: &'a [i64],
    pub table: &'a [StepCoeffs],
    pub eta: f64,
    pub sampler: &'a str,
    pub seed: u64,
    pub n: usize,
    pub batch: usize,
    pub init: Option<&'a Tensor>,
    pub precision: &'a str,
}

impl Manifest {
    pub fn new(s: &Settings) -> Self {
        let m = &s.model.config.model;
        Manifest {
            format: FORMAT,
            ddim_version: env!("CARGO_PKG_VERSION").into(),
            model: s.model.source.clone(),
            weights_sha256: hash_f32s(s.model.weights.tensors.iter().map(|t| &t.data[..])),
            config_sha256: hex(Sha256::digest(format!("{:?}", s.model.config).as_bytes())),
            channels: m.in_channels,
            resolution: m.resolution,
            timesteps: s.timesteps.to_vec(),
            eta: s.eta,
            sampler: s.sampler.to_string(),
            steps_sha256: hex(Sha256::digest(bytemuck::cast_slice::<StepCoeffs, u8>(
                s.table,
            ))),
            seed: s.seed,
            n: s.n,
            batch: s.batch,
            init_noise_sha256: s.init.map(|t| hash_f32s([&t.data[..]])),
            precision: s.precision.to_string(),
        }
    }

    /// The fields in which `other` differs from this one, as "name: here vs there".
    fn differences(&self, other: &Manifest) -> Vec<String> {
        let (a, b) = (
            serde_json::to_value(self).unwrap_or_default(),
            serde_json::to_value(other).unwrap_or_default(),
        );
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return vec!["unreadable".into()];
        };
        a.iter()
            .filter(|(k, _)| k.as_str() != "model")
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| {
                let short = |v: &serde_json::Value| {
                    let s = v.to_string();
                    if s.chars().count() > 60 {
                        s.chars().take(60).chain(['…']).collect()
                    } else {
                        s
                    }
                };
                let there = b.get(k.as_str()).map_or("(absent)".into(), short);
                format!("{k}: {} here, {there} in the folder", short(v))
            })
            .collect()
    }
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// `read`, retried a few times over a second: where the manifest had to be written in place
/// (no hard links), another shard may see it before its writer has finished.
fn read_settled(dir: &Path) -> Result<Option<Manifest>> {
    for _ in 0..10 {
        if let Ok(m) = read(dir) {
            return Ok(m);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    read(dir)
}

pub fn read(dir: &Path) -> Result<Option<Manifest>> {
    let p = path(dir);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&p, e).into()),
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid(
            "out",
            format!(
                "{}: not a ddim manifest ({e}); move it away or pick another folder",
                p.display()
            ),
        )
    })?;
    if m.format != FORMAT {
        return Err(Error::invalid(
            "out",
            format!(
                "{}: manifest format {} (this ddim writes {FORMAT})",
                p.display(),
                m.format
            ),
        )
        .into());
    }
    Ok(Some(m))
}

/// Create the manifest if the folder has none, else check that it describes this run.
/// Creation is atomic (a complete temporary file hard-linked into place, which fails if
/// another shard got there first), so concurrent shards agree on one manifest.
pub fn claim(dir: &Path, want: &Manifest) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let p = path(dir);
    if read(dir)?.is_none() {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = dir.join(format!(".{FILE}.{}.{nonce}", std::process::id()));
        let text = serde_json::to_string_pretty(want).expect("a manifest serialises") + "\n";
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, &p));
        let _ = std::fs::remove_file(&tmp);
        use std::io::ErrorKind as K;
        match linked {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == K::AlreadyExists => {}
            // Object-store mounts (gcsfuse, s3fs) have no hard links: an exclusive create
            // still lets only one process win, though a reader may briefly see it partial.
            Err(e) if matches!(e.kind(), K::Unsupported | K::PermissionDenied) => {
                let created = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&p)
                    .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
                match created {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == K::AlreadyExists => {}
                    Err(e) => return Err(Error::io(&p, e).into()),
                }
            }
            Err(e) => return Err(Error::io(&p, e).into()),
        }
    }
    let have = read_settled(dir)?
        .ok_or_else(|| Error::invalid("out", format!("{}: vanished", p.display())))?;
    let diff = want.differences(&have);
    if !diff.is_empty() {
        return Err(Error::invalid(
            "out",
            format!(
                "{} holds samples of another run; use another folder, or the same settings:\n  {}",
                dir.display(),
                diff.join("\n  ")
            ),
        )
        .into());
    }
    Ok(())
}
