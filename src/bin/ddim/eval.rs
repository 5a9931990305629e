//! `ddim eval`: sample quality against the training images, for a grid of step counts, η and
//! skips (the shape of the DDIM paper's Table 1), in the SWD feature space of `ddim_webgpu::eval`.
//!
//! The whole table is hours of CPU time (S = 1000 alone is a million forward passes per row at
//! N = 1000), so with `--work DIR` it survives being stopped: every finished batch of samples
//! is kept in DIR until its row is scored, and every scored row is appended to
//! DIR/rows.jsonl. A rerun with the same model, data, N and seed picks up where it stopped.

use crate::common::{self, ModelArgs, StepArgs};
use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::eval::swd;
use ddim_webgpu::image::{read_atlas, write_atomic};
use ddim_webgpu::model::Model;
use ddim_webgpu::sampler::{self, Job};
use ddim_webgpu::{npy, Error, Tensor};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The reference images: an atlas PNG with its .json beside it.
    #[arg(long, default_value = "data/emoji32.png")]
    data: PathBuf,
    /// Samples per row (the paper's FID uses 50k; SWD is stable from about 1k).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Step counts S, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20,50,100,1000")]
    steps: Vec<usize>,
    /// η values, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,0.2,0.5,1")]
    eta: Vec<f64>,
    /// Skips, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "uniform")]
    skip: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Clamp x0 to [-1, 1] at every step (diffusers' default; the official DDIM step never
    /// clips, and neither does eval without this).
    #[arg(long)]
    clip: bool,
    /// Keep finished batches and rows here, so a stopped run resumes; the table of every row
    /// stored for this model, data, N, seed and backend is written to DIR/table.md.
    #[arg(long)]
    work: Option<PathBuf>,
    /// With --work: sample at most this many batches, then stop (a time slice of a long run;
    /// rerun to continue).
    #[arg(long, requires = "work")]
    max_batches: Option<usize>,
}

/// What a stored result must match to be reused: the weights, the config, the data and the
/// sampling knobs shared by all rows.
fn fingerprint(model: &Model, data: &Tensor, a: &Args, backend: &str) -> String {
    let mut h = crc32fast::Hasher::new();
    for t in &model.weights.tensors {
        h.update(bytemuck::cast_slice(&t.data));
    }
    h.update(format!("{:?}", model.config).as_bytes());
    let mut d = crc32fast::Hasher::new();
    d.update(bytemuck::cast_slice(&data.data));
    format!(
        "weights {:08x} data {:08x} n {} seed {} clip {} | {backend} | ddim {}",
        h.finalize(),
        d.finalize(),
        a.n,
        a.seed,
        a.clip,
        env!("CARGO_PKG_VERSION")
    )
}

struct Store {
    dir: PathBuf,
    key: String,
    rows: Vec<Value>,
}

