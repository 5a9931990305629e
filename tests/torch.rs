//! PyTorch checkpoints (tests/fixtures/torch, from tools/make_torch_fixtures.py) through the
//! library and the `ddim` command line: every container gives the tiny fixture's weights bit
//! for bit and samples byte for byte like its safetensors file, a training checkpoint gives
//! its EMA unless asked otherwise, and hostile files exit 2 naming the file, with no output.

mod common;

use common::{assert_bad, ddim, fixture, read_tensors};
use ddim_webgpu::safetensors::TensorFile;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    common::scratch("torch", name)
}

fn torch_fixture(name: &str) -> String {
    fixture(&format!("torch/{name}")).display().to_string()
}

fn parse(name: &str, entry: Option<i64>) -> ddim_webgpu::Result<TensorFile> {
    let path = torch_fixture(name);
    ddim_webgpu::torch::parse(&std::fs::read(&path).unwrap(), &path, entry)
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The tensors of `got`, by name, are those of `want`, bit for bit.
fn assert_same(what: &str, got: &TensorFile, want: &TensorFile) {
    assert_eq!(got.tensors.len(), want.tensors.len(), "{what}");
    for (name, t) in &want.tensors {
        let g = got
            .get(name)
            .unwrap_or_else(|| panic!("{what} lacks {name}"));
        assert_eq!(g.shape, t.shape, "{what} {name}");
        assert!(same_bits(&g.data, &t.data), "{what} {name} differs");
    }
}

#[test]
fn every_container_gives_the_fixture_weights_bit_for_bit() {
    let want = read_tensors("tiny/model.safetensors");
    for file in ["tiny_zip.pth", "tiny_legacy.pth", "tiny_train.ckpt"] {
        let got = parse(file, None).unwrap();
        assert_same(file, &got, &want);
        assert!(got.metadata.is_empty());
    }
    // The dtypes as saved: float16 from rank 2 up, float32 below.
    let zip = parse("tiny_zip.pth", None).unwrap();
    for ((name, t), d) in zip.tensors.iter().zip(&zip.dtypes) {
        let saved = if t.shape.len() >= 2 { "F16" } else { "F32" };
        assert_eq!(d, saved, "{name}");
    }
}

#[test]
fn the_training_checkpoint_gives_the_ema_unless_asked() {
    let ema = parse("tiny_train.ckpt", None).unwrap();
    assert_same(
        "entry -1",
        &parse("tiny_train.ckpt", Some(-1)).unwrap(),
        &ema,
    );
    // The raw model: `module.` and `downsample.op` are renamed, three tensors differ.
    let raw = parse("tiny_train.ckpt", Some(0)).unwrap();
    assert!(raw.get("down.0.downsample.conv.weight").is_some());
    assert_eq!(raw.tensors.len(), ema.tensors.len());
    for (name, t) in &ema.tensors {
        let differs = !same_bits(&raw.get(name).unwrap().data, &t.data);
        let trained = ["conv_in.weight", "conv_out.weight", "conv_out.bias"].contains(&&**name);
        assert_eq!(differs, trained, "{name}");
    }
    for (entry, needle) in [
        (
            1,
            "entry 1 is a dict with keys \"state\", \"param_groups\", not a state dict",
        ),
        (3, "entry 3 is the integer 1234, not a state dict"),
        (
            5,
            "entry 5 is out of range: the checkpoint is a list of 5 items",
        ),
        (-6, "entry -6 is out of range"),
    ] {
        let e = parse("tiny_train.ckpt", Some(entry))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tiny_train.ckpt: not a readable PyTorch checkpoint"),
            "{e}"
        );
        assert!(e.contains(needle), "{e}");
    }
}

