//! The autotuner: the first time a plan runs on a device at a batch size, every eligible
//! convolution variant is timed on each distinct layer shape, on the real buffers, and the
//! fastest is kept. Choices are cached, keyed by adapter, driver, layer shape, batch and
//! precision: natively in a JSON file in the user's cache folder, in the browser for the
//! page's lifetime. A cache file that is corrupt or written by another format is ignored
//! with a warning and replaced; a stored choice this build does not offer is re-timed.

use super::ops::conv::{ConvShape, ConvVariant};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How hard the tuner works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tune {
    /// Fixed defaults chosen by adapter type and layer size.
    Off,
    /// Every eligible variant, one warm-up and 3 timed runs each.
    Quick,
    /// Every eligible variant, 2 warm-ups and 10 timed runs each.
    Full,
}

impl std::str::FromStr for Tune {
    type Err = Error;
    fn from_str(s: &str) -> Result<Tune> {
        match s {
            "off" => Ok(Tune::Off),
            "quick" => Ok(Tune::Quick),
            "full" => Ok(Tune::Full),
            _ => Err(Error::invalid(
                "tune",
                format!("{s:?} (expected off, quick or full)"),
            )),
        }
    }
}

impl Tune {
    /// (warm-up runs, timed runs) per variant.
    pub fn runs(self) -> (usize, usize) {
        match self {
            Tune::Off => (0, 0),
            Tune::Quick => (1, 3),
            Tune::Full => (2, 10),
        }
    }

    /// `DDIM_TUNE` (off, quick or full), if set.
    pub fn from_env() -> Result<Option<Tune>> {
        match std::env::var("DDIM_TUNE") {
            Ok(v) => v
                .parse::<Tune>()
                .map(Some)
                .map_err(|e| Error::invalid("DDIM_TUNE", e.to_string())),
            Err(_) => Ok(None),
        }
    }
}

/// The version of the cache file's format; a file with another is not trusted.
#[cfg(not(target_arch = "wasm32"))]
const FORMAT: u32 = 1;

#[cfg(not(target_arch = "wasm32"))]
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheFile {
    ddim_webgpu_tune: u32,
    entries: BTreeMap<String, String>,
}

#[cfg(target_arch = "wasm32")]
thread_local! {
    /// The browser's cache: choices live as long as the page.
    static PAGE: std::cell::RefCell<BTreeMap<String, String>> = Default::default();
}

/// The tuner's memory of past choices.
pub struct Tuner {
    pub mode: Tune,
    path: Option<PathBuf>,
    entries: Option<BTreeMap<String, String>>,
    /// What went wrong with the cache, for the user.
    pub warnings: Vec<String>,
    /// Variants timed so far (0 when every choice came from the cache).
    pub timed: usize,
    /// How many of those the user has been told about.
    pub announced: usize,
}

/// The default cache file: `DDIM_TUNE_CACHE`, else `<cache dir>/ddim-webgpu/tune.json`.
pub fn default_path() -> Option<PathBuf> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        if let Some(p) = std::env::var_os("DDIM_TUNE_CACHE") {
            return Some(PathBuf::from(p));
        }
        dirs::cache_dir().map(|d| d.join("ddim-webgpu").join("tune.json"))
    }
    #[cfg(target_arch = "wasm32")]
    None
}

/// The cache key of one layer shape on one device at one precision.
pub fn entry_key(info: &wgpu::AdapterInfo, shape: &ConvShape, precision: &str) -> String {
    format!(
        "{} [{:04x}:{:04x}] {:?}, driver {} {} | {} | {precision}",
        info.name,
        info.vendor,
        info.device,
        info.backend,
        info.driver,
        info.driver_info,
        shape.key()
    )
}

impl Tuner {
    /// A tuner that keeps its choices in `path` (natively; None: only for this process).
    pub fn new(mode: Tune, path: Option<PathBuf>) -> Tuner {
        Tuner {
            mode,
            path,
            entries: None,
            warnings: Vec::new(),
            timed: 0,
            announced: 0,
        }
    }

    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    fn entries(&mut self) -> &mut BTreeMap<String, String> {
        if self.entries.is_none() {
            let loaded = self.load();
            self.entries = Some(loaded);
        }
        self.entries.as_mut().expect("loaded")
    }

    fn load(&mut self) -> BTreeMap<String, String> {
        #[cfg(target_arch = "wasm32")]
        return PAGE.with(|p| p.borrow().clone());
        #[cfg(not(target_arch = "wasm32"))]
        {
            let Some(path) = &self.path else {
                return BTreeMap::new();
            };
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
                Err(e) => {
                    self.warnings.push(format!(
                        "tune cache {}: {e}; tuning without it",
                        path.display()
                    ));
                    return BTreeMap::new();
                }
            };
            match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(f) if f.ddim_webgpu_tune == FORMAT => f.entries,
                Ok(f) => {
                    self.warnings.push(format!(
                        "tune cache {}: format {} is not this build's {FORMAT}; ignoring and replacing it",
                        path.display(),
                        f.ddim_webgpu_tune
                    ));
                    BTreeMap::new()
                }
                Err(e) => {
                    self.warnings.push(format!(
                        "tune cache {}: not a tune cache ({e}); ignoring and replacing it",
                        path.display()
                    ));
                    BTreeMap::new()
                }
            }
        }
    }

    /// The stored choice for `key`, if it is one of `offered`.
    pub fn lookup(&mut self, key: &str, offered: &[ConvVariant]) -> Option<ConvVariant> {
        let name = self.entries().get(key)?.clone();
        let found = offered.iter().find(|v| v.name() == name).copied();
        if found.is_none() {
            self.warnings.push(format!(
                "tune cache: stored choice {name:?} for {key} is not a variant this build offers here; re-tuning"
            ));
        }
        found
    }

    /// Remember a choice, and write the cache through (atomically, merged with what other
    /// processes stored meanwhile).
    pub fn store(&mut self, key: String, v: ConvVariant) {
        self.entries().insert(key.clone(), v.name());
        #[cfg(target_arch = "wasm32")]
        PAGE.with(|p| p.borrow_mut().insert(key, v.name()));
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = self.save() {
            self.warnings.push(e);
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn save(&mut self) -> std::result::Result<(), String> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let mut merged = match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
        {
            Some(f) if f.ddim_webgpu_tune == FORMAT => f.entries,
            _ => BTreeMap::new(),
        };
        merged.extend(self.entries().clone());
        let file = CacheFile {
            ddim_webgpu_tune: FORMAT,
            entries: merged,
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
        let fail = |e: std::io::Error| format!("tune cache {}: not saved: {e}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)
    }
}