impl Store {
    fn open(dir: &Path, key: String) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("rows.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&path, e).into()),
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut rows = Vec::with_capacity(lines.len());
        for (i, l) in lines.iter().enumerate() {
            match serde_json::from_str::<Value>(l) {
                Ok(v) => rows.push(v),
                // A run killed while appending leaves at most its last line cut short.
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {
                    eprintln!("{}: ignoring an unfinished last line", path.display());
                }
                Err(e) => {
                    return Err(Error::invalid(
                        "work",
                        format!("{}: line {}: {e}", path.display(), i + 1),
                    )
                    .into())
                }
            }
        }
        if !rows.is_empty() && !text.ends_with('\n') {
            // Finish the cut line so the next append starts on its own line.
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            f.write_all(b"\n").map_err(|e| Error::io(&path, e))?;
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            key,
            rows,
        })
    }

    fn row(&self, skip: &str, s: usize, eta: f64) -> Option<&Value> {
        self.rows.iter().find(|r| {
            r["key"] == self.key.as_str() && r["skip"] == skip && r["steps"] == s && r["eta"] == eta
        })
    }

    fn stored(&self) -> impl Iterator<Item = &Value> {
        self.rows.iter().filter(|r| r["key"] == self.key.as_str())
    }

    fn batch_dir(&self, skip: &str, s: usize, eta: f64) -> PathBuf {
        let tag = format!("{} {skip} {s} {eta}", self.key);
        self.dir
            .join(format!("batches-{:08x}", crc32fast::hash(tag.as_bytes())))
    }

    fn append(&mut self, row: Value) -> Result<()> {
        let path = self.dir.join("rows.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // One write per line, so a kill cannot interleave or split rows mid-way.
        let line = format!("{row}\n");
        f.write_all(line.as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        self.rows.push(row);
        Ok(())
    }
}

/// One row's samples, batch by batch; with a store, finished batches are read back instead of
/// sampled again. Returns the samples and the sampling seconds (including earlier runs').
/// `budget` counts the batches this run may still sample; None once it runs out.
fn sample_row(
    backend: &mut dyn ddim_webgpu::backend::Backend,
    table: &[ddim_webgpu::schedule::StepCoeffs],
    a: &Args,
    shape: (usize, usize),
    dir: Option<&Path>,
    label: &str,
    budget: &mut Option<usize>,
) -> Result<Option<(Tensor, f64)>> {
    let (c, r) = shape;
    let per = c * r * r;
    let mut data = Vec::with_capacity(a.n * per);
    let mut secs = 0.0;
    let batches = a.n.div_ceil(a.batch);
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    for (k, first) in (0..a.n).step_by(a.batch).enumerate() {
        let n = a.batch.min(a.n - first);
        let file = dir.map(|d| d.join(format!("{first:07}-{n}.npy")));
        if let Some(f) = file.as_ref().filter(|f| f.is_file()) {
            let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
            match npy::parse_f32(&bytes, &f.display().to_string()) {
                Ok(t) if t.shape == [n, c, r, r] => {
                    let took = std::fs::read_to_string(f.with_extension("secs"))
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .unwrap_or(0.0);
                    data.extend_from_slice(&t.data);
                    secs += took;
                    continue;
                }
                _ => eprintln!("{}: unreadable, sampling it again", f.display()),
            }
        }
        match budget {
            Some(0) => return Ok(None),
            Some(b) => *b -= 1,
            None => {}
        }
        eprintln!("{label}: batch {}/{batches} ({n} samples)", k + 1);
        let job = Job {
            table,
            seed: a.seed,
            first,
            n,
            init: None,
            batch: n,
            keep_x0: false,
        };
        let t0 = Instant::now();
        let out = sampler::run(backend, &job, c, r, &mut |_| Ok(()))?;
        let took = t0.elapsed().as_secs_f64();
        if let Some(f) = &file {
            write_atomic(&f.with_extension("secs"), format!("{took}\n").as_bytes())?;
            write_atomic(f, &npy::to_bytes_f32(&out.samples))?;
        }
        data.extend_from_slice(&out.samples.data);
        secs += took;
    }
    Ok(Some((Tensor::new(vec![a.n, c, r, r], data)?, secs)))
}

/// "mean | level / level / level", the two score columns of the table.
fn scores(d: &[f64]) -> String {
    let mean = d.iter().sum::<f64>() / d.len().max(1) as f64;
    let levels = d
        .iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(" / ");
    format!("{mean:.1} | {levels}")
}

fn row_line(skip: &str, s: usize, eta: f64, d: &[f64], secs: f64) -> String {
    format!("| {skip} | {s} | {eta} | {} | {secs:.1} s |", scores(d))
}

/// A stored row's per-level SWD.
fn stored_swd(row: &Value) -> Vec<f64> {
    row["swd"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

pub fn run(a: Args) -> Result<()> {
    if a.n < 2 || a.batch == 0 {
        return Err(Error::invalid("n", "--n must be at least 2 and --batch at least 1").into());
    }
    let data = read_atlas(&a.data)?;
    let model = common::load(&a.model)?;
    let (c, r) = (
        model.config.model.in_channels,
        model.config.model.resolution,
    );
    if data.shape[1..] != [c, r, r] {
        return Err(Error::Shape {
            what: format!("{} against the model", a.data.display()),
            expected: vec![data.shape[0], c, r, r],
            found: data.shape,
        }
        .into());
    }
    let mut backend = common::backend(&a.model, &model)?;
    let mut store = match &a.work {
        Some(d) => Some(Store::open(
            d,
            fingerprint(&model, &data, &a, &backend.describe()),
        )?),
        None => None,
    };
    let mut budget = a.max_batches;
    let mut stopped = false;
    // The floor: two disjoint halves of the training set.
    let half = data.shape[0] / 2;
    let floor = swd(
        &data.slice_batch(0, half),
        &data.slice_batch(half, 2 * half),
    )?;
    let mut table = vec![
        format!(
            "SWD ×10³ against {} ({} images); levels finest first; {} samples per row; x0 {}",
            a.data.display(),
            data.shape[0],
            a.n,
            if a.clip { "clipped" } else { "not clipped" }
        ),
        "| skip | S | η | SWD (mean) | per level | sampling time |".into(),
        "|---|---|---|---|---|---|".into(),
        format!("| training set, half vs half | | | {} | |", scores(&floor)),
    ];
    for line in &table {
        println!("{line}");
    }
    for skip in &a.skip {
        for &s in &a.steps {
            for &eta in &a.eta {
                let done = store.as_ref().and_then(|st| st.row(skip, s, eta)).cloned();
                let (d, secs) = match done {
                    Some(row) => (stored_swd(&row), row["secs"].as_f64().unwrap_or(0.0)),
                    None => {
                        let args = StepArgs {
                            steps: s,
                            skip: Some(skip.clone()),
                            steps_offset: None,
                            eta,
                            sampler: "ddim".into(),
                            clip: a.clip,
                            no_clip: !a.clip,
                            prediction: None,
                            final_alpha: None,
                        };
                        let (_, steps) = common::table(&model, &args)?;
                        let dir = store.as_ref().map(|st| st.batch_dir(skip, s, eta));
                        let label = format!("{skip} S={s} η={eta}");
                        let Some((samples, secs)) = sample_row(
                            backend.as_mut(),
                            &steps,
                            &a,
                            (c, r),
                            dir.as_deref(),
                            &label,
                            &mut budget,
                        )?
                        else {
                            stopped = true;
                            continue;
                        };
                        let d = swd(&data, &samples)?;
                        if let Some(st) = store.as_mut() {
                            let key = st.key.clone();
                            st.append(json!({
                                "key": key, "skip": skip, "steps": s, "eta": eta,
                                "swd": d, "secs": secs,
                            }))?;
                            if let Some(dir) = &dir {
                                let _ = std::fs::remove_dir_all(dir);
                            }
                        }
                        (d, secs)
                    }
                };
                println!("{}", row_line(skip, s, eta, &d, secs));
            }
        }
    }
    if let Some(st) = &store {
        // Every row stored for this key, whichever run (or --skip list) produced it.
        for r in st.stored() {
            table.push(row_line(
                r["skip"].as_str().unwrap_or("?"),
                r["steps"].as_u64().unwrap_or(0) as usize,
                r["eta"].as_f64().unwrap_or(f64::NAN),
                &stored_swd(r),
                r["secs"].as_f64().unwrap_or(0.0),
            ));
        }
        let mut text = table.join("\n");
        text.push('\n');
        write_atomic(&st.dir.join("table.md"), text.as_bytes())?;
        if stopped {
            eprintln!(
                "stopped after --max-batches {}; rerun to continue",
                a.max_batches.unwrap_or(0)
            );
        }
    }
    Ok(())
}
