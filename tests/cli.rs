//! The `ddim` command line: its output contract, and clear exit-2 errors with no partial
//! output for every kind of bad input.

mod common;

use common::{assert_bad, assert_close, ddim, fixture, get, numpy_load, read_tensors, repo};
use ddim_webgpu::{image, npy};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    common::scratch("cli", name)
}

fn tiny() -> String {
    fixture("tiny/model.safetensors").display().to_string()
}

fn read_npy(p: &Path) -> ddim_webgpu::Tensor {
    npy::parse_f32(&std::fs::read(p).unwrap(), "out").unwrap()
}

#[test]
fn sample_npy_reproduces_the_official_sampler() {
    let d = scratch("npy");
    let out = d.join("x.npy");
    let xt = fixture("tiny/xT.npy").display().to_string();
    let o = ddim(&[
        "sample",
        "--model",
        &tiny(),
        "--init-noise",
        &xt,
        "--steps",
        "10",
        "--backend",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = read_tensors("tiny/ref.safetensors");
    assert_close(
        "cli uniform S=10",
        &read_npy(&out),
        &get(&r, "sample_uniform_s10"),
        1e-3,
    );
}

#[test]
fn without_model_the_built_in_model_samples() {
    let d = scratch("builtin");
    let sample = |model: &[&str], out: &Path| {
        let rest = ["--steps", "2", "--n", "2", "--backend", "cpu", "--out"];
        let args: Vec<&str> = ["sample"]
            .into_iter()
            .chain(model.iter().copied())
            .chain(rest)
            .chain([out.to_str().unwrap()])
            .collect();
        let o = ddim(&args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{err}");
        (read_npy(out), err)
    };
    let (x, err) = sample(&[], &d.join("x.npy"));
    assert!(err.contains("built-in emoji32"), "{err}");
    assert_eq!(x.shape, [2, 3, 32, 32]);
    // The same weights read from models/ give the same samples.
    let model = repo("models/emoji32.safetensors");
    let (y, _) = sample(&["--model", model.to_str().unwrap()], &d.join("y.npy"));
    assert_eq!(y.data, x.data);
    let bytes = std::fs::read(&model).unwrap();
    let meta = ddim_webgpu::safetensors::metadata(&bytes, "emoji32").unwrap();
    let n_params = meta["n_params"].as_str().unwrap().to_string();
    let o = ddim(&["info"]);
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(
        info.contains(&n_params),
        "ddim info should count {n_params} params: {info}"
    );
}

#[test]
fn output_kinds_and_resume() {
    let d = scratch("kinds");
    let m = tiny();
    let run = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "sample", "--model", &m, "--steps", "3", "--n", "3", "--seed", "7", "--eta", "0.5",
        ];
        a.extend_from_slice(extra);
        let out_s = out.to_str().unwrap().to_string();
        a.extend_from_slice(&["--out", &out_s]);
        let o = ddim(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    // .npy, then the same seed again with batch 1: identical.
    run(&d.join("a.npy"), &[]);
    run(&d.join("b.npy"), &["--batch", "1"]);
    let (a, b) = (read_npy(&d.join("a.npy")), read_npy(&d.join("b.npy")));
    assert_eq!(a.shape, vec![3, 3, 16, 16]);
    assert!(a.max_abs_diff(&b).unwrap() <= 1e-5 * a.max_abs());

    // .npz: uint8 NHWC under arr_0, the same pixels as the .npy, as numpy reads them.
    run(&d.join("c.npz"), &[]);
    // NHWC bytes of a [3, 3, 16, 16] result, as the image outputs round them.
    let nhwc = |t: &ddim_webgpu::Tensor| {
        let (c, hw) = (3, 16 * 16);
        let mut px = vec![0u8; 3 * hw * c];
        for i in 0..3 {
            for ch in 0..c {
                for p in 0..hw {
                    let v = t.data[(i * c + ch) * hw + p];
                    px[(i * hw + p) * c + ch] =
                        (((v + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
        px
    };
    let want = nhwc(&a);
    if let Some((dtype, shape, bytes)) = numpy_load(&d.join("c.npz")) {
        assert_eq!((dtype.as_str(), shape), ("|u1", vec![3, 16, 16, 3]));
        assert!(bytes == want, "numpy's arr_0 differs from the samples");
    }
    // And the .npy as numpy reads it: float32 NCHW, the values we parse ourselves.
    if let Some((dtype, shape, bytes)) = numpy_load(&d.join("a.npy")) {
        assert_eq!((dtype.as_str(), shape), ("<f4", vec![3, 3, 16, 16]));
        assert!(
            bytes == bytemuck::cast_slice::<f32, u8>(&a.data),
            "numpy's .npy differs"
        );
    }

    // .png: a 3-image grid (2 columns) with a 2-pixel border.
    run(&d.join("g.png"), &[]);
    let png = std::fs::read(d.join("g.png")).unwrap();
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (2 * 18 + 2, 2 * 18 + 2));
    // Read independently: each tile is its sample's pixels (the first at (2, 2), 18 apart).
    if let Some((dtype, shape, bytes)) = numpy_load(&d.join("g.png")) {
        assert_eq!((dtype.as_str(), shape), ("|u1", vec![38, 38, 3]));
        for i in 0..3 {
            let (ty, tx) = (2 + 18 * (i / 2), 2 + 18 * (i % 2));
            for y in 0..16 {
                let row = &bytes[((ty + y) * 38 + tx) * 3..((ty + y) * 38 + tx + 16) * 3];
                assert!(
                    row == &want[(i * 16 + y) * 48..(i * 16 + y + 1) * 48],
                    "tile {i}"
                );
            }
        }
    }

    // A folder resumes: remove the last two files and they come back identical.
    let dir = d.join("imgs");
    run(&dir, &["--batch", "1"]);
    let files: Vec<Vec<u8>> = (0..3)
        .map(|i| std::fs::read(dir.join(format!("{i}.png"))).unwrap())
        .collect();
    // Read independently: each file is its sample's pixels (batch 1, as b.npy ran).
    let want = nhwc(&b);
    for i in 0..3 {
        if let Some((dtype, shape, bytes)) = numpy_load(&dir.join(format!("{i}.png"))) {
            assert_eq!((dtype.as_str(), shape), ("|u1", vec![16, 16, 3]));
            assert!(bytes == want[i * 768..(i + 1) * 768], "{i}.png");
        }
    }
    std::fs::remove_file(dir.join("1.png")).unwrap();
    std::fs::remove_file(dir.join("2.png")).unwrap();
    let o = ddim(&[
        "sample",
        "--model",
        &m,
        "--steps",
        "3",
        "--n",
        "3",
        "--seed",
        "7",
        "--eta",
        "0.5",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 of 3 batches already complete"));
    for (i, w) in files.iter().enumerate() {
        assert_eq!(
            &std::fs::read(dir.join(format!("{i}.png"))).unwrap(),
            w,
            "{i}.png"
        );
    }
}

#[test]
fn sequence_and_ddpm_and_interpolate() {
    let d = scratch("modes");
    let m = tiny();
    let seq = d.join("seq.npy");
    let o = ddim(&[
        "sample",
        "--model",
        &m,
        "--steps",
        "4",
        "--n",
        "2",
        "--sampler",
        "ddpm",
        "--out",
        d.join("s.npy").to_str().unwrap(),
        "--sequence",
        seq.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read_npy(&seq);
    assert_eq!(s.shape, vec![4, 2, 3, 16, 16]);
    // ddpm clamps x0, and its last step returns that x0.
    assert!(s.max_abs() <= 1.0 + 1e-6);
    let last = read_npy(&d.join("s.npy"));
    assert_eq!(&s.data[3 * 2 * 768..], &last.data[..]);

    // Interpolation endpoints are the plain samples of each seed.
    let o = ddim(&[
        "interpolate",
        "--model",
        &m,
        "--steps",
        "3",
        "--seed-a",
        "3",
        "--seed-b",
        "9",
        "--frames",
        "3",
        "--out",
        d.join("i.npy").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let frames = read_npy(&d.join("i.npy"));
    for (seed, f) in [("3", 0), ("9", 2)] {
        let p = d.join(format!("seed{seed}.npy"));
        assert!(ddim(&[
            "sample",
            "--model",
            &m,
            "--steps",
            "3",
            "--n",
            "1",
            "--seed",
            seed,
            "--out",
            p.to_str().unwrap()
        ])
        .status
        .success());
        let one = read_npy(&p);
        let fr = frames.slice_batch(f, f + 1);
        assert!(
            one.max_abs_diff(&fr).unwrap() <= 1e-5 * one.max_abs().max(1.0),
            "frame {f}"
        );
    }
}

#[test]
fn reconstruct_round_trip() {
    let d = scratch("recon");
    let m = tiny();
    let x = d.join("x.npy");
    assert!(ddim(&[
        "sample",
        "--model",
        &m,
        "--steps",
        "5",
        "--n",
        "2",
        "--out",
        x.to_str().unwrap()
    ])
    .status
    .success());
    let (out, lat) = (d.join("r.npy"), d.join("z.npy"));
    let o = ddim(&[
        "reconstruct",
        "--model",
        &m,
        "--steps",
        "20",
        "--input",
        x.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--latent-out",
        lat.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("PSNR"), "{err}");
    assert_eq!(read_npy(&out).shape, vec![2, 3, 16, 16]);
    assert_eq!(read_npy(&lat).shape, vec![2, 3, 16, 16]);
}

#[test]
fn schedule_json_contract() {
    let o = ddim(&[
        "schedule",
        "--timesteps",
        "100",
        "--steps",
        "10",
        "--skip",
        "quad",
        "--json",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in ["betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev"] {
        assert_eq!(v[k].as_array().unwrap().len(), 100, "{k}");
    }
    assert_eq!(v["betas"][1].as_f64().unwrap(), 0.00030101010101010104);
    assert_eq!(v["alphas_cumprod_prev"][0].as_f64().unwrap(), 1.0);
    let ts: Vec<i64> = v["timesteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(ts.len(), 10);
    assert!(ts.windows(2).all(|w| w[0] >= w[1]) && ts[9] == 0);
    let table = ddim(&["schedule", "--schedule", "cosine", "--timesteps", "10"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("alphas_cumprod_prev") && text.lines().count() == 11,
        "{text}"
    );
}

#[test]
fn bad_inputs_fail_cleanly() {
    let d = scratch("bad");
    let out_dir = d.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("x.png");
    let o = out.to_str().unwrap();
    let good = std::fs::read(fixture("tiny/model.safetensors")).unwrap();
    let cfg = fixture("tiny/config.yml").display().to_string();
    let write = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let truncated = write("truncated.safetensors", &good[..good.len() / 2]);
    let garbage = write(
        "garbage.safetensors",
        b"this is not a safetensors file at all, just text",
    );
    let mut long = good[..64].to_vec();
    long[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let long = write("longheader.safetensors", &long);
    for (p, needle) in [
        (&truncated, "truncated"),
        (&garbage, "header"),
        (&long, "larger than the file"),
    ] {
        assert_bad(
            &["sample", "--model", p, "--config", &cfg, "--out", o],
            &[p.as_str(), needle],
            &out,
        );
    }
    // A config that does not fit the weights lists what is wrong.
    let odd = fixture("tiny_odd/config.yml").display().to_string();
    assert_bad(
        &["sample", "--model", &tiny(), "--config", &odd, "--out", o],
        &["missing keys", "unexpected keys", "wrong shapes"],
        &out,
    );
    // Init noise of the wrong shape.
    let wrong = fixture("tiny_odd/xT.npy").display().to_string();
    assert_bad(
        &[
            "sample",
            "--model",
            &tiny(),
            "--init-noise",
            &wrong,
            "--out",
            o,
        ],
        &["--init-noise", "[2, 3, 16, 16]"],
        &out,
    );
    // Missing files.
    assert_bad(
        &[
            "sample",
            "--model",
            "/nonexistent/m.safetensors",
            "--config",
            &cfg,
            "--out",
            o,
        ],
        &["/nonexistent/m.safetensors"],
        &out,
    );
    // The OS's reason comes once, after the path (not again as the error's source).
    let missing = ddim(&["info", "nope.safetensors"]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{err}");
    assert!(err.contains("nope.safetensors: "), "{err}");
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
    assert_bad(
        &[
            "sample",
            "--model",
            &tiny(),
            "--config",
            "/nonexistent/c.yml",
            "--out",
            o,
        ],
        &["/nonexistent/c.yml"],
        &out,
    );
    // Bad numbers.
    for (args, needle) in [
        (vec!["--steps", "0"], "steps"),
        (vec!["--steps", "1001"], "1001"),
        (vec!["--eta", "-0.5"], "eta"),
        (vec!["--eta", "NaN"], "eta"),
        (vec!["--n", "0"], "n"),
        (vec!["--skip", "sideways"], "sideways"),
    ] {
        let mut a = vec!["sample", "--model", "", "--out", o];
        let tiny_s = tiny();
        a[2] = &tiny_s;
        a.extend_from_slice(&args);
        assert_bad(&a, &[needle], &out);
    }
    assert_bad(
        &[
            "sample",
            "--model",
            &tiny(),
            "--out",
            out_dir.join("x.jpg").to_str().unwrap(),
        ],
        &["x.jpg"],
        &out,
    );
}

#[test]
fn eval_resumes_from_its_work_dir() {
    let d = scratch("eval");
    let work = d.join("work");
    let w = work.to_str().unwrap();
    // The first row of the training atlas (64 emoji) keeps the scoring quick.
    let sheet = image::read_png(&repo("data/emoji32.png"), 3).unwrap();
    let mut row = image::sample_image(&sheet, 0).unwrap();
    row.pixels.truncate(32 * row.width * 3);
    row.height = 32;
    let wd = row.width;
    let png = row.png().unwrap();
    let data = d.join("row.png");
    std::fs::write(&data, png).unwrap();
    let meta = format!(
        "{{\"tile\": 32, \"columns\": {}, \"count\": {}}}",
        wd / 32,
        wd / 32
    );
    std::fs::write(d.join("row.json"), meta).unwrap();
    let data = data.to_str().unwrap();
    let run_with = |steps: &str, seed: &str, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--n",
            "4",
            "--batch",
            "2",
            "--steps",
            steps,
            "--eta",
            "0",
            "--seed",
            seed,
            "--backend",
            "cpu",
            "--work",
            w,
            "--data",
            data,
        ];
        args.extend_from_slice(extra);
        let o = ddim(&args);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        );
        assert!(o.status.success(), "{err}");
        (out, err)
    };
    let run = |steps: &str, seed: &str| run_with(steps, seed, &[]);
    let row = |out: &str, s: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("| uniform | {s} | 0 |")))
            .unwrap_or_else(|| panic!("no S={s} row in {out}"))
            .to_string()
    };
    let (out1, err1) = run("1", "0");
    assert!(err1.contains("uniform S=1 η=0: batch 2/2"), "{err1}");
    // A second run reuses the finished row and samples only the new one.
    let (out2, err2) = run("1,2", "0");
    assert!(!err2.contains("S=1 η=0: batch"), "{err2}");
    assert!(err2.contains("uniform S=2 η=0: batch 1/2"), "{err2}");
    assert_eq!(row(&out1, "1"), row(&out2, "1"));
    row(&out2, "2");
    let rows = std::fs::read_to_string(work.join("rows.jsonl")).unwrap();
    assert_eq!(rows.lines().count(), 2);
    let table = std::fs::read_to_string(work.join("table.md")).unwrap();
    assert!(table.contains(&row(&out2, "2")));
    // Finished rows leave no batch folders behind; another seed is another result.
    let left: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let (_, err3) = run("1", "1");
    assert!(err3.contains("uniform S=1 η=0: batch 1/2"), "{err3}");
    // A run cut short mid-row keeps its finished batch; the next one samples only the rest.
    let (out4, err4) = run_with("3", "0", &["--max-batches", "1"]);
    assert!(
        err4.contains("S=3 η=0: batch 1/2") && err4.contains("stopped after"),
        "{err4}"
    );
    assert!(!out4.contains("| uniform | 3 | 0 |"), "{out4}");
    let (out5, err5) = run("3", "0");
    assert!(
        !err5.contains("batch 1/2") && err5.contains("S=3 η=0: batch 2/2"),
        "{err5}"
    );
    row(&out5, "3");
    // A cut-off last line (a kill during the append) is skipped, not fatal.
    let rows = work.join("rows.jsonl");
    let mut text = std::fs::read_to_string(&rows).unwrap();
    text.push_str("{\"key\": \"cut");
    std::fs::write(&rows, text).unwrap();
    let (out6, err6) = run("3", "0");
    assert!(err6.contains("unfinished last line"), "{err6}");
    assert_eq!(row(&out6, "3"), row(&out5, "3"));
}
