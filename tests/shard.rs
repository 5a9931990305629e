//! Sharded folder runs: any split of a run, by hand or through a job engine's variables,
//! writes the very files of a single run; a folder refuses another run's shards; `ddim pack`
//! refuses an incomplete folder and names what is missing.

mod common;

use common::{fixture, numpy_load};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every variable `--shard auto` reads, cleared so the host's own job engine cannot leak in.
const ENGINE_VARS: [&str; 10] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
    "AWS_BATCH_JOB_ARRAY_INDEX",
    "AWS_BATCH_JOB_ARRAY_SIZE",
    "RANK",
    "WORLD_SIZE",
    "RAYON_NUM_THREADS",
];

fn ddim(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ddim"));
    for v in ENGINE_VARS {
        c.env_remove(v);
    }
    c.args(args).envs(env.iter().copied()).output().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("shard", name)
}

/// 12 samples of the tiny model in batches of 4, into `out`; `extra` adds or overrides flags.
fn sample(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let m = fixture("tiny/model.safetensors").display().to_string();
    let out = out.display().to_string();
    let defaults = [
        ("--model", m.as_str()),
        ("--backend", "cpu"),
        ("--steps", "2"),
        ("--eta", "0.5"),
        ("--n", "12"),
        ("--batch", "4"),
        ("--seed", "5"),
        ("--out", &out),
    ];
    let mut a = vec!["sample"];
    for (flag, v) in defaults {
        if !extra.contains(&flag) {
            a.extend([flag, v]);
        }
    }
    a.extend_from_slice(extra);
    ddim(&a, env)
}

fn ok(o: Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    err
}

