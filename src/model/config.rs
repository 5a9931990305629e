//! The UNet and diffusion config, read from the official ddim YAML (`model:`, `data:`,
//! `diffusion:`) or from diffusers' `config.json` (UNet2DModel) plus `scheduler_config.json`.

use crate::error::{Error, Result};
use crate::schedule::{BetaSchedule, FinalAlpha, Prediction, Schedule, Skip};
use serde_json::Value;
use yaml_rust2::parser::{Event, EventReceiver, Parser};
use yaml_rust2::{Yaml, YamlLoader};

/// The network's shape: the fields of the official `model:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub ch: usize,
    pub out_ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub attn_resolutions: Vec<usize>,
    pub in_channels: usize,
    pub resolution: usize,
    pub resamp_with_conv: bool,
}

/// The training schedule, plus sampler defaults a diffusers scheduler config may carry.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffusionConfig {
    pub beta_schedule: BetaSchedule,
    pub beta_start: f64,
    pub beta_end: f64,
    pub num_timesteps: usize,
    pub rescale_zero_snr: bool,
    pub prediction: Prediction,
    /// diffusers defaults, used only when the command line does not say otherwise.
    pub clip_sample: Option<f64>,
    pub final_alpha: FinalAlpha,
    pub steps_offset: usize,
    pub skip: Option<Skip>,
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        DiffusionConfig {
            beta_schedule: BetaSchedule::Linear,
            beta_start: 1e-4,
            beta_end: 0.02,
            num_timesteps: 1000,
            rescale_zero_snr: false,
            prediction: Prediction::Epsilon,
            clip_sample: None,
            final_alpha: FinalAlpha::One,
            steps_offset: 0,
            skip: None,
        }
    }
}

