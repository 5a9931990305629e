//! The tuner's choices and its cache.

use super::*;

/// The tuner on a one-conv plan: it times every offered variant once, stores the fastest,
/// reuses a stored choice without timing (even one written by hand), and never trusts a
/// corrupt or foreign cache file: it warns, re-tunes and replaces the file.
#[test]
fn tuner_keeps_its_choices_and_distrusts_bad_caches() {
    let Some(mut g) = gpu() else { return };
    let dir = std::env::temp_dir().join(format!("ddim-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("tune.json");
    let (slots, op) = offset_conv(32, 48, 8, 6, 3, Resample::None);
    let n = 2;
    let offered = offered(&g, &op, &slots, n);
    let plan = Plan {
        config: dummy_config(),
        params: vec![
            Param {
                name: "conv.weight".into(),
                shape: vec![48, 32, 3, 3],
            },
            Param {
                name: "conv.bias".into(),
                shape: vec![48],
            },
        ],
        slots: slots.clone(),
        ops: vec![op.clone()],
        input: 0,
        temb: 0,
        output: 3,
    };
    let weights = vec![
        Tensor::new(vec![48, 32, 3, 3], randn(6, 1, 48 * 32 * 9)).unwrap(),
        Tensor::new(vec![48], randn(6, 2, 48)).unwrap(),
    ];
    let inputs: Vec<(usize, Vec<f32>)> = op
        .reads()
        .into_iter()
        .map(|s| (s, randn(7, s as u32, slots[s].len() * n)))
        .collect();
    let refs: Vec<(usize, &[f32])> = inputs.iter().map(|(s, v)| (*s, v.as_slice())).collect();
    let want = CpuBackend::with_plan(plan.clone(), weights.clone()).execute(n, &refs, 3);
    // (how the choice was made, its variant, variants timed, warnings), after one forward.
    let run = |g: Gpu| -> (Gpu, &'static str, ConvVariant, usize, Vec<String>) {
        let mut be = pollster::block_on(GpuBackend::with_plan(g, plan.clone(), &weights)).unwrap();
        be.set_tuning(Tune::Quick, Some(cache.clone()));
        let got = pollster::block_on(be.execute(n, &refs, 3)).unwrap();
        let e = max_rel(&got, &want);
        assert!(e <= 1e-5, "tuned conv: rel err {e:e}");
        let c = be.choices()[0].clone();
        let (timed, warnings) = (be.variants_timed(), be.take_warnings());
        (be.into_gpu(), c.how, c.variant, timed, warnings)
    };
    let stored = |cache: &std::path::Path| -> (String, String) {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(cache).unwrap()).unwrap();
        let e = v["entries"].as_object().unwrap();
        assert_eq!(e.len(), 1, "{v}");
        let (k, val) = e.iter().next().unwrap();
        (k.clone(), val.as_str().unwrap().to_string())
    };

    let (g1, how, tuned, timed, warnings) = run(g);
    g = g1;
    assert_eq!((how, timed), ("tuned", offered.len()), "{warnings:?}");
    let (key, name) = stored(&cache);
    assert_eq!(name, tuned.name());

    let (g1, how, v, timed, _) = run(g);
    g = g1;
    assert_eq!((how, v, timed), ("cached", tuned, 0));

    // A choice written by hand is obeyed as it is, untimed.
    let other = *offered.iter().find(|v| **v != tuned).unwrap();
    let file = serde_json::json!({"ddim_webgpu_tune": 1, "entries": {key.clone(): other.name()}});
    std::fs::write(&cache, file.to_string()).unwrap();
    let (g1, how, v, timed, _) = run(g);
    g = g1;
    assert_eq!((how, v, timed), ("cached", other, 0));

    for (bad, says) in [
        ("{ not json".to_string(), "not a tune cache"),
        (
            serde_json::json!({"ddim_webgpu_tune": 99, "entries": {key.clone(): other.name()}})
                .to_string(),
            "format 99",
        ),
        (
            serde_json::json!({"ddim_webgpu_tune": 1, "entries": {key.clone(): "gemm 7x7x7/7x7"}})
                .to_string(),
            "not a variant this build offers",
        ),
    ] {
        std::fs::write(&cache, bad).unwrap();
        let (g1, how, _, timed, warnings) = run(g);
        g = g1;
        assert_eq!((how, timed), ("tuned", offered.len()), "{says}");
        assert!(
            warnings.iter().any(|w| w.contains(says)),
            "{says}: {warnings:?}"
        );
        assert_eq!(stored(&cache).0, key, "{says}: the file is replaced");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