/// Every file of a folder, by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// One process's environment variables.
type EnvRun = Vec<(&'static str, String)>;

#[test]
fn every_split_gives_the_single_run() {
    let d = scratch("splits");
    let one = d.join("one");
    ok(sample(&one, &[], &[]));
    let want = files(&one);
    assert_eq!(
        want.len(),
        13,
        "12 PNGs and the manifest: {:?}",
        want.keys()
    );
    for n in [2, 3, 5] {
        let dir = d.join(format!("by{n}"));
        // Out of order, as a cluster would run them.
        for i in (0..n).rev() {
            let err = ok(sample(&dir, &["--shard", &format!("{i}/{n}")], &[]));
            assert!(err.contains(&format!("shard {i}/{n}")), "{err}");
        }
        assert!(files(&dir) == want, "{n} shards differ from one run");
    }
    let engines: Vec<(&str, Vec<EnvRun>, Vec<&str>)> = vec![
        (
            "slurm",
            (0..3)
                .map(|i| {
                    vec![
                        ("SLURM_ARRAY_TASK_ID", (i + 10).to_string()),
                        ("SLURM_ARRAY_TASK_MIN", "10".into()),
                        ("SLURM_ARRAY_TASK_COUNT", "3".into()),
                        ("SLURM_ARRAY_TASK_STEP", "1".into()),
                    ]
                })
                .collect(),
            vec![],
        ),
        (
            "k8s",
            (0..2)
                .map(|i| vec![("JOB_COMPLETION_INDEX", i.to_string())])
                .collect(),
            vec!["--shards", "2"],
        ),
        (
            "aws",
            (0..2)
                .map(|i| {
                    vec![
                        ("AWS_BATCH_JOB_ARRAY_INDEX", i.to_string()),
                        ("AWS_BATCH_JOB_ARRAY_SIZE", "2".into()),
                    ]
                })
                .collect(),
            vec![],
        ),
        (
            "rank",
            (0..5)
                .map(|i| vec![("RANK", i.to_string()), ("WORLD_SIZE", "5".into())])
                .collect(),
            vec![],
        ),
    ];
    for (name, runs, extra) in engines {
        let dir = d.join(name);
        for env in runs {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut a = vec!["--shard", "auto"];
            a.extend_from_slice(&extra);
            let err = ok(sample(&dir, &a, &env));
            assert!(
                err.contains(env[0].0),
                "{name}: the log names the variables: {err}"
            );
        }
        assert!(files(&dir) == want, "{name} shards differ from one run");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn thread_counts_do_not_change_a_byte() {
    let d = scratch("threads");
    ok(sample(&d.join("t1"), &[], &[("RAYON_NUM_THREADS", "1")]));
    ok(sample(&d.join("t2"), &[], &[("RAYON_NUM_THREADS", "2")]));
    assert!(files(&d.join("t1")) == files(&d.join("t2")));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_folder_refuses_another_run_and_resumes_its_own() {
    let d = scratch("manifest");
    let dir = d.join("s");
    ok(sample(&dir, &["--shard", "0/3"], &[]));
    let before = files(&dir);
    for (extra, needle) in [
        (vec!["--seed", "6"], "seed: 6 here, 5 in the folder"),
        (vec!["--eta", "0"], "eta"),
        (vec!["--batch", "3"], "batch: 3 here, 4 in the folder"),
    ] {
        let mut a = vec!["--shard", "1/3"];
        a.extend_from_slice(&extra);
        let o = sample(&dir, &a, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("holds samples of another run") && err.contains(needle),
            "{err}"
        );
        assert!(files(&dir) == before, "a refused shard wrote something");
    }
    // A torn file is rewritten, a complete one kept; the result is the single run's.
    ok(sample(&dir, &["--shard", "1/3"], &[]));
    ok(sample(&dir, &["--shard", "2/3"], &[]));
    let whole = files(&dir);
    let torn = &whole["5.png"][..40];
    std::fs::write(dir.join("5.png"), torn).unwrap();
    std::fs::remove_file(dir.join("11.png")).unwrap();
    // Without --n and --batch: the folder's own (not 16 and 64) are used.
    let m = fixture("tiny/model.safetensors").display().to_string();
    let args = [
        "sample",
        "--model",
        &m,
        "--backend",
        "cpu",
        "--steps",
        "2",
        "--eta",
        "0.5",
        "--seed",
        "5",
        "--out",
    ];
    let o = ddim(&[&args[..], &[dir.to_str().unwrap()]].concat(), &[]);
    let err = ok(o);
    assert!(err.contains("1 of 3 batches already complete"), "{err}");
    assert!(files(&dir) == whole);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn pack_checks_the_folder_then_writes_what_numpy_reads() {
    let d = scratch("pack");
    let dir = d.join("s");
    ok(sample(&dir, &["--shard", "0/3"], &[]));
    ok(sample(&dir, &["--shard", "2/3"], &[]));
    let npz = d.join("all.npz");
    let pack = |out: &Path| {
        ddim(
            &[
                "pack",
                dir.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        )
    };
    let o = pack(&npz);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("4 of 12 samples missing: 4-7"), "{err}");
    assert!(!npz.exists());
    let o = ddim(
        &["pack", d.to_str().unwrap(), "--out", npz.to_str().unwrap()],
        &[],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("ddim-manifest.json"));
    assert_eq!(o.status.code(), Some(2));

    ok(sample(&dir, &["--shard", "1/3"], &[]));
    ok(pack(&npz));
    let mut want = Vec::new();
    for i in 0..12 {
        let img = image_u8(&dir.join(format!("{i}.png")));
        want.extend(img);
    }
    if let Some((dtype, shape, bytes)) = numpy_load(&npz) {
        assert_eq!((dtype.as_str(), shape), ("|u1", vec![12, 16, 16, 3]));
        assert!(bytes == want, "numpy's arr_0 differs from the PNGs");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&d);
}

/// An 8-bit RGB PNG's pixels, rows of interleaved channels.
fn image_u8(p: &Path) -> Vec<u8> {
    let t = ddim_webgpu::image::read_png(p, 3).unwrap();
    let hw = t.shape[2] * t.shape[3];
    (0..hw * 3)
        .map(|k| {
            let v = t.data[(k % 3) * hw + k / 3];
            ((v + 1.0) / 2.0 * 255.0).round() as u8
        })
        .collect()
}

#[test]
fn bad_shard_requests_fail_before_any_work() {
    let d = scratch("bad");
    let dir = d.join("s");
    for (extra, env, needle) in [
        (vec!["--shard", "3/3"], vec![], "out of range"),
        (vec!["--shard", "auto"], vec![], "found no job engine"),
        (
            vec!["--shard", "auto"],
            vec![("JOB_COMPLETION_INDEX", "0")],
            "--shards N",
        ),
        (
            vec!["--shard", "auto"],
            vec![
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
            ],
            "SLURM_ARRAY_TASK_STEP=2",
        ),
    ] {
        let o = sample(&dir, &extra, &env);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{extra:?} {env:?}: {err}");
        assert!(!dir.exists(), "{extra:?} created the folder");
    }
    let o = sample(&d.join("x.npz"), &["--shard", "0/2"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("folder"));
    let _ = std::fs::remove_dir_all(&d);
}