impl DiffusionConfig {
    pub fn schedule(&self) -> Result<Schedule> {
        Schedule::from_kind(
            self.beta_schedule,
            self.beta_start,
            self.beta_end,
            self.num_timesteps,
            self.rescale_zero_snr,
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub model: ModelConfig,
    pub diffusion: DiffusionConfig,
}

impl ModelConfig {
    /// Checks that make the network well formed: GroupNorm(32) needs channels in multiples of
    /// 32, and every downsampling must halve the resolution exactly so the skips line up.
    pub fn validate(&self, path: &str) -> Result<()> {
        let bad = |why: String| Error::Config {
            path: path.to_string(),
            why,
        };
        // Bounds far past any DDPM UNet, so that the plan's shapes and loops stay small
        // numbers whatever a config says.
        if self.ch_mult.len() > 12
            || self.ch > 1 << 16
            || self.resolution > 1 << 14
            || self.num_res_blocks > 64
            || self.in_channels.max(self.out_ch) > 1 << 16
        {
            return Err(bad(format!(
                "{} levels, ch {}, resolution {}, num_res_blocks {}, in_channels {} or out_ch {} \
                 is beyond any DDPM UNet",
                self.ch_mult.len(),
                self.ch,
                self.resolution,
                self.num_res_blocks,
                self.in_channels,
                self.out_ch
            )));
        }
        if self.ch == 0 || self.ch_mult.is_empty() || self.in_channels == 0 || self.out_ch == 0 {
            return Err(bad(
                "ch, ch_mult, in_channels and out_ch must be non-zero".into()
            ));
        }
        for &m in &self.ch_mult {
            if m == 0 || m > 64 || !(self.ch * m).is_multiple_of(32) {
                return Err(bad(format!(
                    "ch {} × ch_mult {m} is not a multiple of the 32 GroupNorm groups",
                    self.ch
                )));
            }
        }
        let levels = self.ch_mult.len() as u32;
        let f = 1usize << (levels - 1);
        if self.resolution == 0 || !self.resolution.is_multiple_of(f) {
            return Err(bad(format!(
                "resolution {} is not divisible by 2^{} (one halving per level below the first)",
                self.resolution,
                levels - 1
            )));
        }
        if !self.ch.is_multiple_of(2) || self.ch < 4 {
            return Err(bad(format!("ch {} must be even and at least 4", self.ch)));
        }
        Ok(())
    }

    /// The spatial resolution of each level, top first.
    pub fn resolutions(&self) -> Vec<usize> {
        (0..self.ch_mult.len())
            .map(|i| self.resolution >> i)
            .collect()
    }
}

fn yaml_usize(y: &Yaml, key: &str, path: &str) -> Result<usize> {
    match y {
        Yaml::Integer(i) if *i >= 0 => Ok(*i as usize),
        _ => Err(Error::Config {
            path: path.into(),
            why: format!("{key} must be a non-negative integer, found {y:?}"),
        }),
    }
}

fn yaml_f64(y: &Yaml, key: &str, path: &str) -> Result<f64> {
    match y {
        Yaml::Integer(i) => Ok(*i as f64),
        Yaml::Real(s) => s.parse().map_err(|_| Error::Config {
            path: path.into(),
            why: format!("{key}: {s:?} is not a number"),
        }),
        _ => Err(Error::Config {
            path: path.into(),
            why: format!("{key} must be a number, found {y:?}"),
        }),
    }
}

fn yaml_list(y: &Yaml, key: &str, path: &str) -> Result<Vec<usize>> {
    match y {
        Yaml::Array(a) => a.iter().map(|v| yaml_usize(v, key, path)).collect(),
        _ => Err(Error::Config {
            path: path.into(),
            why: format!("{key} must be a list of integers, found {y:?}"),
        }),
    }
}

/// Does the YAML use an alias (`*name`)? The loader copies the anchored node for each one, so
/// nested aliases grow a few hundred bytes into gigabytes ("billion laughs"); ddim configs
/// never use them.
fn has_alias(text: &str) -> Result<bool, yaml_rust2::ScanError> {
    struct Aliases(bool);
    impl EventReceiver for Aliases {
        fn on_event(&mut self, ev: Event) {
            self.0 |= matches!(ev, Event::Alias(_));
        }
    }
    let mut seen = Aliases(false);
    Parser::new_from_str(text).load(&mut seen, true)?;
    Ok(seen.0)
}

/// Parse the official ddim YAML layout.
pub fn from_yaml(text: &str, path: &str) -> Result<Config> {
    let bad_yaml = |e: yaml_rust2::ScanError| Error::Config {
        path: path.into(),
        why: format!("not valid YAML: {e}"),
    };
    if has_alias(text).map_err(bad_yaml)? {
        return Err(Error::Config {
            path: path.into(),
            why: "YAML aliases (*name) are not supported".into(),
        });
    }
    let docs = YamlLoader::load_from_str(text).map_err(bad_yaml)?;
    let doc = docs.first().ok_or_else(|| Error::Config {
        path: path.into(),
        why: "empty document".into(),
    })?;
    let m = &doc["model"];
    if m.is_badvalue() {
        return Err(Error::Config {
            path: path.into(),
            why: "no model: section".into(),
        });
    }
    let req = |y: &Yaml, key: &'static str| -> Result<Yaml> {
        if y[key].is_badvalue() {
            return Err(Error::Config {
                path: path.into(),
                why: format!("missing key {key}"),
            });
        }
        Ok(y[key].clone())
    };
    let data = &doc["data"];
    let resolution = if !data["image_size"].is_badvalue() {
        yaml_usize(&data["image_size"], "data.image_size", path)?
    } else {
        yaml_usize(&req(m, "resolution")?, "model.resolution", path)?
    };
    let in_channels = if !m["in_channels"].is_badvalue() {
        yaml_usize(&m["in_channels"], "model.in_channels", path)?
    } else {
        yaml_usize(&req(data, "channels")?, "data.channels", path)?
    };
    let model = ModelConfig {
        ch: yaml_usize(&req(m, "ch")?, "model.ch", path)?,
        out_ch: yaml_usize(&req(m, "out_ch")?, "model.out_ch", path)?,
        ch_mult: yaml_list(&req(m, "ch_mult")?, "model.ch_mult", path)?,
        num_res_blocks: yaml_usize(&req(m, "num_res_blocks")?, "model.num_res_blocks", path)?,
        attn_resolutions: yaml_list(&req(m, "attn_resolutions")?, "model.attn_resolutions", path)?,
        in_channels,
        resolution,
        resamp_with_conv: m["resamp_with_conv"].as_bool().unwrap_or(true),
    };
    model.validate(path)?;
    let d = &doc["diffusion"];
    let mut diffusion = DiffusionConfig::default();
    if !d.is_badvalue() {
        if let Some(s) = d["beta_schedule"].as_str() {
            diffusion.beta_schedule = s.parse().map_err(|e: Error| Error::Config {
                path: path.into(),
                why: e.to_string(),
            })?;
        }
        if !d["beta_start"].is_badvalue() {
            diffusion.beta_start = yaml_f64(&d["beta_start"], "diffusion.beta_start", path)?;
        }
        if !d["beta_end"].is_badvalue() {
            diffusion.beta_end = yaml_f64(&d["beta_end"], "diffusion.beta_end", path)?;
        }
        if !d["num_diffusion_timesteps"].is_badvalue() {
            diffusion.num_timesteps = yaml_usize(
                &d["num_diffusion_timesteps"],
                "diffusion.num_diffusion_timesteps",
                path,
            )?;
        }
    }
    Ok(Config { model, diffusion })
}

fn json_err(path: &str, why: String) -> Error {
    Error::Config {
        path: path.into(),
        why,
    }
}

/// Parse diffusers' UNet2DModel `config.json`, refusing anything but the DDPM layout.
pub fn from_diffusers_json(text: &str, path: &str) -> Result<ModelConfig> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| json_err(path, format!("not valid JSON: {e}")))?;
    let get = |k: &str| v.get(k).filter(|x| !x.is_null());
    let num = |k: &str| -> Result<usize> {
        get(k)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| json_err(path, format!("missing or non-integer key {k:?}")))
    };
    // Keys that would make the network differ from the DDPM UNet, with the value it needs.
    let expect = |k: &str, want: Value| -> Result<()> {
        match get(k) {
            None => Ok(()),
            Some(x) if *x == want || (x.is_number() && x.as_f64() == want.as_f64()) => Ok(()),
            Some(x) => Err(json_err(
                path,
                format!("{k} = {x} is not the DDPM layout (needs {want})"),
            )),
        }
    };
    expect("norm_num_groups", 32.into())?;
    expect("act_fn", "silu".into())?;
    expect("flip_sin_to_cos", false.into())?;
    expect("freq_shift", 1.into())?;
    expect("downsample_padding", 0.into())?;
    expect("time_embedding_type", "positional".into())?;
    expect("center_input_sample", false.into())?;
    expect("add_attention", true.into())?;
    expect("resnet_time_scale_shift", "default".into())?;
    expect("mid_block_scale_factor", 1.into())?;
    expect("downsample_type", "conv".into())?;
    expect("upsample_type", "conv".into())?;
    expect("mid_block_type", "UNetMidBlock2D".into())?;
    if let Some(e) = get("norm_eps").and_then(Value::as_f64) {
        if (e - 1e-6).abs() > 1e-12 {
            return Err(json_err(
                path,
                format!("norm_eps = {e} (the DDPM UNet uses 1e-6)"),
            ));
        }
    }
    for k in ["class_embed_type", "num_class_embeds", "attention_head_dim"] {
        if let Some(x) = get(k) {
            return Err(json_err(
                path,
                format!("{k} = {x}: only the single-head, unconditional DDPM UNet is supported"),
            ));
        }
    }
    let boc: Vec<usize> = get("block_out_channels")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect())
        .ok_or_else(|| json_err(path, "missing block_out_channels".into()))?;
    let ch = *boc
        .first()
        .ok_or_else(|| json_err(path, "empty block_out_channels".into()))?;
    if let Some(c) = boc.iter().find(|&&c| ch == 0 || c % ch != 0) {
        return Err(json_err(
            path,
            format!("block_out_channels entry {c} is not a multiple of the first ({ch})"),
        ));
    }
    let strs = |k: &str| -> Result<Vec<String>> {
        get(k)
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|x| x.as_str().map(String::from)).collect())
            .ok_or_else(|| json_err(path, format!("missing {k}")))
    };
    let down = strs("down_block_types")?;
    let up = strs("up_block_types")?;
    if down.len() != boc.len() || up.len() != boc.len() {
        return Err(json_err(
            path,
            "down_block_types, up_block_types and block_out_channels differ in length".into(),
        ));
    }
    let resolution = num("sample_size")?;
    let mut attn = Vec::new();
    for (i, d) in down.iter().enumerate() {
        let u = &up[down.len() - 1 - i];
        let (da, ua) = match (d.as_str(), u.as_str()) {
            ("DownBlock2D", _) => (false, u == "AttnUpBlock2D"),
            ("AttnDownBlock2D", _) => (true, u == "AttnUpBlock2D"),
            _ => {
                return Err(json_err(
                    path,
                    format!("down block type {d:?} is not supported"),
                ))
            }
        };
        if !matches!(u.as_str(), "UpBlock2D" | "AttnUpBlock2D") || da != ua {
            return Err(json_err(
                path,
                format!("up block {u:?} does not mirror down block {d:?} (DDPM layout)"),
            ));
        }
        if da {
            attn.push(resolution >> i);
        }
    }
    let model = ModelConfig {
        ch,
        out_ch: num("out_channels")?,
        ch_mult: boc.iter().map(|c| c / ch).collect(),
        num_res_blocks: num("layers_per_block")?,
        attn_resolutions: attn,
        in_channels: num("in_channels")?,
        resolution,
        resamp_with_conv: true,
    };
    model.validate(path)?;
    Ok(model)
}

