//! Shared helpers for the integration tests: fixture paths and tolerance checks.
#![allow(dead_code)]

use ddim_webgpu::backend::Backend;
use ddim_webgpu::model::{load_model, Model};
use ddim_webgpu::safetensors::{self, TensorFile};
use ddim_webgpu::sampler::{self, Job};
use ddim_webgpu::schedule::{step_table, timesteps, Skip, StepOptions};
use ddim_webgpu::Tensor;
use std::path::PathBuf;

/// Run the `ddim` binary with these arguments.
pub fn ddim(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ddim"))
        .args(args)
        .output()
        .unwrap()
}

/// `ddim args` exits with code 2, says every needle on stderr, neither panics nor runs
/// anything, and leaves nothing at `out` or beside it.
pub fn assert_bad(args: &[&str], needles: &[&str], out: &std::path::Path) {
    let o = ddim(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "args {args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "args {args:?}: stderr lacks {n:?}: {err}");
    }
    assert!(
        !err.contains("panicked") && !err.contains("ran code"),
        "{err}"
    );
    assert!(!out.exists(), "{} was written", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "args {args:?}: partial files left: {leftovers:?}"
    );
}

/// A fresh, empty folder for one test: `<tmp>/ddim-<suite>-<pid>-<name>`.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ddim-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A path inside the repository.
pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn fixture(rel: &str) -> PathBuf {
    repo("tests/fixtures").join(rel)
}

/// The default model as shipped in models/.
pub fn shipped_model() -> Model {
    load_model(&repo("models/emoji32.safetensors"), None).unwrap()
}

/// `n` samples of `seed`: `steps` uniform DDIM steps, η = 0, no clipping, one batch.
pub fn sample_uniform(
    be: &mut dyn Backend,
    model: &Model,
    steps: usize,
    seed: u64,
    n: usize,
) -> Tensor {
    let d = &model.config.diffusion;
    let seq = timesteps(Skip::Uniform, d.num_timesteps, steps, 0).unwrap();
    let table = step_table(&d.schedule().unwrap(), &seq, &StepOptions::default()).unwrap();
    let job = Job {
        table: &table,
        seed,
        first: 0,
        n,
        init: None,
        batch: n,
        keep_x0: false,
    };
    let m = &model.config.model;
    sampler::run(be, &job, m.in_channels, m.resolution, &mut |_| Ok(()))
        .unwrap()
        .samples
}

pub fn read_tensors(rel: &str) -> TensorFile {
    let p = fixture(rel);
    safetensors::parse(&std::fs::read(&p).unwrap(), &p.display().to_string()).unwrap()
}

pub fn get(f: &TensorFile, name: &str) -> Tensor {
    f.get(name)
        .unwrap_or_else(|| panic!("fixture has no {name}"))
        .clone()
}

/// max|got − want| ≤ rel · max|want|, with a readable failure.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, rel: f32) {
    let d = got.max_abs_diff(want).unwrap();
    let m = want.max_abs();
    assert!(
        d <= rel * m,
        "{what}: max|d| = {d:e} > {rel:e} · max|ref| ({m:e})"
    );
    eprintln!(
        "{what}: max|d| = {d:.3e}, max|ref| = {m:.3e}, ratio {:.2e}",
        d / m
    );
}

/// Seeded standard normals (the project's own generator), for random test inputs.
pub fn randn(stream: u32, seed: u32, n: usize) -> Vec<f32> {
    let mut v = vec![0.0; n];
    ddim_webgpu::rng::fill_normal(1234, stream, seed, &mut v);
    v
}

/// max|a − b| / max|b|.
pub fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let m = b.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .fold(0.0f32, |d, (x, y)| d.max((x - y).abs()))
        / m
}

/// What an independent Python reader gets from `path`: `np.load` for .npy and .npz (its
/// `arr_0`), and for a .png a PNG decoder written here on the standard library alone (zlib,
/// every filter type, CRCs checked) as an [H, W, C] uint8 array. Gives the dtype string,
/// shape and C-order bytes. None when no python3 with numpy is found, unless
/// DDIM_REQUIRE_NUMPY is set (CI sets it), in which case that is a failure.
pub fn numpy_load(path: &std::path::Path) -> Option<(String, Vec<usize>, Vec<u8>)> {
    let raw = path.with_extension("numpy-bytes");
    let script = "import sys, json, struct, zlib, numpy as np\n\
        def png(path):\n\
        \x20   b = open(path, 'rb').read()\n\
        \x20   assert b[:8] == b'\\x89PNG\\r\\n\\x1a\\n', 'not a PNG'\n\
        \x20   i, idat = 8, b''\n\
        \x20   while True:\n\
        \x20       n, = struct.unpack('>I', b[i:i + 4]); t = b[i + 4:i + 8]; d = b[i + 8:i + 8 + n]\n\
        \x20       assert zlib.crc32(t + d) == struct.unpack('>I', b[i + 8 + n:i + 12 + n])[0], 'CRC'\n\
        \x20       if t == b'IHDR': w, h, depth, ct, _, _, il = struct.unpack('>IIBBBBB', d)\n\
        \x20       if t == b'IDAT': idat += d\n\
        \x20       if t == b'IEND': break\n\
        \x20       i += 12 + n\n\
        \x20   assert depth == 8 and il == 0 and ct in (0, 2), (depth, ct, il)\n\
        \x20   c = 1 if ct == 0 else 3; s = w * c; r = zlib.decompress(idat); prev = bytearray(s); out = bytearray()\n\
        \x20   for y in range(h):\n\
        \x20       f = r[y * (s + 1)]; line = bytearray(r[y * (s + 1) + 1:(y + 1) * (s + 1)])\n\
        \x20       for x in range(s):\n\
        \x20           a = line[x - c] if x >= c else 0; u = prev[x]; ul = prev[x - c] if x >= c else 0\n\
        \x20           pa, pb, pc = abs(u - ul), abs(a - ul), abs(a + u - 2 * ul)\n\
        \x20           pred = [0, a, u, (a + u) // 2, a if pa <= pb and pa <= pc else (u if pb <= pc else ul)][f]\n\
        \x20           line[x] = (line[x] + pred) & 255\n\
        \x20       out += line; prev = line\n\
        \x20   return np.frombuffer(bytes(out), np.uint8).reshape(h, w, c)\n\
        p = sys.argv[1]\n\
        a = png(p) if p.endswith('.png') else np.load(p)\n\
        a = a['arr_0'] if isinstance(a, np.lib.npyio.NpzFile) else a\n\
        open(sys.argv[2], 'wb').write(np.ascontiguousarray(a).tobytes())\n\
        print(json.dumps([a.dtype.str, list(a.shape)]))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .arg(&raw)
        .output();
    let required = std::env::var_os("DDIM_REQUIRE_NUMPY").is_some();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) if !required && String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            eprintln!("skipped: python3 has no numpy (set DDIM_REQUIRE_NUMPY to fail instead)");
            return None;
        }
        Err(e) if !required => {
            eprintln!("skipped: no python3 ({e})");
            return None;
        }
        Ok(o) => panic!(
            "numpy could not read {}: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("DDIM_REQUIRE_NUMPY is set but python3 did not run: {e}"),
    };
    let (dtype, shape): (String, Vec<usize>) = serde_json::from_slice(&out.stdout).unwrap();
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::remove_file(&raw).unwrap();
    Some((dtype, shape, bytes))
}