/// `ddim sample` of 2 images in 3 steps to `out` (.npy), asserting success.
fn sample(model: &[&str], out: &Path) -> Vec<u8> {
    let mut args = vec!["sample"];
    args.extend_from_slice(model);
    let rest = [
        "--steps",
        "3",
        "--n",
        "2",
        "--seed",
        "5",
        "--backend",
        "cpu",
    ];
    args.extend_from_slice(&rest);
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let o = ddim(&args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(out).unwrap()
}

fn run_ok(args: &[&str]) -> String {
    let o = ddim(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn checkpoints_sample_and_convert_like_their_safetensors() {
    let d = scratch("sample");
    let at = |n: &str| d.join(n);
    let st = fixture("tiny/model.safetensors").display().to_string();
    let want = sample(&["--model", &st], &at("want.npy"));
    for file in ["tiny_zip.pth", "tiny_legacy.pth", "tiny_train.ckpt"] {
        let got = sample(
            &["--model", &torch_fixture(file)],
            &at(&format!("{file}.npy")),
        );
        assert!(got == want, "{file} samples differently");
    }
    let train = torch_fixture("tiny_train.ckpt");
    let raw = sample(&["--model", &train, "--ckpt-entry", "0"], &at("raw.npy"));
    assert!(
        raw != want,
        "--ckpt-entry 0 should sample the raw model, not the EMA"
    );

    // convert: the result carries its config and samples the same, in f32 and in f16 (the
    // fixture's weights are all float16 values).
    let conv = |extra: &[&str], name: &str| {
        let out = at(name).display().to_string();
        let mut args = vec!["convert", &train, &out];
        args.extend_from_slice(extra);
        run_ok(&args);
        out
    };
    let ema = conv(&[], "ema.safetensors");
    assert_eq!(sample(&["--model", &ema], &at("ema.npy")), want);
    let half = conv(&["--half"], "half.safetensors");
    assert_eq!(sample(&["--model", &half], &at("half.npy")), want);
    let raw_st = conv(&["--ckpt-entry", "0"], "raw.safetensors");
    assert_eq!(sample(&["--model", &raw_st], &at("raw_st.npy")), raw);
    let bytes = std::fs::read(&ema).unwrap();
    let meta = ddim_webgpu::safetensors::metadata(&bytes, "ema").unwrap();
    let yml = std::fs::read_to_string(fixture("torch/tiny_train.yml")).unwrap();
    assert_eq!(meta["config"], yml.as_str());
    let names: Vec<String> = ddim_webgpu::safetensors::parse(&bytes, "ema")
        .unwrap()
        .tensors
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names
        .iter()
        .all(|n| !n.starts_with("module.") && !n.contains(".op.")));

    // info reads checkpoints and their entries too.
    let info = run_ok(&["info", &torch_fixture("tiny_zip.pth"), "--tensors"]);
    assert!(info.contains("stored as:    F16, F32"), "{info}");
    let info = run_ok(&["info", &train, "--ckpt-entry", "0"]);
    assert!(info.contains("stored as:    F16, F32"), "{info}");
}

#[test]
fn hostile_checkpoints_fail_cleanly() {
    let d = scratch("hostile");
    let out_dir = d.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let cfg = fixture("tiny/config.yml").display().to_string();
    for (file, needle) in [
        ("evil_zip.pth", "refused global posix.system"),
        ("evil_legacy.pth", "refused global os.system"),
        ("deep.pth", "marks nested deeper than 1000"),
        (
            "huge_storage.pth",
            "declares 1000000000000 float32 elements but holds 16 bytes",
        ),
        ("truncated.pth", "not a readable zip archive"),
    ] {
        let path = torch_fixture(file);
        let needles = [
            &*format!("{path}: not a readable PyTorch checkpoint"),
            needle,
        ];
        let npy = out_dir.join("x.npy");
        let o = npy.to_str().unwrap();
        assert_bad(
            &["sample", "--model", &path, "--config", &cfg, "--out", o],
            &needles,
            &npy,
        );
        let st = out_dir.join("x.safetensors");
        let s = st.to_str().unwrap();
        assert_bad(&["convert", &path, s, "--config", &cfg], &needles, &st);
    }

    // A checkpoint has no metadata: without --config or <name>.yml beside it, say so.
    let lone = d.join("lone.pth");
    std::fs::copy(fixture("torch/tiny_zip.pth"), &lone).unwrap();
    let npy = out_dir.join("x.npy");
    let o = npy.to_str().unwrap();
    let l = lone.to_str().unwrap();
    assert_bad(
        &["sample", "--model", l, "--out", o],
        &["carries no config", "lone.yml"],
        &npy,
    );
    // Entries belong to list checkpoints.
    let st = fixture("tiny/model.safetensors").display().to_string();
    let args = ["sample", "--model", &st, "--ckpt-entry", "0", "--out", o];
    assert_bad(&args, &["not a PyTorch checkpoint"], &npy);
    let train = torch_fixture("tiny_train.ckpt");
    let args = ["sample", "--model", &train, "--ckpt-entry", "7", "--out", o];
    assert_bad(&args, &["tiny_train.ckpt", "entry 7 is out of range"], &npy);
    let bin = out_dir.join("x.bin").display().to_string();
    let args = ["convert", &train, &bin];
    assert_bad(&args, &["x.bin", ".safetensors"], &npy);
}