/// Read diffusers' `scheduler_config.json` (DDIM or DDPM scheduler) for defaults.
pub fn scheduler_from_json(text: &str, path: &str) -> Result<DiffusionConfig> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| json_err(path, format!("not valid JSON: {e}")))?;
    let mut d = DiffusionConfig::default();
    let get = |k: &str| v.get(k).filter(|x| !x.is_null());
    if let Some(x) = get("num_train_timesteps").and_then(Value::as_u64) {
        d.num_timesteps = x as usize;
    }
    if let Some(x) = get("beta_start").and_then(Value::as_f64) {
        d.beta_start = x;
    }
    if let Some(x) = get("beta_end").and_then(Value::as_f64) {
        d.beta_end = x;
    }
    if let Some(s) = get("beta_schedule").and_then(Value::as_str) {
        d.beta_schedule = s
            .parse()
            .map_err(|e: Error| json_err(path, e.to_string()))?;
    }
    if get("trained_betas").is_some() {
        return Err(json_err(path, "trained_betas is not supported".into()));
    }
    if let Some(s) = get("prediction_type").and_then(Value::as_str) {
        d.prediction = s
            .parse()
            .map_err(|e: Error| json_err(path, e.to_string()))?;
    }
    if get("clip_sample").and_then(Value::as_bool) == Some(true) {
        d.clip_sample = Some(
            get("clip_sample_range")
                .and_then(Value::as_f64)
                .unwrap_or(1.0),
        );
    }
    if get("set_alpha_to_one").and_then(Value::as_bool) == Some(false) {
        d.final_alpha = FinalAlpha::First;
    }
    if let Some(x) = get("steps_offset").and_then(Value::as_u64) {
        d.steps_offset = x as usize;
    }
    if let Some(s) = get("timestep_spacing").and_then(Value::as_str) {
        d.skip = Some(
            s.parse()
                .map_err(|e: Error| json_err(path, e.to_string()))?,
        );
    }
    d.rescale_zero_snr = get("rescale_betas_zero_snr").and_then(Value::as_bool) == Some(true);
    if get("thresholding").and_then(Value::as_bool) == Some(true) {
        return Err(json_err(
            path,
            "dynamic thresholding is not supported".into(),
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIFAR: &str = "data:\n  image_size: 32\n  channels: 3\nmodel:\n  type: simple\n  in_channels: 3\n  out_ch: 3\n  ch: 128\n  ch_mult: [1, 2, 2, 2]\n  num_res_blocks: 2\n  attn_resolutions: [16, ]\n  dropout: 0.1\n  resamp_with_conv: True\ndiffusion:\n  beta_schedule: linear\n  beta_start: 0.0001\n  beta_end: 0.02\n  num_diffusion_timesteps: 1000\n";

    #[test]
    fn reads_the_official_cifar10_yaml() {
        let c = from_yaml(CIFAR, "cifar10.yml").unwrap();
        assert_eq!(c.model.ch_mult, vec![1, 2, 2, 2]);
        assert_eq!(c.model.attn_resolutions, vec![16]);
        assert_eq!(c.model.resolution, 32);
        assert_eq!(c.diffusion.beta_start, 1e-4);
    }

    /// Found fuzzing the config parsers (fuzz/README.md): each parsed, and then building its
    /// plan or schedule overflowed (a panic) or ran out of memory.
    #[test]
    fn sizes_past_any_unet_are_errors() {
        for (from, to) in [
            ("num_res_blocks: 2", "num_res_blocks: 100000000"),
            ("in_channels: 3", "in_channels: 4611686018427387904"),
            ("out_ch: 3", "out_ch: 4611686018427387904"),
        ] {
            let e = from_yaml(&CIFAR.replace(from, to), "big.yml").unwrap_err();
            assert!(e.to_string().contains("beyond any DDPM UNet"), "{e}");
        }
        let t = "num_diffusion_timesteps: 100000000000";
        let c = from_yaml(&CIFAR.replace("num_diffusion_timesteps: 1000", t), "t.yml").unwrap();
        let e = c.diffusion.schedule().unwrap_err().to_string();
        assert!(e.contains("100000000000"), "{e}");
    }

    /// Nine levels of ten aliases each: 10^9 copies of a list from 446 bytes.
    #[test]
    fn yaml_aliases_are_refused_before_they_expand() {
        let mut text = "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n".to_string();
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text += &format!("a{i}: &a{i} [{refs}]\n");
        }
        let e = from_yaml(&(text + CIFAR), "laughs.yml").unwrap_err();
        assert!(e.to_string().contains("aliases"), "{e}");
    }

    #[test]
    fn names_the_missing_key() {
        let e = from_yaml(&CIFAR.replace("  ch: 128\n", ""), "c.yml").unwrap_err();
        assert!(
            e.to_string().contains("c.yml") && e.to_string().contains("ch"),
            "{e}"
        );
    }
}
